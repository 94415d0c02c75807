package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// Plan is an application checked against AWS and rendered: what a launch
// creates, or a template download holds.
type Plan struct {
	App   store.App
	Input TemplateInput
	// Template is the JSON template.
	Template []byte
	// Servers are the launch's servers before anything is launched.
	Servers []store.LaunchedServer
}

// maxUserData is the raw size EC2 takes.
const maxUserData = 16 << 10

// Prepare checks that an application can be launched as configured — its
// groups, launch order and configuration; each server's latest AMI exists
// and is available; instance types, subnets and security groups exist and
// belong together (for the test launch's networks too); the template fits
// CloudFormation's limit and CloudFormation accepts it — and renders its
// template. Nothing is created. Errors wrap ErrInvalid (the configuration)
// or ErrNotReady (an AMI not there yet), naming the item.
func Prepare(ctx context.Context, st Store, cloud Cloud, appID string) (*Plan, error) {
	a, err := st.GetApp(ctx, appID)
	if err != nil {
		return nil, err
	}
	if len(a.Groups) == 0 {
		return nil, invalid("app %q has no server groups: add its servers (UpdateApp, 'rehost app update')", a.Name)
	}
	if err := CheckGroups(a); err != nil {
		return nil, err
	}
	servers := map[string]store.Server{}
	names := map[string]string{}
	for _, id := range a.Servers() {
		s, err := st.GetServer(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("app %q: %w", a.Name, err)
		}
		servers[id], names[id] = s, s.Name
	}
	if err := CheckLaunchConfig(a, names); err != nil {
		return nil, err
	}
	waits, err := LaunchOrder(a)
	if err != nil {
		return nil, err
	}
	amis, err := latestAMIs(ctx, st, cloud, a, names)
	if err != nil {
		return nil, err
	}
	if err := checkNetworks(ctx, cloud, a, names); err != nil {
		return nil, err
	}
	userData := map[string]string{}
	for _, gl := range a.Launch.Groups {
		for _, sl := range gl.Servers {
			if userData[sl.ServerID], err = composeUserData(ctx, cloud, names[sl.ServerID], sl); err != nil {
				return nil, err
			}
		}
	}
	in, launched := BuildInput(a, names, waits, amis, userData)
	body, err := Template(in, FormatJSON)
	if err != nil {
		return nil, err
	}
	if len(body) > awstarget.MaxTemplateBody {
		return nil, invalid("the template of app %q is %d bytes, over CloudFormation's limit of %d bytes for a template body: shorten the servers' user data or split the app",
			a.Name, len(body), awstarget.MaxTemplateBody)
	}
	if err := cloud.ValidateTemplate(ctx, string(body)); err != nil {
		return nil, invalid("CloudFormation refused the template of app %q: %v", a.Name, err)
	}
	return &Plan{App: a, Input: in, Template: body, Servers: launched}, nil
}

// BuildInput lays out the template of an app whose configuration is
// complete (CheckLaunchConfig): its groups in launch order, each waiting for
// those waits names (LaunchOrder), each server with its latest AMI and
// user data. It returns the launch's servers beside.
func BuildInput(a store.App, names map[string]string, waits map[string][]string, amis map[string]awstarget.Image,
	userData map[string]string) (TemplateInput, []store.LaunchedServer) {
	in := TemplateInput{AppID: a.AppID, AppName: a.Name, Test: a.Launch.Test}
	groupLogical := groupLogicalIDs(a, names)
	groupByID := map[string]store.ServerGroup{}
	for _, g := range a.Groups {
		groupByID[g.GroupID] = g
	}
	var launched []store.LaunchedServer
	for _, gl := range orderedGroups(a) {
		tg := TemplateGroup{GroupID: gl.GroupID, Name: groupName(groupByID[gl.GroupID]), LogicalID: groupLogical[gl.GroupID]}
		for _, w := range waits[gl.GroupID] {
			tg.Waits = append(tg.Waits, groupLogical[w])
		}
		for _, sl := range gl.Servers {
			ts := TemplateServer{ServerID: sl.ServerID, Name: names[sl.ServerID], LogicalID: cmp.Or(sl.LogicalID, logicalID(names[sl.ServerID])),
				Launch: sl, Image: amis[sl.ServerID], UserData: userData[sl.ServerID]}
			tg.Servers = append(tg.Servers, ts)
			ls := store.LaunchedServer{ServerID: sl.ServerID, Name: ts.Name, LogicalID: ts.LogicalID, Group: tg.LogicalID}
			if sl.ValidationCommand != "" {
				ls.Validation = &store.ServerValidation{Command: sl.ValidationCommand, Windows: ts.Image.Platform == "windows"}
			}
			launched = append(launched, ls)
		}
		in.Groups = append(in.Groups, tg)
	}
	return in, launched
}

// Parameters are a launch's template parameters.
func (p *Plan) Parameters(kind store.LaunchKind, bootTimeout int) map[string]string {
	params := map[string]string{ParamLaunchKind: string(kind), ParamNameSuffix: "",
		ParamBootTimeout: strconv.Itoa(cmp.Or(bootTimeout, DefaultBootTimeout))}
	if kind == store.LaunchTest {
		suffix := "-test"
		if t := p.App.Launch.Test; t != nil && t.NameSuffix != "" {
			suffix = t.NameSuffix
		}
		params[ParamNameSuffix] = suffix
	}
	return params
}

// groupLogicalIDs names each group's wait condition resources after the
// group, unique beside the servers' logical ids.
func groupLogicalIDs(a store.App, names map[string]string) map[string]string {
	taken := map[string]bool{}
	for _, gl := range a.Launch.Groups {
		for _, sl := range gl.Servers {
			taken[cmp.Or(sl.LogicalID, logicalID(names[sl.ServerID]))] = true
		}
	}
	out := map[string]string{}
	for i, g := range a.Groups {
		base := "Group" + strings.TrimPrefix(logicalID(cmp.Or(g.Name, strconv.Itoa(i+1))), "Server")
		id := base
		for n := 2; taken[id] || taken[id+"Handle"] || taken[id+"Ready"]; n++ {
			id = base + strconv.Itoa(n)
		}
		taken[id] = true
		out[g.GroupID] = id
	}
	return out
}

// latestAMIs finds each server's latest AMI and checks it is available.
func latestAMIs(ctx context.Context, st Store, cloud Cloud, a store.App, names map[string]string) (map[string]awstarget.Image, error) {
	want := map[string]string{}
	for _, id := range a.Servers() {
		jobs, err := st.ListJobs(ctx, store.JobFilter{ServerID: id})
		if err != nil {
			return nil, err
		}
		ami := ""
		for _, j := range jobs {
			if j.LatestAmiID != "" {
				ami = j.LatestAmiID // the newest job that made one
			}
		}
		if ami == "" {
			return nil, notReady("server %s has no AMI yet: replicate it first (StartAppReplication, 'rehost app replicate')", names[id])
		}
		want[id] = ami
	}
	var ids []string
	for _, ami := range want {
		ids = append(ids, ami)
	}
	slices.Sort(ids)
	imgs, err := cloud.Images(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := map[string]awstarget.Image{}
	for _, id := range a.Servers() {
		im, ok := imgs[want[id]]
		switch {
		case !ok:
			return nil, notReady("the latest AMI of server %s, %s, does not exist any more: run a new replication", names[id], want[id])
		case im.State != "available":
			return nil, notReady("the latest AMI of server %s, %s, is %s, not available yet: wait for it", names[id], want[id], im.State)
		}
		out[id] = im
	}
	return out, nil
}

// checkNetworks checks the instance types, and that each server's subnet,
// VPC and security groups exist and belong together — those of the test
// launch too.
func checkNetworks(ctx context.Context, cloud Cloud, a store.App, names map[string]string) error {
	var types, subnets, groups []string
	test := a.Launch.Test
	if test == nil {
		test = &store.TestLaunchConfig{}
	}
	add := func(list *[]string, v ...string) {
		for _, x := range v {
			if x != "" && !slices.Contains(*list, x) {
				*list = append(*list, x)
			}
		}
	}
	add(&subnets, test.Subnet)
	add(&groups, test.SecurityGroups...)
	for _, gl := range a.Launch.Groups {
		for _, sl := range gl.Servers {
			add(&types, sl.InstanceType)
			add(&subnets, sl.Subnet)
			add(&groups, sl.SecurityGroups...)
		}
	}
	unknown, err := cloud.UnknownInstanceTypes(ctx, types)
	if err != nil {
		return err
	}
	for _, gl := range a.Launch.Groups {
		for _, sl := range gl.Servers {
			if slices.Contains(unknown, sl.InstanceType) {
				return invalid("server %s: instance type %q does not exist in %s", names[sl.ServerID], sl.InstanceType, cloud.Region())
			}
		}
	}
	subs, err := cloud.Subnets(ctx, subnets)
	if err != nil {
		return err
	}
	sgs, err := cloud.SecurityGroups(ctx, groups)
	if err != nil {
		return err
	}
	check := func(who, vpc, subnet string, groups []string, ip string) error {
		var sub awstarget.Subnet
		if subnet != "" {
			var ok bool
			if sub, ok = subs[subnet]; !ok {
				return invalid("%s: subnet %s does not exist", who, subnet)
			}
			if vpc != "" && sub.VpcID != vpc {
				return invalid("%s: subnet %s is in %s, not in VPC %s: give a subnet of that VPC", who, subnet, sub.VpcID, vpc)
			}
		}
		for _, g := range groups {
			sg, ok := sgs[g]
			switch {
			case !ok:
				return invalid("%s: security group %s does not exist", who, g)
			case subnet != "" && sg.VpcID != sub.VpcID:
				return invalid("%s: security group %s is in %s but subnet %s is in %s: use security groups of the subnet's VPC", who, g, sg.VpcID, subnet, sub.VpcID)
			case subnet == "" && vpc != "" && sg.VpcID != vpc:
				return invalid("%s: security group %s is in %s, not in VPC %s", who, g, sg.VpcID, vpc)
			}
		}
		if ip != "" {
			addr, err := netip.ParseAddr(ip)
			if err != nil || !addr.Is4() {
				return invalid("%s: private address %q is not an IPv4 address", who, ip)
			}
			if p, err := netip.ParsePrefix(sub.CidrBlock); subnet != "" && err == nil && !p.Contains(addr) {
				return invalid("%s: private address %s is outside subnet %s (%s)", who, ip, subnet, sub.CidrBlock)
			}
		}
		return nil
	}
	for _, gl := range a.Launch.Groups {
		for _, sl := range gl.Servers {
			who := "server " + names[sl.ServerID]
			if err := check(who, sl.VPC, sl.Subnet, sl.SecurityGroups, sl.PrivateIP); err != nil {
				return err
			}
			// What a test launch of the server gets (see instance).
			subnet := cmp.Or(test.Subnet, sl.Subnet)
			groups := test.SecurityGroups
			if len(groups) == 0 && test.Subnet == "" {
				groups = sl.SecurityGroups
			}
			vpc := test.VPC
			if test.Subnet == "" && vpc == "" {
				vpc = sl.VPC
			}
			if err := check(who+" (test launch)", vpc, subnet, groups, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// composeUserData is what the server runs at first boot: its user data (given,
// or read from S3) followed by its configure script (read from S3).
func composeUserData(ctx context.Context, cloud Cloud, name string, sl store.ServerLaunch) (string, error) {
	ud := sl.UserData
	if sl.UserDataS3 != nil {
		b, err := cloud.GetObject(ctx, sl.UserDataS3.Bucket, sl.UserDataS3.Key, maxUserData)
		if err != nil {
			return "", invalid("server %s: read its user data: %v", name, err)
		}
		ud = string(b)
	}
	if sl.ConfigureScript != nil {
		b, err := cloud.GetObject(ctx, sl.ConfigureScript.Bucket, sl.ConfigureScript.Key, maxUserData)
		if err != nil {
			return "", invalid("server %s: read its configure script: %v", name, err)
		}
		script := strings.TrimRight(string(b), "\n") + "\n"
		switch sl.ConfigureScriptType {
		case ScriptShell:
			if ud != "" && !strings.HasPrefix(ud, "#!") {
				return "", invalid("server %s: its user data is not a shell script, so its configure script cannot follow it: put the script in the user data", name)
			}
			if ud == "" {
				ud = "#!/bin/sh\n"
			}
			ud = strings.TrimRight(ud, "\n") + "\n" + script
		case ScriptPowerShell:
			switch i := strings.LastIndex(ud, "</powershell>"); {
			case ud == "":
				ud = "<powershell>\n" + script + "</powershell>\n"
			case i >= 0:
				ud = ud[:i] + script + ud[i:]
			default:
				return "", invalid("server %s: its user data has no <powershell> block for its configure script to join", name)
			}
		}
	}
	if len(ud) > maxUserData {
		return "", invalid("server %s: its user data and configure script are %d bytes, over EC2's %d", name, len(ud), maxUserData)
	}
	return ud, nil
}

// refused reports whether a CreateStack error is CloudFormation's refusal
// rather than a failure to reach it.
func refused(err error) bool {
	var ae interface{ ErrorCode() string }
	return errors.As(err, &ae) && ae.ErrorCode() != ""
}
