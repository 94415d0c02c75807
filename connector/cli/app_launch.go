package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rehost/rehost/connector/api"
)

// Verbs on how an application is launched, and on its launches (their
// entries are in app.go).

func appConfigure(fs *flag.FlagSet) appRun {
	file := fs.String("file", "", "JSON launch configuration ('rehost app launch-config APP --json' writes one); default: the one set, or defaults")
	testVPC := fs.String("test-vpc", "", "VPC of test launches")
	testSubnet := fs.String("test-subnet", "", "subnet test launches go into")
	testGroups := fs.String("test-security-groups", "", "security groups of test launches, comma-separated")
	testSuffix := fs.String("test-suffix", "", "suffix of test launches' Name tags (default -test)")
	return func(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
		var cur api.GetAppLaunchConfigurationOutput
		if *file != "" {
			b, err := os.ReadFile(*file)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(b, &cur); err != nil {
				return fmt.Errorf("%w: %s is not a launch configuration in JSON: %v", ErrUsage, *file, err)
			}
		} else {
			got, err := svc.GetAppLaunchConfiguration(ctx, &api.GetAppLaunchConfigurationInput{AppID: a.AppID})
			if err != nil {
				return err
			}
			cur = *got
		}
		in := &api.PutAppLaunchConfigurationInput{AppID: a.AppID, RoleName: cur.RoleName, AutoLaunch: &cur.AutoLaunch,
			ServerGroupLaunchConfigurations: cur.ServerGroupLaunchConfigurations, RehostTestLaunch: cur.RehostTestLaunch}
		for _, f := range []string{"test-vpc", "test-subnet", "test-security-groups", "test-suffix"} {
			if !given(fs, f) {
				continue
			}
			if in.RehostTestLaunch == nil {
				in.RehostTestLaunch = &api.TestLaunch{}
			}
			t := in.RehostTestLaunch
			switch f {
			case "test-vpc":
				t.Vpc = *testVPC
			case "test-subnet":
				t.Subnet = *testSubnet
			case "test-security-groups":
				t.SecurityGroups = nil
				for _, g := range strings.Split(*testGroups, ",") {
					if g = strings.TrimSpace(g); g != "" {
						t.SecurityGroups = append(t.SecurityGroups, g)
					}
				}
			case "test-suffix":
				t.NameSuffix = *testSuffix
			}
		}
		if _, err := svc.PutAppLaunchConfiguration(ctx, in); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "launch configuration of app %s set: see 'rehost app launch-config %s'\n", a.Name, a.Name)
		return nil
	}
}

func getLaunchConfig(ctx context.Context, svc api.Service, a api.AppSummary) (*api.GetAppLaunchConfigurationOutput, error) {
	return svc.GetAppLaunchConfiguration(ctx, &api.GetAppLaunchConfigurationInput{AppID: a.AppID})
}

func printLaunchConfig(env Env, a api.AppSummary, out *api.GetAppLaunchConfigurationOutput) error {
	if len(out.ServerGroupLaunchConfigurations) == 0 {
		fmt.Fprintf(env.Stdout, "app %s has no launch configuration: 'rehost app configure' or 'rehost app rightsize'\n", a.Name)
		return nil
	}
	if t := out.RehostTestLaunch; t != nil {
		fmt.Fprintf(env.Stdout, "test launches: vpc %s subnet %s security groups %s name suffix %q\n", cell(t.Vpc), cell(t.Subnet), cell(strings.Join(t.SecurityGroups, ",")), t.NameSuffix)
	}
	tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORDER\tGROUP\tSERVER\tTYPE\tSUBNET\tSECURITY GROUPS\tPRIVATE IP\tVOLUME")
	for _, g := range out.ServerGroupLaunchConfigurations {
		for _, s := range g.ServerLaunchConfigurations {
			name := ""
			if s.Server != nil {
				name = vmOf(*s.Server).VmName
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", *g.LaunchOrder, g.ServerGroupID, cell(name), cell(s.InstanceType), cell(s.Subnet),
				cell(strings.Join(s.RehostSecurityGroups, ",")), cell(s.RehostPrivateIPAddress), cell(s.RehostVolumeType))
		}
	}
	return tw.Flush()
}

func appRightsize(fs *flag.FlagSet) appRun {
	csv := fs.String("csv", "", "the CSV file; its first row names the columns")
	asJSON := fs.Bool("json", false, "print each server's instance type as JSON")
	return func(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
		if *csv == "" {
			return fmt.Errorf("%w: --csv is required", ErrUsage)
		}
		b, err := os.ReadFile(*csv)
		if err != nil {
			return err
		}
		out, err := svc.ImportAppRightsizing(ctx, &api.ImportAppRightsizingInput{AppID: a.AppID, CSV: string(b)})
		if err != nil {
			return fmt.Errorf("%s: %w", *csv, err)
		}
		return listing(env, *asJSON, out.Servers, "SERVER\tINSTANCE TYPE\tFROM", func(s api.RightsizedServer) []any {
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
}

func appTemplate(fs *flag.FlagSet) appRun {
	format := fs.String("format", "json", "json or yaml")
	file := fs.String("out", "", "write it to FILE (default: standard output)")
	return func(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
		out, err := svc.GenerateTemplate(ctx, &api.GenerateTemplateInput{AppID: a.AppID, TemplateFormat: *format})
		if err != nil {
			return err
		}
		if *file == "" {
			_, err = fmt.Fprint(env.Stdout, out.RehostTemplateBody)
		} else {
			err = os.WriteFile(*file, []byte(out.RehostTemplateBody), 0o644)
		}
		if err == nil && out.S3Location != nil {
			fmt.Fprintf(env.Stderr, "stored at s3://%s/%s\n", out.S3Location.Bucket, out.S3Location.Key)
		}
		return err
	}
}

func appChangeset(fs *flag.FlagSet) appRun {
	format := fs.String("format", "json", "format of the change set's template stored in S3: json or yaml")
	asJSON := fs.Bool("json", false, "print JSON")
	return func(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
		out, err := svc.GenerateChangeSet(ctx, &api.GenerateChangeSetInput{AppID: a.AppID, ChangesetFormat: *format})
		if err != nil {
			return err
		}
		if *asJSON {
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
}

// launchFlags are the flags app launch and app terminate share: which
// launch, and whether to follow it until it settles.
func launchFlags(fs *flag.FlagSet, testUsage, watchUsage string) (test, watch *bool) {
	return fs.Bool("test", false, testUsage), fs.Bool("watch", false, watchUsage)
}

// followLaunch is the launch the call started, followed until it settles
// when watch is set.
func followLaunch(ctx context.Context, env Env, svc api.Service, a api.AppSummary, out *api.LaunchOutput, err error, watch bool) (api.AppLaunch, error) {
	if err != nil {
		return api.AppLaunch{}, err
	}
	l := *out.RehostLaunch
	if watch {
		return watchLaunch(ctx, env, svc, a.AppID, l.Kind, 2*time.Second)
	}
	return l, nil
}

func appLaunch(fs *flag.FlagSet) appRun {
	test, watch := launchFlags(fs, "a test launch: into the test VPC and subnet, names suffixed, beside the cutover", "follow the launch until it settles, with each server's boot check")
	asJSON := fs.Bool("json", false, "print the launch as JSON")
	return func(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
		out, err := svc.LaunchApp(ctx, &api.LaunchAppInput{AppID: a.AppID, RehostTest: *test})
		l, err := followLaunch(ctx, env, svc, a, out, err, *watch)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env.Stdout, l)
		}
		printLaunch(env.Stdout, l)
		if *watch && l.State != "LAUNCHED" {
			return fmt.Errorf("the %s launch of app %s is %s: %s", l.Kind, a.Name, l.State, l.StatusMessage)
		}
		return nil
	}
}

func appTerminate(fs *flag.FlagSet) appRun {
	test, watch := launchFlags(fs, "terminate the test launch (default: the cutover)", "wait until the stack is deleted")
	return func(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
		out, err := svc.TerminateApp(ctx, &api.TerminateAppInput{AppID: a.AppID, RehostTest: *test})
		l, err := followLaunch(ctx, env, svc, a, out, err, *watch)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s launch %s of app %s: %s (stack %s)\n", l.Kind, l.LaunchID, a.Name, l.State, l.StackName)
		return nil
	}
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
