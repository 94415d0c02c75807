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
		Flags:   appStartReplicationFlags,
	})
}

type appStartReplicationOptions struct {
	conn *connFlags
}

func appStartReplicationFlags(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	o := &appStartReplicationOptions{conn: addConnFlags(fs)}
	return o.conn.with(oneArg("app (name or id)"), o.run)
}

func (o *appStartReplicationOptions) run(ctx context.Context, env Env, svc api.Service, args []string) error {
	a, err := resolveApp(ctx, svc, args[0])
	if err != nil {
		return err
	}
	if _, err := svc.StartAppReplication(ctx, &api.AppRef{AppID: a.AppID}); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "replication of app %s started: its jobs run on their schedule, or now with 'rehost app replicate %s'\n", a.Name, a.Name)
	return nil
}
