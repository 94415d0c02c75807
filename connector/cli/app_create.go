package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "app create",
		Usage:   "--name NAME --group NAME=SERVER[,SERVER…]… [--description D] [--role R] [--json]",
		Summary: "create an application of server groups, launched in the order given (CreateApp)",
		Flags:   appCreateFlags,
	})
}

type appCreateOptions struct {
	conn   *connFlags
	in     api.CreateAppInput
	groups groupsFlag
	json   bool
}

func appCreateFlags(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	o := &appCreateOptions{conn: addConnFlags(fs)}
	fs.StringVar(&o.in.Name, "name", "", "the application's name (unique)")
	fs.StringVar(&o.in.Description, "description", "", "description")
	fs.StringVar(&o.in.RoleName, "role", "", "service role (kept, as SMS keeps it)")
	fs.Var(&o.groups, "group", "a server group: NAME=SERVER[,SERVER…] by VM name or server id (repeatable, in launch order)")
	fs.BoolVar(&o.json, "json", false, "print the app as JSON")
	return o.conn.with(noArgs, o.run)
}

func (o *appCreateOptions) run(ctx context.Context, env Env, svc api.Service, _ []string) error {
	if o.in.Name == "" || len(o.groups) == 0 {
		return fmt.Errorf("%w: --name and at least one --group are required", ErrUsage)
	}
	groups, err := o.groups.serverGroups(ctx, svc)
	if err != nil {
		return err
	}
	o.in.ServerGroups = groups
	out, err := svc.CreateApp(ctx, &o.in)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(env.Stdout, out)
	}
	printApp(env.Stdout, out)
	return nil
}
