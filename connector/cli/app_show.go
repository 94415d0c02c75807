package cli

import (
	"context"
	"flag"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "app show",
		Usage:   "APP [--json]",
		Summary: "show an application: status, groups, launches and each launched server's boot check (GetApp)",
		Flags:   appShowFlags,
	})
}

type appShowOptions struct {
	conn *connFlags
	json bool
}

func appShowFlags(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	o := &appShowOptions{conn: addConnFlags(fs)}
	fs.BoolVar(&o.json, "json", false, "print JSON")
	return o.conn.with(oneArg("app (name or id)"), o.run)
}

func (o *appShowOptions) run(ctx context.Context, env Env, svc api.Service, args []string) error {
	a, err := resolveApp(ctx, svc, args[0])
	if err != nil {
		return err
	}
	out, err := svc.GetApp(ctx, &api.GetAppInput{AppID: a.AppID})
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(env.Stdout, out)
	}
	printApp(env.Stdout, out)
	return nil
}
