package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "app start-replication",
		Usage:   "APP",
		Summary: "create each server's replication job from the app's replication configuration (StartAppReplication)",
		Flags:   onApp[appStartReplication],
	})
}

// appStartReplication has no flags of its own.
type appStartReplication struct{}

func (*appStartReplication) flags(*flag.FlagSet) {}

func (*appStartReplication) run(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
	if _, err := svc.StartAppReplication(ctx, &api.AppRef{AppID: a.AppID}); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "replication of app %s started: its jobs run on their schedule, or now with 'rehost app replicate %s'\n", a.Name, a.Name)
	return nil
}
