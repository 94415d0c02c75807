package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/vsphere"
	"github.com/rehost/rehost/pkg/store"
)

type sourceAddOptions struct {
	stateDir string
	in       daemon.SourceInput
	kind     string
	json     bool
	azure    *azureSourceFlags
}

func init() {
	Register(Command{
		Name:    "source add",
		Usage:   "--name N [--type vsphere] --url URL --user USER [--thumbprint T | --insecure] | --name N --type azure --subscription S --tenant T --client-id C [--auth A]",
		Summary: "add a hypervisor source (password from REHOST_SOURCE_PASSWORD or stdin; stored encrypted)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			o := &sourceAddOptions{}
			stateDirFlag(fs, &o.stateDir)
			fs.StringVar(&o.kind, "type", "vsphere", "source type: vsphere or azure")
			fs.StringVar(&o.kind, "kind", "vsphere", "same as --type")
			o.azure = addAzureSourceFlags(fs)
			fs.StringVar(&o.in.Name, "name", "", "a name for the source")
			fs.StringVar(&o.in.URL, "url", "", "vCenter URL, e.g. https://vcenter.example.com")
			fs.StringVar(&o.in.User, "user", "", "user name")
			fs.StringVar(&o.in.Thumbprint, "thumbprint", "", "accept the server certificate with this SHA-256 thumbprint")
			fs.BoolVar(&o.in.Insecure, "insecure", false, "do not verify the server certificate (not recommended)")
			fs.BoolVar(&o.json, "json", false, "print the source as JSON")
			return o.run
		},
	})
}

func (o *sourceAddOptions) run(ctx context.Context, env Env, args []string) error {
	if store.SourceKind(o.kind) == store.SourceAzure {
		if len(args) > 0 || o.in.Name == "" {
			return fmt.Errorf("%w: --name is required", ErrUsage)
		}
		if err := o.azure.input(env, &o.in); err != nil {
			return err
		}
	} else {
		if len(args) > 0 || o.in.Name == "" || o.in.URL == "" || o.in.User == "" {
			return fmt.Errorf("%w: --name, --url and --user are required", ErrUsage)
		}
		o.in.Kind = store.SourceKind(o.kind)
		pw, err := readSecret(env, "REHOST_SOURCE_PASSWORD", "password for "+o.in.User)
		if err != nil {
			return err
		}
		o.in.Password = pw
	}
	d, err := openState(ctx, o.stateDir)
	if err != nil {
		return err
	}
	defer d.Close()
	s, err := d.AddSource(ctx, o.in)
	if errors.Is(err, source.ErrCertificate) && o.in.Thumbprint == "" && !o.in.Insecure {
		if tp, terr := vsphere.FetchThumbprint(ctx, o.in.URL); terr == nil {
			return fmt.Errorf("%w\nthe server presents a certificate with SHA-256 thumbprint\n  %s\ncompare it with the one vCenter shows, then run again with --thumbprint %s", err, tp, tp)
		}
	}
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(env.Stdout, s)
	}
	fmt.Fprintf(env.Stdout, "added source %s (%s) at %s\nnext: rehost server import --source %s\n", s.Name, s.ID, s.Endpoint, s.Name)
	return nil
}
