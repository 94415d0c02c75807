package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "app delete",
		Usage:   "APP [--terminate] [--stop-replication]",
		Summary: "delete an application; its launches must be terminated, or --terminate does it first (DeleteApp)",
		Flags:   onApp[appDeleteOptions],
	})
}

type appDeleteOptions struct {
	terminate, stopReplic bool
}

func (o *appDeleteOptions) flags(fs *flag.FlagSet) {
	fs.BoolVar(&o.terminate, "terminate", false, "terminate its launches (their stacks and instances) first, and wait")
	fs.BoolVar(&o.stopReplic, "stop-replication", false, "delete its servers' replication jobs too (their AMIs stay)")
}

func (o *appDeleteOptions) run(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
	if _, err := svc.DeleteApp(ctx, &api.DeleteAppInput{AppID: a.AppID, ForceTerminateApp: o.terminate, ForceStopAppReplication: o.stopReplic}); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "deleted app %s (%s)\n", a.Name, a.AppID)
	return nil
}
