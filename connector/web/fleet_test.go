package web_test

import (
	"context"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/internal/lab/pgpeer/pgtest"
	"github.com/rehost/rehost/pkg/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The fleet's page on a connector sharing a PostgreSQL store: its members
// (this one HEALTHY and the leader, a second joined beside it), a run's
// lease while it is in flight, and the second member removed behind a
// confirmation. On a connector on its own the page says it is no fleet.
func TestFleetPage(t *testing.T) {
	db := pgtest.NewDB(t)
	t.Setenv(daemon.EnvStorePassword, db.Password)
	h := start(t, apitest.Options{Store: &daemon.StoreConfig{URL: db.URL, CAFile: db.CAFile}, Fleet: &daemon.FleetOptions{ID: "c-one", TTL: 3 * time.Second}})
	ctx := context.Background()
	if _, err := h.D.Store.JoinFleet(ctx, store.Member{ID: "c-two", Incarnation: "other", Version: "9.9.9", Address: "127.0.0.9", Capacity: 2}, time.Minute); err != nil {
		t.Fatal(err)
	}
	b := h.browser()
	b.setup()
	body := waitPage(t, b, "/fleet", 30*time.Second, func(body string) bool { return strings.Contains(body, `id="fleet-leader">c-one<`) })
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?s)id="member-c-one".*?leader.*?badge ok">HEALTHY<.*?</tr>`),
		regexp.MustCompile(`(?s)id="member-c-two".*?9\.9\.9</td><td>127\.0\.0\.9</td>.*?0 of 2.*?</tr>`),
		regexp.MustCompile(`href="/fleet" aria-current="page"`),
	} {
		if !want.MatchString(body) {
			t.Errorf("the fleet page does not match %s:\n%s", want, body)
		}
	}

	// A run in flight shows its lease: the member holding it and its token.
	local := &api.Local{D: h.D}
	if _, err := local.ImportServerCatalog(ctx, &api.ImportServerCatalogInput{}); err != nil {
		t.Fatal(err)
	}
	srv, err := local.GetServers(ctx, &api.GetServersInput{})
	if err != nil {
		t.Fatal(err)
	}
	seed, freq := api.At(time.Now()), 24
	job, err := local.CreateReplicationJob(ctx, &api.CreateReplicationJobInput{ServerID: srv.ServerList[0].ServerID, SeedReplicationTime: &seed, Frequency: &freq})
	if err != nil {
		t.Fatal(err)
	}
	body = waitPage(t, b, "/fleet", time.Minute, func(body string) bool { return strings.Contains(body, `id="leases"`) })
	if !regexp.MustCompile(`(?s)<table id="leases">.*href="/jobs/` + job.ReplicationJobID + `".*<code>c-one</code></td><td class="num">[1-9]`).MatchString(body) {
		t.Errorf("the run's lease:\n%s", body)
	}

	// The second member removed.
	a := b.get("/fleet/c-two/remove")
	if !strings.Contains(a.body, "Remove connector <code>c-two</code> from the fleet?") {
		t.Fatalf("confirmation: %d\n%s", a.status, a.body)
	}
	a = b.submit("/fleet/c-two/remove", "/fleet/c-two/remove", nil)
	if a.status != http.StatusSeeOther || a.location() != "/fleet" {
		t.Fatalf("remove: %d %s\n%s", a.status, a.location(), a.body)
	}
	if a := b.get("/fleet"); !strings.Contains(a.body, "Removed connector c-two from the fleet") || strings.Contains(a.body, `id="member-c-two"`) {
		t.Errorf("after removing c-two:\n%s", a.body)
	}
	if ms, err := h.D.Store.ListMembers(ctx); err != nil || len(ms) != 1 || ms[0].ID != "c-one" {
		t.Errorf("members in the store: %v %v", ms, err)
	}
	if a := b.get("/fleet/c-two/remove"); a.status != http.StatusNotFound {
		t.Errorf("removing a member gone: %d", a.status)
	}
}
