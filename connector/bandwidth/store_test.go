package bandwidth_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/bandwidth"
	"github.com/rehost/rehost/internal/lab/pgpeer/pgtest"
	"github.com/rehost/rehost/pkg/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The cap goes through the store's settings: saved by one handle in
// canonical form, read by another (a second process, a fleet member), and
// followed by a watching cap; a spec without any cap removes the row.
func testStoredCap(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	a, b := open(), open()
	defer a.Close()
	defer b.Close()
	if s, err := bandwidth.Load(ctx, b); err != nil || s != nil {
		t.Fatalf("nothing stored: %v, %v", s, err)
	}
	spec := bandwidth.Spec{Default: "1gbit", Zone: "Europe/Paris", Windows: []bandwidth.WindowSpec{
		{Days: "mon-fri", Start: "8:00", End: "18:00", Rate: "20Mbit"}}}
	if _, err := bandwidth.Save(ctx, a, spec); err != nil {
		t.Fatal(err)
	}
	got, err := bandwidth.Load(ctx, b)
	if err != nil || got == nil {
		t.Fatalf("load: %v %v", got, err)
	}
	if sp := got.Spec(); sp.Default != "1 Gbit/s" || sp.Zone != "Europe/Paris" || len(sp.Windows) != 1 ||
		sp.Windows[0] != (bandwidth.WindowSpec{Days: "Mon-Fri", Start: "08:00", End: "18:00", Rate: "20 Mbit/s"}) {
		t.Errorf("read back %+v", sp)
	}
	// Refused input leaves the stored cap alone.
	if _, err := bandwidth.Save(ctx, a, bandwidth.Spec{Default: "fast"}); !bandwidth.IsInvalid(err) {
		t.Errorf("bad save: %v", err)
	}
	// A cap watching b follows what a writes.
	c := bandwidth.New(nil)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	wake := make(chan struct{}, 1)
	go c.Watch(wctx, b, wake, slog.New(slog.DiscardHandler))
	waitSchedule(t, c, func(s *bandwidth.Schedule) bool { return s != nil && s.Spec().Default == "1 Gbit/s" })
	if _, err := bandwidth.Save(ctx, a, bandwidth.Spec{Default: "50Mbit"}); err != nil {
		t.Fatal(err)
	}
	wake <- struct{}{}
	waitSchedule(t, c, func(s *bandwidth.Schedule) bool {
		return s != nil && s.Spec().Default == "50 Mbit/s" && len(s.Spec().Windows) == 0
	})
	if _, err := bandwidth.Save(ctx, a, bandwidth.Spec{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetSetting(ctx, bandwidth.Setting); err == nil {
		t.Error("clearing the cap left its row")
	}
	wake <- struct{}{}
	waitSchedule(t, c, func(s *bandwidth.Schedule) bool { return s == nil })
}

func waitSchedule(t *testing.T, c *bandwidth.Cap, ok func(*bandwidth.Schedule) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(c.Schedule()) {
		if time.Now().After(deadline) {
			t.Fatalf("the watching cap has %+v", c.Schedule())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStoredCapSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rehost.db")
	testStoredCap(t, func() store.Store {
		s, err := store.OpenSQLite(path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestStoredCapPostgres(t *testing.T) {
	db := pgtest.NewDB(t)
	testStoredCap(t, func() store.Store {
		s, err := store.OpenPostgres(context.Background(), store.PostgresConfig{URL: db.URL, Password: db.Password, CAFile: db.CAFile})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
