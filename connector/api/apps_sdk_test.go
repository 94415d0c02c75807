package api_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	awsv2 "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/sms"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/connector/api/client"
	"github.com/rehost/rehost/internal/lab/emulator"
	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/testdata"
)

func rehostClient(t *testing.T, c *apitest.Connector) *client.Client {
	t.Helper()
	hc, err := client.New(client.Options{Endpoint: c.URL, Region: c.Region, Fingerprint: c.Fingerprint, Credentials: staticCreds(c.Key.ID, c.Key.Secret)})
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

// emuEC2 is an EC2 client of the emulated account, for the networks a
// user would make there.
func emuEC2(c *apitest.Connector) *ec2.Client {
	ak, sk := c.Peers.AWS.Credentials()
	cfg := awsv2.Config{Region: c.Region, Credentials: credentials.NewStaticCredentialsProvider(ak, sk, "")}
	return ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = awsv2.String(c.Peers.AWSURL) })
}

type network struct{ vpc, subnet string }

func makeNetwork(t *testing.T, e *ec2.Client, vpcCIDR, subnetCIDR string, groups ...string) (network, []string) {
	t.Helper()
	ctx := context.Background()
	v, err := e.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: awsv2.String(vpcCIDR)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: v.Vpc.VpcId, CidrBlock: awsv2.String(subnetCIDR)})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, g := range groups {
		out, err := e.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: awsv2.String(g), Description: awsv2.String(g), VpcId: v.Vpc.VpcId})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, awsv2.ToString(out.GroupId))
	}
	return network{awsv2.ToString(v.Vpc.VpcId), awsv2.ToString(s.Subnet.SubnetId)}, ids
}

// waitApp polls GetApp until done says so.
func waitApp(t *testing.T, cl *sms.SMS, appID string, what string, done func(*sms.AppSummary) bool) *sms.AppSummary {
	t.Helper()
	deadline := time.Now().Add(4 * time.Minute)
	for {
		out, err := cl.GetAppWithContext(context.Background(), &sms.GetAppInput{AppId: aws.String(appID)})
		if err != nil {
			t.Fatal(err)
		}
		if done(out.AppSummary) {
			return out.AppSummary
		}
		if time.Now().After(deadline) {
			t.Fatalf("app %s: %s did not come: %v", appID, what, out.AppSummary)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func launchOf(t *testing.T, hc *client.Client, appID, kind string) api.AppLaunch {
	t.Helper()
	out, err := hc.GetApp(context.Background(), &api.GetAppInput{AppID: appID})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range out.RehostLaunches {
		if l.Kind == kind {
			return l
		}
	}
	t.Fatalf("app %s has no %s launch: %+v", appID, kind, out.RehostLaunches)
	return api.AppLaunch{}
}

func waitLaunch(t *testing.T, hc *client.Client, appID, kind string, done func(api.AppLaunch) bool) api.AppLaunch {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		l := launchOf(t, hc, appID, kind)
		if done(l) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s launch of %s: %+v", kind, appID, l)
		}
	}
}

func allBooted(l api.AppLaunch) bool {
	for _, s := range l.Servers {
		if s.Boot != "booted" {
			return false
		}
	}
	return l.State == "LAUNCHED"
}

func settledLaunch(l api.AppLaunch) bool {
	return l.State != "PENDING" && l.State != "CREATING" && l.State != "UPDATING" && l.State != "TERMINATING"
}

func liveLeftovers(c *apitest.Connector) []string {
	var out []string
	for _, s := range c.Peers.AWS.Stacks() {
		if s.Status != "DELETE_COMPLETE" {
			out = append(out, s.Name+" "+s.Status)
		}
	}
	for _, in := range c.Peers.AWS.Instances() {
		if in.State != "terminated" && in.State != "shutting-down" {
			out = append(out, in.ID+" "+in.State)
		}
	}
	return out
}

// The AWS SDK's SMS client drives application migration end to end: an app
// of three servers (db, app, web) in two groups is replicated in the lab,
// its launch configuration filled from a rightsizing CSV, its template
// generated (matching the golden one), launched in order — each server
// booted — beside a test launch; each terminates alone. Bad input is
// refused with SMS's exceptions, naming the item, making nothing.
func TestSMSClientDrivesApplications(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	ctx := context.Background()
	cl := smsClient(t, c, c.Key.ID, c.Key.Secret)
	hc := rehostClient(t, c)
	if _, err := cl.ImportServerCatalogWithContext(ctx, &sms.ImportServerCatalogInput{}); err != nil {
		t.Fatal(err)
	}
	servers, err := cl.GetServersWithContext(ctx, &sms.GetServersInput{})
	if err != nil {
		t.Fatal(err)
	}
	id := map[string]string{}
	for _, s := range servers.ServerList {
		id[aws.StringValue(s.VmServer.VmName)] = aws.StringValue(s.ServerId)
	}
	srv := func(names ...string) []*sms.Server {
		var out []*sms.Server
		for _, n := range names {
			out = append(out, &sms.Server{ServerId: aws.String(id[n])})
		}
		return out
	}

	// A server in two groups, a group without servers.
	_, err = cl.CreateAppWithContext(ctx, &sms.CreateAppInput{Name: aws.String("twice"), ServerGroups: []*sms.ServerGroup{
		{Name: aws.String("a"), ServerList: srv("web-01")}, {Name: aws.String("b"), ServerList: srv("web-01")}}})
	if code(err) != "InvalidParameterException" || !strings.Contains(err.Error(), id["web-01"]) || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("a server in two groups: %v", err)
	}
	_, err = cl.CreateAppWithContext(ctx, &sms.CreateAppInput{Name: aws.String("hollow"), ServerGroups: []*sms.ServerGroup{{Name: aws.String("none")}}})
	if code(err) != "InvalidParameterException" || !strings.Contains(err.Error(), `"none"`) {
		t.Errorf("an empty group: %v", err)
	}

	created, err := cl.CreateAppWithContext(ctx, &sms.CreateAppInput{Name: aws.String("shop"), Description: aws.String("three tiers"),
		ServerGroups: []*sms.ServerGroup{{Name: aws.String("data"), ServerList: srv("db-01")}, {Name: aws.String("front"), ServerList: srv("app-01", "web-01")}},
		Tags:         []*sms.Tag{{Key: aws.String("env"), Value: aws.String("lab")}}})
	if err != nil {
		t.Fatal(err)
	}
	appID := aws.StringValue(created.AppSummary.AppId)
	sum := created.AppSummary
	if aws.StringValue(sum.Status) != "ACTIVE" || aws.Int64Value(sum.TotalServers) != 3 || aws.Int64Value(sum.TotalServerGroups) != 2 ||
		aws.StringValue(sum.ReplicationStatus) != "READY_FOR_CONFIGURATION" || aws.StringValue(sum.LaunchStatus) != "READY_FOR_CONFIGURATION" {
		t.Errorf("new app %v", sum)
	}
	groupID := map[string]string{}
	for _, g := range created.ServerGroups {
		groupID[aws.StringValue(g.Name)] = aws.StringValue(g.ServerGroupId)
	}
	_, err = cl.CreateAppWithContext(ctx, &sms.CreateAppInput{Name: aws.String("blog"), ServerGroups: []*sms.ServerGroup{{ServerList: srv("db-01")}}})
	if code(err) != "OperationNotPermittedException" || !strings.Contains(err.Error(), appID) {
		t.Errorf("a server of another app: %v", err)
	}

	// Replication: each server's job, an on-demand run of each, to AMIs.
	seed := time.Now().Add(6 * time.Hour)
	var rcs []*sms.ServerReplicationConfiguration
	for _, n := range []string{"db-01", "app-01", "web-01"} {
		rcs = append(rcs, &sms.ServerReplicationConfiguration{Server: &sms.Server{ServerId: aws.String(id[n])},
			ServerReplicationParameters: &sms.ServerReplicationParameters{SeedTime: aws.Time(seed), Frequency: aws.Int64(12), LicenseType: aws.String("BYOL")}})
	}
	if _, err := cl.PutAppReplicationConfigurationWithContext(ctx, &sms.PutAppReplicationConfigurationInput{AppId: aws.String(appID),
		ServerGroupReplicationConfigurations: []*sms.ServerGroupReplicationConfiguration{{ServerReplicationConfigurations: rcs}}}); err != nil {
		t.Fatal(err)
	}
	rc, err := cl.GetAppReplicationConfigurationWithContext(ctx, &sms.GetAppReplicationConfigurationInput{AppId: aws.String(appID)})
	if err != nil || len(rc.ServerGroupReplicationConfigurations) != 2 || len(rc.ServerGroupReplicationConfigurations[1].ServerReplicationConfigurations) != 2 ||
		aws.StringValue(rc.ServerGroupReplicationConfigurations[0].ServerReplicationConfigurations[0].ServerReplicationParameters.LicenseType) != "BYOL" {
		t.Fatalf("replication configuration: %v %v", err, rc)
	}
	_, err = cl.LaunchAppWithContext(ctx, &sms.LaunchAppInput{AppId: aws.String(appID)})
	if code(err) != "InvalidParameterException" || !strings.Contains(err.Error(), "no launch configuration") {
		t.Errorf("launch without a configuration: %v", err)
	}
	if _, err := cl.StartAppReplicationWithContext(ctx, &sms.StartAppReplicationInput{AppId: aws.String(appID)}); err != nil {
		t.Fatal(err)
	}
	waitApp(t, cl, appID, "replication pending", func(s *sms.AppSummary) bool { return aws.StringValue(s.ReplicationStatus) == "REPLICATION_PENDING" })
	if _, err := cl.StartOnDemandAppReplicationWithContext(ctx, &sms.StartOnDemandAppReplicationInput{AppId: aws.String(appID), Description: aws.String("for the launch")}); err != nil {
		t.Fatal(err)
	}
	sum = waitApp(t, cl, appID, "replicated", func(s *sms.AppSummary) bool {
		if st := aws.StringValue(s.ReplicationStatus); strings.Contains(st, "FAILED") {
			t.Fatalf("replication: %v", s)
		}
		return aws.StringValue(s.ReplicationStatus) == "REPLICATED"
	})
	if sum.LatestReplicationTime == nil {
		t.Error("no latest replication time")
	}
	jobs, err := cl.GetReplicationJobsWithContext(ctx, &sms.GetReplicationJobsInput{})
	if err != nil {
		t.Fatal(err)
	}
	ami := map[string]string{}
	for _, j := range jobs.ReplicationJobList {
		for n, sid := range id {
			if sid == aws.StringValue(j.ServerId) {
				ami[n] = aws.StringValue(j.LatestAmiId)
			}
		}
	}

	// Networks in the emulated account: production, test, and another.
	e := emuEC2(c)
	prod, prodSGs := makeNetwork(t, e, "10.20.0.0/16", "10.20.1.0/24", "db", "app", "web")
	test, testSGs := makeNetwork(t, e, "10.30.0.0/16", "10.30.1.0/24", "test")
	other, _ := makeNetwork(t, e, "10.40.0.0/16", "10.40.1.0/24")
	tokens := map[string]string{"APP_ID": appID, "SERVER_DB": id["db-01"], "SERVER_APP": id["app-01"], "SERVER_WEB": id["web-01"],
		"AMI_DB": ami["db-01"], "AMI_APP": ami["app-01"], "AMI_WEB": ami["web-01"], "SUBNET_PROD": prod.subnet, "SUBNET_TEST": test.subnet,
		"SG_DB": prodSGs[0], "SG_APP": prodSGs[1], "SG_WEB": prodSGs[2], "SG_TEST": testSGs[0]}

	// The SDK's shape of a launch configuration, and its bad inputs: each
	// refused at launch, naming the item, with nothing created.
	slc := func(name, typ, subnet, sg string) *sms.ServerLaunchConfiguration {
		return &sms.ServerLaunchConfiguration{Server: &sms.Server{ServerId: aws.String(id[name])}, InstanceType: aws.String(typ), Vpc: aws.String(prod.vpc),
			Subnet: aws.String(subnet), SecurityGroup: aws.String(sg)}
	}
	for _, bad := range []struct {
		name     string
		db       *sms.ServerLaunchConfiguration
		mentions []string
	}{
		{"subnet of another VPC", slc("db-01", "r5.large", other.subnet, prodSGs[0]), []string{"db-01", other.subnet, prod.vpc}},
		{"unknown instance type", slc("db-01", "m9.huge", prod.subnet, prodSGs[0]), []string{"db-01", "m9.huge"}},
	} {
		if _, err := cl.PutAppLaunchConfigurationWithContext(ctx, &sms.PutAppLaunchConfigurationInput{AppId: aws.String(appID), ServerGroupLaunchConfigurations: []*sms.ServerGroupLaunchConfiguration{
			{ServerGroupId: aws.String(groupID["data"]), LaunchOrder: aws.Int64(1), ServerLaunchConfigurations: []*sms.ServerLaunchConfiguration{bad.db}},
			{ServerGroupId: aws.String(groupID["front"]), LaunchOrder: aws.Int64(2), ServerLaunchConfigurations: []*sms.ServerLaunchConfiguration{
				slc("app-01", "t3.xlarge", prod.subnet, prodSGs[1]), slc("web-01", "t3.small", prod.subnet, prodSGs[2])}},
		}}); err != nil {
			t.Fatalf("%s: %v", bad.name, err)
		}
		_, err := cl.LaunchAppWithContext(ctx, &sms.LaunchAppInput{AppId: aws.String(appID)})
		if code(err) != "InvalidParameterException" {
			t.Errorf("%s: %v", bad.name, err)
		}
		for _, m := range bad.mentions {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("%s: %q does not mention %q", bad.name, err, m)
			}
		}
	}
	glc, err := cl.GetAppLaunchConfigurationWithContext(ctx, &sms.GetAppLaunchConfigurationInput{AppId: aws.String(appID)})
	if err != nil || len(glc.ServerGroupLaunchConfigurations) != 2 || aws.Int64Value(glc.ServerGroupLaunchConfigurations[1].LaunchOrder) != 2 ||
		aws.StringValue(glc.ServerGroupLaunchConfigurations[1].ServerLaunchConfigurations[1].SecurityGroup) != prodSGs[2] {
		t.Errorf("launch configuration read back: %v %v", err, glc)
	}
	// A cycle of groups (rehost's explicit waits).
	lcIn := &api.PutAppLaunchConfigurationInput{AppID: appID,
		RehostTestLaunch: &api.TestLaunch{Vpc: test.vpc, Subnet: test.subnet, SecurityGroups: []string{testSGs[0]}, NameSuffix: "-test"},
		ServerGroupLaunchConfigurations: []api.ServerGroupLaunchConfiguration{
			{ServerGroupID: groupID["data"], LaunchOrder: ptr(1), RehostAfter: []string{groupID["front"]}, ServerLaunchConfigurations: []api.ServerLaunchConfiguration{
				{Server: &api.Server{ServerID: id["db-01"]}, RehostPrivateIPAddress: "10.20.1.10", RehostUserData: "#!/bin/sh\necho db ready > /var/tmp/rehost-ready\n"}}},
			{ServerGroupID: groupID["front"], LaunchOrder: ptr(2), ServerLaunchConfigurations: []api.ServerLaunchConfiguration{
				{Server: &api.Server{ServerID: id["web-01"]}, AssociatePublicIPAddress: ptr(true), RehostValidationCommand: "test -f /etc/os-release"}}},
		}}
	_, err = hc.PutAppLaunchConfiguration(ctx, lcIn)
	if !api.IsType(err, api.ErrInvalidParameter) || !strings.Contains(err.Error(), "cycle") || !strings.Contains(err.Error(), `"front"`) {
		t.Errorf("a cycle in the launch order: %v", err)
	}
	lcIn.ServerGroupLaunchConfigurations[0].RehostAfter = nil
	// A template over CloudFormation's limit: user data near EC2's 16 KiB
	// on each of the three servers.
	big := "#!/bin/sh\n" + strings.Repeat("#", 16000)
	huge := &api.PutAppLaunchConfigurationInput{AppID: appID, ServerGroupLaunchConfigurations: []api.ServerGroupLaunchConfiguration{
		{ServerGroupID: groupID["data"], LaunchOrder: ptr(1), ServerLaunchConfigurations: []api.ServerLaunchConfiguration{{Server: &api.Server{ServerID: id["db-01"]}, RehostUserData: big}}},
		{ServerGroupID: groupID["front"], LaunchOrder: ptr(2), ServerLaunchConfigurations: []api.ServerLaunchConfiguration{
			{Server: &api.Server{ServerID: id["app-01"]}, RehostUserData: big}, {Server: &api.Server{ServerID: id["web-01"]}, RehostUserData: big}}}}}
	if _, err := hc.PutAppLaunchConfiguration(ctx, huge); err != nil {
		t.Fatal(err)
	}
	_, err = cl.LaunchAppWithContext(ctx, &sms.LaunchAppInput{AppId: aws.String(appID)})
	if code(err) != "InvalidParameterException" || !strings.Contains(err.Error(), "over CloudFormation's limit of 51200 bytes") || !strings.Contains(err.Error(), `"shop"`) {
		t.Errorf("a template over the size limit: %v", err)
	}
	if left := liveLeftovers(c); len(c.Peers.AWS.Stacks()) > 0 || len(left) > 0 {
		t.Fatalf("refused launches made %v", left)
	}
	if _, err := hc.PutAppLaunchConfiguration(ctx, lcIn); err != nil {
		t.Fatal(err)
	}
	csv := string(testdata.File("apps/shop-rightsizing.csv"))
	for tok, v := range tokens {
		csv = strings.ReplaceAll(csv, tok, v)
	}
	if _, err := hc.ImportAppRightsizing(ctx, &api.ImportAppRightsizingInput{AppID: appID, CSV: strings.Replace(csv, "r5.large", "r5.huge", 1)}); !api.IsType(err, api.ErrInvalidParameter) ||
		!strings.Contains(err.Error(), `row 2, column instance type: "r5.huge"`) {
		t.Errorf("a CSV naming a type the region lacks: %v", err)
	}
	sized, err := hc.ImportAppRightsizing(ctx, &api.ImportAppRightsizingInput{AppID: appID, CSV: csv})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sized.Servers {
		// app-01's row has no type: it keeps the one suggested from its 4
		// CPUs and 8 GiB when the launch configuration was put.
		if s.Name == "app-01" && s.InstanceType != "t3.xlarge" || s.Name == "db-01" && (s.InstanceType != "r5.large" || s.Row != 2) {
			t.Errorf("rightsized %+v", s)
		}
	}
	if st := waitApp(t, cl, appID, "ready for launch", func(s *sms.AppSummary) bool { return true }); aws.StringValue(st.LaunchStatus) != "READY_FOR_LAUNCH" {
		t.Errorf("launch status %s: %s", aws.StringValue(st.LaunchStatus), aws.StringValue(st.LaunchStatusMessage))
	}

	// The template: in S3 where GenerateTemplate says, the golden one once
	// the account's ids are put back to tokens.
	for _, f := range []struct{ format, golden string }{{"JSON", "shop.template.json"}, {"YAML", "shop.template.yaml"}} {
		gt, err := cl.GenerateTemplateWithContext(ctx, &sms.GenerateTemplateInput{AppId: aws.String(appID), TemplateFormat: aws.String(f.format)})
		if err != nil {
			t.Fatal(err)
		}
		obj, err := c.Peers.S3.S3Client().GetObject(ctx, &s3.GetObjectInput{Bucket: gt.S3Location.Bucket, Key: gt.S3Location.Key})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(obj.Body)
		obj.Body.Close()
		for tok, v := range tokens {
			body = bytes.ReplaceAll(body, []byte(v), []byte(tok))
		}
		if want := testdata.File("apps/" + f.golden); !bytes.Equal(body, want) {
			t.Errorf("%s template differs from testdata/apps/%s:\n%s", f.format, f.golden, body)
		}
	}

	// The cutover, in order, every server booted.
	if _, err := cl.LaunchAppWithContext(ctx, &sms.LaunchAppInput{AppId: aws.String(appID)}); err != nil {
		t.Fatal(err)
	}
	sum = waitApp(t, cl, appID, "launched", func(s *sms.AppSummary) bool {
		return aws.StringValue(s.LaunchStatus) == "LAUNCHED" || aws.StringValue(s.LaunchStatus) == "LAUNCH_FAILED"
	})
	if aws.StringValue(sum.LaunchStatus) != "LAUNCHED" || sum.LaunchDetails == nil || aws.StringValue(sum.LaunchDetails.StackId) == "" {
		t.Fatalf("launch: %v", sum)
	}
	cut := waitLaunch(t, hc, appID, "cutover", allBooted)
	for _, s := range cut.Servers {
		// The demo's guests have no SSM agent: the command cannot run.
		if s.Name == "web-01" && (s.Validation == nil || s.Validation.Status != "not run" || s.Validation.Command != "test -f /etc/os-release") {
			t.Errorf("web-01's validation: %+v", s.Validation)
		}
	}
	var stack emulator.Stack
	for _, s := range c.Peers.AWS.Stacks() {
		if s.ID == cut.StackID {
			stack = s
		}
	}
	at := func(logical, status string) int {
		for i, ev := range stack.Events {
			if ev.LogicalID == logical && ev.Status == status {
				return i
			}
		}
		return -1
	}
	if ready, web := at("GroupDataReady", "CREATE_COMPLETE"), at("Web01", "CREATE_IN_PROGRESS"); ready < 0 || web < ready {
		t.Errorf("web-01 started (event %d) before the data group was ready (event %d)", web, ready)
	}

	// A test launch beside it, terminated alone.
	if _, err := hc.LaunchApp(ctx, &api.LaunchAppInput{AppID: appID, RehostTest: true}); err != nil {
		t.Fatal(err)
	}
	tl := waitLaunch(t, hc, appID, "test", func(l api.AppLaunch) bool { return settledLaunch(l) && (l.State != "LAUNCHED" || allBooted(l)) })
	if tl.State != "LAUNCHED" {
		t.Fatalf("test launch: %+v", tl)
	}
	if _, err := hc.TerminateApp(ctx, &api.TerminateAppInput{AppID: appID, RehostTest: true}); err != nil {
		t.Fatal(err)
	}
	waitLaunch(t, hc, appID, "test", func(l api.AppLaunch) bool { return l.State == "TERMINATED" })
	if l := launchOf(t, hc, appID, "cutover"); l.State != "LAUNCHED" {
		t.Errorf("the cutover after the test's termination: %s", l.State)
	}

	cs, err := cl.GenerateChangeSetWithContext(ctx, &sms.GenerateChangeSetInput{AppId: aws.String(appID)})
	if err != nil || cs.S3Location == nil || aws.StringValue(cs.S3Location.Key) == "" {
		t.Errorf("change set of an unchanged app: %v %v", err, cs)
	}
	if _, err := cl.TerminateAppWithContext(ctx, &sms.TerminateAppInput{AppId: aws.String(appID)}); err != nil {
		t.Fatal(err)
	}
	waitApp(t, cl, appID, "terminated", func(s *sms.AppSummary) bool { return aws.StringValue(s.LaunchStatus) == "TERMINATED" })
	if _, err := cl.DeleteAppWithContext(ctx, &sms.DeleteAppInput{AppId: aws.String(appID)}); err != nil {
		t.Fatal(err)
	}
	if apps, err := cl.ListAppsWithContext(ctx, &sms.ListAppsInput{}); err != nil || len(apps.Apps) != 0 {
		t.Errorf("apps after delete: %v %v", err, apps)
	}
	time.Sleep(500 * time.Millisecond)
	if left := liveLeftovers(c); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

func ptr[T any](v T) *T { return &v }

// A server whose AMI's boot disk holds no operating system (replicated with
// ImportSnapshot, which takes any disk) fails its launch: its boot check
// says failed to boot, with the console's last lines, and the stack rolls
// back.
func TestAppServerThatDoesNotBoot(t *testing.T) {
	vms := []vspheresim.VMSpec{{Name: "data-01", CPUs: 1, MemoryMiB: 1024, Disks: []vspheresim.DiskSpec{{CapacityBytes: 16 << 20,
		Seed: func(w io.WriterAt) error { return vspheresim.PseudoRandom(w, 7, 1<<20, 1<<20) }}}}}
	c := apitest.Start(t, apitest.Options{VMs: vms, ImportMode: "snapshot"})
	ctx := context.Background()
	cl := smsClient(t, c, c.Key.ID, c.Key.Secret)
	hc := rehostClient(t, c)
	if _, err := cl.ImportServerCatalogWithContext(ctx, &sms.ImportServerCatalogInput{}); err != nil {
		t.Fatal(err)
	}
	servers, err := cl.GetServersWithContext(ctx, &sms.GetServersInput{})
	if err != nil || len(servers.ServerList) != 1 {
		t.Fatal(err, servers)
	}
	created, err := cl.CreateAppWithContext(ctx, &sms.CreateAppInput{Name: aws.String("archive"),
		ServerGroups: []*sms.ServerGroup{{Name: aws.String("all"), ServerList: servers.ServerList}}})
	if err != nil {
		t.Fatal(err)
	}
	appID := aws.StringValue(created.AppSummary.AppId)
	if _, err := cl.PutAppReplicationConfigurationWithContext(ctx, &sms.PutAppReplicationConfigurationInput{AppId: aws.String(appID),
		ServerGroupReplicationConfigurations: []*sms.ServerGroupReplicationConfiguration{{ServerReplicationConfigurations: []*sms.ServerReplicationConfiguration{
			{Server: servers.ServerList[0], ServerReplicationParameters: &sms.ServerReplicationParameters{SeedTime: aws.Time(time.Now().Add(time.Hour)), Frequency: aws.Int64(24)}}}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.StartAppReplicationWithContext(ctx, &sms.StartAppReplicationInput{AppId: aws.String(appID)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.StartOnDemandAppReplicationWithContext(ctx, &sms.StartOnDemandAppReplicationInput{AppId: aws.String(appID)}); err != nil {
		t.Fatal(err)
	}
	waitApp(t, cl, appID, "replicated", func(s *sms.AppSummary) bool { return aws.StringValue(s.ReplicationStatus) == "REPLICATED" })
	if _, err := hc.PutAppLaunchConfiguration(ctx, &api.PutAppLaunchConfigurationInput{AppID: appID}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.LaunchAppWithContext(ctx, &sms.LaunchAppInput{AppId: aws.String(appID)}); err != nil {
		t.Fatal(err)
	}
	sum := waitApp(t, cl, appID, "a settled launch", func(s *sms.AppSummary) bool {
		return aws.StringValue(s.LaunchStatus) == "LAUNCHED" || aws.StringValue(s.LaunchStatus) == "LAUNCH_FAILED"
	})
	if aws.StringValue(sum.LaunchStatus) != "LAUNCH_FAILED" || !strings.Contains(aws.StringValue(sum.LaunchStatusMessage), "data-01") ||
		!strings.Contains(aws.StringValue(sum.LaunchStatusMessage), "failed to boot") {
		t.Fatalf("launch of a server without an OS: %s: %s", aws.StringValue(sum.LaunchStatus), aws.StringValue(sum.LaunchStatusMessage))
	}
	l := launchOf(t, hc, appID, "cutover")
	if s := l.Servers[0]; s.Boot != "failed to boot" || !strings.Contains(strings.Join(s.Console, "\n"), "No bootable device.") {
		t.Errorf("boot check: %+v", s)
	}
	if _, err := cl.TerminateAppWithContext(ctx, &sms.TerminateAppInput{AppId: aws.String(appID)}); err != nil {
		t.Fatal(err)
	}
	waitLaunch(t, hc, appID, "cutover", func(l api.AppLaunch) bool { return l.State == "TERMINATED" })
	time.Sleep(500 * time.Millisecond)
	if left := liveLeftovers(c); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
