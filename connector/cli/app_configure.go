package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "app configure",
		Usage:   "APP [--file FILE] [--test-vpc V] [--test-subnet S] [--test-security-groups SG,SG] [--test-suffix X]",
		Summary: "set how an application is launched, from a JSON file in GetAppLaunchConfiguration's shape, and where test launches go (PutAppLaunchConfiguration)",
		Flags:   onApp[appConfigureOptions],
	})
}

type appConfigureOptions struct {
	file                       string
	testVPC, testSubnet, suffx string
	testGroups                 string
	fs                         *flag.FlagSet
}

func (o *appConfigureOptions) flags(fs *flag.FlagSet) {
	o.fs = fs
	fs.StringVar(&o.file, "file", "", "JSON launch configuration ('rehost app launch-config APP --json' writes one); default: the one set, or defaults")
	fs.StringVar(&o.testVPC, "test-vpc", "", "VPC of test launches")
	fs.StringVar(&o.testSubnet, "test-subnet", "", "subnet test launches go into")
	fs.StringVar(&o.testGroups, "test-security-groups", "", "security groups of test launches, comma-separated")
	fs.StringVar(&o.suffx, "test-suffix", "", "suffix of test launches' Name tags (default -test)")
}

func (o *appConfigureOptions) run(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
	var cur api.GetAppLaunchConfigurationOutput
	if o.file != "" {
		b, err := os.ReadFile(o.file)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &cur); err != nil {
			return fmt.Errorf("%w: %s is not a launch configuration in JSON: %v", ErrUsage, o.file, err)
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
		if !given(o.fs, f) {
			continue
		}
		if in.RehostTestLaunch == nil {
			in.RehostTestLaunch = &api.TestLaunch{}
		}
		t := in.RehostTestLaunch
		switch f {
		case "test-vpc":
			t.Vpc = o.testVPC
		case "test-subnet":
			t.Subnet = o.testSubnet
		case "test-security-groups":
			t.SecurityGroups = nil
			for _, g := range strings.Split(o.testGroups, ",") {
				if g = strings.TrimSpace(g); g != "" {
					t.SecurityGroups = append(t.SecurityGroups, g)
				}
			}
		case "test-suffix":
			t.NameSuffix = o.suffx
		}
	}
	if _, err := svc.PutAppLaunchConfiguration(ctx, in); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "launch configuration of app %s set: see 'rehost app launch-config %s'\n", a.Name, a.Name)
	return nil
}
