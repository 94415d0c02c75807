package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "app update",
		Usage:   "APP [--name NAME] [--description D] [--group NAME=SERVER[,SERVER…]…] [--json]",
		Summary: "rename an application or replace its server groups (UpdateApp)",
		Flags:   onApp[appUpdateOptions],
	})
}

type appUpdateOptions struct {
	name, description string
	groups            groupsFlag
	json              bool
	fs                *flag.FlagSet
}

func (o *appUpdateOptions) flags(fs *flag.FlagSet) {
	o.fs = fs
	fs.StringVar(&o.name, "name", "", "new name")
	fs.StringVar(&o.description, "description", "", "new description")
	fs.Var(&o.groups, "group", "the new server groups: NAME=SERVER[,SERVER…] (repeatable, in launch order; replaces all)")
	fs.BoolVar(&o.json, "json", false, "print the app as JSON")
}

func (o *appUpdateOptions) run(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
	in := &api.UpdateAppInput{AppID: a.AppID}
	if given(o.fs, "name") {
		in.Name = &o.name
	}
	if given(o.fs, "description") {
		in.Description = &o.description
	}
	if len(o.groups) > 0 {
		var err error
		if in.ServerGroups, err = o.groups.serverGroups(ctx, svc); err != nil {
			return err
		}
	}
	if in.Name == nil && in.Description == nil && in.ServerGroups == nil {
		return fmt.Errorf("%w: nothing to change: give --name, --description or --group", ErrUsage)
	}
	out, err := svc.UpdateApp(ctx, in)
	if err != nil {
		return err
	}
	return show(env, o.json, out, func() { printApp(env.Stdout, out) })
}
