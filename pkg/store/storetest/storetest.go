// Package storetest is the conformance suite every store.Store implementation
// runs: it checks each constraint of the model against a fresh, empty store.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

// Run runs the whole suite: the cases of every role interface of
// pkg/store (listed here; each role's tests are in its file: catalog.go for
// store.Catalog, …), and writers racing on one store. open must return a new, empty store for each
// case (the fixtures of other roles a case needs are made through it); the
// suite closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	for _, r := range []struct {
		role  string
		cases []testCase
	}{
		// store.Catalog: the sources and the server catalog.
		{"Catalog", []testCase{
			{"Sources", testSources},
			{"ServersUpsertKeepsID", testServers},
			{"ServersUpsertInBatches", testServerBatches},
		}},
		// store.Jobs: replication jobs.
		{"Jobs", []testCase{
			{"JobValidation", testJobValidation},
			{"OneJobPerServer", testOneJobPerServer},
			{"JobUpdateAndList", testJobUpdateAndList},
		}},
		// store.Runs: replication runs.
		{"Runs", []testCase{
			{"OneLiveRunPerJob", testOneLiveRun},
			{"ScheduleRuns", testScheduleRuns},
			{"RunListingAndCount", testRunListing},
			{"UpdateRunAndJob", testUpdateRunAndJob},
			{"RunProgress", testRunProgress},
			{"ServersWithRuns", testServersWithRuns},
		}},
		// store.Ledger: the ledger.
		{"Ledger", []testCase{
			{"Ledger", testLedger},
			{"LedgerHandOver", testHandOver},
			{"LedgerParts", testLedgerParts},
		}},
		// store.History: the events.
		{"History", []testCase{
			{"Events", testEvents},
		}},
		// store.Settings: settings.
		{"Settings", []testCase{
			{"Settings", testSettings},
		}},
		// store.Apps: applications, their server groups and configurations,
		// and their launches.
		{"Apps", []testCase{
			{"Apps", testApps},
			{"AppMembership", testAppMembership},
			{"AppLaunches", testAppLaunches},
		}},
		// store.Replicas, with the incremental fields of jobs and runs it
		// goes with.
		{"Replicas", []testCase{
			{"ReplicaSets", testReplicas},
			{"Manifest", testManifest},
			{"JobModes", testJobModes},
		}},
		// store.Preflights: one result per subject, replaced by each put,
		// kept as given.
		{"Preflights", []testCase{
			{"Preflights", func(t *testing.T, s store.Store) { testPreflights(t, s) }},
			{"PreflightsInBatches", func(t *testing.T, s store.Store) { testPreflightBatches(t, s) }},
		}},
		// store.Fleet: members, leases and their fencing tokens, the
		// fleet-wide lock and VM Import slots.
		{"Fleet", []testCase{
			{"Members", testMembers},
			{"ClaimRuns", testClaimRuns},
			{"ClaimSpreadsByLoad", testClaimSpread},
			{"ConcurrentClaims", testConcurrentClaims},
			{"Fencing", testFencing},
			{"LeaseRunAndLock", testLeaseRunAndLock},
			{"ImportSlots", testImportSlots},
		}},
	} {
		t.Run(r.role, func(t *testing.T) { run(t, open, r.cases) })
	}
	run(t, open, []testCase{{"ConcurrentWriters", testConcurrentWriters}})
}

type testCase struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

func run(t *testing.T, open func(t *testing.T) store.Store, cases []testCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

var t0 = time.Date(2026, 3, 1, 10, 17, 0, 0, time.UTC)

// result carries a (value, error) pair so one line can both call and check.
type result[T any] struct {
	v   T
	err error
}

func ok[T any](v T, err error) result[T] { return result[T]{v, err} }

func (r result[T]) must(t *testing.T) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

func wantErr(t *testing.T, err, target error, mentions ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
	for _, m := range mentions {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}

func newSource(t *testing.T, s store.Store, name string) store.Source {
	t.Helper()
	return ok(s.CreateSource(context.Background(), store.Source{
		Kind: store.SourceVSphere, Name: name, Endpoint: "https://vc.example/sdk", User: "admin@vsphere.local",
		Secret: []byte{0, 1, 2, 0xff}, Thumbprint: "AA:BB",
	})).must(t)
}

func newServer(t *testing.T, s store.Store, src store.Source, vmID string) store.Server {
	t.Helper()
	return ok(s.UpsertServer(context.Background(), store.Server{
		SourceID: src.ID, VMID: vmID, Name: "vm " + vmID, Path: "/dc/vm/" + vmID, GuestOS: "ubuntu64Guest",
		Firmware: "bios", CPUs: 2, MemoryMiB: 4096, DiskCount: 1, Details: `{"disks":1}`,
	})).must(t)
}

func newJob(t *testing.T, s store.Store, serverID string) store.ReplicationJob {
	t.Helper()
	return ok(s.CreateJob(context.Background(), store.ReplicationJob{
		ServerID: serverID, SeedReplicationTime: t0, Frequency: 12, NumberOfRecentAmisToKeep: 3,
	})).must(t)
}

// fixture makes a source, a server and a job on it.
func fixture(t *testing.T, s store.Store) (store.Server, store.ReplicationJob) {
	t.Helper()
	src := newSource(t, s, "vc")
	srv := newServer(t, s, src, "vm-1")
	return srv, newJob(t, s, srv.ServerID)
}

// testConcurrentWriters has 8 goroutines append 200 ledger entries and
// events each; a busy backend must make writers wait, not fail.
func testConcurrentWriters(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, job := fixture(t, s)
	r := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, State: store.RunActive})).must(t)[0]
	const writers, each = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				step := fmt.Sprintf("w%d", w)
				id, err := s.RecordIntent(ctx, r.ReplicationRunID, step, "s3-object", json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)))
				if err == nil {
					err = s.RecordCreated(ctx, id, fmt.Sprintf("obj-%d-%d", w, i), nil)
				}
				if err == nil {
					_, err = s.AddEvent(ctx, store.Event{RunID: r.ReplicationRunID, Message: step})
				}
				if err != nil {
					errs <- fmt.Errorf("writer %d insert %d: %w", w, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	l := ok(s.LedgerForRun(ctx, r.ReplicationRunID)).must(t)
	if len(l) != writers*each {
		t.Fatalf("ledger has %d entries, want %d", len(l), writers*each)
	}
	// Per writer, entries appear in the order that writer made them.
	next := map[string]int{}
	for _, e := range l {
		var in struct{ I int }
		if err := json.Unmarshal(e.Intent, &in); err != nil {
			t.Fatal(err)
		}
		if in.I != next[e.Step] {
			t.Fatalf("writer %s: entry %d out of order (want %d)", e.Step, in.I, next[e.Step])
		}
		next[e.Step]++
		if e.State != store.LedgerCreated || e.ResourceID != fmt.Sprintf("obj-%s-%d", e.Step[1:], in.I) {
			t.Fatalf("entry %+v", e)
		}
	}
	if n := len(ok(s.Events(ctx, store.EventFilter{RunID: r.ReplicationRunID})).must(t)); n != writers*each {
		t.Errorf("events = %d, want %d", n, writers*each)
	}
}

// oneWins runs call from 8 goroutines at once and wants exactly one to
// succeed and every other to fail with store.ErrConflict.
func oneWins(t *testing.T, what string, call func() error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = call()
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("concurrent %s: %v", what, err)
		}
	}
	if wins != 1 {
		t.Errorf("%d concurrent %s calls succeeded, want 1", wins, what)
	}
}
