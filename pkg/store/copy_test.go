package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

// populate fills s with some of everything: sources with sealed secrets,
// servers, jobs, runs in every state with progress, a ledger with
// hand-overs, events, apps and settings.
func populate(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		src, err := s.CreateSource(ctx, store.Source{Kind: store.SourceVSphere, Name: fmt.Sprintf("vc-%d", i), Endpoint: "https://vc/sdk",
			User: "admin", Secret: []byte{0, 0xff, byte(i), 'x'}, Options: json.RawMessage(`{"k":1}`)})
		must(err)
		for v := range 4 {
			srv, err := s.UpsertServer(ctx, store.Server{SourceID: src.ID, VMID: fmt.Sprintf("vm-%d", v), Name: fmt.Sprintf("db-%d-%d", i, v),
				CPUs: 2, MemoryMiB: 2048, DiskCount: 2, Details: `{"disks":2}`})
			must(err)
			job, err := s.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, SeedReplicationTime: time.Now(), Frequency: 12, NumberOfRecentAmisToKeep: 2})
			must(err)
			for k, st := range []store.RunState{store.RunCompleted, store.RunFailed, store.RunMissed, store.RunActive} {
				runs, err := s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, State: st,
					ScheduledStartTime: time.Now().Add(time.Duration(k) * time.Hour), AmiID: fmt.Sprintf("ami-%d%d%d", i, v, k),
					Progress: store.RunProgress{Step: "stage", Disks: []store.DiskProgress{{Disk: 0, BytesDone: 5, BytesTotal: 9}}}})
				must(err)
				r := runs[0]
				id, err := s.RecordIntent(ctx, r.ReplicationRunID, "snapshot", "vm-snapshot", json.RawMessage(`{"name":"x"}`))
				must(err)
				must(s.RecordCreated(ctx, id, "snap-1", json.RawMessage(`{"n":1}`)))
				if _, err := s.HandOver(ctx, id, "release-snapshot"); err != nil {
					t.Fatal(err)
				}
				_, err = s.AddEvent(ctx, store.Event{JobID: job.ReplicationJobID, RunID: r.ReplicationRunID, Message: "run " + string(st)})
				must(err)
			}
		}
	}
	servers, err := s.ListServers(ctx, store.ServerFilter{})
	must(err)
	_, err = s.CreateApp(ctx, store.App{Name: "shop", Groups: []store.ServerGroup{{Name: "web", ServerIDs: []string{servers[0].ServerID, servers[1].ServerID}}}})
	must(err)
	must(s.PutSetting(ctx, "aws", []byte{1, 2, 3, 0}))
	must(s.PutSetting(ctx, "api-keys", []byte("sealed")))
	_, err = s.JoinFleet(ctx, store.Member{ID: "c-1", Incarnation: "i", Sources: []string{"src-x"}}, time.Minute)
	must(err)
}

// tableRows reads every row of table, ordered by all its columns.
func tableRows(t *testing.T, db *sql.DB, table string) [][]any {
	t.Helper()
	rows, err := db.Query(`SELECT * FROM ` + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok && cols[i] != "secret" && cols[i] != "value" {
				vals[i] = string(b)
			}
		}
		out = append(out, vals)
	}
	return out
}

func TestCopyIntoPostgresKeepsEveryRow(t *testing.T) {
	ctx := context.Background()
	lite, err := store.OpenSQLite(filepath.Join(t.TempDir(), "rehost.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	populate(t, lite)
	_, cfg := pgDB(t)
	pg, err := store.OpenPostgres(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	counts, err := store.CopyInto(ctx, pg, lite)
	if err != nil {
		t.Fatal(err)
	}
	liteDB, err := sql.Open("sqlite", lite.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer liteDB.Close()
	want := map[string]int{"sources": 3, "servers": 12, "replication_jobs": 12, "replication_runs": 48, "ledger": 96, "events": 48, "apps": 1, "settings": 2, "members": 1}
	for table, n := range want {
		if counts[table] != n {
			t.Errorf("copied %d rows of %s, want %d", counts[table], table, n)
		}
	}
	for table := range counts {
		a, b := tableRows(t, liteDB, table), tableRows(t, pg.DB(), table)
		if len(a) != counts[table] || len(b) != len(a) {
			t.Errorf("%s: %d rows in SQLite, %d in PostgreSQL, %d counted", table, len(a), len(b), counts[table])
			continue
		}
		// Both read in insertion order; every value equal.
		index := map[string][]any{}
		for _, r := range b {
			index[fmt.Sprint(r[0])] = r
		}
		for _, r := range a {
			if got := index[fmt.Sprint(r[0])]; !reflect.DeepEqual(got, r) {
				t.Errorf("%s row %v: PostgreSQL has %v", table, r, got)
			}
		}
	}
	// Through the store: the same jobs, runs and ledgers; new ledger ids
	// and events follow the copied ones.
	jobs, _ := lite.ListJobs(ctx, store.JobFilter{})
	pjobs, _ := pg.ListJobs(ctx, store.JobFilter{})
	if !reflect.DeepEqual(jobs, pjobs) {
		t.Errorf("jobs differ")
	}
	runs, _ := lite.RunsInState(ctx, store.RunActive)
	prun, _ := pg.RunsInState(ctx, store.RunActive)
	if len(runs) != 12 || !reflect.DeepEqual(runs, prun) {
		t.Fatalf("active runs differ: %d vs %d", len(runs), len(prun))
	}
	l1, _ := lite.LedgerForRun(ctx, runs[0].ReplicationRunID)
	l2, _ := pg.LedgerForRun(ctx, runs[0].ReplicationRunID)
	if len(l1) != 2 || !reflect.DeepEqual(l1, l2) {
		t.Errorf("ledger differs: %+v vs %+v", l1, l2)
	}
	id, err := pg.RecordIntent(ctx, runs[0].ReplicationRunID, "stage", "multipart-upload", nil)
	if err != nil || id != 97 {
		t.Errorf("next ledger id %d (%v), want 97", id, err)
	}
	if v, err := pg.GetSetting(ctx, "aws"); err != nil || string(v) != "\x01\x02\x03\x00" {
		t.Errorf("setting = %q, %v", v, err)
	}
	// Copying into a store that holds data is refused, changing nothing.
	if _, err := store.CopyInto(ctx, pg, lite); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second copy: %v", err)
	}
}
