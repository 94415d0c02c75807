package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/pkg/store"
)

type sourceAddOptions struct {
	conn *connFlags
	in   daemon.SourceInput
	kind string
	json bool
	hv   hypervFlags
	az   *azureSourceFlags
}

func init() {
	Register(Command{
		Name:    "source add",
		Usage:   "[--type vsphere|hyperv|scvmm] --name N --url URL --user USER [--thumbprint T | --insecure] | --type azure --name N --subscription S --tenant T --client-id C [--auth A]",
		Summary: "add a hypervisor source (password from REHOST_SOURCE_PASSWORD or stdin; stored encrypted)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			o := &sourceAddOptions{conn: addConnFlags(fs)}
			fs.StringVar(&o.kind, "type", "vsphere", "source type: vsphere, hyperv (a Hyper-V host or cluster node), scvmm or azure")
			fs.StringVar(&o.kind, "kind", "vsphere", "same as --type")
			fs.StringVar(&o.in.Name, "name", "", "a name for the source")
			fs.StringVar(&o.in.URL, "url", "", "vCenter URL (https://vcenter.example.com), or the Hyper-V host or SCVMM server (hv01.example.com[:5986])")
			fs.StringVar(&o.in.User, "user", "", "user name")
			fs.StringVar(&o.in.Thumbprint, "thumbprint", "", "accept the server certificate with this SHA-256 thumbprint")
			fs.BoolVar(&o.in.Insecure, "insecure", false, "do not verify the server certificate (not recommended)")
			fs.BoolVar(&o.json, "json", false, "print the source as JSON")
			o.hv.add(fs)
			o.az = addAzureSourceFlags(fs)
			return o.run
		},
	})
}

func (o *sourceAddOptions) run(ctx context.Context, env Env, args []string) error {
	pw, err := o.input(env, args)
	if err != nil {
		return err
	}
	svc, done, err := o.conn.connect(ctx, true)
	if err != nil {
		return err
	}
	defer done()
	out, err := svc.AddSource(ctx, &api.SourceInput{Kind: o.kind, Name: o.in.Name, URL: o.in.URL, User: o.in.User, Password: pw,
		Thumbprint: o.in.Thumbprint, Insecure: o.in.Insecure, Options: o.in.Options})
	var ae *api.Error
	if errors.As(err, &ae) && ae.Thumbprint != "" && o.in.Thumbprint == "" && !o.in.Insecure {
		where := "the one vCenter shows"
		if o.kind == string(store.SourceHyperV) || o.kind == string(store.SourceSCVMM) {
			where = "the host's WinRM certificate (Windows shows its SHA-1 thumbprint, which --thumbprint accepts too)"
		}
		return fmt.Errorf("%w\nthe server presents a certificate with SHA-256 thumbprint\n  %s\ncompare it with %s, then run again with --thumbprint %s", err, ae.Thumbprint, where, ae.Thumbprint)
	}
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(env.Stdout, out.Source)
	}
	s := out.Source
	fmt.Fprintf(env.Stdout, "added source %s (%s) at %s\nnext: rehost server import --source %s\n", s.Name, s.SourceID, s.URL, s.Name)
	return nil
}

// input checks the flags of the source's kind and returns its secret.
func (o *sourceAddOptions) input(env Env, args []string) (string, error) {
	if store.SourceKind(o.kind) == store.SourceAzure {
		if len(args) > 0 || o.in.Name == "" {
			return "", fmt.Errorf("%w: --name is required", ErrUsage)
		}
		auth := o.hv.auth
		o.hv.auth = ""
		if _, err := o.hv.options(store.SourceAzure); err != nil {
			return "", fmt.Errorf("%w: %v", ErrUsage, err)
		}
		err := o.az.input(env, auth, &o.in)
		return o.in.Password, err
	}
	if len(args) > 0 || o.in.Name == "" || o.in.URL == "" || o.in.User == "" {
		return "", fmt.Errorf("%w: --name, --url and --user are required", ErrUsage)
	}
	opts, err := o.hv.options(store.SourceKind(o.kind))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUsage, err)
	}
	o.in.Options = opts
	return readSecret(env, "REHOST_SOURCE_PASSWORD", "password for "+o.in.User)
}
