package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/pkg/preflight"
)

// errBlocked is what preflight returns when a server or the account is
// blocked, so scripts can stop before creating jobs.
var errBlocked = errors.New("preflight found blockers")

type preflightOptions struct {
	conn    *connFlags
	servers stringList
	json    bool
	noAcct  bool
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func init() {
	Register(Command{
		Name:    "preflight",
		Usage:   "[--server NAME|ID]... [--skip-account] [--json]",
		Summary: "check now whether servers will migrate and the AWS account is ready: every finding with its level, code and what to do; exits 1 when something is blocked",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			o := &preflightOptions{}
			o.AddFlags(fs)
			return o.run
		},
	})
}

// AddFlags declares the verb's flags.
func (o *preflightOptions) AddFlags(fs *flag.FlagSet) {
	o.conn = addConnFlags(fs)
	fs.Var(&o.servers, "server", "server id (s-…) or VM name to check, repeatable (default: every server of the catalog)")
	fs.BoolVar(&o.noAcct, "skip-account", false, "leave the AWS account out (its latest result is shown)")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON")
}

func (o *preflightOptions) run(ctx context.Context, env Env, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	svc, done, err := o.conn.connect(ctx, false)
	if err != nil {
		return err
	}
	defer done()
	out, err := svc.Preflight(ctx, &api.PreflightInput{Servers: o.servers, SkipAccount: o.noAcct})
	if err != nil {
		return err
	}
	if o.json {
		err = printJSON(env.Stdout, out)
	} else {
		err = printPreflight(env.Stdout, out)
	}
	if err != nil {
		return err
	}
	blocked := out.Account != nil && out.Account.Status == string(preflight.Blocked)
	for _, s := range out.Servers {
		blocked = blocked || s.Status == string(preflight.Blocked)
	}
	if blocked {
		return errBlocked
	}
	return nil
}

func printPreflight(w io.Writer, out *api.PreflightOutput) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECKED\tSTATUS\tLEVEL\tCODE\tFINDING\tWHAT TO DO")
	rows := func(name string, p api.Preflight) {
		if len(p.Findings) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\n", name, p.Status)
		}
		for i, f := range p.Findings {
			n, st := name, p.Status
			if i > 0 {
				n, st = "", ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n, st, f.Level, f.Code, f.Message, cell(f.Action))
		}
	}
	if out.Account != nil {
		rows("account", *out.Account)
	}
	for _, s := range out.Servers {
		rows(s.Name, s.Preflight)
	}
	if out.Account == nil && len(out.Servers) == 0 {
		fmt.Fprintln(tw, "nothing to check: register the connector and import the server catalog\t\t\t\t\t")
	}
	return tw.Flush()
}

// preflightCell is a server's preflight status for a listing.
func preflightCell(p *api.Preflight) string {
	if p == nil {
		return "not checked"
	}
	return p.Status
}
