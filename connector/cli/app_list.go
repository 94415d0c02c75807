package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "app list",
		Usage:   "[--json]",
		Summary: "list applications with their replication and launch status (ListApps)",
		Flags:   appListFlags,
	})
}

type appListOptions struct {
	conn *connFlags
	json bool
}

func appListFlags(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	o := &appListOptions{conn: addConnFlags(fs)}
	fs.BoolVar(&o.json, "json", false, "print JSON")
	return o.conn.with(noArgs, o.run)
}

func (o *appListOptions) run(ctx context.Context, env Env, svc api.Service, _ []string) error {
	var apps []api.AppSummary
	in := &api.ListAppsInput{MaxResults: 1000}
	for {
		out, err := svc.ListApps(ctx, in)
		if err != nil {
			return err
		}
		apps = append(apps, out.Apps...)
		if in.NextToken = out.NextToken; in.NextToken == "" {
			break
		}
	}
	return listing(env, o.json, apps, "APP ID\tNAME\tGROUPS\tSERVERS\tREPLICATION\tLAUNCH\tSTACK", func(a api.AppSummary) []any {
		stack := ""
		if a.LaunchDetails != nil {
			stack = a.LaunchDetails.StackName
		}
		return []any{a.AppID, a.Name, fmt.Sprint(a.TotalServerGroups), fmt.Sprint(a.TotalServers), a.ReplicationStatus, a.LaunchStatus, stack}
	})
}
