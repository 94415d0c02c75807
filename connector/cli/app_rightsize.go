package cli

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "app rightsize",
		Usage:   "APP --csv FILE [--json]",
		Summary: "fill an app's launch configuration from a rightsizing CSV (server, instance type, subnet, security groups, volume type, tags); all rows or none",
		Flags:   onApp[appRightsizeOptions],
	})
}

type appRightsizeOptions struct {
	csv  string
	json bool
}

func (o *appRightsizeOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.csv, "csv", "", "the CSV file; its first row names the columns")
	fs.BoolVar(&o.json, "json", false, "print each server's instance type as JSON")
}

func (o *appRightsizeOptions) run(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
	if o.csv == "" {
		return fmt.Errorf("%w: --csv is required", ErrUsage)
	}
	b, err := os.ReadFile(o.csv)
	if err != nil {
		return err
	}
	out, err := svc.ImportAppRightsizing(ctx, &api.ImportAppRightsizingInput{AppID: a.AppID, CSV: string(b)})
	if err != nil {
		return fmt.Errorf("%s: %w", o.csv, err)
	}
	return listing(env, o.json, out.Servers, "SERVER\tINSTANCE TYPE\tFROM", func(s api.RightsizedServer) []any {
		from := fmt.Sprintf("row %d", s.Row)
		switch {
		case s.Suggested:
			from = "suggested from its CPUs and memory"
		case s.Row == 0:
			from = "unchanged (no row)"
		}
		return []any{s.Name, s.InstanceType, from}
	})
}
