package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/pkg/source/azure"
	"github.com/rehost/rehost/pkg/store"
)

// The azure flags become the source's options; the secret or certificate
// travels apart (the daemon seals it) and never into the options.
func TestSourceAddAzureInput(t *testing.T) {
	parse := func(args ...string) *azureSourceFlags {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		f := addAzureSourceFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return f
	}
	t.Setenv("REHOST_SOURCE_PASSWORD", "s3cr3t")
	var in daemon.SourceInput
	f := parse("--subscription", "sub-1", "--resource-group", "rg-web", "--tenant", "ten-1", "--client-id", "app-1", "--cloud", "usgovernment")
	if err := f.input(Env{Stdin: strings.NewReader("")}, "", &in); err != nil {
		t.Fatal(err)
	}
	var cfg azure.Config
	if err := json.Unmarshal(in.Options, &cfg); err != nil {
		t.Fatal(err)
	}
	if in.Kind != store.SourceAzure || in.Password != "s3cr3t" || bytes.Contains(in.Options, []byte("s3cr3t")) ||
		cfg.SubscriptionID != "sub-1" || cfg.ResourceGroup != "rg-web" || cfg.TenantID != "ten-1" || cfg.ClientID != "app-1" ||
		cfg.Auth != azure.AuthSecret || cfg.Cloud != azure.CloudUSGovernment || in.URL != "azure:/subscriptions/sub-1/resourceGroups/rg-web" {
		t.Errorf("input %+v, options %s", in, in.Options)
	}

	cert := filepath.Join(t.TempDir(), "app.pem")
	os.WriteFile(cert, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600)
	in = daemon.SourceInput{}
	f = parse("--subscription", "sub-1", "--tenant", "ten-1", "--client-id", "app-1", "--certificate", cert)
	if err := f.input(Env{}, "certificate", &in); err != nil || !strings.HasPrefix(in.Password, "-----BEGIN CERTIFICATE") || bytes.Contains(in.Options, []byte("BEGIN")) {
		t.Errorf("certificate: %v, %+v", err, in)
	}
	if err := parse("--subscription", "s").input(Env{}, "certificate", &in); err == nil {
		t.Error("certificate sign-in without --certificate accepted")
	}

	var out, errOut bytes.Buffer
	code := Main(context.Background(), Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut},
		[]string{"source", "add", "--state-dir", t.TempDir(), "--type", "azure", "--name", "sub"})
	if code != 2 || !strings.Contains(errOut.String(), "--subscription is required") {
		t.Errorf("exit %d: %s", code, errOut.String())
	}
	errOut.Reset()
	code = Main(context.Background(), Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut},
		[]string{"source", "add", "--state-dir", t.TempDir(), "--type", "azure", "--name", "sub", "--subscription", "s", "--share", `C:\x=x`})
	if code != 2 || !strings.Contains(errOut.String(), "apply to --type hyperv or scvmm") {
		t.Errorf("a hyper-v flag with an azure source: exit %d: %s", code, errOut.String())
	}
}
