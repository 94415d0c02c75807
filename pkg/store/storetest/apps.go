package storetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

func testApps(t *testing.T, s store.Store) {
	ctx := context.Background()
	src := newSource(t, s, "vc")
	web, db := newServer(t, s, src, "web"), newServer(t, s, src, "db")
	a := ok(s.CreateApp(ctx, store.App{Name: "shop", RoleName: "sms", Tags: []store.Tag{{Key: "env", Value: "prod"}},
		Groups: []store.ServerGroup{{Name: "data", ServerIDs: []string{db.ServerID}}, {Name: "front", ServerIDs: []string{web.ServerID}}}})).must(t)
	if !strings.HasPrefix(a.AppID, "app-") || !strings.HasPrefix(a.Groups[0].GroupID, "group-") || a.Groups[0].GroupID == a.Groups[1].GroupID {
		t.Errorf("ids: app %q, groups %+v", a.AppID, a.Groups)
	}
	got := ok(s.GetApp(ctx, a.AppID)).must(t)
	if len(got.Groups) != 2 || got.Groups[0].ServerIDs[0] != db.ServerID || got.Groups[1].Name != "front" ||
		got.RoleName != "sms" || len(got.Tags) != 1 || got.Tags[0].Value != "prod" || got.Launch != nil || got.Replication != nil {
		t.Errorf("app = %+v", got)
	}
	if srv := got.Servers(); len(srv) != 2 || srv[0] != db.ServerID {
		t.Errorf("servers in group order = %v", srv)
	}
	_, err := s.CreateApp(ctx, store.App{Name: "shop"})
	wantErr(t, err, store.ErrConflict, "shop")
	_, err = s.CreateApp(ctx, store.App{Name: "x", Groups: []store.ServerGroup{{ServerIDs: []string{"s-missing"}}}})
	wantErr(t, err, store.ErrNotFound, "s-missing")
	_, err = s.CreateApp(ctx, store.App{Name: " "})
	wantErr(t, err, store.ErrInvalid, "name")

	// The configurations round-trip as given.
	pub := true
	seed := t0.Add(time.Hour)
	ok(s.UpdateApp(ctx, a.AppID, func(x *store.App) error {
		x.Description = "web last"
		x.Launch = &store.LaunchConfig{RoleName: "sms", Groups: []store.GroupLaunch{
			{GroupID: x.Groups[0].GroupID, LaunchOrder: 1, Servers: []store.ServerLaunch{{ServerID: db.ServerID, LogicalID: "Db",
				InstanceType: "r5.large", Subnet: "subnet-1", SecurityGroups: []string{"sg-1", "sg-2"}, PrivateIP: "10.0.0.5",
				AssociatePublicIP: &pub, UserData: "#!/bin/sh\necho hi\n", VolumeType: "gp3", Tags: []store.Tag{{Key: "tier", Value: "db"}}}}},
			{GroupID: x.Groups[1].GroupID, LaunchOrder: 2, After: []string{x.Groups[0].GroupID}},
		}, Test: &store.TestLaunchConfig{Subnet: "subnet-t", NameSuffix: "-test"}}
		x.Replication = &store.ReplicationConfig{Servers: []store.ServerReplication{{ServerID: db.ServerID, SeedTime: seed, Frequency: 6, LicenseType: "BYOL"}}}
		x.ReplicationStopped = true
		return nil
	})).must(t)
	got = ok(s.GetApp(ctx, a.AppID)).must(t)
	lc := got.Launch
	if got.Description != "web last" || lc == nil || len(lc.Groups) != 2 || lc.Groups[1].After[0] != a.Groups[0].GroupID ||
		lc.Groups[0].Servers[0].SecurityGroups[1] != "sg-2" || *lc.Groups[0].Servers[0].AssociatePublicIP != true ||
		lc.Groups[0].Servers[0].UserData != "#!/bin/sh\necho hi\n" || lc.Test.NameSuffix != "-test" || !got.ReplicationStopped {
		t.Errorf("launch configuration = %+v", got.Launch)
	}
	if r := got.Replication; r == nil || !r.Servers[0].SeedTime.Equal(seed) || r.Servers[0].Frequency != 6 {
		t.Errorf("replication configuration = %+v", got.Replication)
	}
	_, err = s.UpdateApp(ctx, a.AppID, func(x *store.App) error {
		x.Groups = append(x.Groups, store.ServerGroup{GroupID: x.Groups[0].GroupID})
		return nil
	})
	wantErr(t, err, store.ErrInvalid, "listed twice")

	empty := ok(s.CreateApp(ctx, store.App{Name: "empty"})).must(t)
	if l := ok(s.ListApps(ctx)).must(t); len(l) != 2 || l[0].AppID != empty.AppID || l[0].Groups == nil {
		t.Errorf("apps = %+v", l)
	}
	if err := s.DeleteApp(ctx, a.AppID); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.DeleteApp(ctx, a.AppID), store.ErrNotFound)
	_, err = s.AppOfServer(ctx, db.ServerID)
	wantErr(t, err, store.ErrNotFound)
}

// A server is in one group of one app; a server in a group cannot leave the
// catalog.
func testAppMembership(t *testing.T, s store.Store) {
	ctx := context.Background()
	src := newSource(t, s, "vc")
	web, db := newServer(t, s, src, "web"), newServer(t, s, src, "db")
	_, err := s.CreateApp(ctx, store.App{Name: "twice", Groups: []store.ServerGroup{
		{Name: "a", ServerIDs: []string{web.ServerID}}, {Name: "b", ServerIDs: []string{web.ServerID}}}})
	wantErr(t, err, store.ErrInvalid, web.ServerID, `"a"`, `"b"`)
	shop := ok(s.CreateApp(ctx, store.App{Name: "shop", Groups: []store.ServerGroup{{Name: "all", ServerIDs: []string{web.ServerID}}}})).must(t)
	_, err = s.CreateApp(ctx, store.App{Name: "blog", Groups: []store.ServerGroup{{ServerIDs: []string{db.ServerID, web.ServerID}}}})
	wantErr(t, err, store.ErrConflict, web.ServerID, shop.AppID)
	if _, err := s.GetApp(ctx, "app-none"); err == nil {
		t.Error("GetApp of a missing app")
	}
	if n := len(ok(s.ListApps(ctx)).must(t)); n != 1 {
		t.Errorf("a refused app was stored: %d apps", n)
	}
	if a := ok(s.AppOfServer(ctx, web.ServerID)).must(t); a.AppID != shop.AppID {
		t.Errorf("app of web = %s", a.AppID)
	}
	wantErr(t, s.DeleteServer(ctx, web.ServerID), store.ErrConflict, shop.AppID)
	// Moving the server out frees it for another app.
	ok(s.UpdateApp(ctx, shop.AppID, func(a *store.App) error { a.Groups[0].ServerIDs = []string{db.ServerID}; return nil })).must(t)
	blog := ok(s.CreateApp(ctx, store.App{Name: "blog", Groups: []store.ServerGroup{{ServerIDs: []string{web.ServerID}}}})).must(t)
	if a := ok(s.AppOfServer(ctx, web.ServerID)).must(t); a.AppID != blog.AppID {
		t.Errorf("app of web after the move = %s", a.AppID)
	}
	_, err = s.UpdateApp(ctx, shop.AppID, func(a *store.App) error {
		a.Groups[0].ServerIDs = append(a.Groups[0].ServerIDs, web.ServerID)
		return nil
	})
	wantErr(t, err, store.ErrConflict, blog.AppID)
	if a := ok(s.GetApp(ctx, shop.AppID)).must(t); len(a.Groups[0].ServerIDs) != 1 {
		t.Errorf("a refused update was stored: %+v", a.Groups)
	}
}

func testAppLaunches(t *testing.T, s store.Store) {
	ctx := context.Background()
	src := newSource(t, s, "vc")
	web := newServer(t, s, src, "web")
	a := ok(s.CreateApp(ctx, store.App{Name: "shop", Groups: []store.ServerGroup{{ServerIDs: []string{web.ServerID}}}})).must(t)
	cut := ok(s.CreateLaunch(ctx, store.Launch{AppID: a.AppID, Kind: store.LaunchCutover, StackName: "rehost-shop",
		Template: `{"Resources":{}}`, Parameters: map[string]string{"NameSuffix": ""},
		Servers: []store.LaunchedServer{{ServerID: web.ServerID, LogicalID: "Web"}}})).must(t)
	if !strings.HasPrefix(cut.LaunchID, "launch-") || cut.State != store.LaunchPending || !cut.State.InProgress() {
		t.Errorf("launch = %+v", cut)
	}
	_, err := s.CreateLaunch(ctx, store.Launch{AppID: a.AppID, Kind: store.LaunchCutover, StackName: "rehost-shop-2"})
	wantErr(t, err, store.ErrConflict, cut.LaunchID)
	test := ok(s.CreateLaunch(ctx, store.Launch{AppID: a.AppID, Kind: store.LaunchTest, StackName: "rehost-shop-test"})).must(t)
	_, err = s.CreateLaunch(ctx, store.Launch{AppID: a.AppID, Kind: "canary", StackName: "x"})
	wantErr(t, err, store.ErrInvalid, "canary")
	_, err = s.CreateLaunch(ctx, store.Launch{AppID: "app-none", Kind: store.LaunchTest, StackName: "x"})
	wantErr(t, err, store.ErrNotFound)

	ok(s.UpdateLaunch(ctx, cut.LaunchID, func(l *store.Launch) error {
		l.State, l.StackID, l.StackStatus, l.LaunchedAt = store.LaunchLaunched, "arn:aws:cloudformation:x", "CREATE_COMPLETE", t0
		l.Servers[0].InstanceID, l.Servers[0].Boot, l.Servers[0].Console = "i-1", "booted", []string{"web login:"}
		l.AppID, l.Kind = "app-other", store.LaunchTest // cannot change
		return nil
	})).must(t)
	got := ok(s.GetLaunch(ctx, cut.LaunchID)).must(t)
	if got.AppID != a.AppID || got.Kind != store.LaunchCutover || got.StackID == "" || !got.LaunchedAt.Equal(t0) ||
		got.Servers[0].Console[0] != "web login:" || got.Parameters["NameSuffix"] != "" || got.Template != `{"Resources":{}}` || got.State.InProgress() {
		t.Errorf("updated launch = %+v", got)
	}
	live := ok(s.LiveLaunches(ctx)).must(t)
	if len(live) != 2 || live[0].LaunchID != cut.LaunchID || live[1].LaunchID != test.LaunchID {
		t.Errorf("live launches = %+v", live)
	}
	wantErr(t, s.DeleteApp(ctx, a.AppID), store.ErrConflict, "terminate")
	for _, id := range []string{cut.LaunchID, test.LaunchID} {
		ok(s.UpdateLaunch(ctx, id, func(l *store.Launch) error { l.State = store.LaunchTerminated; return nil })).must(t)
	}
	// A terminated launch frees its kind.
	again := ok(s.CreateLaunch(ctx, store.Launch{AppID: a.AppID, Kind: store.LaunchCutover, StackName: "rehost-shop-3"})).must(t)
	if l := ok(s.ListLaunches(ctx, a.AppID)).must(t); len(l) != 3 || l[0].LaunchID != again.LaunchID {
		t.Errorf("launches newest first = %+v", l)
	}
	_, err = s.UpdateLaunch(ctx, cut.LaunchID, func(l *store.Launch) error { l.State = store.LaunchLaunched; return nil })
	wantErr(t, err, store.ErrConflict, again.LaunchID)
	ok(s.UpdateLaunch(ctx, again.LaunchID, func(l *store.Launch) error { l.State = store.LaunchTerminated; return nil })).must(t)
	if err := s.DeleteApp(ctx, a.AppID); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetLaunch(ctx, cut.LaunchID)
	wantErr(t, err, store.ErrNotFound)
}
