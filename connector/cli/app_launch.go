package cli

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "app launch",
		Usage:   "APP [--test] [--watch] [--json]",
		Summary: "launch an application from its template — the cutover, or a test launch beside it — or update the launched stack (LaunchApp)",
		Flags:   onApp[appLaunchOptions],
	})
}

type appLaunchOptions struct {
	test, watch bool
	json        bool
}

func (o *appLaunchOptions) flags(fs *flag.FlagSet) {
	fs.BoolVar(&o.test, "test", false, "a test launch: into the test VPC and subnet, names suffixed, beside the cutover")
	fs.BoolVar(&o.watch, "watch", false, "follow the launch until it settles, with each server's boot check")
	fs.BoolVar(&o.json, "json", false, "print the launch as JSON")
}

func (o *appLaunchOptions) run(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
	out, err := svc.LaunchApp(ctx, &api.LaunchAppInput{AppID: a.AppID, RehostTest: o.test})
	if err != nil {
		return err
	}
	l := *out.RehostLaunch
	if o.watch {
		if l, err = watchLaunch(ctx, env, svc, a.AppID, l.Kind, 2*time.Second); err != nil {
			return err
		}
	}
	if o.json {
		return printJSON(env.Stdout, l)
	}
	printLaunch(env.Stdout, l)
	if o.watch && l.State != "LAUNCHED" {
		return fmt.Errorf("the %s launch of app %s is %s: %s", l.Kind, a.Name, l.State, l.StatusMessage)
	}
	return nil
}
