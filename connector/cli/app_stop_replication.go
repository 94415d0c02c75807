package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "app stop-replication",
		Usage:   "APP",
		Summary: "delete the replication job of each server of an application; its AMIs stay (StopAppReplication)",
		Flags:   onApp[appStopReplication],
	})
}

// appStopReplication has no flags of its own.
type appStopReplication struct{}

func (*appStopReplication) flags(*flag.FlagSet) {}

func (*appStopReplication) run(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
	if _, err := svc.StopAppReplication(ctx, &api.AppRef{AppID: a.AppID}); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "replication of app %s stopped\n", a.Name)
	return nil
}
