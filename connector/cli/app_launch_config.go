package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "app launch-config",
		Usage:   "APP [--json]",
		Summary: "show how an application is launched: launch order, each server's instance type, networks, tags (GetAppLaunchConfiguration)",
		Flags:   onApp[appLaunchConfigOptions],
	})
}

type appLaunchConfigOptions struct {
	json bool
}

func (o *appLaunchConfigOptions) flags(fs *flag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print JSON (what 'rehost app configure --file' takes)")
}

func (o *appLaunchConfigOptions) run(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
	out, err := svc.GetAppLaunchConfiguration(ctx, &api.GetAppLaunchConfigurationInput{AppID: a.AppID})
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(env.Stdout, out)
	}
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
