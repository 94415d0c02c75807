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
		Flags:   appStopReplicationFlags,
	})
}

type appStopReplicationOptions struct {
	conn *connFlags
}

func appStopReplicationFlags(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	o := &appStopReplicationOptions{conn: addConnFlags(fs)}
	return o.conn.with(oneArg("app (name or id)"), o.run)
}

func (o *appStopReplicationOptions) run(ctx context.Context, env Env, svc api.Service, args []string) error {
	a, err := resolveApp(ctx, svc, args[0])
	if err != nil {
		return err
	}
	if _, err := svc.StopAppReplication(ctx, &api.AppRef{AppID: a.AppID}); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "replication of app %s stopped\n", a.Name)
	return nil
}
