package cli

import (
	"context"
	"flag"
	"fmt"

	"strings"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "app replicate",
		Usage:   "APP [--description D]",
		Summary: "start an on-demand run of every server's replication job (StartOnDemandAppReplication)",
		Flags:   appReplicateFlags,
	})
}

type appReplicateOptions struct {
	conn        *connFlags
	description string
}

func appReplicateFlags(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	o := &appReplicateOptions{conn: addConnFlags(fs)}
	fs.StringVar(&o.description, "description", "", "description of the runs")
	return o.conn.with(oneArg("app (name or id)"), o.run)
}

func (o *appReplicateOptions) run(ctx context.Context, env Env, svc api.Service, args []string) error {
	a, err := resolveApp(ctx, svc, args[0])
	if err != nil {
		return err
	}
	out, err := svc.StartOnDemandAppReplication(ctx, &api.StartOnDemandAppReplicationInput{AppID: a.AppID, Description: o.description})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "started %s; follow with 'rehost app show %s'\n", strings.Join(out.RehostReplicationRunIDs, ", "), a.Name)
	return nil
}
