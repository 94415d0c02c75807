package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

func member(id string, sources ...string) store.Member {
	return store.Member{ID: id, Incarnation: "inc-" + id, Version: "v1", Address: "127.0.0.1", Sources: sources, Capacity: 4}
}

// pendingRuns makes n servers of src, each with a job and a PENDING run
// scheduled a minute apart.
func pendingRuns(t *testing.T, s store.Store, src store.Source, n int) []store.ReplicationRun {
	t.Helper()
	ctx := context.Background()
	var out []store.ReplicationRun
	have := len(ok(s.ListServers(ctx, store.ServerFilter{SourceID: src.ID})).must(t))
	for i := range n {
		srv := newServer(t, s, src, fmt.Sprintf("%s-vm-%d", src.Name, have+i))
		job := newJob(t, s, srv.ServerID)
		out = append(out, ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID,
			ScheduledStartTime: time.Now().Add(-time.Hour + time.Duration(i)*time.Minute)})).must(t)[0])
	}
	return out
}

func testMembers(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := ok(s.JoinFleet(ctx, member("c-a", "src-1"), time.Minute)).must(t)
	if a.JoinedAt.IsZero() || a.Heartbeat.IsZero() || a.ID != "c-a" {
		t.Errorf("joined = %+v", a)
	}
	ok(s.JoinFleet(ctx, member("c-b"), time.Minute)).must(t)
	l := ok(s.ListMembers(ctx)).must(t)
	if len(l) != 2 || l[0].ID != "c-a" || !slices.Equal(l[0].Sources, []string{"src-1"}) || l[1].ID != "c-b" || l[1].Sources == nil || l[0].Capacity != 4 || l[0].Version != "v1" {
		t.Fatalf("members = %+v", l)
	}

	// A second connector with c-a's id is refused while c-a is alive.
	other := member("c-a")
	other.Incarnation, other.Address = "inc-elsewhere", "10.0.0.9"
	_, err := s.JoinFleet(ctx, other, time.Minute)
	wantErr(t, err, store.ErrConflict, "c-a", "127.0.0.1")
	// A restart (same incarnation) is welcome, with new sources.
	a.Sources = []string{"src-1", "src-2"}
	ok(s.JoinFleet(ctx, a, time.Minute)).must(t)
	// Heartbeats update what the member says of itself.
	a.Capacity, a.Version = 7, "v2"
	if err := s.Heartbeat(ctx, a); err != nil {
		t.Fatal(err)
	}
	got := ok(s.ListMembers(ctx)).must(t)[0]
	if got.Capacity != 7 || got.Version != "v2" || len(got.Sources) != 2 {
		t.Errorf("after heartbeat: %+v", got)
	}
	// A member silent for longer than stale is replaced; the replaced
	// one's heartbeat is then refused.
	ok(s.JoinFleet(ctx, other, 0)).must(t)
	wantErr(t, s.Heartbeat(ctx, a), store.ErrConflict, "c-a")
	if err := s.Heartbeat(ctx, other); err != nil {
		t.Fatal(err)
	}
	// Removed, a member's heartbeat says so.
	if err := s.RemoveMember(ctx, "c-a"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.Heartbeat(ctx, other), store.ErrNotFound, "c-a")
	wantErr(t, s.RemoveMember(ctx, "c-a"), store.ErrNotFound)
	if l := ok(s.ListMembers(ctx)).must(t); len(l) != 1 || l[0].ID != "c-b" {
		t.Errorf("after removal: %+v", l)
	}
	_, err = s.JoinFleet(ctx, store.Member{ID: "", Incarnation: "x"}, time.Minute)
	wantErr(t, err, store.ErrInvalid)
}

func testClaimRuns(t *testing.T, s store.Store) {
	ctx := context.Background()
	src1, src2 := newSource(t, s, "vc1"), newSource(t, s, "vc2")
	runs1 := pendingRuns(t, s, src1, 3)
	runs2 := pendingRuns(t, s, src2, 2)
	ok(s.JoinFleet(ctx, member("c-a", src1.ID), time.Minute)).must(t)
	ok(s.JoinFleet(ctx, member("c-b", src2.ID), time.Minute)).must(t)
	_, err := s.ClaimRuns(ctx, "c-missing", 1, time.Minute)
	wantErr(t, err, store.ErrNotFound, "c-missing")

	// Only runs of reachable sources, oldest first, at most max.
	got := ok(s.ClaimRuns(ctx, "c-a", 2, time.Minute)).must(t)
	if len(got) != 2 || got[0].Run.ReplicationRunID != runs1[0].ReplicationRunID || got[1].Run.ReplicationRunID != runs1[1].ReplicationRunID {
		t.Fatalf("claimed %+v", got)
	}
	for _, c := range got {
		if c.Run.State != store.RunActive || c.Run.StartedAt.IsZero() || c.Lease.Holder != "c-a" || c.Lease.Token != 1 || c.Lease.RunID != c.Run.ReplicationRunID {
			t.Errorf("claim = %+v", c)
		}
	}
	// Held runs are not claimed again; the last reachable one is.
	more := ok(s.ClaimRuns(ctx, "c-a", 5, time.Minute)).must(t)
	if len(more) != 1 || more[0].Run.ReplicationRunID != runs1[2].ReplicationRunID {
		t.Fatalf("second claim %+v", more)
	}
	if again := ok(s.ClaimRuns(ctx, "c-a", 5, time.Minute)).must(t); len(again) != 0 {
		t.Fatalf("third claim took %d", len(again))
	}
	b := ok(s.ClaimRuns(ctx, "c-b", 5, time.Minute)).must(t)
	if len(b) != 2 || b[0].Run.ReplicationRunID != runs2[0].ReplicationRunID {
		t.Fatalf("c-b claimed %+v", b)
	}
	// Renewal keeps held leases and reports lost ones.
	stale := got[0].Lease
	stale.Token = 99
	lost := ok(s.RenewLeases(ctx, []store.Lease{got[0].Lease, got[1].Lease, stale}, time.Minute)).must(t)
	if !slices.Equal(lost, []string{stale.RunID}) {
		t.Errorf("lost = %v", lost)
	}
	// A lease that expires frees its run for another member that reaches
	// its source, with a higher token; ACTIVE runs keep their StartedAt.
	ok(s.JoinFleet(ctx, member("c-c", src1.ID), time.Minute)).must(t)
	ok(s.RenewLeases(ctx, []store.Lease{got[0].Lease}, -time.Second)).must(t)
	taken := ok(s.ClaimRuns(ctx, "c-c", 5, time.Minute)).must(t)
	if len(taken) != 1 || taken[0].Run.ReplicationRunID != got[0].Run.ReplicationRunID || taken[0].Lease.Token != 2 ||
		!taken[0].Run.StartedAt.Equal(got[0].Run.StartedAt) {
		t.Fatalf("takeover = %+v (was %+v)", taken, got[0])
	}
	if lost := ok(s.RenewLeases(ctx, []store.Lease{got[0].Lease}, time.Minute)).must(t); len(lost) != 1 {
		t.Errorf("the old holder's renewal kept the lease: %v", lost)
	}
	// Released, a run is claimable at once; a finished run loses its
	// holder and is never claimed.
	if err := s.ReleaseLease(ctx, taken[0].Lease); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseLease(ctx, taken[0].Lease); err != nil {
		t.Errorf("releasing twice: %v", err)
	}
	ok(s.UpdateRun(ctx, got[1].Run.ReplicationRunID, func(r *store.ReplicationRun) error { r.State = store.RunCompleted; return nil })).must(t)
	leases := ok(s.Leases(ctx)).must(t)
	for _, l := range leases {
		if l.RunID == got[1].Run.ReplicationRunID || l.RunID == taken[0].Run.ReplicationRunID {
			t.Errorf("lease of a released or finished run listed: %+v", l)
		}
	}
	if len(leases) != 3 {
		t.Errorf("leases = %+v", leases)
	}
	re := ok(s.ClaimRuns(ctx, "c-c", 5, time.Minute)).must(t)
	if len(re) != 1 || re[0].Run.ReplicationRunID != got[0].Run.ReplicationRunID || re[0].Lease.Token != 3 {
		t.Fatalf("claim after release = %+v", re)
	}
	// A member that restarts (joins again) gives up what it held.
	if err := ok(s.JoinFleet(ctx, member("c-b", src2.ID), time.Minute)).err; err != nil {
		t.Fatal(err)
	}
	for _, l := range ok(s.Leases(ctx)).must(t) {
		if l.Holder == "c-b" {
			t.Errorf("restarted member still holds %+v", l)
		}
	}
	if again := ok(s.ClaimRuns(ctx, "c-b", 5, time.Minute)).must(t); len(again) != 2 || again[0].Lease.Token != 2 {
		t.Errorf("claim after restart = %+v", again)
	}
	// Removed, a member's leases end too.
	if err := s.RemoveMember(ctx, "c-c"); err != nil {
		t.Fatal(err)
	}
	for _, l := range ok(s.Leases(ctx)).must(t) {
		if l.Holder == "c-c" {
			t.Errorf("removed member still holds %+v", l)
		}
	}
}

// testClaimSpread: a member with more runs in flight leaves fresh runs to
// a less loaded one that reaches their source, but takes those that waited
// too long.
func testClaimSpread(t *testing.T, s store.Store) {
	ctx := context.Background()
	src := newSource(t, s, "vc")
	runs := pendingRuns(t, s, src, 4)
	// Make the runs recent: a run that has waited longer than the ttl is
	// anyone's.
	for _, r := range runs {
		ok(s.UpdateRun(ctx, r.ReplicationRunID, func(x *store.ReplicationRun) error { x.ScheduledStartTime = time.Now(); return nil })).must(t)
	}
	ok(s.JoinFleet(ctx, member("c-a", src.ID), time.Minute)).must(t)
	ok(s.JoinFleet(ctx, member("c-b", src.ID), time.Minute)).must(t)
	// Four runs, two idle members: each takes its half.
	first := ok(s.ClaimRuns(ctx, "c-a", 4, time.Minute)).must(t)
	if len(first) != 2 {
		t.Fatalf("c-a claimed %d runs, want 2 of 4 while c-b is idle", len(first))
	}
	second := ok(s.ClaimRuns(ctx, "c-b", 4, time.Minute)).must(t)
	if len(second) != 2 {
		t.Fatalf("c-b claimed %d runs, want the other 2", len(second))
	}
	// Two more: c-a, at c-b's load, takes one and leaves one to c-b.
	for _, r := range pendingRuns(t, s, src, 2) {
		ok(s.UpdateRun(ctx, r.ReplicationRunID, func(x *store.ReplicationRun) error { x.ScheduledStartTime = time.Now(); return nil })).must(t)
	}
	if third := ok(s.ClaimRuns(ctx, "c-a", 4, time.Minute)).must(t); len(third) != 1 {
		t.Fatalf("c-a then claimed %d runs, want 1", len(third))
	}
	if fourth := ok(s.ClaimRuns(ctx, "c-a", 4, time.Minute)).must(t); len(fourth) != 0 {
		t.Fatalf("c-a, more loaded than c-b, claimed %d more", len(fourth))
	}
	if fifth := ok(s.ClaimRuns(ctx, "c-b", 4, time.Minute)).must(t); len(fifth) != 1 {
		t.Fatalf("c-b claimed %d, want the last one", len(fifth))
	}
	// A run that has waited longer than the ttl goes to whoever asks.
	more := pendingRuns(t, s, src, 2)
	for _, r := range more {
		ok(s.UpdateRun(ctx, r.ReplicationRunID, func(x *store.ReplicationRun) error {
			x.ScheduledStartTime = time.Now().Add(-2 * time.Minute)
			return nil
		})).must(t)
	}
	ok(s.JoinFleet(ctx, member("c-idle", src.ID), time.Minute)).must(t)
	if got := ok(s.ClaimRuns(ctx, "c-a", 4, time.Minute)).must(t); len(got) != 2 {
		t.Errorf("overdue runs claimed by a busier member: %d, want 2", len(got))
	}
}

// testConcurrentClaims has four members claim 40 runs at once: each run
// is claimed exactly once.
func testConcurrentClaims(t *testing.T, s store.Store) {
	ctx := context.Background()
	src := newSource(t, s, "vc")
	runs := pendingRuns(t, s, src, 40)
	ids := []string{"c-1", "c-2", "c-3", "c-4"}
	for _, id := range ids {
		m := member(id, src.ID)
		m.Capacity = 40
		ok(s.JoinFleet(ctx, m, time.Minute)).must(t)
	}
	var mu sync.Mutex
	claimed := map[string]string{}
	var wg sync.WaitGroup
	errs := make(chan error, len(ids))
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 40 {
				got, err := s.ClaimRuns(ctx, id, 3, time.Minute)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, c := range got {
					if prev, dup := claimed[c.Run.ReplicationRunID]; dup {
						errs <- fmt.Errorf("run %s claimed by %s and %s", c.Run.ReplicationRunID, prev, id)
					}
					claimed[c.Run.ReplicationRunID] = id
				}
				n := len(claimed)
				mu.Unlock()
				if n == len(runs) {
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
	if len(claimed) != len(runs) {
		t.Errorf("%d of %d runs claimed", len(claimed), len(runs))
	}
	for _, l := range ok(s.Leases(ctx)).must(t) {
		if l.Token != 1 || claimed[l.RunID] != l.Holder {
			t.Errorf("lease %+v (claimed by %s)", l, claimed[l.RunID])
		}
	}
}

// testFencing: once another member holds the run, every ledger write and
// run update made with the old lease fails with ErrFenced and changes
// nothing.
func testFencing(t *testing.T, s store.Store) {
	ctx := context.Background()
	src := newSource(t, s, "vc")
	runs := pendingRuns(t, s, src, 1)
	ok(s.JoinFleet(ctx, member("c-a", src.ID), time.Minute)).must(t)
	ok(s.JoinFleet(ctx, member("c-b", src.ID), time.Minute)).must(t)
	a := ok(s.ClaimRuns(ctx, "c-a", 1, time.Minute)).must(t)[0]
	actx := store.WithLease(ctx, a.Lease)
	if l, has := store.LeaseOf(actx); !has || l != a.Lease {
		t.Fatalf("LeaseOf = %+v %v", l, has)
	}
	runID := runs[0].ReplicationRunID
	// The holder writes.
	snap := ok(s.RecordIntent(actx, runID, "snapshot", "vm-snapshot", nil)).must(t)
	if err := s.RecordCreated(actx, snap, "snapshot-1", json.RawMessage(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	ok(s.UpdateRun(actx, runID, func(r *store.ReplicationRun) error { r.Stage = "snapshot"; return nil })).must(t)
	// Its lease expires and c-b takes the run over.
	ok(s.RenewLeases(ctx, []store.Lease{a.Lease}, -time.Second)).must(t)
	b := ok(s.ClaimRuns(ctx, "c-b", 1, time.Minute)).must(t)[0]
	if b.Lease.Token <= a.Lease.Token {
		t.Fatalf("new token %d not above %d", b.Lease.Token, a.Lease.Token)
	}
	bctx := store.WithLease(ctx, b.Lease)
	upload := ok(s.RecordIntent(bctx, runID, "stage", "multipart-upload", nil)).must(t)

	// c-a comes back: each of its writes is refused, naming the holder.
	_, err := s.RecordIntent(actx, runID, "stage", "multipart-upload", nil)
	wantErr(t, err, store.ErrFenced, "c-b")
	wantErr(t, s.RecordCreated(actx, upload, "upload-a", nil), store.ErrFenced)
	wantErr(t, s.UpdateData(actx, snap, json.RawMessage(`{"n":2}`)), store.ErrFenced)
	wantErr(t, s.RecordReleased(actx, snap), store.ErrFenced)
	_, err = s.HandOver(actx, snap, "release-snapshot")
	wantErr(t, err, store.ErrFenced)
	_, err = s.UpdateRun(actx, runID, func(r *store.ReplicationRun) error { r.Stage = "stale"; return nil })
	wantErr(t, err, store.ErrFenced)
	_, _, err = s.UpdateRunAndJob(actx, runID, func(r *store.ReplicationRun, j *store.ReplicationJob) error {
		r.State, j.LatestAmiID = store.RunCompleted, "ami-stale"
		return nil
	})
	wantErr(t, err, store.ErrFenced)
	_, err = s.AcquireImportSlots(ctx, "us-east-1", 2, 1, a.Lease)
	wantErr(t, err, store.ErrFenced)

	l := ok(s.LedgerForRun(ctx, runID)).must(t)
	if len(l) != 2 || l[0].State != store.LedgerCreated || string(l[0].Data) != `{"n":1}` || l[1].State != store.LedgerIntent || l[1].ResourceID != "" {
		t.Errorf("ledger after refused writes = %+v", l)
	}
	r := ok(s.GetRun(ctx, runID)).must(t)
	if r.State != store.RunActive || r.Stage != "snapshot" {
		t.Errorf("run after refused writes = %+v", r)
	}
	if j := ok(s.GetJob(ctx, r.ReplicationJobID)).must(t); j.LatestAmiID != "" {
		t.Errorf("job after refused writes = %+v", j)
	}
	// The holder's writes go on, and its finish ends the lease.
	if err := s.RecordCreated(bctx, upload, "upload-b", nil); err != nil {
		t.Fatal(err)
	}
	ok(s.UpdateRun(bctx, runID, func(r *store.ReplicationRun) error { r.State = store.RunCompleted; return nil })).must(t)
	if ls := ok(s.Leases(ctx)).must(t); len(ls) != 0 {
		t.Errorf("leases after the run completed: %+v", ls)
	}
	// Writes without a lease are not fenced (a single connector).
	if err := s.RecordReleased(ctx, upload); err != nil {
		t.Errorf("unfenced write: %v", err)
	}
}

func testLeaseRunAndLock(t *testing.T, s store.Store) {
	ctx := context.Background()
	src := newSource(t, s, "vc")
	runs := pendingRuns(t, s, src, 1)
	runID := runs[0].ReplicationRunID
	ok(s.UpdateRun(ctx, runID, func(r *store.ReplicationRun) error { r.State = store.RunFailed; return nil })).must(t)
	a := ok(s.LeaseRun(ctx, "c-a", runID, time.Minute)).must(t)
	if a.Holder != "c-a" || a.Token != 1 {
		t.Errorf("lease = %+v", a)
	}
	_, err := s.LeaseRun(ctx, "c-b", runID, time.Minute)
	wantErr(t, err, store.ErrConflict, "c-a")
	_, err = s.LeaseRun(ctx, "c-b", "sms-run-missing", time.Minute)
	wantErr(t, err, store.ErrNotFound)
	if err := s.ReleaseLease(ctx, a); err != nil {
		t.Fatal(err)
	}
	if b := ok(s.LeaseRun(ctx, "c-b", runID, time.Minute)).must(t); b.Token != 2 {
		t.Errorf("lease after release = %+v", b)
	}

	if h, _, err := s.LockHolder(ctx, "scheduler"); err != nil || h != "" {
		t.Fatalf("holder of a lock never taken: %q, %v", h, err)
	}
	if !ok(s.TryLock(ctx, "scheduler", "c-a", time.Minute)).must(t) {
		t.Fatal("free lock not taken")
	}
	if h, until, err := s.LockHolder(ctx, "scheduler"); err != nil || h != "c-a" || time.Until(until) < 30*time.Second {
		t.Fatalf("holder = %q until %v, %v", h, until, err)
	}
	if ok(s.TryLock(ctx, "scheduler", "c-b", time.Minute)).must(t) {
		t.Fatal("held lock taken by another")
	}
	if !ok(s.TryLock(ctx, "scheduler", "c-a", -time.Second)).must(t) {
		t.Fatal("holder could not renew")
	}
	if !ok(s.TryLock(ctx, "scheduler", "c-b", time.Minute)).must(t) {
		t.Fatal("expired lock not taken over")
	}
	if ok(s.TryLock(ctx, "scheduler", "c-a", time.Minute)).must(t) {
		t.Fatal("old holder kept the lock")
	}
	// Racing takers: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := 0
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.TryLock(ctx, "race", fmt.Sprintf("c-%d", i), time.Minute)
			if err != nil {
				t.Error(err)
			}
			if got {
				mu.Lock()
				winners++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if winners != 1 {
		t.Errorf("%d holders of one lock", winners)
	}
}

func testImportSlots(t *testing.T, s store.Store) {
	ctx := context.Background()
	src := newSource(t, s, "vc")
	pendingRuns(t, s, src, 4)
	m := member("c-a", src.ID)
	ok(s.JoinFleet(ctx, m, time.Minute)).must(t)
	c := ok(s.ClaimRuns(ctx, "c-a", 4, time.Minute)).must(t)
	if len(c) != 4 {
		t.Fatalf("claimed %d", len(c))
	}
	const region = "eu-west-1"
	for i, want := range []bool{true, true, false} {
		if got := ok(s.AcquireImportSlots(ctx, region, 2, 1, c[i].Lease)).must(t); got != want {
			t.Errorf("slot %d: got %v, want %v", i, got, want)
		}
	}
	if !ok(s.AcquireImportSlots(ctx, region, 2, 1, c[0].Lease)).must(t) {
		t.Error("a lease's own slot not reported held")
	}
	if !ok(s.AcquireImportSlots(ctx, "us-west-2", 2, 1, c[2].Lease)).must(t) {
		t.Error("another region's slots are counted apart")
	}
	if n := ok(s.ImportSlotsInUse(ctx)).must(t); n[region] != 2 || n["us-west-2"] != 1 {
		t.Errorf("in use = %v", n)
	}
	// Released, a slot goes to the next.
	if err := s.ReleaseImportSlot(ctx, region, c[0].Lease); err != nil {
		t.Fatal(err)
	}
	if !ok(s.AcquireImportSlots(ctx, region, 2, 1, c[2].Lease)).must(t) {
		t.Error("freed slot not taken")
	}
	// A slot whose lease ended (the run finished) or expired is free.
	ok(s.UpdateRun(ctx, c[1].Run.ReplicationRunID, func(r *store.ReplicationRun) error { r.State = store.RunCompleted; return nil })).must(t)
	if !ok(s.AcquireImportSlots(ctx, region, 2, 1, c[3].Lease)).must(t) {
		t.Error("slot of a finished run not freed")
	}
	ok(s.RenewLeases(ctx, []store.Lease{c[2].Lease}, -time.Second)).must(t)
	if n := ok(s.ImportSlotsInUse(ctx)).must(t); n[region] != 1 || n["us-west-2"] != 0 {
		t.Errorf("in use after expiry = %v", n)
	}

	// An import of several tasks takes all its slots or none.
	const snaps = "eu-west-1 snapshot"
	if !ok(s.AcquireImportSlots(ctx, snaps, 3, 2, c[0].Lease)).must(t) {
		t.Fatal("2 of 3 free slots not taken")
	}
	if ok(s.AcquireImportSlots(ctx, snaps, 3, 2, c[3].Lease)).must(t) {
		t.Error("2 slots taken where 1 is free")
	}
	if n := ok(s.ImportSlotsInUse(ctx)).must(t); n[snaps] != 2 {
		t.Errorf("a refused take of 2 slots left some taken: in use = %v", n)
	}
	if !ok(s.AcquireImportSlots(ctx, snaps, 3, 2, c[0].Lease)).must(t) {
		t.Error("a lease's own slots not reported held")
	}
	if !ok(s.AcquireImportSlots(ctx, snaps, 3, 1, c[3].Lease)).must(t) {
		t.Error("the last free slot not taken")
	}
	if err := s.ReleaseImportSlot(ctx, snaps, c[0].Lease); err != nil {
		t.Fatal(err)
	}
	if n := ok(s.ImportSlotsInUse(ctx)).must(t); n[snaps] != 1 {
		t.Errorf("released, a lease frees all its slots: in use = %v", n)
	}
	_, err := s.AcquireImportSlots(ctx, snaps, 3, 4, c[3].Lease)
	wantErr(t, err, store.ErrInvalid)
}
