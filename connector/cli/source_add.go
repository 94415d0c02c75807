package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
)

type sourceAddOptions struct {
	conn *connFlags
	in   daemon.SourceInput
	kind string
	json bool
}

func init() {
	Register(Command{
		Name:    "source add",
		Usage:   "--name N --url URL --user USER [--thumbprint T | --insecure]",
		Summary: "add a hypervisor source (password from REHOST_SOURCE_PASSWORD or stdin; stored encrypted)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			o := &sourceAddOptions{conn: addConnFlags(fs)}
			fs.StringVar(&o.kind, "kind", "vsphere", "source kind (vsphere)")
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
	if len(args) > 0 || o.in.Name == "" || o.in.URL == "" || o.in.User == "" {
		return fmt.Errorf("%w: --name, --url and --user are required", ErrUsage)
	}
	pw, err := readSecret(env, "REHOST_SOURCE_PASSWORD", "password for "+o.in.User)
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
		return fmt.Errorf("%w\nthe server presents a certificate with SHA-256 thumbprint\n  %s\ncompare it with the one vCenter shows, then run again with --thumbprint %s", err, ae.Thumbprint, ae.Thumbprint)
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
