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
		Flags:   onApp[appReplicateOptions],
	})
}

type appReplicateOptions struct {
	description string
}

func (o *appReplicateOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.description, "description", "", "description of the runs")
}

func (o *appReplicateOptions) run(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
	out, err := svc.StartOnDemandAppReplication(ctx, &api.StartOnDemandAppReplicationInput{AppID: a.AppID, Description: o.description})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "started %s; follow with 'rehost app show %s'\n", strings.Join(out.RehostReplicationRunIDs, ", "), a.Name)
	return nil
}
