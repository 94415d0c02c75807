// Package azure is the Azure source: the VMs of a subscription (optionally
// one resource group) through Azure Resource Manager, an incremental
// snapshot of every managed disk as a checkpoint, and each snapshot read
// through a time-limited read grant (SAS) as a page blob, fetching only the
// page ranges Azure reports as allocated and streaming them as a dynamic
// VHD or a streamOptimized VMDK, whichever is smaller to upload. Each
// checkpoint being incremental snapshots, the pages changed since the last
// run's are Azure's page-range diff between the two (track.go).
//
// Refusals, each with its reason: confidential VMs and disks, disks with
// Azure Disk Encryption (the guest encrypted them: the bytes would be
// ciphertext), customer-managed-key disks whose disk encryption set this
// identity cannot read. Trusted launch VMs replicate with a warning (their
// vTPM and secure boot state stay in Azure). Disks whose data access needs
// Entra ID (dataAccessAuthMode AzureActiveDirectory) are read with a bearer
// token for the disk audience besides the SAS. Ultra and Premium SSD v2
// disks are snapshotted with Azure's background copy, which is waited for
// before the snapshot is read.
package azure

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/internal/conn"
)

// Authentication methods of Config.Auth.
const (
	// AuthSecret: a service principal (app registration) and its client
	// secret, given in Config.Secret.
	AuthSecret = "secret"
	// AuthCertificate: a service principal and its certificate: Config.Secret
	// holds the PEM (or PKCS#12) certificate with its unencrypted private key.
	AuthCertificate = "certificate"
	// AuthWorkloadIdentity: a federated token in a file (Kubernetes workload
	// identity), exchanged for an Entra ID token of the app ClientID.
	AuthWorkloadIdentity = "workload-identity"
	// AuthManagedIdentity: the managed identity of the Azure VM (or other
	// host) the connector runs on; ClientID picks a user-assigned one.
	AuthManagedIdentity = "managed-identity"
)

// Clouds of Config.Cloud.
const (
	CloudPublic       = "public"
	CloudUSGovernment = "usgovernment"
	CloudChina        = "china"
)

// Config says which subscription to read and how to sign in. Everything
// but Secret is stored as the source's options (JSON); Secret is sealed.
type Config struct {
	SubscriptionID string `json:"subscriptionId"`
	// ResourceGroup limits the inventory (and the snapshots) to one group.
	ResourceGroup string `json:"resourceGroup,omitempty"`
	TenantID      string `json:"tenantId,omitempty"`
	ClientID      string `json:"clientId,omitempty"`
	// Auth is AuthSecret (default), AuthCertificate, AuthWorkloadIdentity or
	// AuthManagedIdentity.
	Auth string `json:"auth,omitempty"`
	// Secret is the client secret or the certificate; never stored in
	// the options, never logged.
	Secret []byte `json:"-"`
	// TokenFile is the federated token of AuthWorkloadIdentity; default
	// $AZURE_FEDERATED_TOKEN_FILE.
	TokenFile string `json:"tokenFile,omitempty"`
	// Cloud is CloudPublic (default), CloudUSGovernment or CloudChina.
	Cloud string `json:"cloud,omitempty"`
	// Endpoints replaces the cloud's Resource Manager and Entra ID
	// endpoints: for a test double (internal/lab/azuresim) or a private proxy. Both
	// must be https; certificates are still verified (add CAPEM). The
	// credential is sent to AuthorityHost, so only an administrator sets it.
	Endpoints *Endpoints `json:"endpoints,omitempty"`
	// CAPEM is trusted besides the system roots, for every endpoint.
	CAPEM string `json:"caPem,omitempty"`

	// GrantDuration is the lifetime asked of each read grant (SAS); a
	// grant is renewed when a disk takes longer. Default 1 h.
	GrantDuration time.Duration `json:"grantDuration,omitempty"`
	// PollInterval paces the long-running-operation pollers; default 5 s.
	PollInterval time.Duration `json:"pollInterval,omitempty"`
	// SnapshotTimeout bounds the wait for a checkpoint's snapshots
	// (including the background copy of Ultra and Premium SSD v2 disks);
	// default 1 h.
	SnapshotTimeout time.Duration `json:"snapshotTimeout,omitempty"`
	// ReadConcurrency is the number of ranged reads in flight per disk and
	// ChunkBytes their size; together they bound the buffers of a stream
	// (default 4 × 4 MiB).
	ReadConcurrency int   `json:"readConcurrency,omitempty"`
	ChunkBytes      int64 `json:"chunkBytes,omitempty"`
	// RetryAttempts is the number of tries of each Azure request
	// (management, sign-in and disk data alike; default 5) and
	// RetryBaseDelay the first pause (default 800 ms, doubled per try up to
	// a minute, or what the server's Retry-After asks). The SDK's own
	// retries are off: this is the one policy around an Azure call.
	RetryAttempts  int           `json:"retryAttempts,omitempty"`
	RetryBaseDelay time.Duration `json:"retryBaseDelay,omitempty"`
	// PageRangesPerPage caps the page ranges asked for per Get Page Ranges
	// call of ChangedAreas (Azure's own cap, 5000, when 0), bounding what
	// one page of a disk's changes holds.
	PageRangesPerPage int32 `json:"pageRangesPerPage,omitempty"`

	Log *slog.Logger `json:"-"`
}

// Endpoints of a cloud.
type Endpoints struct {
	ResourceManager string `json:"resourceManager"`
	AuthorityHost   string `json:"authorityHost"`
	// Audience of Resource Manager tokens; default the public cloud's.
	Audience string `json:"audience,omitempty"`
}

// diskAudience is the Entra ID audience of managed disk data access
// (dataAccessAuthMode AzureActiveDirectory), the same in every cloud.
const diskAudience = "https://disk.azure.com/"

// Source is a connected Azure subscription. Safe for concurrent use.
type Source struct {
	cfg   Config
	log   *slog.Logger
	cred  azcore.TokenCredential
	copts azcore.ClientOptions

	vms   *armcompute.VirtualMachinesClient
	disks *armcompute.DisksClient
	snaps *armcompute.SnapshotsClient
	skus  *armcompute.ResourceSKUsClient
	des   *armcompute.DiskEncryptionSetsClient
	nics  *nicClient
	sizes sizeCache
	// grants are the read grants ChangedAreas and OpenDisk share, by
	// resource group and snapshot: one SAS per snapshot at a time, ended
	// by revoke.
	grants sync.Map
}

var (
	_ source.Source        = (*Source)(nil)
	_ source.ExportAborter = (*Source)(nil)
)

// New checks the configuration, signs in and reads the subscription once,
// so a wrong secret, tenant or subscription is reported now. Errors wrap
// source.ErrAuth, ErrUnreachable or ErrNotFound where they apply.
func New(ctx context.Context, cfg Config) (*Source, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, log: cfg.Log}
	hc, err := httpClient(cfg.CAPEM)
	if err != nil {
		return nil, err
	}
	cl, err := cloudConfig(cfg)
	if err != nil {
		return nil, err
	}
	// MaxRetries < 0: one try per request; s.call is the policy around it.
	s.copts = azcore.ClientOptions{Cloud: cl, Transport: hc, Retry: policy.RetryOptions{MaxRetries: -1}}
	if s.cred, err = credential(cfg, s.copts); err != nil {
		return nil, err
	}
	aopts := &arm.ClientOptions{ClientOptions: s.copts}
	cf, err := armcompute.NewClientFactory(cfg.SubscriptionID, s.cred, aopts)
	if err != nil {
		return nil, fmt.Errorf("azure subscription %s: %w", cfg.SubscriptionID, err)
	}
	s.vms, s.disks, s.snaps = cf.NewVirtualMachinesClient(), cf.NewDisksClient(), cf.NewSnapshotsClient()
	s.skus, s.des = cf.NewResourceSKUsClient(), cf.NewDiskEncryptionSetsClient()
	if s.nics, err = newNICClient(cfg.SubscriptionID, s.cred, aopts); err != nil {
		return nil, fmt.Errorf("azure subscription %s: %w", cfg.SubscriptionID, err)
	}
	// One cheap read proves the credential and the subscription (or group).
	what := "azure subscription " + cfg.SubscriptionID
	if rg := cfg.ResourceGroup; rg != "" {
		what = fmt.Sprintf("resource group %q of %s", rg, what)
	}
	err = s.call(ctx, "read "+what, func(ctx context.Context) (err error) {
		if rg := cfg.ResourceGroup; rg != "" {
			_, err = s.snaps.NewListByResourceGroupPager(rg, nil).NextPage(ctx)
		} else {
			_, err = s.snaps.NewListPager(nil).NextPage(ctx)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (c *Config) defaults() error {
	c.SubscriptionID = strings.TrimSpace(c.SubscriptionID)
	if c.SubscriptionID == "" {
		return errors.New("azure source: no subscription id: give the subscription whose VMs to replicate")
	}
	if c.Auth == "" {
		c.Auth = AuthSecret
	}
	switch c.Auth {
	case AuthSecret, AuthCertificate:
		if c.TenantID == "" || c.ClientID == "" || len(c.Secret) == 0 {
			return fmt.Errorf("azure source: %s sign-in needs the tenant id, the client (application) id and the %s", c.Auth, map[string]string{AuthSecret: "client secret", AuthCertificate: "certificate with its private key"}[c.Auth])
		}
	case AuthWorkloadIdentity:
		if c.TokenFile == "" {
			c.TokenFile = os.Getenv("AZURE_FEDERATED_TOKEN_FILE")
		}
		if c.TenantID == "" || c.ClientID == "" || c.TokenFile == "" {
			return errors.New("azure source: workload identity needs the tenant id, the client id and the federated token file (or AZURE_FEDERATED_TOKEN_FILE)")
		}
	case AuthManagedIdentity:
	default:
		return fmt.Errorf("azure source: unknown sign-in method %q: want %s, %s, %s or %s", c.Auth, AuthSecret, AuthCertificate, AuthWorkloadIdentity, AuthManagedIdentity)
	}
	if c.GrantDuration <= 0 {
		c.GrantDuration = time.Hour
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 5 * time.Second
	}
	if c.SnapshotTimeout <= 0 {
		c.SnapshotTimeout = time.Hour
	}
	if c.ReadConcurrency <= 0 {
		c.ReadConcurrency = 4
	}
	if c.ChunkBytes <= 0 {
		c.ChunkBytes = 4 << 20
	}
	if c.RetryAttempts <= 0 {
		c.RetryAttempts = 5
	}
	if c.RetryBaseDelay <= 0 {
		c.RetryBaseDelay = 800 * time.Millisecond
	}
	c.ChunkBytes = (c.ChunkBytes + 511) / 512 * 512
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return nil
}

// cloudConfig maps Config.Cloud (or Endpoints) to the SDK's cloud.
func cloudConfig(c Config) (cloud.Configuration, error) {
	if e := c.Endpoints; e != nil {
		for _, u := range []string{e.ResourceManager, e.AuthorityHost} {
			p, err := url.Parse(u)
			if err != nil || p.Scheme != "https" || p.Host == "" {
				return cloud.Configuration{}, fmt.Errorf("azure source: endpoint %q: want an https url", u)
			}
		}
		aud := e.Audience
		if aud == "" {
			aud = cloud.AzurePublic.Services[cloud.ResourceManager].Audience
		}
		return cloud.Configuration{
			ActiveDirectoryAuthorityHost: e.AuthorityHost,
			Services:                     map[cloud.ServiceName]cloud.ServiceConfiguration{cloud.ResourceManager: {Endpoint: e.ResourceManager, Audience: aud}},
		}, nil
	}
	switch strings.ToLower(strings.ReplaceAll(c.Cloud, " ", "")) {
	case "", CloudPublic, "azurepublic", "azurecloud":
		return cloud.AzurePublic, nil
	case CloudUSGovernment, "azureusgovernment", "usgov":
		return cloud.AzureGovernment, nil
	case CloudChina, "azurechina", "azurechinacloud":
		return cloud.AzureChina, nil
	case "germany", "azuregermany", "azuregermancloud":
		return cloud.Configuration{}, errors.New("azure source: Azure Germany closed in October 2021 and its workloads moved to the public cloud's German regions: use cloud \"public\"")
	case "stack", "azurestack", "azurestackhub":
		return cloud.Configuration{}, errors.New("azure source: Azure Stack Hub is not supported: its disks cannot be snapshotted incrementally nor exported by SAS the way this source reads them")
	}
	return cloud.Configuration{}, fmt.Errorf("azure source: unknown cloud %q: want %s, %s or %s", c.Cloud, CloudPublic, CloudUSGovernment, CloudChina)
}

func httpClient(caPEM string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caPEM != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, errors.New("azure source: the extra CA certificate is not valid PEM")
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: tr}, nil
}

func credential(c Config, co azcore.ClientOptions) (azcore.TokenCredential, error) {
	custom := c.Endpoints != nil
	var cred azcore.TokenCredential
	var err error
	switch c.Auth {
	case AuthSecret:
		cred, err = azidentity.NewClientSecretCredential(c.TenantID, c.ClientID, string(c.Secret),
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: custom})
	case AuthCertificate:
		certs, key, perr := azidentity.ParseCertificates(c.Secret, nil)
		if perr != nil {
			return nil, fmt.Errorf("azure source: read the client certificate: %w (want PEM or PKCS#12 with an unencrypted private key)", perr)
		}
		cred, err = azidentity.NewClientCertificateCredential(c.TenantID, c.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: custom, SendCertificateChain: true})
	case AuthWorkloadIdentity:
		cred, err = azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions: co, TenantID: c.TenantID, ClientID: c.ClientID, TokenFilePath: c.TokenFile, DisableInstanceDiscovery: custom})
	case AuthManagedIdentity:
		o := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: co}
		if c.ClientID != "" {
			o.ID = azidentity.ClientID(c.ClientID)
		}
		cred, err = azidentity.NewManagedIdentityCredential(o)
	}
	if err != nil {
		return nil, fmt.Errorf("azure source: %s credential: %w", c.Auth, err)
	}
	return cred, nil
}

// Close releases nothing: the SDK clients hold no session.
func (s *Source) Close() error { return nil }

// classify wraps an SDK error with what was being done and the source
// error class a caller acts on; the SDK's error stays in the chain (for the
// classifier, transient) but out of the message, whose request dump says
// nothing a user can act on. The class agrees with transient: what is worth
// another try is ErrUnreachable, which an outer policy would retry had this
// one not (see call).
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var c *classified
	if errors.As(err, &c) {
		return fmt.Errorf("%s: %w", op, err) // classified below already
	}
	err = redactSAS(err)
	var re *azcore.ResponseError
	var ae *azidentity.AuthenticationFailedError
	switch {
	case errors.As(err, &ae) && ae.RawResponse != nil && retryStatus(ae.RawResponse.StatusCode):
		return &classified{fmt.Sprintf("%s: sign-in: Entra ID answered %s", op, ae.RawResponse.Status), source.ErrUnreachable, err}
	case errors.As(err, &ae):
		return &classified{fmt.Sprintf("%s: sign-in refused: %s", op, jsonField(ae.Error(), "error_description")), source.ErrAuth, err}
	case errors.As(err, &re):
		switch {
		case re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden:
			return &classified{fmt.Sprintf("%s: %s (%d): the identity lacks a role on it (Reader on the subscription, Disk Snapshot Contributor on the resource groups)", op, re.ErrorCode, re.StatusCode), source.ErrAuth, err}
		case re.StatusCode == http.StatusNotFound:
			return &classified{fmt.Sprintf("%s: %s", op, re.ErrorCode), source.ErrNotFound, err}
		case retryStatus(re.StatusCode):
			return &classified{fmt.Sprintf("%s: %s (%d)", op, re.ErrorCode, re.StatusCode), source.ErrUnreachable, err}
		}
		return &classified{fmt.Sprintf("%s: %s (%d): %s", op, re.ErrorCode, re.StatusCode, errorMessage(re)), nil, err}
	case conn.Unreachable(err):
		return &classified{fmt.Sprintf("%s: %v", op, err), source.ErrUnreachable, err}
	}
	return &classified{fmt.Sprintf("%s: %v", op, err), nil, err}
}

// classified is an Azure failure as classify words it: msg says what was
// being done and why; it unwraps to its source error class (nil for none)
// and to the SDK's error.
type classified struct {
	msg   string
	class error
	sdk   error
}

func (c *classified) Error() string {
	if c.class != nil {
		return c.msg + ": " + c.class.Error()
	}
	return c.msg
}

func (c *classified) Unwrap() []error {
	if c.class == nil {
		return []error{c.sdk}
	}
	return []error{c.class, c.sdk}
}

// sasSignature matches the signature of a SAS in a URL: an error naming
// a read grant's URL must not hand out the grant.
var sasSignature = regexp.MustCompile(`([?&](?:amp;)?sig=)[^&\s"]+`)

type redacted struct{ error }

func (r redacted) Error() string {
	return sasSignature.ReplaceAllString(r.error.Error(), "${1}REDACTED")
}
func (r redacted) Unwrap() error { return r.error }

func redactSAS(err error) error {
	if !sasSignature.MatchString(err.Error()) {
		return err
	}
	return redacted{err}
}

// errorMessage is the "message" of an ARM error body, without the request
// dump azcore puts in Error().
func errorMessage(re *azcore.ResponseError) string {
	return jsonField(re.Error(), "message")
}

// jsonField finds "field": "…" in an SDK error's text (which quotes the
// response body) and returns the string, or the text's first line.
func jsonField(msg, field string) string {
	if i := strings.Index(msg, `"`+field+`"`); i >= 0 {
		var m string
		rest := strings.TrimLeft(msg[i+len(field)+2:], " \t:")
		if json.NewDecoder(strings.NewReader(rest)).Decode(&m) == nil && m != "" {
			return m
		}
	}
	return firstLine(msg)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[:i])
	}
	return s
}

// cleanupContext is a context for undoing work that outlives the caller's
// cancellation, bounded by its own timeout.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
}

// val is *p, or the zero value for nil (the SDK's models are all pointers).
func val[T any](p *T) T {
	if p == nil {
		var z T
		return z
	}
	return *p
}
