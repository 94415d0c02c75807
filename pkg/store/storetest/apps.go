package storetest

import (
	"context"
	"strings"
	"testing"

	"github.com/rehost/rehost/pkg/store"
)

// Apps checks the store.Apps role: applications. open must return a new,
// empty store for each call (fixtures of other roles are made through it);
// the suite closes it.
func Apps(t *testing.T, open func(t *testing.T) store.Store) {
	run(t, open, []testCase{
		{"Apps", testApps},
	})
}

func testApps(t *testing.T, s store.Store) {
	ctx := context.Background()
	src := newSource(t, s, "vc")
	web, db := newServer(t, s, src, "web"), newServer(t, s, src, "db")
	a := ok(s.CreateApp(ctx, store.App{Name: "shop", ServerIDs: []string{db.ServerID, web.ServerID}})).must(t)
	if !strings.HasPrefix(a.AppID, "app-") {
		t.Errorf("app id %q", a.AppID)
	}
	got := ok(s.GetApp(ctx, a.AppID)).must(t)
	if len(got.ServerIDs) != 2 || got.ServerIDs[0] != db.ServerID || got.ServerIDs[1] != web.ServerID {
		t.Errorf("launch order = %v", got.ServerIDs)
	}
	_, err := s.CreateApp(ctx, store.App{Name: "shop"})
	wantErr(t, err, store.ErrConflict, "shop")
	_, err = s.CreateApp(ctx, store.App{Name: "x", ServerIDs: []string{"s-missing"}})
	wantErr(t, err, store.ErrNotFound, "s-missing")
	_, err = s.CreateApp(ctx, store.App{Name: "y", ServerIDs: []string{web.ServerID, web.ServerID}})
	wantErr(t, err, store.ErrInvalid)
	ok(s.UpdateApp(ctx, a.AppID, func(a *store.App) error {
		a.ServerIDs = []string{web.ServerID, db.ServerID}
		a.Description = "web first"
		return nil
	})).must(t)
	got = ok(s.GetApp(ctx, a.AppID)).must(t)
	if got.ServerIDs[0] != web.ServerID || got.Description != "web first" {
		t.Errorf("updated app = %+v", got)
	}
	empty := ok(s.CreateApp(ctx, store.App{Name: "empty"})).must(t)
	if l := ok(s.ListApps(ctx)).must(t); len(l) != 2 || l[0].AppID != empty.AppID || l[0].ServerIDs == nil {
		t.Errorf("apps = %+v", l)
	}
	if err := s.DeleteApp(ctx, a.AppID); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.DeleteApp(ctx, a.AppID), store.ErrNotFound)
}
