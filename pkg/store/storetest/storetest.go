// Package storetest is the conformance suite every store.Store implementation
// runs: it checks each constraint of the model against a fresh, empty store.
package storetest

import (
	"bytes"
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

// Run runs the suite. open must return a new, empty store for each call; the
// suite closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Sources", testSources},
		{"ServersUpsertKeepsID", testServers},
		{"JobValidation", testJobValidation},
		{"OneJobPerServer", testOneJobPerServer},
		{"JobUpdateAndList", testJobUpdateAndList},
		{"OneLiveRunPerJob", testOneLiveRun},
		{"ScheduleRuns", testScheduleRuns},
		{"RunListingAndCount", testRunListing},
		{"UpdateRunAndJob", testUpdateRunAndJob},
		{"Ledger", testLedger},
		{"LedgerHandOver", testHandOver},
		{"RunProgress", testRunProgress},
		{"Events", testEvents},
		{"Apps", testApps},
		{"Replicas", testReplicas},
		{"Manifest", testManifest},
		{"JobModes", testJobModes},
		{"Settings", testSettings},
		{"ConcurrentWriters", testConcurrentWriters},
	}
	for _, tc := range tests {
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

func testSources(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := newSource(t, s, "vc-a")
	if !strings.HasPrefix(a.ID, "src-") || len(a.ID) != 4+17 {
		t.Errorf("source id %q: want src- and 17 hex digits", a.ID)
	}
	got := ok(s.GetSource(ctx, a.ID)).must(t)
	if got.Name != "vc-a" || !bytes.Equal(got.Secret, []byte{0, 1, 2, 0xff}) || got.Thumbprint != "AA:BB" || got.User != "admin@vsphere.local" || got.Kind != store.SourceVSphere {
		t.Errorf("stored source = %+v", got)
	}
	if !got.CreatedAt.Equal(a.CreatedAt) || got.CreatedAt.IsZero() {
		t.Errorf("created at %v, want %v", got.CreatedAt, a.CreatedAt)
	}
	_, err := s.CreateSource(ctx, store.Source{Kind: store.SourceHyperV, Name: "vc-a"})
	wantErr(t, err, store.ErrConflict, "vc-a")
	_, err = s.CreateSource(ctx, store.Source{Kind: "xen", Name: "x"})
	wantErr(t, err, store.ErrInvalid, "xen")

	b := ok(s.CreateSource(ctx, store.Source{Kind: store.SourceHyperV, Name: "hv"})).must(t)
	upd := ok(s.UpdateSource(ctx, b.ID, func(src *store.Source) error {
		src.Insecure = true
		src.Endpoint = "https://hv:5986"
		src.Options = json.RawMessage(`{"auth":"ntlm"}`)
		src.ID = "tampered"
		return nil
	})).must(t)
	if upd.ID != b.ID || !upd.Insecure {
		t.Errorf("updated source = %+v", upd)
	}
	if got := ok(s.GetSource(ctx, b.ID)).must(t); got.Endpoint != "https://hv:5986" || !got.Insecure || string(got.Options) != `{"auth":"ntlm"}` {
		t.Errorf("stored after update = %+v", got)
	}
	_, err = s.UpdateSource(ctx, b.ID, func(src *store.Source) error { src.Options = json.RawMessage(`{"auth":`); return nil })
	wantErr(t, err, store.ErrInvalid, "options")
	_, err = s.UpdateSource(ctx, b.ID, func(src *store.Source) error { src.Name = "vc-a"; return nil })
	wantErr(t, err, store.ErrConflict)
	list := ok(s.ListSources(ctx)).must(t)
	if len(list) != 2 || list[0].Name != "hv" || list[1].Name != "vc-a" {
		t.Errorf("list = %+v", list)
	}

	newServer(t, s, a, "vm-9")
	wantErr(t, s.DeleteSource(ctx, a.ID), store.ErrConflict, a.ID)
	if err := s.DeleteSource(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetSource(ctx, b.ID)
	wantErr(t, err, store.ErrNotFound, b.ID)
	wantErr(t, s.DeleteSource(ctx, b.ID), store.ErrNotFound)
}

func testServers(t *testing.T, s store.Store) {
	ctx := context.Background()
	src := newSource(t, s, "vc")
	first := newServer(t, s, src, "4213-aa")
	if !strings.HasPrefix(first.ServerID, "s-") || len(first.ServerID) != 2+17 {
		t.Errorf("server id %q", first.ServerID)
	}
	again := ok(s.UpsertServer(ctx, store.Server{SourceID: src.ID, VMID: "4213-aa", Name: "renamed", CPUs: 8, MemoryMiB: 16384, DiskCount: 3})).must(t)
	if again.ServerID != first.ServerID {
		t.Fatalf("re-import changed server id %s → %s", first.ServerID, again.ServerID)
	}
	got := ok(s.GetServer(ctx, first.ServerID)).must(t)
	if got.Name != "renamed" || got.CPUs != 8 || got.MemoryMiB != 16384 || got.DiskCount != 3 || got.VMID != "4213-aa" {
		t.Errorf("stored = %+v", got)
	}
	other := newServer(t, s, src, "4213-bb")
	if other.ServerID == first.ServerID {
		t.Fatal("two VMs share a server id")
	}
	src2 := newSource(t, s, "vc2")
	newServer(t, s, src2, "4213-aa") // same VM id, other source: a different server
	if n := len(ok(s.ListServers(ctx, store.ServerFilter{})).must(t)); n != 3 {
		t.Errorf("servers = %d, want 3", n)
	}
	if l := ok(s.ListServers(ctx, store.ServerFilter{SourceID: src.ID})).must(t); len(l) != 2 {
		t.Errorf("servers of source = %d, want 2", len(l))
	}
	_, err := s.UpsertServer(ctx, store.Server{SourceID: "src-missing", VMID: "x"})
	wantErr(t, err, store.ErrNotFound, "src-missing")
	_, err = s.UpsertServer(ctx, store.Server{SourceID: src.ID, VMID: "x", Details: "{not json"})
	wantErr(t, err, store.ErrInvalid)
	_, err = s.UpsertServer(ctx, store.Server{SourceID: src.ID})
	wantErr(t, err, store.ErrInvalid)

	job := newJob(t, s, other.ServerID)
	wantErr(t, s.DeleteServer(ctx, other.ServerID), store.ErrConflict, job.ReplicationJobID)
	if err := s.DeleteServer(ctx, first.ServerID); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetServer(ctx, first.ServerID)
	wantErr(t, err, store.ErrNotFound)
}

func testJobValidation(t *testing.T, s store.Store) {
	ctx := context.Background()
	src := newSource(t, s, "vc")
	srv := newServer(t, s, src, "vm-1")
	for _, f := range []int{0, -1, 25, 48} {
		_, err := s.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, SeedReplicationTime: t0, Frequency: f})
		wantErr(t, err, store.ErrInvalid, fmt.Sprintf("frequency %d", f), "1 to 24")
		if err := store.ValidateFrequency(f); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ValidateFrequency(%d) = %v", f, err)
		}
	}
	for _, f := range []int{1, 12, 24} {
		if err := store.ValidateFrequency(f); err != nil {
			t.Errorf("ValidateFrequency(%d) = %v", f, err)
		}
	}
	_, err := s.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, Frequency: 1})
	wantErr(t, err, store.ErrInvalid, "seed")
	_, err = s.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, SeedReplicationTime: t0, Frequency: 1, LicenseType: "GPL"})
	wantErr(t, err, store.ErrInvalid, "GPL")
	_, err = s.CreateJob(ctx, store.ReplicationJob{ServerID: "s-nope", SeedReplicationTime: t0, Frequency: 1})
	wantErr(t, err, store.ErrNotFound, "s-nope")

	// Run-once needs no frequency; defaults are filled in.
	j := ok(s.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, SeedReplicationTime: t0, RunOnce: true})).must(t)
	if !strings.HasPrefix(j.ReplicationJobID, "sms-job-") || len(j.ReplicationJobID) != 8+17 {
		t.Errorf("job id %q", j.ReplicationJobID)
	}
	if j.State != store.JobPending || j.LicenseType != store.LicenseAWS {
		t.Errorf("defaults: state %s license %s", j.State, j.LicenseType)
	}
	_, err = s.UpdateJob(ctx, j.ReplicationJobID, func(j *store.ReplicationJob) error { j.Frequency = 30; return nil })
	wantErr(t, err, store.ErrInvalid, "frequency 30")
	_, err = s.UpdateJob(ctx, j.ReplicationJobID, func(j *store.ReplicationJob) error { j.State = "RUNNING"; return nil })
	wantErr(t, err, store.ErrInvalid, "RUNNING")
	if got := ok(s.GetJob(ctx, j.ReplicationJobID)).must(t); got.Frequency != 0 || got.State != store.JobPending {
		t.Errorf("rejected update was stored: %+v", got)
	}
}

func testOneJobPerServer(t *testing.T, s store.Store) {
	ctx := context.Background()
	srv, job := fixture(t, s)
	_, err := s.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, SeedReplicationTime: t0, Frequency: 1})
	wantErr(t, err, store.ErrConflict, job.ReplicationJobID, srv.ServerID)

	ok(s.UpdateJob(ctx, job.ReplicationJobID, func(j *store.ReplicationJob) error { j.State = store.JobDeleted; return nil })).must(t)
	second := newJob(t, s, srv.ServerID) // deleted jobs do not count
	// Undeleting the old job would make two live jobs.
	_, err = s.UpdateJob(ctx, job.ReplicationJobID, func(j *store.ReplicationJob) error { j.State = store.JobActive; return nil })
	wantErr(t, err, store.ErrConflict, second.ReplicationJobID)

	// Concurrent creators: exactly one wins.
	src := newSource(t, s, "vc-race")
	raced := newServer(t, s, src, "vm-race")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.CreateJob(ctx, store.ReplicationJob{ServerID: raced.ServerID, SeedReplicationTime: t0, Frequency: 6})
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("concurrent create: %v", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d concurrent CreateJob calls succeeded, want 1", wins)
	}
}

func testJobUpdateAndList(t *testing.T, s store.Store) {
	ctx := context.Background()
	srv, job := fixture(t, s)
	next := t0.Add(12 * time.Hour)
	upd := ok(s.UpdateJob(ctx, job.ReplicationJobID, func(j *store.ReplicationJob) error {
		j.State = store.JobActive
		j.NextReplicationRunStartTime = next
		j.LatestAmiID = "ami-0123"
		j.ConsecutiveFailures = 2
		j.ServerID = "s-tampered"
		return nil
	})).must(t)
	got := ok(s.GetJob(ctx, job.ReplicationJobID)).must(t)
	if got.ServerID != srv.ServerID || got.State != store.JobActive || !got.NextReplicationRunStartTime.Equal(next) ||
		got.LatestAmiID != "ami-0123" || got.ConsecutiveFailures != 2 || !got.SeedReplicationTime.Equal(t0) ||
		got.Frequency != 12 || got.NumberOfRecentAmisToKeep != 3 {
		t.Errorf("stored job = %+v", got)
	}
	if !got.UpdatedAt.Equal(upd.UpdatedAt) || !got.CreatedAt.Equal(job.CreatedAt) {
		t.Errorf("timestamps: got %v/%v want %v/%v", got.CreatedAt, got.UpdatedAt, job.CreatedAt, upd.UpdatedAt)
	}
	boom := errors.New("boom")
	_, err := s.UpdateJob(ctx, job.ReplicationJobID, func(*store.ReplicationJob) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("update error = %v, want boom", err)
	}
	_, err = s.UpdateJob(ctx, "sms-job-missing", func(*store.ReplicationJob) error { return nil })
	wantErr(t, err, store.ErrNotFound, "sms-job-missing")

	src := newSource(t, s, "vc2")
	other := newJob(t, s, newServer(t, s, src, "vm-2").ServerID)
	if l := ok(s.ListJobs(ctx, store.JobFilter{})).must(t); len(l) != 2 {
		t.Errorf("all jobs = %d", len(l))
	}
	l := ok(s.ListJobs(ctx, store.JobFilter{States: []store.JobState{store.JobPending}})).must(t)
	if len(l) != 1 || l[0].ReplicationJobID != other.ReplicationJobID {
		t.Errorf("pending jobs = %+v", l)
	}
	l = ok(s.ListJobs(ctx, store.JobFilter{ServerID: srv.ServerID, States: []store.JobState{store.JobActive, store.JobFailed}})).must(t)
	if len(l) != 1 || l[0].ReplicationJobID != job.ReplicationJobID {
		t.Errorf("active jobs of server = %+v", l)
	}
}

func testOneLiveRun(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, job := fixture(t, s)
	id := job.ReplicationJobID
	r := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: id, ScheduledStartTime: t0})).must(t)[0]
	if !strings.HasPrefix(r.ReplicationRunID, "sms-run-") || len(r.ReplicationRunID) != 8+17 {
		t.Errorf("run id %q", r.ReplicationRunID)
	}
	if r.State != store.RunPending || r.Type != store.RunAutomatic {
		t.Errorf("defaults: %s %s", r.State, r.Type)
	}
	_, err := s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: id, Type: store.RunOnDemand, State: store.RunActive})
	wantErr(t, err, store.ErrConflict, r.ReplicationRunID)
	_, err = s.StartRun(ctx, store.ReplicationRun{ReplicationJobID: id, Type: store.RunOnDemand})
	wantErr(t, err, store.ErrConflict, r.ReplicationRunID)
	// Non-live runs are always allowed.
	ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: id, State: store.RunMissed, ScheduledStartTime: t0.Add(-12 * time.Hour)})).must(t)
	// Two live runs in one batch fail as a whole.
	src := newSource(t, s, "vc2")
	job2 := newJob(t, s, newServer(t, s, src, "vm-2").ServerID)
	_, err = s.CreateRuns(ctx,
		store.ReplicationRun{ReplicationJobID: job2.ReplicationJobID, State: store.RunMissed},
		store.ReplicationRun{ReplicationJobID: job2.ReplicationJobID},
		store.ReplicationRun{ReplicationJobID: job2.ReplicationJobID, State: store.RunActive})
	wantErr(t, err, store.ErrConflict)
	if l := ok(s.ListRuns(ctx, job2.ReplicationJobID, 0)).must(t); len(l) != 0 {
		t.Errorf("failed batch left %d runs", len(l))
	}
	_, err = s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: "sms-job-missing"})
	wantErr(t, err, store.ErrNotFound, "sms-job-missing")
	_, err = s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: id, State: "RUNNING"})
	wantErr(t, err, store.ErrInvalid, "RUNNING")

	// PENDING → ACTIVE is the same slot; finishing frees it.
	ok(s.UpdateRun(ctx, r.ReplicationRunID, func(r *store.ReplicationRun) error {
		r.State = store.RunActive
		r.StartedAt = t0.Add(time.Minute)
		return nil
	})).must(t)
	ok(s.UpdateRun(ctx, r.ReplicationRunID, func(r *store.ReplicationRun) error {
		r.State = store.RunCompleted
		r.CompletedTime = t0.Add(time.Hour)
		r.AmiID = "ami-1"
		return nil
	})).must(t)
	r2 := ok(s.StartRun(ctx, store.ReplicationRun{ReplicationJobID: id, Type: store.RunOnDemand})).must(t)
	// Reviving the finished run would make a second live one.
	_, err = s.UpdateRun(ctx, r.ReplicationRunID, func(r *store.ReplicationRun) error { r.State = store.RunPending; return nil })
	wantErr(t, err, store.ErrConflict, r2.ReplicationRunID)
	got := ok(s.GetRun(ctx, r.ReplicationRunID)).must(t)
	if got.State != store.RunCompleted || got.AmiID != "ami-1" || !got.StartedAt.Equal(t0.Add(time.Minute)) || !got.CompletedTime.Equal(t0.Add(time.Hour)) {
		t.Errorf("stored run = %+v", got)
	}

	// Concurrent starters for one job: exactly one wins.
	ok(s.UpdateRun(ctx, r2.ReplicationRunID, func(r *store.ReplicationRun) error { r.State = store.RunFailed; return nil })).must(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: id, Type: store.RunOnDemand})
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("concurrent start: %v", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d concurrent run starts succeeded, want 1", wins)
	}
}

func testScheduleRuns(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, job := fixture(t, s)
	id := job.ReplicationJobID
	next := t0.Add(36 * time.Hour)
	j, runs, err := s.ScheduleRuns(ctx, id, func(j *store.ReplicationJob) ([]store.ReplicationRun, error) {
		j.State = store.JobActive
		j.NextReplicationRunStartTime = next
		return []store.ReplicationRun{
			{State: store.RunMissed, ScheduledStartTime: t0},
			{State: store.RunMissed, ScheduledStartTime: t0.Add(12 * time.Hour)},
			{ScheduledStartTime: t0.Add(24 * time.Hour)},
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if j.State != store.JobActive || len(runs) != 3 || runs[2].State != store.RunPending || runs[0].ReplicationJobID != id {
		t.Fatalf("scheduled job %+v runs %+v", j, runs)
	}
	// A second live run rolls back the job change too.
	_, _, err = s.ScheduleRuns(ctx, id, func(j *store.ReplicationJob) ([]store.ReplicationRun, error) {
		j.NextReplicationRunStartTime = next.Add(time.Hour)
		return []store.ReplicationRun{{Type: store.RunOnDemand}}, nil
	})
	wantErr(t, err, store.ErrConflict, runs[2].ReplicationRunID)
	if got := ok(s.GetJob(ctx, id)).must(t); !got.NextReplicationRunStartTime.Equal(next) {
		t.Errorf("rolled-back schedule changed next start to %v", got.NextReplicationRunStartTime)
	}
	_, _, err = s.ScheduleRuns(ctx, id, func(j *store.ReplicationJob) ([]store.ReplicationRun, error) {
		return []store.ReplicationRun{{ReplicationJobID: "sms-job-other", State: store.RunMissed}}, nil
	})
	wantErr(t, err, store.ErrInvalid)
	if n := len(ok(s.ListRuns(ctx, id, 0)).must(t)); n != 3 {
		t.Errorf("runs = %d, want 3", n)
	}
}

func testRunListing(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, job := fixture(t, s)
	id := job.ReplicationJobID
	var want []string
	for i := 0; i < 5; i++ {
		r := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: id, State: store.RunCompleted,
			Type: store.RunOnDemand, ScheduledStartTime: t0.Add(time.Duration(i) * time.Hour)})).must(t)[0]
		want = append([]string{r.ReplicationRunID}, want...)
	}
	pending := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: id, ScheduledStartTime: t0.Add(-time.Hour)})).must(t)[0]
	got := ok(s.ListRuns(ctx, id, 3)).must(t)
	if len(got) != 3 {
		t.Fatalf("limit 3 gave %d", len(got))
	}
	for i := range got {
		if got[i].ReplicationRunID != want[i] {
			t.Errorf("run %d = %s, want %s (newest first)", i, got[i].ReplicationRunID, want[i])
		}
	}
	if all := ok(s.ListRuns(ctx, id, 0)).must(t); len(all) != 6 || all[5].ReplicationRunID != pending.ReplicationRunID {
		t.Errorf("all runs: %d, last %v", len(all), all)
	}
	in := ok(s.RunsInState(ctx, store.RunPending, store.RunActive)).must(t)
	if len(in) != 1 || in[0].ReplicationRunID != pending.ReplicationRunID {
		t.Errorf("live runs = %+v", in)
	}
	if in := ok(s.RunsInState(ctx, store.RunCompleted)).must(t); len(in) != 5 || !in[0].ScheduledStartTime.Equal(t0) {
		t.Errorf("completed runs = %d, first at %v", len(in), in[0].ScheduledStartTime)
	}
	if n := ok(s.CountRuns(ctx, id, store.RunOnDemand, t0.Add(2*time.Hour))).must(t); n != 3 {
		t.Errorf("on-demand runs since +2h = %d, want 3", n)
	}
	if n := ok(s.CountRuns(ctx, id, store.RunAutomatic, t0.Add(-2*time.Hour))).must(t); n != 1 {
		t.Errorf("automatic runs = %d, want 1", n)
	}
}

func testUpdateRunAndJob(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, job := fixture(t, s)
	r := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, State: store.RunActive})).must(t)[0]
	run, j, err := s.UpdateRunAndJob(ctx, r.ReplicationRunID, func(r *store.ReplicationRun, j *store.ReplicationJob) error {
		r.State, r.AmiID = store.RunCompleted, "ami-9"
		j.LatestAmiID, j.ConsecutiveFailures, j.State = r.AmiID, 0, store.JobActive
		r.ReplicationJobID = "tampered"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if run.ReplicationJobID != job.ReplicationJobID || run.State != store.RunCompleted || j.LatestAmiID != "ami-9" {
		t.Errorf("returned %+v %+v", run, j)
	}
	if got := ok(s.GetJob(ctx, job.ReplicationJobID)).must(t); got.LatestAmiID != "ami-9" || got.State != store.JobActive {
		t.Errorf("stored job %+v", got)
	}
	if got := ok(s.GetRun(ctx, r.ReplicationRunID)).must(t); got.AmiID != "ami-9" || got.State != store.RunCompleted {
		t.Errorf("stored run %+v", got)
	}
	// An invalid job change rolls back the run change as well.
	_, _, err = s.UpdateRunAndJob(ctx, r.ReplicationRunID, func(r *store.ReplicationRun, j *store.ReplicationJob) error {
		r.StatusMessage = "should not stick"
		j.Frequency = 99
		return nil
	})
	wantErr(t, err, store.ErrInvalid, "frequency 99")
	if got := ok(s.GetRun(ctx, r.ReplicationRunID)).must(t); got.StatusMessage != "" {
		t.Errorf("rolled-back run change stuck: %q", got.StatusMessage)
	}
}

func testLedger(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, job := fixture(t, s)
	r1 := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, State: store.RunFailed})).must(t)[0]
	r2 := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, State: store.RunActive})).must(t)[0]

	snap := ok(s.RecordIntent(ctx, r1.ReplicationRunID, "snapshot", "vm-snapshot", json.RawMessage(`{"name":"rehost-sms-run-1"}`))).must(t)
	other := ok(s.RecordIntent(ctx, r2.ReplicationRunID, "snapshot", "vm-snapshot", nil)).must(t)
	upload := ok(s.RecordIntent(ctx, r1.ReplicationRunID, "stage-disk-0", "multipart-upload", json.RawMessage(`{"key":"k0"}`))).must(t)
	task := ok(s.RecordIntent(ctx, r1.ReplicationRunID, "import", "import-task", json.RawMessage(`{}`))).must(t)
	if !(snap < other && other < upload && upload < task) {
		t.Errorf("ids not increasing: %d %d %d %d", snap, other, upload, task)
	}
	_, err := s.RecordIntent(ctx, "sms-run-missing", "x", "ami", nil)
	wantErr(t, err, store.ErrNotFound, "sms-run-missing")
	_, err = s.RecordIntent(ctx, r1.ReplicationRunID, "x", "ami", json.RawMessage(`{bad`))
	wantErr(t, err, store.ErrInvalid)

	if err := s.RecordCreated(ctx, snap, "snapshot-42", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordCreated(ctx, upload, "upload-abc", json.RawMessage(`{"parts":[]}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateData(ctx, upload, json.RawMessage(`{"parts":[{"n":1,"etag":"e1"}]}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordReleased(ctx, task); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordReleased(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordReleased(ctx, snap); err != nil {
		t.Errorf("releasing twice: %v", err)
	}
	wantErr(t, s.RecordCreated(ctx, snap, "snapshot-43", nil), store.ErrConflict, "released")
	wantErr(t, s.RecordReleased(ctx, 999999), store.ErrNotFound)

	l := ok(s.LedgerForRun(ctx, r1.ReplicationRunID)).must(t)
	if len(l) != 3 || l[0].ID != snap || l[1].ID != upload || l[2].ID != task {
		t.Fatalf("ledger of run 1 = %+v", l)
	}
	if l[0].State != store.LedgerReleased || l[0].ResourceID != "snapshot-42" || string(l[0].Intent) != `{"name":"rehost-sms-run-1"}` || l[0].Step != "snapshot" {
		t.Errorf("snapshot entry = %+v", l[0])
	}
	if l[1].State != store.LedgerCreated || l[1].ResourceID != "upload-abc" || string(l[1].Data) != `{"parts":[{"n":1,"etag":"e1"}]}` || l[1].Kind != "multipart-upload" {
		t.Errorf("upload entry = %+v", l[1])
	}
	if l[2].State != store.LedgerReleased {
		t.Errorf("task entry = %+v", l[2])
	}
	// RecordCreated with nil data keeps stored data.
	if err := s.RecordCreated(ctx, upload, "upload-abc", nil); err != nil {
		t.Fatal(err)
	}
	if e := ok(s.GetLedgerEntry(ctx, upload)).must(t); string(e.Data) != `{"parts":[{"n":1,"etag":"e1"}]}` {
		t.Errorf("data after nil RecordCreated = %s", e.Data)
	}
	un := ok(s.UnreleasedLedger(ctx)).must(t)
	if len(un) != 2 || un[0].ID != other || un[1].ID != upload || un[0].RunID != r2.ReplicationRunID {
		t.Errorf("unreleased = %+v", un)
	}
}

func testHandOver(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, job := fixture(t, s)
	r := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, State: store.RunActive})).must(t)[0]
	obj := ok(s.RecordIntent(ctx, r.ReplicationRunID, "stage", "s3-object", json.RawMessage(`{"key":"k0"}`))).must(t)
	if err := s.RecordCreated(ctx, obj, "k0", json.RawMessage(`{"size":42}`)); err != nil {
		t.Fatal(err)
	}
	pending := ok(s.RecordIntent(ctx, r.ReplicationRunID, "stage", "multipart-upload", nil)).must(t)

	taken := ok(s.HandOver(ctx, obj, "unstage")).must(t)
	if taken.ID <= pending || taken.Step != "unstage" || taken.HandedFrom != obj || taken.Kind != "s3-object" ||
		taken.State != store.LedgerCreated || taken.ResourceID != "k0" || string(taken.Data) != `{"size":42}` || string(taken.Intent) != `{"key":"k0"}` || taken.RunID != r.ReplicationRunID {
		t.Errorf("taken entry = %+v", taken)
	}
	if old := ok(s.GetLedgerEntry(ctx, obj)).must(t); old.State != store.LedgerHandedOver || old.Step != "stage" {
		t.Errorf("entry handed over = %+v", old)
	}
	_, err := s.HandOver(ctx, obj, "other")
	wantErr(t, err, store.ErrConflict, "handed-over")
	// An intent can be handed over too: the taker finds it by name or tag.
	if p := ok(s.HandOver(ctx, pending, "unstage")).must(t); p.State != store.LedgerIntent || p.HandedFrom != pending {
		t.Errorf("intent handed over = %+v", p)
	}
	un := ok(s.UnreleasedLedger(ctx)).must(t)
	if len(un) != 2 || un[0].Step != "unstage" || un[1].Step != "unstage" {
		t.Errorf("unreleased after hand-overs = %+v", un)
	}
	if err := s.RecordReleased(ctx, taken.ID); err != nil {
		t.Fatal(err)
	}
	_, err = s.HandOver(ctx, taken.ID, "retention")
	wantErr(t, err, store.ErrConflict, "released")
	_, err = s.HandOver(ctx, 999999, "unstage")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.HandOver(ctx, pending, "")
	wantErr(t, err, store.ErrInvalid)
	if l := ok(s.LedgerForRun(ctx, r.ReplicationRunID)).must(t); len(l) != 4 {
		t.Errorf("ledger = %+v", l)
	}
}

func testEvents(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := 0; i < 6; i++ {
		job := "sms-job-a"
		if i%2 == 1 {
			job = "sms-job-b"
		}
		e := ok(s.AddEvent(ctx, store.Event{Time: t0.Add(time.Duration(i) * time.Minute), JobID: job, RunID: fmt.Sprintf("run-%d", i/4), Message: fmt.Sprintf("event %d", i)})).must(t)
		if e.ID == 0 || e.Level != store.LevelInfo {
			t.Errorf("added event %+v", e)
		}
	}
	got := ok(s.Events(ctx, store.EventFilter{JobID: "sms-job-a", Limit: 2})).must(t)
	if len(got) != 2 || got[0].Message != "event 4" || got[1].Message != "event 2" || !got[0].Time.Equal(t0.Add(4*time.Minute)) {
		t.Errorf("events of job a = %+v", got)
	}
	got = ok(s.Events(ctx, store.EventFilter{RunID: "run-1"})).must(t)
	if len(got) != 2 || got[0].Message != "event 5" {
		t.Errorf("events of run-1 = %+v", got)
	}
	if n := len(ok(s.Events(ctx, store.EventFilter{})).must(t)); n != 6 {
		t.Errorf("all events = %d", n)
	}
	_, err := s.AddEvent(ctx, store.Event{Level: "debug", Message: "x"})
	wantErr(t, err, store.ErrInvalid, "debug")
	_, err = s.AddEvent(ctx, store.Event{})
	wantErr(t, err, store.ErrInvalid)
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

func testSettings(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, err := s.GetSetting(ctx, "aws.region")
	wantErr(t, err, store.ErrNotFound, "aws.region")
	if err := s.PutSetting(ctx, "aws.region", []byte("eu-west-1")); err != nil {
		t.Fatal(err)
	}
	blob := []byte{0, 0xfe, 'k', 0}
	if err := s.PutSetting(ctx, "aws.credentials", blob); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSetting(ctx, "aws.region", []byte("us-east-2")); err != nil {
		t.Fatal(err)
	}
	if v := ok(s.GetSetting(ctx, "aws.region")).must(t); string(v) != "us-east-2" {
		t.Errorf("region = %q", v)
	}
	if v := ok(s.GetSetting(ctx, "aws.credentials")).must(t); !bytes.Equal(v, blob) {
		t.Errorf("blob = %x", v)
	}
	if err := s.PutSetting(ctx, "empty", nil); err != nil {
		t.Fatal(err)
	}
	if v := ok(s.GetSetting(ctx, "empty")).must(t); v == nil || len(v) != 0 {
		t.Errorf("empty setting = %v", v)
	}
	if err := s.DeleteSetting(ctx, "aws.region"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSetting(ctx, "aws.region"); err != nil {
		t.Errorf("deleting an unset key: %v", err)
	}
	_, err = s.GetSetting(ctx, "aws.region")
	wantErr(t, err, store.ErrNotFound)
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

func testRunProgress(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, job := fixture(t, s)
	r := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, State: store.RunActive})).must(t)[0]
	if got := ok(s.GetRun(ctx, r.ReplicationRunID)).must(t); got.Progress.Step != "" || got.Progress.Disks != nil {
		t.Errorf("new run has progress %+v", got.Progress)
	}
	want := store.RunProgress{Step: "stage", ImportPercent: 0, Disks: []store.DiskProgress{
		{Disk: 0, BytesDone: 1 << 40, BytesTotal: 2 << 40}, {Disk: 1, BytesDone: 0, BytesTotal: 512}}}
	ok(s.UpdateRun(ctx, r.ReplicationRunID, func(x *store.ReplicationRun) error { x.Progress = want; return nil })).must(t)
	got := ok(s.GetRun(ctx, r.ReplicationRunID)).must(t).Progress
	if got.Step != want.Step || len(got.Disks) != 2 || got.Disks[0] != want.Disks[0] || got.Disks[1] != want.Disks[1] {
		t.Errorf("progress read back %+v, want %+v", got, want)
	}
	ok(s.UpdateRun(ctx, r.ReplicationRunID, func(x *store.ReplicationRun) error {
		x.Progress = store.RunProgress{Step: "wait-import", ImportPercent: 42}
		return nil
	})).must(t)
	if got := ok(s.RunsInState(ctx, store.RunActive)).must(t); len(got) != 1 || got[0].Progress.ImportPercent != 42 || got[0].Progress.Disks != nil {
		t.Errorf("progress in a listing %+v", got)
	}
}
