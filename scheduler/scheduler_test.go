package scheduler

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

// seed is a Monday at 10:17 — runs must land on :17, not on the hour.
var seed = time.Date(2026, 3, 2, 10, 17, 0, 0, time.UTC)

type call struct {
	run store.ReplicationRun
	at  time.Time // fake clock when Run was called
}

// fakeRunner records calls; fn, if set, decides the outcome.
type fakeRunner struct {
	clock *FakeClock
	mu    sync.Mutex
	calls []call
	fn    func(ctx context.Context, run store.ReplicationRun) error
}

func (f *fakeRunner) Run(ctx context.Context, run store.ReplicationRun) error {
	f.mu.Lock()
	f.calls = append(f.calls, call{run, f.clock.Now()})
	fn := f.fn
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx, run)
	}
	return nil
}

func (f *fakeRunner) callsOf(jobID string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.run.ReplicationJobID == jobID {
			out = append(out, c)
		}
	}
	return out
}

type harness struct {
	t      *testing.T
	st     *store.SQLite
	clock  *FakeClock
	runner *fakeRunner
	s      *Scheduler
	srcID  string
}

func newHarness(t *testing.T, start time.Time, o Options) *harness {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "rehost.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clock := NewFakeClock(start)
	st.SetClock(clock.Now)
	src, err := st.CreateSource(context.Background(), store.Source{Kind: store.SourceVSphere, Name: "vc"})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, st: st, clock: clock, runner: &fakeRunner{clock: clock}, srcID: src.ID}
	h.s = h.newScheduler(o)
	return h
}

func (h *harness) newScheduler(o Options) *Scheduler {
	o.Clock = h.clock
	s := New(h.st, h.runner, o)
	h.t.Cleanup(s.Stop)
	return s
}

// job creates a server and a job on it, and tells the scheduler.
func (h *harness) job(j store.ReplicationJob) store.ReplicationJob {
	h.t.Helper()
	ctx := context.Background()
	srv, err := h.st.UpsertServer(ctx, store.Server{SourceID: h.srcID, VMID: fmt.Sprintf("vm-%d", time.Now().UnixNano()), Name: "vm"})
	if err != nil {
		h.t.Fatal(err)
	}
	j.ServerID = srv.ServerID
	j, err = h.st.CreateJob(ctx, j)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.s.Reschedule(ctx, j.ReplicationJobID); err != nil {
		h.t.Fatal(err)
	}
	return h.getJob(j.ReplicationJobID)
}

func (h *harness) getJob(id string) store.ReplicationJob {
	h.t.Helper()
	j, err := h.st.GetJob(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}

// tick runs a scheduler pass at the current fake time and waits for the
// runs it started.
func (h *harness) tick() {
	h.t.Helper()
	if err := h.s.RunDue(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.s.Wait()
}

// runs lists a job's runs oldest first.
func (h *harness) runs(jobID string) []store.ReplicationRun {
	h.t.Helper()
	rs, err := h.st.ListRuns(context.Background(), jobID, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
		rs[i], rs[j] = rs[j], rs[i]
	}
	return rs
}

func TestWeekOfRunsAnchoredAtSeed(t *testing.T) {
	h := newHarness(t, seed.Add(-30*time.Minute), Options{})
	hourly := h.job(store.ReplicationJob{SeedReplicationTime: seed, Frequency: 1})
	daily := h.job(store.ReplicationJob{SeedReplicationTime: seed, Frequency: 24})
	if !hourly.NextReplicationRunStartTime.Equal(seed) {
		t.Fatalf("next start of a future-seeded job = %v, want the seed %v", hourly.NextReplicationRunStartTime, seed)
	}
	end := seed.Add(7 * 24 * time.Hour)
	for h.clock.Now().Before(end) {
		h.tick()
		h.clock.Advance(time.Minute)
	}
	for _, tc := range []struct {
		job   store.ReplicationJob
		every time.Duration
		want  int
	}{{hourly, time.Hour, 168}, {daily, 24 * time.Hour, 7}} {
		calls := h.runner.callsOf(tc.job.ReplicationJobID)
		if len(calls) != tc.want {
			t.Fatalf("%v job: %d runs in a week, want %d", tc.every, len(calls), tc.want)
		}
		for k, c := range calls {
			want := seed.Add(time.Duration(k) * tc.every)
			if !c.run.ScheduledStartTime.Equal(want) || !c.at.Equal(want) || !c.run.StartedAt.Equal(want) {
				t.Fatalf("%v job run %d: scheduled %v, called at %v, started %v; want %v",
					tc.every, k, c.run.ScheduledStartTime, c.at, c.run.StartedAt, want)
			}
			if c.run.State != store.RunActive || c.run.Type != store.RunAutomatic {
				t.Errorf("runner got run in state %s type %s", c.run.State, c.run.Type)
			}
		}
		runs := h.runs(tc.job.ReplicationJobID)
		if len(runs) != tc.want {
			t.Errorf("%d run rows, want %d", len(runs), tc.want)
		}
		for _, r := range runs {
			if r.State != store.RunCompleted || !r.CompletedTime.Equal(r.ScheduledStartTime) {
				t.Errorf("run %+v not completed at its start", r)
			}
		}
		j := h.getJob(tc.job.ReplicationJobID)
		if j.State != store.JobActive || !j.NextReplicationRunStartTime.Equal(end) {
			t.Errorf("job after a week: state %s next %v, want ACTIVE %v", j.State, j.NextReplicationRunStartTime, end)
		}
	}
}

// An incremental job every 15 minutes runs on its quarter-hour grid from
// the seed (:17, :32, :47, :02); one still running when its next slot comes
// has that slot missed, as an hourly job does.
func TestQuarterHourIncrementalJob(t *testing.T) {
	h := newHarness(t, seed, Options{})
	j := h.job(store.ReplicationJob{SeedReplicationTime: seed, Mode: store.ModeIncremental, FrequencyMinutes: 15})
	end := seed.Add(3 * time.Hour)
	for h.clock.Now().Before(end) {
		h.tick()
		h.clock.Advance(time.Minute)
	}
	calls := h.runner.callsOf(j.ReplicationJobID)
	if len(calls) != 12 {
		t.Fatalf("%d runs in 3 hours every 15 minutes, want 12", len(calls))
	}
	for k, c := range calls {
		if want := seed.Add(time.Duration(k) * 15 * time.Minute); !c.run.ScheduledStartTime.Equal(want) {
			t.Fatalf("run %d scheduled at %v, want %v", k, c.run.ScheduledStartTime, want)
		}
	}
	if next := h.getJob(j.ReplicationJobID).NextReplicationRunStartTime; !next.Equal(end) {
		t.Errorf("next start %v, want %v", next, end)
	}

	// A run lasting 20 minutes: the slot 15 minutes in is missed.
	release := make(chan struct{})
	h.runner.fn = func(ctx context.Context, run store.ReplicationRun) error {
		<-release
		return nil
	}
	if err := h.s.RunDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(15 * time.Minute)
	if err := h.s.RunDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(release)
	h.s.Wait()
	missed := 0
	for _, r := range h.runs(j.ReplicationJobID) {
		if r.State == store.RunMissed {
			missed++
		}
	}
	if missed != 1 {
		t.Errorf("%d slots missed during a 20-minute run, want 1", missed)
	}
}

func TestSeedInFutureRunsAtSeed(t *testing.T) {
	h := newHarness(t, seed.Add(-5*time.Hour), Options{})
	j := h.job(store.ReplicationJob{SeedReplicationTime: seed, Frequency: 6})
	if j.State != store.JobPending || !j.NextReplicationRunStartTime.Equal(seed) {
		t.Fatalf("job %s next %v", j.State, j.NextReplicationRunStartTime)
	}
	h.clock.Set(seed.Add(-time.Second))
	h.tick()
	if n := len(h.runner.calls); n != 0 {
		t.Fatalf("%d runs before the seed", n)
	}
	h.clock.Set(seed)
	h.tick()
	calls := h.runner.callsOf(j.ReplicationJobID)
	if len(calls) != 1 || !calls[0].run.ScheduledStartTime.Equal(seed) {
		t.Fatalf("calls at seed = %+v", calls)
	}
	if j := h.getJob(j.ReplicationJobID); j.State != store.JobActive || !j.NextReplicationRunStartTime.Equal(seed.Add(6*time.Hour)) {
		t.Errorf("after first run: %s next %v", j.State, j.NextReplicationRunStartTime)
	}
}

func TestNewJobWithPastSeedRunsNow(t *testing.T) {
	now := seed.Add(90 * time.Minute)
	h := newHarness(t, now, Options{})
	j := h.job(store.ReplicationJob{SeedReplicationTime: seed, Frequency: 1})
	h.tick()
	calls := h.runner.callsOf(j.ReplicationJobID)
	if len(calls) != 1 || !calls[0].run.ScheduledStartTime.Equal(seed.Add(time.Hour)) || !calls[0].at.Equal(now) {
		t.Fatalf("calls = %+v", calls)
	}
	if rs := h.runs(j.ReplicationJobID); len(rs) != 1 {
		t.Errorf("a new job recorded %d runs, want 1 and no MISSED ones", len(rs))
	}
	if j := h.getJob(j.ReplicationJobID); !j.NextReplicationRunStartTime.Equal(seed.Add(2 * time.Hour)) {
		t.Errorf("next = %v", j.NextReplicationRunStartTime)
	}
}

func TestDowntimeRecordsMissedAndOneCatchUp(t *testing.T) {
	h := newHarness(t, seed, Options{})
	j := h.job(store.ReplicationJob{SeedReplicationTime: seed, Frequency: 12})
	h.tick() // the run at the seed
	h.clock.Set(seed.Add(time.Hour))
	h.s.Stop()

	// The connector is down for 30 hours: the slots at +12 h and +24 h pass.
	h.clock.Set(seed.Add(31 * time.Hour))
	h.s = h.newScheduler(Options{})
	h.tick()
	runs := h.runs(j.ReplicationJobID)
	if len(runs) != 3 {
		t.Fatalf("runs = %+v", runs)
	}
	if runs[1].State != store.RunMissed || !runs[1].ScheduledStartTime.Equal(seed.Add(12*time.Hour)) || !runs[1].StartedAt.IsZero() {
		t.Errorf("missed slot = %+v", runs[1])
	}
	catchUp := runs[2]
	if catchUp.State != store.RunCompleted || !catchUp.ScheduledStartTime.Equal(seed.Add(24*time.Hour)) || !catchUp.StartedAt.Equal(seed.Add(31*time.Hour)) {
		t.Errorf("catch-up run = %+v", catchUp)
	}
	if calls := h.runner.callsOf(j.ReplicationJobID); len(calls) != 2 {
		t.Errorf("runner called %d times, want 2 (seed and one catch-up)", len(calls))
	}
	if j := h.getJob(j.ReplicationJobID); !j.NextReplicationRunStartTime.Equal(seed.Add(36 * time.Hour)) {
		t.Errorf("next after catch-up = %v", j.NextReplicationRunStartTime)
	}
	evs, err := h.st.Events(context.Background(), store.EventFilter{JobID: j.ReplicationJobID})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs {
		found = found || (e.Level == store.LevelWarn && strings.Contains(e.Message, "1 scheduled runs missed") && strings.Contains(e.Message, "catch-up"))
	}
	if !found {
		t.Errorf("no missed-runs event in %+v", evs)
	}

	// A longer gap records one row per slot, bounded by MaxMissedRecorded.
	h.s.Stop()
	h.clock.Set(seed.Add(36*time.Hour + 12*time.Hour*10 + time.Minute)) // slots +36 … +156: 11 due
	h.s = h.newScheduler(Options{MaxMissedRecorded: 4})
	h.tick()
	runs = h.runs(j.ReplicationJobID)
	var missed []time.Time
	for _, r := range runs[3:] {
		if r.State == store.RunMissed {
			missed = append(missed, r.ScheduledStartTime)
		}
	}
	if len(runs) != 3+5 || len(missed) != 4 || !missed[0].Equal(seed.Add(108*time.Hour)) || !runs[7].ScheduledStartTime.Equal(seed.Add(156*time.Hour)) {
		t.Errorf("after 10-slot gap with cap 4: %d rows, missed %v", len(runs), missed)
	}
}

func TestSlotDuringLongRunIsMissed(t *testing.T) {
	h := newHarness(t, seed, Options{})
	release := make(chan struct{})
	h.runner.fn = func(ctx context.Context, run store.ReplicationRun) error {
		if run.ScheduledStartTime.Equal(seed) {
			<-release
		}
		return nil
	}
	j := h.job(store.ReplicationJob{SeedReplicationTime: seed, Frequency: 1})
	if err := h.s.RunDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Duration{time.Hour, 2 * time.Hour} {
		h.clock.Set(seed.Add(at))
		if err := h.s.RunDue(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	h.s.Wait()
	h.clock.Set(seed.Add(3 * time.Hour))
	h.tick()
	runs := h.runs(j.ReplicationJobID)
	want := []store.RunState{store.RunCompleted, store.RunMissed, store.RunMissed, store.RunCompleted}
	if len(runs) != len(want) {
		t.Fatalf("runs = %+v", runs)
	}
	for i, r := range runs {
		if r.State != want[i] || !r.ScheduledStartTime.Equal(seed.Add(time.Duration(i)*time.Hour)) {
			t.Errorf("run %d: %s at %v, want %s at +%dh", i, r.State, r.ScheduledStartTime, want[i], i)
		}
	}
}

func TestOnDemandLimit(t *testing.T) {
	h := newHarness(t, seed, Options{})
	ctx := context.Background()
	j := h.job(store.ReplicationJob{SeedReplicationTime: seed.Add(100 * time.Hour), Frequency: 24})
	first, err := h.s.Trigger(ctx, j.ReplicationJobID)
	if err != nil {
		t.Fatal(err)
	}
	h.s.Wait()
	h.clock.Advance(time.Hour)
	if _, err := h.s.Trigger(ctx, j.ReplicationJobID); err != nil {
		t.Fatal(err)
	}
	h.s.Wait()
	h.clock.Advance(time.Hour)
	_, err = h.s.Trigger(ctx, j.ReplicationJobID)
	if !errors.Is(err, ErrOnDemandLimit) || !strings.Contains(err.Error(), "limit 2") ||
		!strings.Contains(err.Error(), seed.Add(24*time.Hour).Format(time.RFC3339)) {
		t.Fatalf("third trigger: %v", err)
	}
	r, err := h.st.GetRun(ctx, first)
	if err != nil || r.Type != store.RunOnDemand || r.State != store.RunCompleted || !r.ScheduledStartTime.Equal(seed) {
		t.Errorf("first on-demand run = %+v, %v", r, err)
	}
	h.clock.Set(seed.Add(24 * time.Hour)) // the first leaves the window
	if _, err := h.s.Trigger(ctx, j.ReplicationJobID); err != nil {
		t.Fatalf("trigger after 24 h: %v", err)
	}
	// A run in progress blocks another.
	_, err = h.s.Trigger(ctx, j.ReplicationJobID)
	if !errors.Is(err, store.ErrConflict) && !errors.Is(err, ErrOnDemandLimit) {
		t.Errorf("trigger during a run: %v", err)
	}
	h.s.Wait()
	if n := len(h.runner.callsOf(j.ReplicationJobID)); n != 3 {
		t.Errorf("runner called %d times, want 3", n)
	}
	if j := h.getJob(j.ReplicationJobID); j.State != store.JobActive || !j.NextReplicationRunStartTime.Equal(seed.Add(100*time.Hour)) {
		t.Errorf("on-demand runs changed the schedule: %s next %v", j.State, j.NextReplicationRunStartTime)
	}

	// A configured limit, and a live run gives ErrConflict naming it.
	h2 := newHarness(t, seed, Options{OnDemandPer24h: -1})
	block := make(chan struct{})
	h2.runner.fn = func(ctx context.Context, run store.ReplicationRun) error { <-block; return nil }
	j2 := h2.job(store.ReplicationJob{SeedReplicationTime: seed.Add(time.Hour), Frequency: 1})
	running, err := h2.s.Trigger(ctx, j2.ReplicationJobID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h2.s.Trigger(ctx, j2.ReplicationJobID)
	if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), running) {
		t.Errorf("trigger during run %s: %v", running, err)
	}
	close(block)
	h2.s.Wait()
	for i := 0; i < 4; i++ {
		if _, err := h2.s.Trigger(ctx, j2.ReplicationJobID); err != nil {
			t.Fatalf("unlimited trigger %d: %v", i, err)
		}
		h2.s.Wait()
	}
}

func TestTriggerRefusesFinishedJobs(t *testing.T) {
	h := newHarness(t, seed, Options{})
	ctx := context.Background()
	j := h.job(store.ReplicationJob{SeedReplicationTime: seed, RunOnce: true})
	h.tick()
	if j := h.getJob(j.ReplicationJobID); j.State != store.JobCompleted {
		t.Fatalf("run-once job is %s", j.State)
	}
	if _, err := h.s.Trigger(ctx, j.ReplicationJobID); !errors.Is(err, ErrJobState) || !strings.Contains(err.Error(), "COMPLETED") {
		t.Errorf("trigger of completed job: %v", err)
	}
	if _, err := h.s.Trigger(ctx, "sms-job-missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("trigger of missing job: %v", err)
	}
}

func TestConcurrencyLimitQueues(t *testing.T) {
	h := newHarness(t, seed, Options{MaxConcurrent: 2})
	var mu sync.Mutex
	running, maxRunning := 0, 0
	release := make(chan struct{})
	started := make(chan string, 10)
	h.runner.fn = func(ctx context.Context, run store.ReplicationRun) error {
		mu.Lock()
		running++
		maxRunning = max(maxRunning, running)
		mu.Unlock()
		started <- run.ReplicationRunID
		<-release
		mu.Lock()
		running--
		mu.Unlock()
		return nil
	}
	var jobs []store.ReplicationJob
	for i := 0; i < 5; i++ {
		jobs = append(jobs, h.job(store.ReplicationJob{SeedReplicationTime: seed, Frequency: 24}))
	}
	if err := h.s.RunDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-started
	<-started
	pending, err := h.st.RunsInState(context.Background(), store.RunPending)
	if err != nil {
		t.Fatal(err)
	}
	active, err := h.st.RunsInState(context.Background(), store.RunActive)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 3 || len(active) != 2 {
		t.Fatalf("pending %d active %d, want 3 and 2", len(pending), len(active))
	}
	if q, r := h.s.Queued(); q != 3 || r != 2 {
		t.Errorf("Queued() = %d, %d", q, r)
	}
	for _, p := range pending {
		if !p.StartedAt.IsZero() {
			t.Errorf("queued run has StartedAt %v", p.StartedAt)
		}
	}
	// Release runs one at a time, a minute apart: each frees a slot for the next.
	for i := 0; i < 5; i++ {
		h.clock.Advance(time.Minute)
		release <- struct{}{}
		if i < 3 {
			<-started
		}
	}
	h.s.Wait()
	if maxRunning != 2 {
		t.Errorf("at most %d ran at once, want 2", maxRunning)
	}
	for _, j := range jobs {
		rs := h.runs(j.ReplicationJobID)
		if len(rs) != 1 || rs[0].State != store.RunCompleted {
			t.Errorf("job %s runs %+v", j.ReplicationJobID, rs)
		}
	}
	late := 0
	for _, j := range jobs {
		if rs := h.runs(j.ReplicationJobID); rs[0].StartedAt.After(seed) {
			late++
		}
	}
	if late != 3 {
		t.Errorf("%d runs started after waiting, want 3", late)
	}
}

func TestImportSlotLimitsPerRegion(t *testing.T) {
	h := newHarness(t, seed, Options{ImportLimitPerRegion: 2})
	ctx := context.Background()
	r1, err := h.s.ImportSlot(ctx, "us-east-1", "run", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := h.s.ImportSlot(ctx, "us-east-1", "run", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := h.s.ImportSlot(ctx, "eu-west-1", "run", 1, 0)
	if err != nil {
		t.Fatalf("another region's slot: %v", err)
	}
	defer other()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.s.ImportSlot(cancelled, "us-east-1", "run", 1, 0); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "us-east-1") {
		t.Errorf("full region with cancelled ctx: %v", err)
	}
	got := make(chan func(), 1)
	go func() {
		r, err := h.s.ImportSlot(ctx, "us-east-1", "run", 1, 0)
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	time.Sleep(5 * time.Millisecond)
	select {
	case <-got:
		t.Fatal("a third import slot was granted while two were held")
	default:
	}
	r1()
	r1() // a second release must not free another slot
	var r3 func()
	select {
	case r3 = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not granted the freed slot")
	}
	if _, err := h.s.ImportSlot(cancelled, "us-east-1", "run", 1, 0); err == nil {
		t.Error("double release freed an extra slot")
	}
	r2()
	r3()
}

func TestPauseAfterFailuresAndResume(t *testing.T) {
	h := newHarness(t, seed, Options{PauseAfterFailures: 3})
	fail := true
	h.runner.fn = func(ctx context.Context, run store.ReplicationRun) error {
		if fail {
			return errors.New("VM Import: ClientError: unsupported kernel")
		}
		_, err := h.st.UpdateRun(ctx, run.ReplicationRunID, func(r *store.ReplicationRun) error { r.AmiID = "ami-0abc"; return nil })
		return err
	}
	j := h.job(store.ReplicationJob{SeedReplicationTime: seed, Frequency: 1})
	id := j.ReplicationJobID

	// fail, fail, success: the count resets.
	for i, f := range []bool{true, true, false} {
		fail = f
		h.clock.Set(seed.Add(time.Duration(i) * time.Hour))
		h.tick()
	}
	if j := h.getJob(id); j.ConsecutiveFailures != 0 || j.State != store.JobActive || j.LatestAmiID != "ami-0abc" || j.StatusMessage != "" {
		t.Fatalf("after a success: %+v", j)
	}
	fail = true
	for i := 3; i < 6; i++ {
		h.clock.Set(seed.Add(time.Duration(i) * time.Hour))
		h.tick()
		j := h.getJob(id)
		if i < 5 && (j.State != store.JobFailing || j.ConsecutiveFailures != i-2) {
			t.Errorf("after failure %d: %s %d", i-2, j.State, j.ConsecutiveFailures)
		}
	}
	j = h.getJob(id)
	if j.State != store.JobPausedOnFailure || j.ConsecutiveFailures != 3 || !j.NextReplicationRunStartTime.IsZero() ||
		!strings.Contains(j.StatusMessage, "unsupported kernel") || !strings.Contains(j.StatusMessage, "resume") {
		t.Fatalf("after 3 failures: %+v", j)
	}
	last := h.runs(id)[5]
	if last.State != store.RunFailed || last.StatusMessage != "VM Import: ClientError: unsupported kernel" {
		t.Errorf("failed run = %+v", last)
	}
	before := len(h.runner.calls)
	for i := 6; i < 12; i++ {
		h.clock.Set(seed.Add(time.Duration(i) * time.Hour))
		h.tick()
	}
	if len(h.runner.calls) != before {
		t.Fatalf("a paused job ran %d times", len(h.runner.calls)-before)
	}
	if rs := h.runs(id); len(rs) != 6 {
		t.Errorf("a paused job recorded %d more runs", len(rs)-6)
	}

	h.clock.Set(seed.Add(11*time.Hour + 30*time.Minute))
	if err := h.s.ResumeJob(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	j = h.getJob(id)
	if j.State != store.JobActive || j.ConsecutiveFailures != 0 || !j.NextReplicationRunStartTime.Equal(seed.Add(12*time.Hour)) {
		t.Fatalf("resumed job: %+v", j)
	}
	if err := h.s.ResumeJob(context.Background(), id); !errors.Is(err, ErrJobState) {
		t.Errorf("resuming an active job: %v", err)
	}
	fail = false
	h.clock.Set(seed.Add(12 * time.Hour))
	h.tick()
	rs := h.runs(id)
	if len(rs) != 7 || rs[6].State != store.RunCompleted || !rs[6].ScheduledStartTime.Equal(seed.Add(12*time.Hour)) {
		t.Errorf("after resume: %d runs, last %+v (slots while paused must not be MISSED)", len(rs), rs[len(rs)-1])
	}
}

func TestRunOnce(t *testing.T) {
	h := newHarness(t, seed, Options{})
	ctx := context.Background()
	fail := true
	h.runner.fn = func(ctx context.Context, run store.ReplicationRun) error {
		if fail {
			return errors.New("export disk 1: NFC lease expired")
		}
		return nil
	}
	j := h.job(store.ReplicationJob{SeedReplicationTime: seed.Add(time.Hour), RunOnce: true})
	h.clock.Set(seed.Add(time.Hour))
	h.tick()
	j = h.getJob(j.ReplicationJobID)
	if j.State != store.JobFailed || !strings.Contains(j.StatusMessage, "NFC lease") {
		t.Fatalf("failed run-once job: %+v", j)
	}
	fail = false
	if err := h.s.ResumeJob(ctx, j.ReplicationJobID); err != nil {
		t.Fatal(err)
	}
	h.tick()
	j = h.getJob(j.ReplicationJobID)
	if j.State != store.JobCompleted || !j.NextReplicationRunStartTime.IsZero() {
		t.Fatalf("run-once after success: %+v", j)
	}
	for i := 0; i < 72; i++ {
		h.clock.Advance(time.Hour)
		h.tick()
	}
	if n := len(h.runner.callsOf(j.ReplicationJobID)); n != 2 {
		t.Errorf("run-once job ran %d times, want 2 (fail, then success)", n)
	}
	// Rescheduling a completed run-once job schedules nothing.
	if err := h.s.Reschedule(ctx, j.ReplicationJobID); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Hour)
	h.tick()
	if n := len(h.runner.callsOf(j.ReplicationJobID)); n != 2 {
		t.Errorf("run-once ran again after Reschedule")
	}
}

func TestRescheduleAppliesNewFrequency(t *testing.T) {
	h := newHarness(t, seed, Options{})
	ctx := context.Background()
	j := h.job(store.ReplicationJob{SeedReplicationTime: seed, Frequency: 24})
	h.tick()
	h.clock.Set(seed.Add(90 * time.Minute))
	if _, err := h.st.UpdateJob(ctx, j.ReplicationJobID, func(j *store.ReplicationJob) error { j.Frequency = 4; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Reschedule(ctx, j.ReplicationJobID); err != nil {
		t.Fatal(err)
	}
	if j := h.getJob(j.ReplicationJobID); !j.NextReplicationRunStartTime.Equal(seed.Add(4 * time.Hour)) {
		t.Fatalf("next after 24→4 h = %v", j.NextReplicationRunStartTime)
	}
	// Deleting the job drops it from the schedule.
	if _, err := h.st.UpdateJob(ctx, j.ReplicationJobID, func(j *store.ReplicationJob) error { j.State = store.JobDeleted; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Reschedule(ctx, j.ReplicationJobID); err != nil {
		t.Fatal(err)
	}
	h.clock.Set(seed.Add(10 * time.Hour))
	h.tick()
	if n := len(h.runner.callsOf(j.ReplicationJobID)); n != 1 {
		t.Errorf("deleted job ran: %d calls", n)
	}
}

func TestRunnerPanicFailsRun(t *testing.T) {
	h := newHarness(t, seed, Options{})
	h.runner.fn = func(ctx context.Context, run store.ReplicationRun) error { panic("nil map") }
	j := h.job(store.ReplicationJob{SeedReplicationTime: seed, Frequency: 1})
	h.tick()
	rs := h.runs(j.ReplicationJobID)
	if len(rs) != 1 || rs[0].State != store.RunFailed || !strings.Contains(rs[0].StatusMessage, "panicked: nil map") {
		t.Fatalf("runs %+v", rs)
	}
}

func TestLoopFiresOnFakeClock(t *testing.T) {
	h := newHarness(t, seed.Add(-time.Hour), Options{})
	called := make(chan store.ReplicationRun, 1)
	h.runner.fn = func(ctx context.Context, run store.ReplicationRun) error { called <- run; return nil }
	j := h.job(store.ReplicationJob{SeedReplicationTime: seed, Frequency: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := h.s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	waitTimer(t, h.clock)
	h.clock.Set(seed)
	select {
	case r := <-called:
		if r.ReplicationJobID != j.ReplicationJobID || !r.ScheduledStartTime.Equal(seed) {
			t.Errorf("loop ran %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("loop did not dispatch at the seed time")
	}
	h.s.Stop()
	if err := h.s.RunDue(ctx); !errors.Is(err, ErrStopped) {
		t.Errorf("RunDue after Stop: %v", err)
	}
}

// waitTimer waits until the loop sleeps on the fake clock.
func waitTimer(t *testing.T, c *FakeClock) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Timers() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("scheduler loop never waited on the clock")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStopLeavesRunActiveAndStartResumesIt(t *testing.T) {
	h := newHarness(t, seed, Options{})
	ctx := context.Background()
	started := make(chan struct{}, 1)
	h.runner.fn = func(ctx context.Context, run store.ReplicationRun) error {
		started <- struct{}{}
		<-ctx.Done()
		return fmt.Errorf("stage disk 0: %w", ctx.Err())
	}
	j := h.job(store.ReplicationJob{SeedReplicationTime: seed, Frequency: 12})
	if err := h.s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-started
	h.s.Stop()
	rs := h.runs(j.ReplicationJobID)
	if len(rs) != 1 || rs[0].State != store.RunActive {
		t.Fatalf("after Stop: %+v", rs)
	}
	if j := h.getJob(j.ReplicationJobID); j.ConsecutiveFailures != 0 {
		t.Errorf("shutdown counted as a failure: %+v", j)
	}

	h.clock.Advance(time.Hour)
	h.runner.fn = nil
	h.s = h.newScheduler(Options{})
	if err := h.s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	h.s.Wait()
	calls := h.runner.callsOf(j.ReplicationJobID)
	if len(calls) != 2 || calls[1].run.ReplicationRunID != rs[0].ReplicationRunID || !calls[1].run.StartedAt.Equal(seed) {
		t.Fatalf("resumed calls = %+v", calls)
	}
	if rs := h.runs(j.ReplicationJobID); len(rs) != 1 || rs[0].State != store.RunCompleted {
		t.Errorf("after resume: %+v", rs)
	}
}

// flakyStore fails ScheduleRuns while failing is set.
type flakyStore struct {
	store.Store
	mu      sync.Mutex
	failing bool
	calls   int
}

func (f *flakyStore) ScheduleRuns(ctx context.Context, jobID string, fn func(*store.ReplicationJob) ([]store.ReplicationRun, error)) (store.ReplicationJob, []store.ReplicationRun, error) {
	f.mu.Lock()
	f.calls++
	failing := f.failing
	f.mu.Unlock()
	if failing {
		return store.ReplicationJob{}, nil, errors.New("disk I/O error")
	}
	return f.Store.ScheduleRuns(ctx, jobID, fn)
}

func TestSchedulingErrorIsRetriedLater(t *testing.T) {
	h := newHarness(t, seed, Options{})
	flaky := &flakyStore{Store: h.st, failing: true}
	h.s.Stop()
	h.s = New(flaky, h.runner, Options{Clock: h.clock})
	t.Cleanup(h.s.Stop)
	j := h.job(store.ReplicationJob{SeedReplicationTime: seed, Frequency: 1})
	ctx := context.Background()
	if err := h.s.RunDue(ctx); err == nil || !strings.Contains(err.Error(), "disk I/O error") {
		t.Fatalf("RunDue with a failing store: %v", err)
	}
	if err := h.s.RunDue(ctx); err != nil {
		t.Fatalf("immediate second pass: %v", err)
	}
	if flaky.calls != 1 {
		t.Errorf("retried %d times without waiting", flaky.calls-1)
	}
	flaky.mu.Lock()
	flaky.failing = false
	flaky.mu.Unlock()
	h.clock.Advance(retryDelay)
	h.tick()
	calls := h.runner.callsOf(j.ReplicationJobID)
	if len(calls) != 1 || !calls[0].run.ScheduledStartTime.Equal(seed) {
		t.Fatalf("after retry: %+v", calls)
	}
}
