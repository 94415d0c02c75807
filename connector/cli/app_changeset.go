package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "app changeset",
		Usage:   "APP [--format json|yaml] [--json]",
		Summary: "show what launching an application again would change in its cutover's stack (GenerateChangeSet)",
		Flags:   onApp[appChangesetOptions],
	})
}

type appChangesetOptions struct {
	format string
	json   bool
}

func (o *appChangesetOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.format, "format", "json", "format of the change set's template stored in S3: json or yaml")
	fs.BoolVar(&o.json, "json", false, "print JSON")
}

func (o *appChangesetOptions) run(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
	out, err := svc.GenerateChangeSet(ctx, &api.GenerateChangeSetInput{AppID: a.AppID, ChangesetFormat: o.format})
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(env.Stdout, out)
	}
	fmt.Fprintf(env.Stdout, "change set %s: %s%s\n", out.RehostChangeSetID, out.RehostChangeSetStatus, suffix(out.RehostChangeSetReason))
	if len(out.RehostChanges) == 0 {
		return nil
	}
	return listing(env, false, out.RehostChanges, "ACTION\tRESOURCE\tTYPE\tREPLACEMENT\tPHYSICAL ID", func(c api.StackChange) []any {
		return []any{c.Action, c.LogicalID, c.ResourceType, c.Replacement, c.PhysicalID}
	})
}
