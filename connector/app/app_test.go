package app

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

func wantInvalid(t *testing.T, err error, mentions ...string) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v, want ErrInvalid", err)
	}
	for _, m := range mentions {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}

// Three groups: a after c, b after a (order), c after b (explicit) — a
// cycle, named group by group.
func TestLaunchOrderCycle(t *testing.T) {
	a := store.App{Name: "loop", Groups: []store.ServerGroup{{GroupID: "g-a", Name: "a"}, {GroupID: "g-b", Name: "b"}, {GroupID: "g-c", Name: "c"}},
		Launch: &store.LaunchConfig{Groups: []store.GroupLaunch{
			{GroupID: "g-a", LaunchOrder: 1, After: []string{"g-c"}},
			{GroupID: "g-b", LaunchOrder: 2},
			{GroupID: "g-c", LaunchOrder: 3},
		}}}
	_, err := LaunchOrder(a)
	wantInvalid(t, err, "cycle", `"a"`, `"b"`, `"c"`)
	a.Launch.Groups[0].After = nil
	waits, err := LaunchOrder(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(waits["g-a"]) != 0 || len(waits["g-b"]) != 1 || waits["g-b"][0] != "g-a" || waits["g-c"][0] != "g-b" {
		t.Errorf("waits %v: each group waits for the one of the next lower order", waits)
	}
	// Two groups of one order start together, after the same ones.
	a.Launch.Groups[1].LaunchOrder = 3
	waits, _ = LaunchOrder(a)
	if len(waits["g-b"]) != 1 || waits["g-b"][0] != "g-a" || len(waits["g-c"]) != 1 || waits["g-c"][0] != "g-a" {
		t.Errorf("waits %v", waits)
	}
}

func TestCheckLaunchConfig(t *testing.T) {
	names := map[string]string{"s-1": "db-01", "s-2": "web-01"}
	base := func() store.App {
		return store.App{Name: "shop", Groups: []store.ServerGroup{{GroupID: "g1", Name: "data", ServerIDs: []string{"s-1"}}, {GroupID: "g2", Name: "front", ServerIDs: []string{"s-2"}}},
			Launch: &store.LaunchConfig{Groups: []store.GroupLaunch{
				{GroupID: "g1", LaunchOrder: 1, Servers: []store.ServerLaunch{{ServerID: "s-1", InstanceType: "r5.large"}}},
				{GroupID: "g2", LaunchOrder: 2, Servers: []store.ServerLaunch{{ServerID: "s-2", InstanceType: "t3.small"}}},
			}}}
	}
	if err := CheckLaunchConfig(base(), names); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		change   func(*store.App)
		mentions []string
	}{
		{"no configuration", func(a *store.App) { a.Launch = nil }, []string{"no launch configuration"}},
		{"server in the wrong group", func(a *store.App) {
			a.Launch.Groups[0].Servers, a.Launch.Groups[1].Servers = a.Launch.Groups[1].Servers, a.Launch.Groups[0].Servers
		}, []string{"web-01", `"data"`, `"front"`}},
		{"unknown group", func(a *store.App) { a.Launch.Groups[1].GroupID = "g9" }, []string{"g9"}},
		{"server left out", func(a *store.App) { a.Launch.Groups[1].Servers = nil }, []string{"web-01"}},
		{"no instance type", func(a *store.App) { a.Launch.Groups[1].Servers[0].InstanceType = "" }, []string{"web-01", "instance type"}},
		{"bad logical id", func(a *store.App) { a.Launch.Groups[1].Servers[0].LogicalID = "web-01" }, []string{`"web-01"`, "letters and digits"}},
		{"shared logical id", func(a *store.App) {
			a.Launch.Groups[0].Servers[0].LogicalID, a.Launch.Groups[1].Servers[0].LogicalID = "Box", "Box"
		}, []string{"db-01", "web-01", `"Box"`}},
		{"unknown script type", func(a *store.App) { a.Launch.Groups[1].Servers[0].ConfigureScriptType = "BATCH" }, []string{"BATCH"}},
		{"cycle", func(a *store.App) { a.Launch.Groups[0].After = []string{"g2"} }, []string{"cycle", `"data"`, `"front"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := base()
			c.change(&a)
			wantInvalid(t, CheckLaunchConfig(a, names), c.mentions...)
		})
	}
	empty := base()
	empty.Groups = append(empty.Groups, store.ServerGroup{GroupID: "g3", Name: "spare", ServerIDs: []string{}})
	wantInvalid(t, CheckGroups(empty), `"spare"`, "no servers")
}

// Configure completes a partial configuration and suggests instance types;
// what it names must be the app's.
func TestConfigure(t *testing.T) {
	servers := map[string]store.Server{"s-1": {ServerID: "s-1", Name: "db-01", CPUs: 2, MemoryMiB: 16384}, "s-2": {ServerID: "s-2", Name: "web-01", CPUs: 1, MemoryMiB: 1024}}
	a := store.App{Name: "shop", Groups: []store.ServerGroup{{GroupID: "g1", Name: "data", ServerIDs: []string{"s-1"}}, {GroupID: "g2", Name: "front", ServerIDs: []string{"s-2"}}}}
	lc, err := Configure(a, &store.LaunchConfig{Groups: []store.GroupLaunch{{GroupID: "g2", LaunchOrder: 5, Servers: []store.ServerLaunch{{ServerID: "s-2", Subnet: "subnet-1"}}}}}, servers)
	if err != nil {
		t.Fatal(err)
	}
	if len(lc.Groups) != 2 || lc.Groups[0].GroupID != "g1" || lc.Groups[0].LaunchOrder != 1 || lc.Groups[1].LaunchOrder != 5 ||
		lc.Groups[0].Servers[0].InstanceType != "r5.large" || lc.Groups[1].Servers[0].InstanceType != "t3.micro" || lc.Groups[1].Servers[0].Subnet != "subnet-1" {
		t.Errorf("completed configuration %+v", lc)
	}
	_, err = Configure(a, &store.LaunchConfig{Groups: []store.GroupLaunch{{GroupID: "g1", Servers: []store.ServerLaunch{{ServerID: "s-9"}}}}}, servers)
	wantInvalid(t, err, "s-9")
}

func TestCheckBoot(t *testing.T) {
	running := awstarget.InstanceStatus{State: "running", System: "ok", Instance: "ok"}
	for _, c := range []struct {
		name, console string
		st            awstarget.InstanceStatus
		want, detail  string
	}{
		{"linux login prompt", "[  OK  ] Reached target Multi-User System.\r\n\r\nUbuntu 22.04.4 LTS ip-10-0-1-5 ttyS0\r\n\r\nip-10-0-1-5 login: \r\n", running, Booted, "ip-10-0-1-5 login:"},
		{"cloud-init finished", "cloud-init[612]: Cloud-init v. 23.4.4 finished at Thu, 01 Jan 2026 00:00:11 +0000. Datasource DataSourceEc2Local.\n", running, Booted, "Cloud-init v. 23.4.4 finished"},
		{"windows ready", "2026/01/01 00:00:20Z: EC2Launch: Message: Windows is Ready to use\r\n", running, Booted, "Windows is Ready to use"},
		{"no bootable device", "SeaBIOS (version 1.11.0-2.amzn2)\r\nBooting from Hard Disk...\r\nBoot failed: not a bootable disk\r\n\r\nNo bootable device.\r\n", running, FailedToBoot, "Boot failed: not a bootable disk"},
		{"kernel panic", "[    3.1] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n", running, FailedToBoot, "Kernel panic"},
		{"emergency mode", "You are in emergency mode. After logging in, type \"journalctl -xb\"\n", running, FailedToBoot, "emergency mode"},
		{"nothing yet", "", awstarget.InstanceStatus{State: "pending"}, NoOutputYet, "pending"},
		{"under way", "SeaBIOS (version 1.11.0-2.amzn2)\r\nBooting from Hard Disk...\r\n", running, Booting, ""},
		{"impaired without a boot", "SeaBIOS (version 1.11.0-2.amzn2)\r\n", awstarget.InstanceStatus{State: "running", Instance: "impaired"}, FailedToBoot, "reachability"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := CheckBoot(c.console, c.st)
			if v.State != c.want || !strings.Contains(v.Detail, c.detail) {
				t.Errorf("verdict %+v, want %s with %q", v, c.want, c.detail)
			}
			if c.console != "" && (len(v.Tail) == 0 || strings.Contains(strings.Join(v.Tail, "\n"), "\r")) {
				t.Errorf("console tail %q", v.Tail)
			}
		})
	}
	long := strings.Repeat("line\n", 40) + "No bootable device.\n"
	if v := CheckBoot(long, running); len(v.Tail) != TailLines || v.Tail[TailLines-1] != "No bootable device." {
		t.Errorf("tail of a long console: %q", v.Tail)
	}
}

func TestParseRightsizing(t *testing.T) {
	for _, c := range []struct{ name, csv, mentions string }{
		{"empty", "", "empty"},
		{"no server column", "instance type\nm5.large\n", "no server column"},
		{"unknown column", "server,cores\nweb,2\n", `"cores"`},
		{"bad instance type", "server,instance type\nweb,m5large\n", `row 2, column instance type: "m5large"`},
		{"bad subnet", "server,subnet\nweb,net-1\n", `row 2, column subnet: "net-1"`},
		{"bad security group", "server,security groups\nweb,sg-0123456789abcdef0;default\n", `row 2, column security groups: "default"`},
		{"bad volume type", "server,volume type\nweb,gp9\n", `row 2, column volume type: "gp9"`},
		{"bad tag", "server,tags\nweb,tier\n", `row 2, column tags: "tier"`},
		{"empty server", "server,instance type\n,m5.large\n", "row 2, column server"},
		{"no rows", "server\n", "no row"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRightsizing(strings.NewReader(c.csv))
			wantInvalid(t, err, c.mentions)
		})
	}
	rows, err := ParseRightsizing(strings.NewReader("\ufeffServer Name,INSTANCE_TYPE,Security Groups,Tags\nweb-01,m5.large, sg-0123456789abcdef0 ; sg-0123456789abcdef1 ,tier=web; owner = ops\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := rows[0]; r.Server != "web-01" || r.InstanceType != "m5.large" || len(r.SecurityGroups) != 2 || len(r.Tags) != 2 || r.Tags[1] != (store.Tag{Key: "owner", Value: "ops"}) {
		t.Errorf("row %+v", r)
	}
}

// Rightsizing applies all rows or none: a row naming a server the app does
// not have, or a type the region does not offer, changes nothing.
func TestRightsize(t *testing.T) {
	servers := map[string]store.Server{"s-1": {ServerID: "s-1", Name: "db-01", CPUs: 2, MemoryMiB: 4096}, "s-2": {ServerID: "s-2", Name: "web-01", CPUs: 2, MemoryMiB: 2048}}
	a := store.App{Name: "shop", Groups: []store.ServerGroup{{GroupID: "g1", ServerIDs: []string{"s-1", "s-2"}}}}
	ctx := context.Background()
	rows, _ := ParseRightsizing(strings.NewReader("server,instance type,subnet\ndb-01,r5.large,subnet-0123456789abcdef0\nmail-01,t3.small,\n"))
	_, _, err := Rightsize(ctx, a, servers, rows, nil)
	wantInvalid(t, err, `row 3, column server: "mail-01"`)
	rows, _ = ParseRightsizing(strings.NewReader("server,instance type\ndb-01,r5.large\ns-1,m5.large\n"))
	_, _, err = Rightsize(ctx, a, servers, rows, nil)
	wantInvalid(t, err, "row 3", "row 2")
	rows, _ = ParseRightsizing(strings.NewReader("server,instance type\ndb-01,m9.huge\nweb-01,t3.small\n"))
	unknown := func(_ context.Context, types []string) ([]string, error) {
		var out []string
		for _, t := range types {
			if t == "m9.huge" {
				out = append(out, t)
			}
		}
		return out, nil
	}
	_, _, err = Rightsize(ctx, a, servers, rows, unknown)
	wantInvalid(t, err, `row 2, column instance type: "m9.huge"`)
	rows, _ = ParseRightsizing(strings.NewReader("server,instance type,volume type\ndb-01,r5.large,io2\n"))
	lc, report, err := Rightsize(ctx, a, servers, rows, unknown)
	if err != nil {
		t.Fatal(err)
	}
	db, web := lc.Groups[0].Servers[0], lc.Groups[0].Servers[1]
	if db.InstanceType != "r5.large" || db.VolumeType != "io2" || web.InstanceType != "t3.small" {
		t.Errorf("configuration %+v", lc.Groups[0].Servers)
	}
	if len(report) != 2 || report[0].Row != 2 || report[0].Suggested || !report[1].Suggested || report[1].Row != 0 {
		t.Errorf("report %+v", report)
	}
	if a.Launch != nil {
		t.Error("Rightsize changed the app it was given")
	}
}
