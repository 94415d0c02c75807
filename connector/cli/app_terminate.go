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
		Name:    "app terminate",
		Usage:   "APP [--test] [--watch]",
		Summary: "delete the stack (and instances) of an app's cutover, or of its test launch, leaving the other (TerminateApp)",
		Flags:   onApp[appTerminateOptions],
	})
}

type appTerminateOptions struct {
	test, watch bool
}

func (o *appTerminateOptions) flags(fs *flag.FlagSet) {
	fs.BoolVar(&o.test, "test", false, "terminate the test launch (default: the cutover)")
	fs.BoolVar(&o.watch, "watch", false, "wait until the stack is deleted")
}

func (o *appTerminateOptions) run(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
	out, err := svc.TerminateApp(ctx, &api.TerminateAppInput{AppID: a.AppID, RehostTest: o.test})
	if err != nil {
		return err
	}
	l := *out.RehostLaunch
	if o.watch {
		if l, err = watchLaunch(ctx, env, svc, a.AppID, l.Kind, 2*time.Second); err != nil {
			return err
		}
	}
	fmt.Fprintf(env.Stdout, "%s launch %s of app %s: %s (stack %s)\n", l.Kind, l.LaunchID, a.Name, l.State, l.StackName)
	return nil
}
