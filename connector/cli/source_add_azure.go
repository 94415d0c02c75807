package cli

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/pkg/source/azure"
	"github.com/rehost/rehost/pkg/store"
)

// azureSourceFlags are the flags of `rehost source add --type azure`; the
// sign-in method comes from --auth, which the Hyper-V flags define.
type azureSourceFlags struct {
	cfg      azure.Config
	certFile string
}

func addAzureSourceFlags(fs *flag.FlagSet) *azureSourceFlags {
	f := &azureSourceFlags{}
	fs.StringVar(&f.cfg.SubscriptionID, "subscription", "", "azure: the subscription whose VMs to replicate")
	fs.StringVar(&f.cfg.ResourceGroup, "resource-group", "", "azure: only this resource group's VMs")
	fs.StringVar(&f.cfg.TenantID, "tenant", "", "azure: the Entra ID tenant (directory) id")
	fs.StringVar(&f.cfg.ClientID, "client-id", "", "azure: the application (service principal) or user-assigned managed identity client id")
	fs.StringVar(&f.certFile, "certificate", "", "azure: PEM or PKCS#12 file with the client certificate and its private key (stored encrypted)")
	fs.StringVar(&f.cfg.TokenFile, "token-file", "", "azure: the workload identity's federated token file (default $AZURE_FEDERATED_TOKEN_FILE)")
	fs.StringVar(&f.cfg.Cloud, "cloud", azure.CloudPublic, "azure: "+azure.CloudPublic+", "+azure.CloudUSGovernment+" or "+azure.CloudChina)
	return f
}

// input fills in an Azure source: its settings as options, its secret (the
// client secret or the certificate) sealed by the daemon.
func (f *azureSourceFlags) input(env Env, auth string, in *daemon.SourceInput) error {
	f.cfg.Auth = cmp.Or(auth, azure.AuthSecret)
	if f.cfg.SubscriptionID == "" {
		return fmt.Errorf("%w: --subscription is required for an azure source", ErrUsage)
	}
	switch f.cfg.Auth {
	case azure.AuthSecret:
		s, err := readSecret(env, "REHOST_SOURCE_PASSWORD", "client secret of application "+f.cfg.ClientID)
		if err != nil {
			return err
		}
		in.Password = s
	case azure.AuthCertificate:
		if f.certFile == "" {
			return fmt.Errorf("%w: --auth certificate needs --certificate FILE", ErrUsage)
		}
		b, err := os.ReadFile(f.certFile)
		if err != nil {
			return fmt.Errorf("read the client certificate: %w", err)
		}
		in.Password = string(b)
	}
	opts, err := json.Marshal(f.cfg)
	if err != nil {
		return err
	}
	in.Kind, in.Options, in.User = store.SourceAzure, opts, f.cfg.ClientID
	in.URL = "azure:/subscriptions/" + f.cfg.SubscriptionID
	if f.cfg.ResourceGroup != "" {
		in.URL += "/resourceGroups/" + f.cfg.ResourceGroup
	}
	return nil
}
