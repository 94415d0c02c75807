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
		Flags:   onApp[appShowOptions],
	})
}

type appShowOptions struct {
	json bool
}

func (o *appShowOptions) flags(fs *flag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print JSON")
}

func (o *appShowOptions) run(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
	out, err := svc.GetApp(ctx, &api.GetAppInput{AppID: a.AppID})
	if err != nil {
		return err
	}
	return show(env, o.json, out, func() { printApp(env.Stdout, out) })
}
