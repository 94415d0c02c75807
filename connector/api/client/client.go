// Package client is the connector's API over HTTPS: an api.Service whose
// calls are AWS JSON 1.1 requests signed with SigV4 (the SDK's signer),
// to a connector whose certificate is pinned by fingerprint or trusted
// through a CA.
package client

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/pkg/retry"
)

// Options configure a Client.
type Options struct {
	// Endpoint is the connector's URL, https://host[:port].
	Endpoint string
	// Region requests are signed for: the connector's registration region.
	Region      string
	Credentials aws.CredentialsProvider
	// Fingerprint pins the connector's certificate: its SHA-256, hex,
	// colons optional (what `rehost serve` prints). Otherwise CAPEM, or the
	// system's roots, are trusted.
	Fingerprint string
	CAPEM       []byte
	// Timeout bounds one try of a call (default 10 minutes: importing a
	// catalog talks to every source).
	Timeout time.Duration
	// RetryAttempts is the number of tries of a call (default 4) and
	// RetryBaseDelay the first pause (default 1 s, doubled per try, or what
	// the connector's Retry-After asks); see retryable for what is retried.
	RetryAttempts  int
	RetryBaseDelay time.Duration
}

// Client calls a connector's API.
type Client struct {
	o      Options
	url    string
	http   *http.Client
	signer *v4.Signer
}

var _ api.Service = (*Client)(nil)

// New returns a client for the connector at o.Endpoint.
func New(o Options) (*Client, error) {
	u, err := url.Parse(o.Endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("connector endpoint %q: want https://HOST[:PORT]", o.Endpoint)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("connector endpoint %q: the connector speaks HTTPS only", o.Endpoint)
	}
	if o.Credentials == nil {
		return nil, errors.New("connector endpoint: no access key: run 'rehost login' or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	o.RetryAttempts = cmp.Or(o.RetryAttempts, 4)
	o.RetryBaseDelay = cmp.Or(o.RetryBaseDelay, time.Second)
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case o.Fingerprint != "":
		want, err := parseFingerprint(o.Fingerprint)
		if err != nil {
			return nil, err
		}
		// The pin replaces chain and name checks: the certificate is the
		// one the operator saw printed by the appliance, or nothing.
		tc.InsecureSkipVerify = true
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("the connector presented no certificate")
			}
			got := sha256.Sum256(raw[0])
			if !bytes.Equal(got[:], want) {
				return fmt.Errorf("the connector's certificate has SHA-256 fingerprint %s, not the pinned %s: if the appliance's certificate changed, check the new one ('rehost serve' prints it) and log in again",
					fingerprint(got[:]), fingerprint(want))
			}
			return nil
		}
	case len(o.CAPEM) > 0:
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(o.CAPEM) {
			return nil, errors.New("connector CA: not a PEM certificate")
		}
		tc.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &Client{o: o, url: strings.TrimRight(u.String(), "/") + "/", http: &http.Client{Transport: tr, Timeout: o.Timeout},
		signer: v4.NewSigner()}, nil
}

func parseFingerprint(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("certificate fingerprint %q: want the 64 hex digits of a SHA-256 (colons allowed), as 'rehost serve' prints it", s)
	}
	return b, nil
}

func fingerprint(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":")
}

// do signs and sends a request, under the retry policy; body nil sends
// none.
func (c *Client) do(ctx context.Context, method, path, target string, body []byte) (*http.Response, error) {
	// Outside the policy: finding the key is the credential chain's
	// business (the SDK's, with its own retries for a metadata service),
	// not a request to the connector.
	creds, err := c.o.Credentials.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("access key for the connector: %w", err)
	}
	var resp *http.Response
	p := retry.Policy{Attempts: c.o.RetryAttempts, Base: c.o.RetryBaseDelay, Classify: retryable(method == http.MethodGet || api.ReadOnly(target))}
	err = p.Do(ctx, func(ctx context.Context) (err error) {
		resp, err = c.send(ctx, creds, method, path, target, body)
		return err
	})
	return resp, err
}

// retryable is the client's classifier. A ThrottlingException (the
// connector answers it before it runs the operation) and a connection
// never made are retried for every operation. Any other failure that may
// pass (a 5xx but 501, a connection broken after the request went out) is
// retried only for an operation that changes nothing (api.ReadOnly, or a
// GET), since the connector may have run a changing one already: sending
// CreateReplicationJob again would then answer that the job exists. A
// timeout is not retried: the connector is busy with it. The pause a
// Retry-After asks for is honoured.
func retryable(idempotent bool) retry.Classifier {
	return func(err error) (bool, time.Duration) {
		var ae *api.Error
		if errors.As(err, &ae) {
			again := ae.Type == api.ErrThrottling || idempotent && ae.Status >= 500 && ae.Status != http.StatusNotImplemented
			return again, ae.RetryAfter
		}
		var ne net.Error
		timeout := errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
		return retry.Dialing(err) || idempotent && !timeout && retry.Connection(err), 0
	}
}

// send signs and sends one try of a request.
func (c *Client) send(ctx context.Context, creds aws.Credentials, method, path, target string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url+strings.TrimPrefix(path, "/"), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if target != "" {
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", target)
	}
	sum := sha256.Sum256(body)
	if err := c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), api.SigningService, c.o.Region, time.Now()); err != nil {
		return nil, fmt.Errorf("sign the request: %w", err)
	}
	resp, err := c.http.Do(req)
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &unknownCA) || errors.As(err, &hostErr) {
		return nil, fmt.Errorf("call the connector at %s: %w: pin its certificate with --fingerprint (as 'rehost serve' printed it) or trust its CA with --ca-file", c.o.Endpoint, err)
	}
	if err != nil {
		return nil, fmt.Errorf("call the connector at %s: %w", c.o.Endpoint, err)
	}
	if resp.StatusCode >= 300 {
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) *api.Error {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := &api.Error{Status: resp.StatusCode}
	if json.Unmarshal(b, e) != nil || e.Type == "" {
		e.Type = resp.Header.Get("X-Amzn-Errortype")
		e.Message = strings.TrimSpace(string(b))
	}
	if i := strings.LastIndexByte(e.Type, '#'); i >= 0 {
		e.Type = e.Type[i+1:]
	}
	if e.Type == "" {
		e.Type = api.ErrInternal
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("the connector answered %s", resp.Status)
	}
	e.RetryAfter = retry.After(resp.Header)
	return e
}

// call sends one JSON operation.
func call[I, O any](ctx context.Context, c *Client, target string, in *I) (*O, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodPost, "/", target, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := new(O)
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return nil, fmt.Errorf("read the connector's answer to %s: %w", target, err)
	}
	return out, nil
}

const (
	sms    = api.SMSTarget + "."
	rehost = api.RehostTarget + "."
)

func (c *Client) ImportServerCatalog(ctx context.Context, in *api.ImportServerCatalogInput) (*api.ImportServerCatalogOutput, error) {
	return call[api.ImportServerCatalogInput, api.ImportServerCatalogOutput](ctx, c, sms+"ImportServerCatalog", in)
}
func (c *Client) GetServers(ctx context.Context, in *api.GetServersInput) (*api.GetServersOutput, error) {
	return call[api.GetServersInput, api.GetServersOutput](ctx, c, sms+"GetServers", in)
}
func (c *Client) DeleteServerCatalog(ctx context.Context, in *api.DeleteServerCatalogInput) (*api.DeleteServerCatalogOutput, error) {
	return call[api.DeleteServerCatalogInput, api.DeleteServerCatalogOutput](ctx, c, sms+"DeleteServerCatalog", in)
}
func (c *Client) GetConnectors(ctx context.Context, in *api.GetConnectorsInput) (*api.GetConnectorsOutput, error) {
	return call[api.GetConnectorsInput, api.GetConnectorsOutput](ctx, c, sms+"GetConnectors", in)
}
func (c *Client) DisassociateConnector(ctx context.Context, in *api.DisassociateConnectorInput) (*api.DisassociateConnectorOutput, error) {
	return call[api.DisassociateConnectorInput, api.DisassociateConnectorOutput](ctx, c, sms+"DisassociateConnector", in)
}
func (c *Client) CreateReplicationJob(ctx context.Context, in *api.CreateReplicationJobInput) (*api.CreateReplicationJobOutput, error) {
	return call[api.CreateReplicationJobInput, api.CreateReplicationJobOutput](ctx, c, sms+"CreateReplicationJob", in)
}
func (c *Client) GetReplicationJobs(ctx context.Context, in *api.GetReplicationJobsInput) (*api.GetReplicationJobsOutput, error) {
	return call[api.GetReplicationJobsInput, api.GetReplicationJobsOutput](ctx, c, sms+"GetReplicationJobs", in)
}
func (c *Client) UpdateReplicationJob(ctx context.Context, in *api.UpdateReplicationJobInput) (*api.UpdateReplicationJobOutput, error) {
	return call[api.UpdateReplicationJobInput, api.UpdateReplicationJobOutput](ctx, c, sms+"UpdateReplicationJob", in)
}
func (c *Client) DeleteReplicationJob(ctx context.Context, in *api.DeleteReplicationJobInput) (*api.DeleteReplicationJobOutput, error) {
	return call[api.DeleteReplicationJobInput, api.DeleteReplicationJobOutput](ctx, c, sms+"DeleteReplicationJob", in)
}
func (c *Client) StartOnDemandReplicationRun(ctx context.Context, in *api.StartOnDemandReplicationRunInput) (*api.StartOnDemandReplicationRunOutput, error) {
	return call[api.StartOnDemandReplicationRunInput, api.StartOnDemandReplicationRunOutput](ctx, c, sms+"StartOnDemandReplicationRun", in)
}
func (c *Client) GetReplicationRuns(ctx context.Context, in *api.GetReplicationRunsInput) (*api.GetReplicationRunsOutput, error) {
	return call[api.GetReplicationRunsInput, api.GetReplicationRunsOutput](ctx, c, sms+"GetReplicationRuns", in)
}
func (c *Client) CreateApp(ctx context.Context, in *api.CreateAppInput) (*api.AppOutput, error) {
	return call[api.CreateAppInput, api.AppOutput](ctx, c, sms+"CreateApp", in)
}
func (c *Client) GetApp(ctx context.Context, in *api.GetAppInput) (*api.AppOutput, error) {
	return call[api.GetAppInput, api.AppOutput](ctx, c, sms+"GetApp", in)
}
func (c *Client) UpdateApp(ctx context.Context, in *api.UpdateAppInput) (*api.AppOutput, error) {
	return call[api.UpdateAppInput, api.AppOutput](ctx, c, sms+"UpdateApp", in)
}
func (c *Client) DeleteApp(ctx context.Context, in *api.DeleteAppInput) (*api.DeleteAppOutput, error) {
	return call[api.DeleteAppInput, api.DeleteAppOutput](ctx, c, sms+"DeleteApp", in)
}
func (c *Client) ListApps(ctx context.Context, in *api.ListAppsInput) (*api.ListAppsOutput, error) {
	return call[api.ListAppsInput, api.ListAppsOutput](ctx, c, sms+"ListApps", in)
}
func (c *Client) PutAppLaunchConfiguration(ctx context.Context, in *api.PutAppLaunchConfigurationInput) (*api.PutAppLaunchConfigurationOutput, error) {
	return call[api.PutAppLaunchConfigurationInput, api.PutAppLaunchConfigurationOutput](ctx, c, sms+"PutAppLaunchConfiguration", in)
}
func (c *Client) GetAppLaunchConfiguration(ctx context.Context, in *api.GetAppLaunchConfigurationInput) (*api.GetAppLaunchConfigurationOutput, error) {
	return call[api.GetAppLaunchConfigurationInput, api.GetAppLaunchConfigurationOutput](ctx, c, sms+"GetAppLaunchConfiguration", in)
}
func (c *Client) DeleteAppLaunchConfiguration(ctx context.Context, in *api.AppRef) (*api.Empty, error) {
	return call[api.AppRef, api.Empty](ctx, c, sms+"DeleteAppLaunchConfiguration", in)
}
func (c *Client) PutAppReplicationConfiguration(ctx context.Context, in *api.PutAppReplicationConfigurationInput) (*api.PutAppReplicationConfigurationOutput, error) {
	return call[api.PutAppReplicationConfigurationInput, api.PutAppReplicationConfigurationOutput](ctx, c, sms+"PutAppReplicationConfiguration", in)
}
func (c *Client) GetAppReplicationConfiguration(ctx context.Context, in *api.GetAppReplicationConfigurationInput) (*api.GetAppReplicationConfigurationOutput, error) {
	return call[api.GetAppReplicationConfigurationInput, api.GetAppReplicationConfigurationOutput](ctx, c, sms+"GetAppReplicationConfiguration", in)
}
func (c *Client) DeleteAppReplicationConfiguration(ctx context.Context, in *api.AppRef) (*api.Empty, error) {
	return call[api.AppRef, api.Empty](ctx, c, sms+"DeleteAppReplicationConfiguration", in)
}
func (c *Client) StartAppReplication(ctx context.Context, in *api.AppRef) (*api.Empty, error) {
	return call[api.AppRef, api.Empty](ctx, c, sms+"StartAppReplication", in)
}
func (c *Client) StopAppReplication(ctx context.Context, in *api.AppRef) (*api.Empty, error) {
	return call[api.AppRef, api.Empty](ctx, c, sms+"StopAppReplication", in)
}
func (c *Client) StartOnDemandAppReplication(ctx context.Context, in *api.StartOnDemandAppReplicationInput) (*api.StartOnDemandAppReplicationOutput, error) {
	return call[api.StartOnDemandAppReplicationInput, api.StartOnDemandAppReplicationOutput](ctx, c, sms+"StartOnDemandAppReplication", in)
}
func (c *Client) GenerateTemplate(ctx context.Context, in *api.GenerateTemplateInput) (*api.GenerateTemplateOutput, error) {
	return call[api.GenerateTemplateInput, api.GenerateTemplateOutput](ctx, c, sms+"GenerateTemplate", in)
}
func (c *Client) GenerateChangeSet(ctx context.Context, in *api.GenerateChangeSetInput) (*api.GenerateChangeSetOutput, error) {
	return call[api.GenerateChangeSetInput, api.GenerateChangeSetOutput](ctx, c, sms+"GenerateChangeSet", in)
}
func (c *Client) LaunchApp(ctx context.Context, in *api.LaunchAppInput) (*api.LaunchOutput, error) {
	return call[api.LaunchAppInput, api.LaunchOutput](ctx, c, sms+"LaunchApp", in)
}
func (c *Client) TerminateApp(ctx context.Context, in *api.TerminateAppInput) (*api.LaunchOutput, error) {
	return call[api.TerminateAppInput, api.LaunchOutput](ctx, c, sms+"TerminateApp", in)
}
func (c *Client) ImportAppRightsizing(ctx context.Context, in *api.ImportAppRightsizingInput) (*api.ImportAppRightsizingOutput, error) {
	return call[api.ImportAppRightsizingInput, api.ImportAppRightsizingOutput](ctx, c, rehost+"ImportAppRightsizing", in)
}
func (c *Client) AddSource(ctx context.Context, in *api.SourceInput) (*api.AddSourceOutput, error) {
	return call[api.SourceInput, api.AddSourceOutput](ctx, c, rehost+"AddSource", in)
}
func (c *Client) ListSources(ctx context.Context, in *api.ListSourcesInput) (*api.ListSourcesOutput, error) {
	return call[api.ListSourcesInput, api.ListSourcesOutput](ctx, c, rehost+"ListSources", in)
}
func (c *Client) TestSource(ctx context.Context, in *api.SourceRef) (*api.TestSourceOutput, error) {
	return call[api.SourceRef, api.TestSourceOutput](ctx, c, rehost+"TestSource", in)
}
func (c *Client) RemoveSource(ctx context.Context, in *api.SourceRef) (*api.RemoveSourceOutput, error) {
	return call[api.SourceRef, api.RemoveSourceOutput](ctx, c, rehost+"RemoveSource", in)
}
func (c *Client) GetRegistration(ctx context.Context, in *api.GetRegistrationInput) (*api.Registration, error) {
	return call[api.GetRegistrationInput, api.Registration](ctx, c, rehost+"GetRegistration", in)
}
func (c *Client) Register(ctx context.Context, in *api.RegisterInput) (*api.RegisterOutput, error) {
	return call[api.RegisterInput, api.RegisterOutput](ctx, c, rehost+"Register", in)
}
func (c *Client) GetReplicationRun(ctx context.Context, in *api.GetReplicationRunInput) (*api.GetReplicationRunOutput, error) {
	return call[api.GetReplicationRunInput, api.GetReplicationRunOutput](ctx, c, rehost+"GetReplicationRun", in)
}
func (c *Client) GetConnectorStatus(ctx context.Context, in *api.GetConnectorStatusInput) (*api.ConnectorStatus, error) {
	return call[api.GetConnectorStatusInput, api.ConnectorStatus](ctx, c, rehost+"GetConnectorStatus", in)
}
func (c *Client) GetEvents(ctx context.Context, in *api.GetEventsInput) (*api.GetEventsOutput, error) {
	return call[api.GetEventsInput, api.GetEventsOutput](ctx, c, rehost+"GetEvents", in)
}
func (c *Client) VerifyReplicationJob(ctx context.Context, in *api.VerifyReplicationJobInput) (*api.VerifyReplicationJobOutput, error) {
	return call[api.VerifyReplicationJobInput, api.VerifyReplicationJobOutput](ctx, c, rehost+"VerifyReplicationJob", in)
}
func (c *Client) Preflight(ctx context.Context, in *api.PreflightInput) (*api.PreflightOutput, error) {
	return call[api.PreflightInput, api.PreflightOutput](ctx, c, rehost+"Preflight", in)
}

func (c *Client) GetFleetStatus(ctx context.Context, in *api.GetFleetStatusInput) (*api.FleetStatus, error) {
	return call[api.GetFleetStatusInput, api.FleetStatus](ctx, c, rehost+"GetFleetStatus", in)
}
func (c *Client) ShareFleetKey(ctx context.Context, in *api.ShareFleetKeyInput) (*api.ShareFleetKeyOutput, error) {
	return call[api.ShareFleetKeyInput, api.ShareFleetKeyOutput](ctx, c, rehost+"ShareFleetKey", in)
}
func (c *Client) GetBandwidthCap(ctx context.Context, in *api.GetBandwidthCapInput) (*api.BandwidthCap, error) {
	return call[api.GetBandwidthCapInput, api.BandwidthCap](ctx, c, rehost+"GetBandwidthCap", in)
}
func (c *Client) SetBandwidthCap(ctx context.Context, in *api.SetBandwidthCapInput) (*api.BandwidthCap, error) {
	return call[api.SetBandwidthCapInput, api.BandwidthCap](ctx, c, rehost+"SetBandwidthCap", in)
}

// SupportBundle streams the connector's support bundle to w.
func (c *Client) SupportBundle(ctx context.Context, w io.Writer) error {
	return c.download(ctx, "/support/bundle", "the support bundle", w)
}

// BackupState streams a sealed backup of the connector's state to w.
func (c *Client) BackupState(ctx context.Context, w io.Writer) error {
	return c.download(ctx, "/state/backup", "the state backup", w)
}
func (c *Client) BackupStateToBucket(ctx context.Context, in *api.BackupStateToBucketInput) (*api.BackupStateOutput, error) {
	return call[api.BackupStateToBucketInput, api.BackupStateOutput](ctx, c, rehost+"BackupStateToBucket", in)
}
func (c *Client) GetBackupKey(ctx context.Context, in *api.GetBackupKeyInput) (*api.GetBackupKeyOutput, error) {
	return call[api.GetBackupKeyInput, api.GetBackupKeyOutput](ctx, c, rehost+"GetBackupKey", in)
}

// download streams what GET path answers to w.
func (c *Client) download(ctx context.Context, path, what string, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("download %s: %w", what, err)
	}
	return nil
}

// Metrics fetches the connector's metrics in the Prometheus text format.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, "/metrics", "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}
