package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rehost/rehost/connector/api"
)

// Helpers of the "rehost app …" verbs (app_*.go, one per verb).

// resolveApp finds an application by id or name.
func resolveApp(ctx context.Context, svc api.Service, ref string) (api.AppSummary, error) {
	in := &api.ListAppsInput{MaxResults: 1000}
	for {
		out, err := svc.ListApps(ctx, in)
		if err != nil {
			return api.AppSummary{}, err
		}
		for _, a := range out.Apps {
			if a.AppID == ref || a.Name == ref {
				return a, nil
			}
		}
		if in.NextToken = out.NextToken; in.NextToken == "" {
			return api.AppSummary{}, fmt.Errorf("no app %q: see 'rehost app list'", ref)
		}
	}
}

// appVerb is the options of a verb on one application: they add the verb's
// own flags, then run on the app its argument names.
type appVerb interface {
	flags(fs *flag.FlagSet)
	run(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error
}

// onApp is the Flags of a verb on one application, named (or given by id)
// as its only argument, with new options O each time: the connection flags,
// the argument check and the app's lookup are this function's.
func onApp[O any, P interface {
	*O
	appVerb
}](fs *flag.FlagSet) func(context.Context, Env, []string) error {
	c := addConnFlags(fs)
	o := P(new(O))
	o.flags(fs)
	return c.with(oneArg("app (name or id)"), func(ctx context.Context, env Env, svc api.Service, args []string) error {
		a, err := resolveApp(ctx, svc, args[0])
		if err != nil {
			return err
		}
		return o.run(ctx, env, svc, a)
	})
}

// groupsFlag collects --group NAME=SERVER[,SERVER…], in order.
type groupsFlag []string

func (g *groupsFlag) String() string     { return strings.Join(*g, " ") }
func (g *groupsFlag) Set(v string) error { *g = append(*g, v); return nil }

// serverGroups resolves the groups' servers (ids or VM names).
func (g groupsFlag) serverGroups(ctx context.Context, svc api.Service) ([]api.ServerGroup, error) {
	var out []api.ServerGroup
	for _, spec := range g {
		name, list, ok := strings.Cut(spec, "=")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("%w: --group %q: want NAME=SERVER[,SERVER…]", ErrUsage, spec)
		}
		sg := api.ServerGroup{Name: strings.TrimSpace(name), ServerList: []api.Server{}}
		for _, ref := range strings.Split(list, ",") {
			if ref = strings.TrimSpace(ref); ref == "" {
				continue
			}
			s, err := resolveServer(ctx, svc, ref)
			if err != nil {
				return nil, err
			}
			sg.ServerList = append(sg.ServerList, api.Server{ServerID: s.ServerID})
		}
		out = append(out, sg)
	}
	return out, nil
}

// printApp writes an app's summary, its groups and its launches.
func printApp(w io.Writer, a *api.AppOutput) {
	s := a.AppSummary
	fmt.Fprintf(w, "app %s (%s)\n", s.Name, s.AppID)
	fmt.Fprintf(w, "  replication  %s%s\n", s.ReplicationStatus, suffix(s.ReplicationStatusMessage))
	fmt.Fprintf(w, "  launch       %s%s\n", s.LaunchStatus, suffix(s.LaunchStatusMessage))
	for _, g := range a.ServerGroups {
		var names []string
		for _, srv := range g.ServerList {
			names = append(names, cell(vmOf(srv).VmName))
		}
		fmt.Fprintf(w, "  group %-8s %s\n", g.Name, strings.Join(names, ", "))
	}
	for _, l := range a.RehostLaunches {
		if l.State == "TERMINATED" {
			continue
		}
		printLaunch(w, l)
	}
}

func suffix(msg string) string {
	if msg == "" {
		return ""
	}
	return ": " + msg
}

// printLaunch writes a launch and each server's boot check.
func printLaunch(w io.Writer, l api.AppLaunch) {
	fmt.Fprintf(w, "\n%s launch %s: %s (stack %s %s)%s\n", l.Kind, l.LaunchID, l.State, l.StackName, l.StackStatus, suffix(l.StatusMessage))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SERVER\tINSTANCE\tPRIVATE IP\tBOOT\tVALIDATION\tDETAIL")
	for _, s := range l.Servers {
		val := ""
		if v := s.Validation; v != nil {
			val = v.Status
			if v.Status == "passed" || v.Status == "failed" {
				val = fmt.Sprintf("%s (exit %d)", v.Status, v.ExitCode)
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", s.Name, cell(s.InstanceID), cell(s.PrivateIP), cell(s.Boot), cell(val), cell(s.BootDetail))
	}
	tw.Flush()
	for _, s := range l.Servers {
		if s.Boot == "failed to boot" && len(s.Console) > 0 {
			fmt.Fprintf(w, "  last console lines of %s:\n    %s\n", s.Name, strings.Join(s.Console, "\n    "))
		}
		if v := s.Validation; v != nil && v.Output != "" && v.Status != "passed" {
			fmt.Fprintf(w, "  validation of %s (%s):\n    %s\n", s.Name, v.Command, strings.ReplaceAll(v.Output, "\n", "\n    "))
		}
	}
}

// watchLaunch polls the app until its launch of kind settles, printing
// each change of a server's boot verdict.
func watchLaunch(ctx context.Context, env Env, svc api.Service, appID, kind string, every time.Duration) (api.AppLaunch, error) {
	seen := map[string]string{}
	for {
		out, err := svc.GetApp(ctx, &api.GetAppInput{AppID: appID})
		if err != nil {
			return api.AppLaunch{}, err
		}
		var l *api.AppLaunch
		for i := range out.RehostLaunches {
			if out.RehostLaunches[i].Kind == kind {
				l = &out.RehostLaunches[i]
				break
			}
		}
		if l == nil {
			return api.AppLaunch{}, fmt.Errorf("app %s has no %s launch", appID, kind)
		}
		for _, s := range l.Servers {
			if s.Boot != "" && seen[s.ServerID] != s.Boot {
				fmt.Fprintf(env.Stderr, "%s %s: %s%s\n", time.Now().Format("15:04:05"), s.Name, s.Boot, suffix(s.BootDetail))
				seen[s.ServerID] = s.Boot
			}
		}
		switch l.State {
		case "PENDING", "CREATING", "UPDATING", "TERMINATING":
		default:
			return *l, nil
		}
		select {
		case <-ctx.Done():
			return *l, ctx.Err()
		case <-time.After(every):
		}
	}
}
