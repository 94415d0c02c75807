package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/rehost/rehost/connector/api"
)

// The "rehost app …" verbs: one entry each, its function beside the verbs
// of its kind (the application itself here; launches in app_launch.go;
// replication in app_replication.go).
func init() {
	Register(
		Command{
			Name:    "app create",
			Usage:   "--name NAME --group NAME=SERVER[,SERVER…]… [--description D] [--role R] [--json]",
			Summary: "create an application of server groups, launched in the order given (CreateApp)",
			Flags:   appCreate,
		},
		Command{
			Name:    "app list",
			Usage:   "[--json]",
			Summary: "list applications with their replication and launch status (ListApps)",
			Flags:   appList,
		},
		Command{
			Name:    "app show",
			Usage:   "APP [--json]",
			Summary: "show an application: status, groups, launches and each launched server's boot check (GetApp)",
			Flags:   appReader("print JSON", getApp, printAppText),
		},
		Command{
			Name:    "app update",
			Usage:   "APP [--name NAME] [--description D] [--group NAME=SERVER[,SERVER…]…] [--json]",
			Summary: "rename an application or replace its server groups (UpdateApp)",
			Flags:   onApp(appUpdate),
		},
		Command{
			Name:    "app delete",
			Usage:   "APP [--terminate] [--stop-replication]",
			Summary: "delete an application; its launches must be terminated, or --terminate does it first (DeleteApp)",
			Flags:   onApp(appDelete),
		},
		Command{
			Name:    "app configure",
			Usage:   "APP [--file FILE] [--test-vpc V] [--test-subnet S] [--test-security-groups SG,SG] [--test-suffix X]",
			Summary: "set how an application is launched, from a JSON file in GetAppLaunchConfiguration's shape, and where test launches go (PutAppLaunchConfiguration)",
			Flags:   onApp(appConfigure),
		},
		Command{
			Name:    "app launch-config",
			Usage:   "APP [--json]",
			Summary: "show how an application is launched: launch order, each server's instance type, networks, tags (GetAppLaunchConfiguration)",
			Flags:   appReader("print JSON (what 'rehost app configure --file' takes)", getLaunchConfig, printLaunchConfig),
		},
		Command{
			Name:    "app rightsize",
			Usage:   "APP --csv FILE [--json]",
			Summary: "fill an app's launch configuration from a rightsizing CSV (server, instance type, subnet, security groups, volume type, tags); all rows or none",
			Flags:   onApp(appRightsize),
		},
		Command{
			Name:    "app template",
			Usage:   "APP [--format json|yaml] [--out FILE]",
			Summary: "generate an application's CloudFormation template, checked against AWS; also stored in the staging bucket (GenerateTemplate)",
			Flags:   onApp(appTemplate),
		},
		Command{
			Name:    "app changeset",
			Usage:   "APP [--format json|yaml] [--json]",
			Summary: "show what launching an application again would change in its cutover's stack (GenerateChangeSet)",
			Flags:   onApp(appChangeset),
		},
		Command{
			Name:    "app launch",
			Usage:   "APP [--test] [--watch] [--json]",
			Summary: "launch an application from its template — the cutover, or a test launch beside it — or update the launched stack (LaunchApp)",
			Flags:   onApp(appLaunch),
		},
		Command{
			Name:    "app terminate",
			Usage:   "APP [--test] [--watch]",
			Summary: "delete the stack (and instances) of an app's cutover, or of its test launch, leaving the other (TerminateApp)",
			Flags:   onApp(appTerminate),
		},
		Command{
			Name:    "app configure-replication",
			Usage:   "APP [--frequency HOURS] [--seed RFC3339] [--run-once] [--license AWS|BYOL] [--keep N] [--encrypted] [--kms-key K]",
			Summary: "set the replication of every server of an application (PutAppReplicationConfiguration)",
			Flags:   onApp(appConfigureReplication),
		},
		Command{
			Name:    "app start-replication",
			Usage:   "APP",
			Summary: "create each server's replication job from the app's replication configuration (StartAppReplication)",
			Flags: onApp(appCall(api.Service.StartAppReplication,
				"replication of app %[1]s started: its jobs run on their schedule, or now with 'rehost app replicate %[1]s'\n")),
		},
		Command{
			Name:    "app stop-replication",
			Usage:   "APP",
			Summary: "delete the replication job of each server of an application; its AMIs stay (StopAppReplication)",
			Flags:   onApp(appCall(api.Service.StopAppReplication, "replication of app %[1]s stopped\n")),
		},
		Command{
			Name:    "app replicate",
			Usage:   "APP [--description D]",
			Summary: "start an on-demand run of every server's replication job (StartOnDemandAppReplication)",
			Flags:   onApp(appReplicate),
		},
	)
}

// resolveApp finds an application by id or name.
func resolveApp(ctx context.Context, svc api.Service, ref string) (api.AppSummary, error) {
	apps, err := allApps(ctx, svc)
	if err != nil {
		return api.AppSummary{}, err
	}
	for _, a := range apps {
		if a.AppID == ref || a.Name == ref {
			return a, nil
		}
	}
	return api.AppSummary{}, fmt.Errorf("no app %q: see 'rehost app list'", ref)
}

// allApps pages through every application.
func allApps(ctx context.Context, svc api.Service) ([]api.AppSummary, error) {
	var apps []api.AppSummary
	in := &api.ListAppsInput{MaxResults: 1000}
	for {
		out, err := svc.ListApps(ctx, in)
		if err != nil {
			return nil, err
		}
		apps = append(apps, out.Apps...)
		if in.NextToken = out.NextToken; in.NextToken == "" {
			return apps, nil
		}
	}
}

// appRun runs a verb on the application its argument named.
type appRun func(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error

// onApp is the Flags of a verb on one application, named (or given by id)
// as its only argument: flags adds the verb's own flags and returns what
// it runs; the connection flags, the argument check and the app's lookup
// are this function's.
func onApp(flags func(fs *flag.FlagSet) appRun) func(*flag.FlagSet) func(context.Context, Env, []string) error {
	return func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
		c := addConnFlags(fs)
		run := flags(fs)
		return c.with(oneArg("app (name or id)"), func(ctx context.Context, env Env, svc api.Service, args []string) error {
			a, err := resolveApp(ctx, svc, args[0])
			if err != nil {
				return err
			}
			return run(ctx, env, svc, a)
		})
	}
}

// appReader is the Flags of a verb that reads one thing of an application
// and prints it: with --json (described by jsonUsage) as JSON, else by text.
func appReader[T any](jsonUsage string, get func(context.Context, api.Service, api.AppSummary) (T, error), text func(Env, api.AppSummary, T) error) func(*flag.FlagSet) func(context.Context, Env, []string) error {
	return onApp(func(fs *flag.FlagSet) appRun {
		asJSON := fs.Bool("json", false, jsonUsage)
		return func(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
			v, err := get(ctx, svc, a)
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(env.Stdout, v)
			}
			return text(env, a, v)
		}
	})
}

// appCall is a verb without flags of its own that makes one call on the
// application and says so: done is a format whose argument is the app's
// name.
func appCall[O any](call func(api.Service, context.Context, *api.AppRef) (O, error), done string) func(*flag.FlagSet) appRun {
	return func(*flag.FlagSet) appRun {
		return func(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
			if _, err := call(svc, ctx, &api.AppRef{AppID: a.AppID}); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, done, a.Name)
			return nil
		}
	}
}

func appCreate(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	c := addConnFlags(fs)
	var in api.CreateAppInput
	var groups groupsFlag
	fs.StringVar(&in.Name, "name", "", "the application's name (unique)")
	fs.StringVar(&in.Description, "description", "", "description")
	fs.StringVar(&in.RoleName, "role", "", "service role (kept, as SMS keeps it)")
	fs.Var(&groups, "group", "a server group: NAME=SERVER[,SERVER…] by VM name or server id (repeatable, in launch order)")
	asJSON := fs.Bool("json", false, "print the app as JSON")
	return c.with(noArgs, func(ctx context.Context, env Env, svc api.Service, _ []string) error {
		if in.Name == "" || len(groups) == 0 {
			return fmt.Errorf("%w: --name and at least one --group are required", ErrUsage)
		}
		var err error
		if in.ServerGroups, err = groups.serverGroups(ctx, svc); err != nil {
			return err
		}
		out, err := svc.CreateApp(ctx, &in)
		if err != nil {
			return err
		}
		return show(env, *asJSON, out, func() { printApp(env.Stdout, out) })
	})
}

func appList(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	c := addConnFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	return c.with(noArgs, func(ctx context.Context, env Env, svc api.Service, _ []string) error {
		apps, err := allApps(ctx, svc)
		if err != nil {
			return err
		}
		return listing(env, *asJSON, apps, "APP ID\tNAME\tGROUPS\tSERVERS\tREPLICATION\tLAUNCH\tSTACK", func(a api.AppSummary) []any {
			stack := ""
			if a.LaunchDetails != nil {
				stack = a.LaunchDetails.StackName
			}
			return []any{a.AppID, a.Name, fmt.Sprint(a.TotalServerGroups), fmt.Sprint(a.TotalServers), a.ReplicationStatus, a.LaunchStatus, stack}
		})
	})
}

func getApp(ctx context.Context, svc api.Service, a api.AppSummary) (*api.AppOutput, error) {
	return svc.GetApp(ctx, &api.GetAppInput{AppID: a.AppID})
}

func printAppText(env Env, _ api.AppSummary, out *api.AppOutput) error {
	printApp(env.Stdout, out)
	return nil
}

func appUpdate(fs *flag.FlagSet) appRun {
	name := fs.String("name", "", "new name")
	description := fs.String("description", "", "new description")
	var groups groupsFlag
	fs.Var(&groups, "group", "the new server groups: NAME=SERVER[,SERVER…] (repeatable, in launch order; replaces all)")
	asJSON := fs.Bool("json", false, "print the app as JSON")
	return func(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
		in := &api.UpdateAppInput{AppID: a.AppID}
		if given(fs, "name") {
			in.Name = name
		}
		if given(fs, "description") {
			in.Description = description
		}
		if len(groups) > 0 {
			var err error
			if in.ServerGroups, err = groups.serverGroups(ctx, svc); err != nil {
				return err
			}
		}
		if in.Name == nil && in.Description == nil && in.ServerGroups == nil {
			return fmt.Errorf("%w: nothing to change: give --name, --description or --group", ErrUsage)
		}
		out, err := svc.UpdateApp(ctx, in)
		if err != nil {
			return err
		}
		return show(env, *asJSON, out, func() { printApp(env.Stdout, out) })
	}
}

func appDelete(fs *flag.FlagSet) appRun {
	terminate := fs.Bool("terminate", false, "terminate its launches (their stacks and instances) first, and wait")
	stopReplication := fs.Bool("stop-replication", false, "delete its servers' replication jobs too (their AMIs stay)")
	return func(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
		in := &api.DeleteAppInput{AppID: a.AppID, ForceTerminateApp: *terminate, ForceStopAppReplication: *stopReplication}
		if _, err := svc.DeleteApp(ctx, in); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "deleted app %s (%s)\n", a.Name, a.AppID)
		return nil
	}
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
