package app

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/rehost/rehost/internal/lab/emulator"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
	"github.com/rehost/rehost/testdata"
)

// The launcher against the AWS emulator: real CloudFormation and EC2 calls
// through the SDK, AMIs whose boot volumes are real guest disks.

var (
	disksOnce sync.Once
	disks     map[string][]byte
	disksErr  error
)

// guestDisks builds the boot disks once per test binary: Rocky Linux
// (BIOS), Windows (EFI, NTFS) and a disk without an operating system.
func guestDisks(t *testing.T) map[string][]byte {
	t.Helper()
	disksOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rehost-app-disks-")
		if err != nil {
			disksErr = err
			return
		}
		defer os.RemoveAll(dir)
		disks = map[string][]byte{"blank": make([]byte, 8<<20)}
		copy(disks["blank"][1<<20:], "data, no partition table and no operating system")
		for name, o := range map[string]guestdisk.Options{
			"linux": {Size: 32 << 20, OSRelease: testdata.OSRelease("rocky-8.9"), Seed: 3,
				Files: map[string][]byte{"/usr/bin/amazon-ssm-agent": []byte("#!/bin/sh\n")}},
			"windows": {Size: 48 << 20, Firmware: guestdisk.EFI, Windows: true, Seed: 2},
		} {
			p := filepath.Join(dir, name+".raw")
			if _, err := guestdisk.Build(context.Background(), p, o); err != nil {
				disksErr = err
				return
			}
			if disks[name], err = os.ReadFile(p); err != nil {
				disksErr = err
				return
			}
		}
	})
	if disksErr != nil {
		t.Fatalf("build guest disks: %v", disksErr)
	}
	return disks
}

type lab struct {
	t      *testing.T
	em     *emulator.Emulator
	st     *store.SQLite
	target *awstarget.Target
	ec2    *ec2.Client
	l      *Launcher
	src    store.Source
	// The networks: prod and test VPCs, a third VPC's subnet.
	prodVPC, prodSubnet, testSubnet, otherSubnet string
	dbSG, webSG, testSG, otherSG                 string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	ctx := context.Background()
	em, err := emulator.New(emulator.Config{DataDir: t.TempDir(), InstanceBootTime: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	url, err := em.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { em.Close() })
	ak, sk := em.Credentials()
	target, err := awstarget.New(ctx, awstarget.Config{Region: em.Region(), AccessKeyID: ak, SecretAccessKey: sk, RetryAttempts: 2, RetryBaseDelay: 10 * time.Millisecond,
		Endpoints: awstarget.Endpoints{EC2: url, CloudFormation: url, SSM: url, IAM: url, STS: url}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "rehost.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := aws.Config{Region: em.Region(), Credentials: credentials.NewStaticCredentialsProvider(ak, sk, "")}
	lb := &lab{t: t, em: em, st: st, target: target, ec2: ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = aws.String(url) })}
	lb.l = &Launcher{Store: st, Cloud: func(context.Context) (Cloud, error) { return target, nil }, Poll: 50 * time.Millisecond, BootTimeout: 30,
		AgentGrace: 500 * time.Millisecond}
	if lb.src, err = st.CreateSource(ctx, store.Source{Kind: store.SourceVSphere, Name: "vc", Endpoint: "https://vc.example"}); err != nil {
		t.Fatal(err)
	}
	lb.prodVPC, lb.prodSubnet, lb.dbSG, lb.webSG = lb.network("10.20.0.0/16", "10.20.1.0/24", "db", "web")
	_, lb.testSubnet, lb.testSG, _ = lb.network("10.30.0.0/16", "10.30.1.0/24", "test", "")
	_, lb.otherSubnet, lb.otherSG, _ = lb.network("10.40.0.0/16", "10.40.1.0/24", "other", "")
	return lb
}

// network makes a VPC, a subnet and up to two security groups.
func (lb *lab) network(vpcCIDR, subnetCIDR, sg1, sg2 string) (vpc, subnet, g1, g2 string) {
	ctx := context.Background()
	v, err := lb.ec2.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String(vpcCIDR)})
	if err != nil {
		lb.t.Fatal(err)
	}
	vpc = aws.ToString(v.Vpc.VpcId)
	s, err := lb.ec2.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: aws.String(vpc), CidrBlock: aws.String(subnetCIDR)})
	if err != nil {
		lb.t.Fatal(err)
	}
	for _, x := range []struct {
		name string
		id   *string
	}{{sg1, &g1}, {sg2, &g2}} {
		if x.name == "" {
			continue
		}
		g, err := lb.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String(x.name), Description: aws.String(x.name), VpcId: aws.String(vpc)})
		if err != nil {
			lb.t.Fatal(err)
		}
		*x.id = aws.ToString(g.GroupId)
	}
	return vpc, aws.ToString(s.Subnet.SubnetId), g1, g2
}

// server catalogues a VM whose job's latest AMI holds disk (pending for
// pendingFor); disk "" gives it a job without an AMI.
func (lb *lab) server(name, disk string, pendingFor time.Duration) store.Server {
	lb.t.Helper()
	ctx := context.Background()
	s, err := lb.st.UpsertServer(ctx, store.Server{SourceID: lb.src.ID, VMID: "vm-" + name, Name: name, CPUs: 2, MemoryMiB: 4096})
	if err != nil {
		lb.t.Fatal(err)
	}
	j, err := lb.st.CreateJob(ctx, store.ReplicationJob{ServerID: s.ServerID, SeedReplicationTime: time.Now(), Frequency: 12})
	if err != nil {
		lb.t.Fatal(err)
	}
	if disk != "" {
		ami, err := lb.em.SeedImage(name+"-"+j.ReplicationJobID, guestDisks(lb.t)[disk], pendingFor)
		if err != nil {
			lb.t.Fatal(err)
		}
		if _, err := lb.st.UpdateJob(ctx, j.ReplicationJobID, func(j *store.ReplicationJob) error { j.LatestAmiID = ami; return nil }); err != nil {
			lb.t.Fatal(err)
		}
	}
	return s
}

// shop makes the three-tier app: db in "data", app and web in "front".
func (lb *lab) shop(name string, db, app, web store.Server) store.App {
	lb.t.Helper()
	ctx := context.Background()
	a, err := lb.st.CreateApp(ctx, store.App{Name: name, Groups: []store.ServerGroup{
		{Name: "data", ServerIDs: []string{db.ServerID}}, {Name: "front", ServerIDs: []string{app.ServerID, web.ServerID}}}})
	if err != nil {
		lb.t.Fatal(err)
	}
	servers := map[string]store.Server{db.ServerID: db, app.ServerID: app, web.ServerID: web}
	lc, err := Configure(a, &store.LaunchConfig{
		Test: &store.TestLaunchConfig{Subnet: lb.testSubnet, SecurityGroups: []string{lb.testSG}, NameSuffix: "-test"},
		Groups: []store.GroupLaunch{
			{GroupID: a.Groups[0].GroupID, LaunchOrder: 1, Servers: []store.ServerLaunch{{ServerID: db.ServerID, InstanceType: "r5.large",
				VPC: lb.prodVPC, Subnet: lb.prodSubnet, SecurityGroups: []string{lb.dbSG}, PrivateIP: "10.20.1.10",
				ValidationCommand: "grep -q 'Rocky Linux' /etc/os-release && test -d /etc"}}},
			{GroupID: a.Groups[1].GroupID, LaunchOrder: 2, Servers: []store.ServerLaunch{
				{ServerID: app.ServerID, InstanceType: "t3.xlarge", Subnet: lb.prodSubnet, SecurityGroups: []string{lb.webSG},
					ValidationCommand: "test -d /etc"},
				{ServerID: web.ServerID, InstanceType: "t3.small", Subnet: lb.prodSubnet, SecurityGroups: []string{lb.webSG}, VolumeType: "gp3"}}},
		}}, servers)
	if err != nil {
		lb.t.Fatal(err)
	}
	if a, err = lb.st.UpdateApp(ctx, a.AppID, func(x *store.App) error { x.Launch = lc; return nil }); err != nil {
		lb.t.Fatal(err)
	}
	return a
}

// settle runs the watcher until the app's launch of kind is in a state
// not in progress.
func (lb *lab) settle(appID string, kind store.LaunchKind) store.Launch {
	lb.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := lb.l.Reconcile(ctx); err != nil {
			lb.t.Logf("reconcile: %v", err)
		}
		ls, err := lb.st.ListLaunches(ctx, appID)
		if err != nil {
			lb.t.Fatal(err)
		}
		for _, l := range ls {
			if l.Kind == kind && !l.State.InProgress() && (l.State != store.LaunchLaunched || settled(l.Servers)) {
				return l
			}
			if l.Kind == kind {
				break
			}
		}
		if time.Now().After(deadline) {
			lb.t.Fatalf("the %s launch of %s did not settle: %+v", kind, appID, ls)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (lb *lab) stack(id string) emulator.Stack {
	for _, s := range lb.em.Stacks() {
		if s.ID == id {
			return s
		}
	}
	lb.t.Fatalf("no stack %s in the emulator", id)
	return emulator.Stack{}
}

func eventAt(s emulator.Stack, logical, status string) int {
	for i, e := range s.Events {
		if e.LogicalID == logical && e.Status == status {
			return i
		}
	}
	return -1
}

// instancesOf lists the emulator's instances tagged with a launch.
func (lb *lab) instancesOf(launchID string) []emulator.Instance {
	var out []emulator.Instance
	for _, in := range lb.em.Instances() {
		for _, tg := range in.Tags {
			if tg.Key == TagLaunch && tg.Value == launchID {
				out = append(out, in)
			}
		}
	}
	return out
}

func tag(in emulator.Instance, key string) string {
	for _, t := range in.Tags {
		if t.Key == key {
			return t.Value
		}
	}
	return ""
}

// An app of three servers in two groups launches in order from its
// template: the data group's wait condition completes (signalled by the
// boot check) before the front group's instances start, and every server
// reports booted. A test launch into the test subnet coexists with the
// cutover, and each terminates without touching the other.
func TestLaunchInOrderTestAndCutover(t *testing.T) {
	lb := newLab(t)
	ctx := context.Background()
	db, app, web := lb.server("db-01", "linux", 0), lb.server("app-01", "windows", 0), lb.server("web-01", "linux", 0)
	a := lb.shop("shop", db, app, web)

	cut, err := lb.l.Launch(ctx, a.AppID, store.LaunchCutover)
	if err != nil {
		t.Fatal(err)
	}
	if cut.State != store.LaunchCreating || cut.StackID == "" || !strings.HasPrefix(cut.StackName, "rehost-shop-cutover-") {
		t.Fatalf("launch %+v", cut)
	}
	cut = lb.settle(a.AppID, store.LaunchCutover)
	if cut.State != store.LaunchLaunched {
		t.Fatalf("cutover %s: %s", cut.State, cut.StatusMessage)
	}
	for _, s := range cut.Servers {
		if s.Boot != Booted || s.InstanceID == "" || s.PrivateIP == "" || !s.Signalled {
			t.Errorf("server %s: %+v", s.Name, s)
		}
		if s.Name == "app-01" && !strings.Contains(s.BootDetail, "Windows is Ready to use") || s.Name != "app-01" && !strings.Contains(s.BootDetail, "Cloud-init v. 23.4.4 finished") {
			t.Errorf("server %s booted on %q", s.Name, s.BootDetail)
		}
	}
	if v := cut.Servers[0].Validation; v == nil || v.Status != ValidationPassed || v.ExitCode != 0 {
		t.Errorf("db-01's validation: %+v", v)
	}
	if v := cut.Servers[1].Validation; v == nil || v.Status != ValidationNotRun || !strings.Contains(v.Output, "not managed by SSM") {
		t.Errorf("app-01 (no SSM agent) validation: %+v", v)
	}
	stack := lb.stack(cut.StackID)
	ready := eventAt(stack, "GroupDataReady", "CREATE_COMPLETE")
	for _, front := range []string{"App01", "Web01"} {
		if i := eventAt(stack, front, "CREATE_IN_PROGRESS"); ready < 0 || i < ready {
			t.Errorf("%s started (event %d) before the data group was ready (event %d)", front, i, ready)
		}
	}
	ins := lb.instancesOf(cut.LaunchID)
	if len(ins) != 3 {
		t.Fatalf("%d instances of the cutover", len(ins))
	}
	for _, in := range ins {
		if in.SubnetID != lb.prodSubnet || in.State != "running" || strings.HasSuffix(tag(in, "Name"), "-test") {
			t.Errorf("cutover instance %s: subnet %s state %s name %s", in.ID, in.SubnetID, in.State, tag(in, "Name"))
		}
		if tag(in, "Name") == "db-01" && in.PrivateIP != "10.20.1.10" {
			t.Errorf("db-01 has %s", in.PrivateIP)
		}
		if tag(in, "Name") == "web-01" && in.Volumes[0].VolumeType != "gp3" {
			t.Errorf("web-01's volume is %s", in.Volumes[0].VolumeType)
		}
	}

	test, err := lb.l.Launch(ctx, a.AppID, store.LaunchTest)
	if err != nil {
		t.Fatal(err)
	}
	test = lb.settle(a.AppID, store.LaunchTest)
	if test.State != store.LaunchLaunched || test.StackID == cut.StackID {
		t.Fatalf("test launch %s (%s) beside stack %s", test.State, test.StatusMessage, cut.StackID)
	}
	testIns := lb.instancesOf(test.LaunchID)
	for _, in := range testIns {
		if in.SubnetID != lb.testSubnet || !strings.HasSuffix(tag(in, "Name"), "-test") || in.SecurityGroups[0] != lb.testSG {
			t.Errorf("test instance %s: subnet %s name %s groups %v", in.ID, in.SubnetID, tag(in, "Name"), in.SecurityGroups)
		}
	}
	if _, err := lb.l.Launch(ctx, a.AppID, store.LaunchTest); err != nil {
		t.Errorf("a second launch of a launched test is a delta launch: %v", err)
	}
	if l := lb.settle(a.AppID, store.LaunchTest); l.State != store.LaunchLaunched || l.StatusMessage != "nothing changed since the last launch" {
		t.Errorf("delta launch without changes: %s %q", l.State, l.StatusMessage)
	}

	if _, err := lb.l.Terminate(ctx, a.AppID, store.LaunchTest); err != nil {
		t.Fatal(err)
	}
	if test = lb.settle(a.AppID, store.LaunchTest); test.State != store.LaunchTerminated {
		t.Fatalf("test launch after terminate: %s %s", test.State, test.StatusMessage)
	}
	time.Sleep(200 * time.Millisecond)
	for _, in := range lb.instancesOf(test.LaunchID) {
		if in.State != "terminated" {
			t.Errorf("test instance %s is %s", in.ID, in.State)
		}
	}
	for _, in := range lb.instancesOf(cut.LaunchID) {
		if in.State != "running" {
			t.Errorf("terminating the test touched cutover instance %s: %s", in.ID, in.State)
		}
	}
	if s := lb.stack(cut.StackID); s.Status != "CREATE_COMPLETE" {
		t.Errorf("cutover stack %s after the test's termination", s.Status)
	}

	// A delta launch replaces the server whose type changed.
	if _, err := lb.st.UpdateApp(ctx, a.AppID, func(x *store.App) error {
		x.Launch.Groups[1].Servers[1].InstanceType = "m5.large"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	oldWeb := cut.Servers[2].InstanceID
	if _, err := lb.l.Launch(ctx, a.AppID, store.LaunchCutover); err != nil {
		t.Fatal(err)
	}
	cut = lb.settle(a.AppID, store.LaunchCutover)
	if cut.State != store.LaunchLaunched || cut.Servers[2].InstanceID == oldWeb || cut.Servers[2].Boot != Booted || cut.Servers[0].InstanceID != ins[0].ID && cut.Servers[0].InstanceID == "" {
		t.Errorf("after the delta launch: %+v", cut)
	}

	if _, err := lb.l.Terminate(ctx, a.AppID, store.LaunchCutover); err != nil {
		t.Fatal(err)
	}
	if cut = lb.settle(a.AppID, store.LaunchCutover); cut.State != store.LaunchTerminated {
		t.Fatalf("cutover after terminate: %s", cut.State)
	}
	lb.noLeftovers()
	if err := lb.st.DeleteApp(ctx, a.AppID); err != nil {
		t.Errorf("delete the app once terminated: %v", err)
	}
}

// noLeftovers checks that every stack is deleted and every instance
// terminated.
func (lb *lab) noLeftovers() {
	lb.t.Helper()
	time.Sleep(200 * time.Millisecond)
	for _, s := range lb.em.Stacks() {
		if s.Status != "DELETE_COMPLETE" {
			lb.t.Errorf("stack %s is %s", s.Name, s.Status)
		}
	}
	for _, in := range lb.em.Instances() {
		if in.State != "terminated" {
			lb.t.Errorf("instance %s (%s) is %s", in.ID, tag(in, "Name"), in.State)
		}
	}
}

// A server whose AMI's boot disk holds no operating system fails to boot:
// its verdict carries the console's last lines, its group's wait condition
// is signalled the failure, and the stack rolls back.
func TestLaunchOfAServerThatDoesNotBoot(t *testing.T) {
	lb := newLab(t)
	ctx := context.Background()
	db, app, web := lb.server("db-01", "blank", 0), lb.server("app-01", "windows", 0), lb.server("web-01", "linux", 0)
	a := lb.shop("broken", db, app, web)
	if _, err := lb.l.Launch(ctx, a.AppID, store.LaunchCutover); err != nil {
		t.Fatal(err)
	}
	l := lb.settle(a.AppID, store.LaunchCutover)
	if l.State != store.LaunchFailed || !strings.Contains(l.StatusMessage, "db-01") || !strings.Contains(l.StatusMessage, "failed to boot") {
		t.Fatalf("launch %s: %q", l.State, l.StatusMessage)
	}
	s := l.Servers[0]
	if s.Boot != FailedToBoot || !strings.Contains(strings.Join(s.Console, "\n"), "No bootable device.") {
		t.Errorf("db-01: %s %q console %q", s.Boot, s.BootDetail, s.Console)
	}
	if l.Servers[1].InstanceID != "" {
		t.Errorf("the front group started although the data group failed: %+v", l.Servers[1])
	}
	st := lb.stack(l.StackID)
	if st.Status != "ROLLBACK_COMPLETE" {
		t.Errorf("stack %s", st.Status)
	}
	if i := eventAt(st, "GroupDataReady", "CREATE_FAILED"); i < 0 || !strings.Contains(st.Events[i].Reason, "db-01 failed to boot") {
		t.Errorf("the wait condition's failure does not carry the verdict: %+v", st.Events)
	}
	if status, _ := LaunchStatus(a, nil, []store.Launch{l}); status != LaunchFailed {
		t.Errorf("launch status %s", status)
	}
	if _, err := lb.l.Launch(ctx, a.AppID, store.LaunchCutover); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "terminate it first") {
		t.Errorf("launching over a failed launch: %v", err)
	}
	if _, err := lb.l.Terminate(ctx, a.AppID, store.LaunchCutover); err != nil {
		t.Fatal(err)
	}
	if l := lb.settle(a.AppID, store.LaunchCutover); l.State != store.LaunchTerminated {
		t.Errorf("after terminate: %s", l.State)
	}
	lb.noLeftovers()
}

// A validation command that fails — run through SSM on the booted server —
// fails the server's group like a failed boot, with the command's exit code
// and output.
func TestLaunchOfAServerThatFailsItsValidation(t *testing.T) {
	lb := newLab(t)
	ctx := context.Background()
	db, app, web := lb.server("db-01", "linux", 0), lb.server("app-01", "windows", 0), lb.server("web-01", "linux", 0)
	a := lb.shop("shop", db, app, web)
	if _, err := lb.st.UpdateApp(ctx, a.AppID, func(x *store.App) error {
		x.Launch.Groups[1].Servers[1].ValidationCommand = "cat /etc/hostname /opt/app/ready"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := lb.l.Launch(ctx, a.AppID, store.LaunchCutover); err != nil {
		t.Fatal(err)
	}
	l := lb.settle(a.AppID, store.LaunchCutover)
	w := l.Servers[2]
	if l.State != store.LaunchFailed || w.Boot != Booted || w.Validation == nil || w.Validation.Status != ValidationFailed || w.Validation.ExitCode != 1 ||
		!strings.Contains(w.Validation.Output, "/opt/app/ready: No such file or directory") {
		t.Fatalf("launch %s (%s); web-01 %+v %+v", l.State, l.StatusMessage, w, w.Validation)
	}
	if !strings.Contains(l.StatusMessage, "web-01 failed its validation") || !strings.Contains(l.StatusMessage, "exited 1") {
		t.Errorf("status message %q", l.StatusMessage)
	}
	if _, err := lb.l.Terminate(ctx, a.AppID, store.LaunchCutover); err != nil {
		t.Fatal(err)
	}
	lb.settle(a.AppID, store.LaunchCutover)
	lb.noLeftovers()
}

// What cannot be launched is refused before anything is made, with an
// error naming the item.
func TestLaunchRefusals(t *testing.T) {
	lb := newLab(t)
	ctx := context.Background()
	db, app, web := lb.server("db-01", "linux", 0), lb.server("app-01", "linux", 0), lb.server("web-01", "linux", 0)
	a := lb.shop("shop", db, app, web)
	pending := lb.server("cache-01", "linux", time.Hour)
	none := lb.server("mail-01", "", 0)
	big := strings.Repeat("#", maxUserData-16)
	for _, c := range []struct {
		name     string
		change   func(*store.App)
		class    error
		mentions []string
	}{
		{"cycle", func(x *store.App) { x.Launch.Groups[0].After = []string{x.Groups[1].GroupID} }, ErrInvalid, []string{"cycle", `"data"`, `"front"`}},
		{"empty group", func(x *store.App) {
			x.Groups = append(x.Groups, store.ServerGroup{GroupID: "group-spare", Name: "spare", ServerIDs: []string{}})
		}, ErrInvalid, []string{`"spare"`, "no servers"}},
		{"AMI not available", func(x *store.App) {
			x.Groups[1].ServerIDs = append(x.Groups[1].ServerIDs, pending.ServerID)
			x.Launch.Groups[1].Servers = append(x.Launch.Groups[1].Servers, store.ServerLaunch{ServerID: pending.ServerID, InstanceType: "t3.small"})
		}, ErrNotReady, []string{"cache-01", "pending"}},
		{"no AMI", func(x *store.App) {
			x.Groups[1].ServerIDs = append(x.Groups[1].ServerIDs, none.ServerID)
			x.Launch.Groups[1].Servers = append(x.Launch.Groups[1].Servers, store.ServerLaunch{ServerID: none.ServerID, InstanceType: "t3.small"})
		}, ErrNotReady, []string{"mail-01", "no AMI"}},
		{"subnet of another VPC", func(x *store.App) { x.Launch.Groups[0].Servers[0].Subnet = lb.otherSubnet }, ErrInvalid, []string{"db-01", lb.otherSubnet, lb.prodVPC}},
		{"security group of another VPC", func(x *store.App) { x.Launch.Groups[1].Servers[0].SecurityGroups = []string{lb.otherSG} }, ErrInvalid, []string{"app-01", lb.otherSG}},
		{"test subnet of another VPC than the test groups", func(x *store.App) { x.Launch.Test.Subnet = lb.otherSubnet }, ErrInvalid, []string{"test launch", lb.testSG}},
		{"unknown instance type", func(x *store.App) { x.Launch.Groups[1].Servers[1].InstanceType = "m9.huge" }, ErrInvalid, []string{"web-01", "m9.huge"}},
		{"address outside the subnet", func(x *store.App) { x.Launch.Groups[0].Servers[0].PrivateIP = "10.99.0.5" }, ErrInvalid, []string{"db-01", "10.99.0.5"}},
		{"template too large", func(x *store.App) {
			for gi := range x.Launch.Groups {
				for si := range x.Launch.Groups[gi].Servers {
					x.Launch.Groups[gi].Servers[si].UserData = big
				}
			}
		}, ErrInvalid, []string{"shop", "over CloudFormation's limit of 51200 bytes"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			saved, err := lb.st.GetApp(ctx, a.AppID)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := lb.st.UpdateApp(ctx, a.AppID, func(x *store.App) error { c.change(x); return nil }); err != nil {
				t.Fatal(err)
			}
			defer lb.st.UpdateApp(ctx, a.AppID, func(x *store.App) error { x.Groups, x.Launch = saved.Groups, saved.Launch; return nil })
			_, err = lb.l.Launch(ctx, a.AppID, store.LaunchCutover)
			if !errors.Is(err, c.class) {
				t.Fatalf("error %v, want %v", err, c.class)
			}
			for _, m := range c.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
	if ls, _ := lb.st.ListLaunches(ctx, a.AppID); len(ls) != 0 {
		t.Errorf("refused launches were recorded: %+v", ls)
	}
	if n := len(lb.em.Stacks()) + len(lb.em.Instances()); n != 0 {
		t.Errorf("refused launches made %d stacks and instances", n)
	}
	// The launch that was never refused still works.
	if _, err := lb.l.Launch(ctx, a.AppID, store.LaunchCutover); err != nil {
		t.Fatal(err)
	}
	if l := lb.settle(a.AppID, store.LaunchCutover); l.State != store.LaunchLaunched {
		t.Errorf("after the refusals: %s %s", l.State, l.StatusMessage)
	}
}

// A connector that dies between recording a launch and creating its stack,
// or between recording a termination and deleting the stack, finishes the
// job when it starts again: the record is the truth, the stack is found by
// its name and token, nothing is made twice.
func TestLaunchResumesFromItsRecord(t *testing.T) {
	lb := newLab(t)
	ctx := context.Background()
	db, app, web := lb.server("db-01", "linux", 0), lb.server("app-01", "linux", 0), lb.server("web-01", "linux", 0)
	a := lb.shop("shop", db, app, web)
	plan, err := Prepare(ctx, lb.st, lb.target, a.AppID)
	if err != nil {
		t.Fatal(err)
	}
	// The intent is recorded; the process dies before CreateStack.
	rec, err := lb.st.CreateLaunch(ctx, store.Launch{AppID: a.AppID, Kind: store.LaunchCutover, StackName: "rehost-shop-cutover-abc123",
		Template: string(plan.Template), Parameters: plan.Parameters(store.LaunchCutover, 30), Servers: plan.Servers})
	if err != nil {
		t.Fatal(err)
	}
	restarted := &Launcher{Store: lb.st, Cloud: lb.l.Cloud, Poll: 50 * time.Millisecond, BootTimeout: 30}
	lb.l = restarted
	l := lb.settle(a.AppID, store.LaunchCutover)
	if l.State != store.LaunchLaunched || l.LaunchID != rec.LaunchID {
		t.Fatalf("resumed launch %s: %s", l.State, l.StatusMessage)
	}
	// The stack was created before the process died, unrecorded: the
	// token finds it.
	test, err := lb.st.CreateLaunch(ctx, store.Launch{AppID: a.AppID, Kind: store.LaunchTest, StackName: "rehost-shop-test-def456",
		Template: string(plan.Template), Parameters: plan.Parameters(store.LaunchTest, 30), Servers: plan.Servers})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lb.target.CreateStack(ctx, awstarget.StackInput{Name: test.StackName, Template: test.Template, Parameters: test.Parameters,
		Tags: stackTags(test), Token: test.LaunchID}); err != nil {
		t.Fatal(err)
	}
	if l := lb.settle(a.AppID, store.LaunchTest); l.State != store.LaunchLaunched {
		t.Fatalf("test launch %s: %s", l.State, l.StatusMessage)
	}
	stacks := 0
	for _, s := range lb.em.Stacks() {
		if s.Name == test.StackName {
			stacks++
		}
	}
	if stacks != 1 {
		t.Errorf("%d stacks named %s", stacks, test.StackName)
	}
	// Terminations recorded but never sent.
	for _, id := range []string{rec.LaunchID, test.LaunchID} {
		if _, err := lb.st.UpdateLaunch(ctx, id, func(x *store.Launch) error {
			x.State, x.StackStatus = store.LaunchTerminating, ""
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, kind := range []store.LaunchKind{store.LaunchCutover, store.LaunchTest} {
		if l := lb.settle(a.AppID, kind); l.State != store.LaunchTerminated {
			t.Errorf("%s after the resumed termination: %s", kind, l.State)
		}
	}
	lb.noLeftovers()
}
