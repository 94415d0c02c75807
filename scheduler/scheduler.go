// Package scheduler decides when replication runs happen: every 1–24 h (an
// incremental job also every 15, 20 or 30 minutes) anchored at the job's
// seed time, once for run-once jobs, or on demand. It
// records slots missed while the connector was down, pauses a job after
// repeated failures, and queues runs behind a global concurrency limit and a
// per-region VM Import limit instead of failing them.
//
// Division of labour with the Runner (the connector's run state machine):
//
//   - The scheduler creates the run row (PENDING, with its type and
//     ScheduledStartTime), marks it ACTIVE with StartedAt when capacity
//     allows, and calls Runner.Run in a goroutine.
//   - While it runs, the Runner writes Stage, StageProgress, StatusMessage and
//     AmiID (store.UpdateRun) and never the run's State.
//   - When Run returns, the scheduler writes the final State (COMPLETED on
//     nil, FAILED otherwise, with StatusMessage set to the error text — so the
//     Runner returns errors a user can act on), CompletedTime, and the job:
//     State, ConsecutiveFailures, NextReplicationRunStartTime, LatestAmiID
//     (taken from the run's AmiID), and an event.
//   - A Run that returns because Stop cancelled its context leaves the run
//     ACTIVE; the next Start dispatches it again, and the Runner resumes it
//     from its persisted ledger and steps.
package scheduler

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

// Store is what the scheduler needs of the persisted state: the jobs, their
// runs, and the events it adds.
type Store interface {
	store.Jobs
	store.Runs
	AddEvent(ctx context.Context, e store.Event) (store.Event, error)
}

// Runner carries out one replication run. Run is called with the run in
// state ACTIVE; it may be called again for a run that was ACTIVE when the
// previous process stopped, and must then resume or redo it idempotently.
// It returns nil when the AMI is ready, or an error whose text tells the user
// what failed and what to do. It must return promptly once ctx is cancelled.
type Runner interface {
	Run(ctx context.Context, run store.ReplicationRun) error
}

// Errors the scheduler returns (besides the store's).
var (
	// ErrOnDemandLimit: the job has had its quota of on-demand runs in the
	// last 24 hours.
	ErrOnDemandLimit = errors.New("on-demand run limit reached")
	// ErrJobState: the job's state does not allow the operation (e.g. an
	// on-demand run of a deleted job, resuming a job that is not paused).
	ErrJobState = errors.New("job state does not allow this")
	// ErrStopped: the scheduler has been stopped.
	ErrStopped = errors.New("scheduler stopped")
)

// Options tune a Scheduler; zero fields take the defaults.
type Options struct {
	Clock Clock // default RealClock
	// MaxConcurrent runs at once, across all jobs (default 2). Runs beyond
	// it wait PENDING.
	MaxConcurrent int
	// ImportLimitPerRegion is how many ImportImage tasks one region allows
	// at once (default DefaultImportLimit), SnapshotImportLimitPerRegion
	// how many ImportSnapshot tasks (default DefaultSnapshotImportLimit):
	// runs beyond them wait in ImportSlot, granted slots in the order they
	// asked.
	ImportLimitPerRegion         int
	SnapshotImportLimitPerRegion int
	// OnDemandPer24h limits Trigger per job per rolling 24 h (default 2, as
	// SMS did); negative means unlimited.
	OnDemandPer24h int
	// PauseAfterFailures consecutive failed runs put a recurring job in
	// PAUSED_ON_FAILURE (default 3).
	PauseAfterFailures int
	// MaxMissedRecorded bounds the MISSED rows written for one gap (default
	// 1000); older slots of a longer gap are only counted in an event.
	MaxMissedRecorded int
	// ResyncInterval is how often the loop reloads jobs and pending runs
	// from the store, to pick up changes another process made (the CLI on
	// the appliance): default DefaultResyncInterval.
	ResyncInterval time.Duration
	// Passive schedulers record runs (Trigger, Reschedule) but never start
	// them: a CLI process beside the daemon, whose scheduler picks the runs
	// up at its next resync.
	Passive bool
	// Fleet, when set, makes this scheduler one member of a fleet of
	// connectors sharing the store (see Fleet); FleetTick is how often it
	// renews its runs' leases and claims runs (default DefaultFleetTick).
	Fleet     Fleet
	FleetTick time.Duration
	Logger    *slog.Logger // default: discard
}

// DefaultImportLimit is the default of Options.ImportLimitPerRegion: AWS's
// default quota of concurrent VM Import tasks per region ("Concurrent
// import image tasks", 20).
const DefaultImportLimit = 20

// DefaultSnapshotImportLimit is the default of
// Options.SnapshotImportLimitPerRegion: AWS's default quota of concurrent
// ImportSnapshot tasks per region ("Concurrent import snapshot tasks",
// 20), each disk of an import of snapshots one task.
const DefaultSnapshotImportLimit = 20

// DefaultResyncInterval is the documented resync interval of the daemon.
const DefaultResyncInterval = 30 * time.Second

func (o *Options) defaults() {
	if o.Clock == nil {
		o.Clock = RealClock{}
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 2
	}
	if o.ImportLimitPerRegion <= 0 {
		o.ImportLimitPerRegion = DefaultImportLimit
	}
	if o.SnapshotImportLimitPerRegion <= 0 {
		o.SnapshotImportLimitPerRegion = DefaultSnapshotImportLimit
	}
	if o.OnDemandPer24h == 0 {
		o.OnDemandPer24h = 2
	}
	if o.PauseAfterFailures <= 0 {
		o.PauseAfterFailures = 3
	}
	if o.MaxMissedRecorded <= 0 {
		o.MaxMissedRecorded = 1000
	}
	if o.ResyncInterval <= 0 {
		o.ResyncInterval = DefaultResyncInterval
	}
	if o.FleetTick <= 0 {
		o.FleetTick = DefaultFleetTick
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Scheduler dispatches replication runs. Its methods are safe for
// concurrent use.
type Scheduler struct {
	st     Store
	runner Runner
	o      Options
	clock  Clock
	log    *slog.Logger

	// mu serializes scheduling decisions and guards the fields below. It
	// is held across store calls but never while a Runner runs.
	mu       sync.Mutex
	loaded   bool
	lastSync time.Time
	due      dueHeap
	byJob    map[string]*dueEntry
	queue    []string // run ids waiting for a run slot, in dispatch order
	queued   map[string]bool
	inflight map[string]*flight
	stopped  bool
	// leading: in a fleet, whether this member computed the due runs at
	// its last pass.
	leading bool

	base   context.Context // parent of every run's context
	cancel context.CancelFunc
	wg     sync.WaitGroup // in-flight runs
	wake   chan struct{}
	loop   chan struct{} // closed when the loop exits; nil if not started
	// renewDone is closed when the fleet's lease renewal stops.
	renewDone chan struct{}

	semMu sync.Mutex
	sems  map[SlotPool]*slotQueue
}

// flight is a run in progress: how to stop it, and in a fleet its lease.
type flight struct {
	cancel context.CancelCauseFunc
	lease  *store.Lease
	lost   bool // the renewal found the lease lost
}

// New returns a Scheduler over st that dispatches to r. Nothing happens
// until Start, RunDue or Trigger.
func New(st Store, r Runner, o Options) *Scheduler {
	o.defaults()
	base, cancel := context.WithCancel(context.Background())
	return &Scheduler{
		st: st, runner: r, o: o, clock: o.Clock, log: o.Logger,
		byJob:    map[string]*dueEntry{},
		queued:   map[string]bool{},
		inflight: map[string]*flight{},
		base:     base, cancel: cancel,
		wake: make(chan struct{}, 1),
		sems: map[SlotPool]*slotQueue{},
	}
}

// schedulable job states: the ones that get automatic runs.
func schedulable(s store.JobState) bool {
	return s == store.JobPending || s == store.JobActive || s == store.JobFailing
}

func schedule(j store.ReplicationJob) Anchored {
	return Anchored{Seed: j.SeedReplicationTime, Every: j.Interval()}
}

// Start loads jobs and queued runs, re-dispatches runs left ACTIVE by a
// previous process, and runs the dispatch loop until ctx ends or Stop.
func (s *Scheduler) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return ErrStopped
	}
	if s.loop != nil {
		s.mu.Unlock()
		return errors.New("start scheduler: already started")
	}
	err := s.ensureLoaded(ctx)
	if err == nil {
		s.pump(ctx)
		s.loop = make(chan struct{})
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("start scheduler: %w", err)
	}
	go s.run(ctx)
	if s.o.Fleet != nil {
		s.renewDone = make(chan struct{})
		go s.renewLoop(ctx)
	}
	return nil
}

func (s *Scheduler) run(ctx context.Context) {
	defer close(s.loop)
	for {
		if err := s.RunDue(ctx); err != nil && !errors.Is(err, ErrStopped) {
			s.log.Error("scheduler pass failed", "err", err)
		}
		s.mu.Lock()
		wait := s.o.ResyncInterval
		if s.o.Fleet != nil {
			// Other members add and free work: look for it every tick.
			wait = min(wait, s.o.FleetTick)
		}
		if len(s.due) > 0 {
			if d := s.due[0].next.Sub(s.clock.Now()); d < wait {
				wait = d
			}
		}
		s.mu.Unlock()
		t := s.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.base.Done():
			t.Stop()
			return
		case <-s.wake:
			t.Stop()
		case <-t.C():
		}
	}
}

// Resync makes the loop reload jobs and pending runs from the store now,
// rather than at the next ResyncInterval (the daemon calls it when the CLI
// signals a change).
func (s *Scheduler) Resync() {
	s.mu.Lock()
	s.lastSync = time.Time{}
	s.mu.Unlock()
	s.poke()
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Stop ends the loop, cancels the context of every in-flight run and waits
// for their Run calls to return. Runs stopped this way stay ACTIVE (see the
// package comment). Stop is idempotent.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	s.stopped = true
	loop, renewing := s.loop, s.renewDone
	s.mu.Unlock()
	s.cancel()
	if loop != nil {
		<-loop
	}
	if renewing != nil {
		<-renewing
	}
	s.wg.Wait()
}

// Wait blocks until no run is in flight. Runs dispatched meanwhile are
// waited for too.
func (s *Scheduler) Wait() { s.wg.Wait() }

// ensureLoaded builds the in-memory state from the store once, then
// refreshes the jobs every ResyncInterval. Called with mu held.
func (s *Scheduler) ensureLoaded(ctx context.Context) error {
	now := s.clock.Now()
	if s.o.Fleet != nil {
		// The leader plans the fleet's due runs; a member that becomes
		// leader loads the schedule afresh.
		lead := s.o.Fleet.Leader()
		if lead && !s.leading {
			s.lastSync = time.Time{}
		}
		s.leading = lead
		if !lead {
			s.due, s.byJob = s.due[:0], map[string]*dueEntry{}
			s.loaded, s.lastSync = true, now
			return nil
		}
	}
	if s.loaded && now.Sub(s.lastSync) < s.o.ResyncInterval {
		return nil
	}
	jobs, err := s.st.ListJobs(ctx, store.JobFilter{States: []store.JobState{store.JobPending, store.JobActive, store.JobFailing}})
	if err != nil {
		return fmt.Errorf("load jobs: %w", err)
	}
	s.due, s.byJob = s.due[:0], make(map[string]*dueEntry, len(jobs))
	for _, j := range jobs {
		if j.NextReplicationRunStartTime.IsZero() && !(j.RunOnce && s.hasRuns(ctx, j.ReplicationJobID)) {
			if j, err = s.setNext(ctx, j.ReplicationJobID, now); err != nil {
				return err
			}
		}
		s.track(j)
	}
	// Runs a previous process left ACTIVE go first (only at the first
	// load: later, ACTIVE runs are this process's own): they hold their
	// job's slot and the Runner resumes them. PENDING runs are picked up at
	// every resync, since another process may have requested one. A fleet
	// member queues nothing: it claims from the store.
	states := [][]store.RunState{{store.RunPending}}
	if !s.loaded {
		states = [][]store.RunState{{store.RunActive}, {store.RunPending}}
	}
	if s.o.Fleet != nil {
		states = nil
	}
	for _, st := range states {
		runs, err := s.st.RunsInState(ctx, st...)
		if err != nil {
			return fmt.Errorf("load queued runs: %w", err)
		}
		for _, r := range runs {
			s.enqueue(r.ReplicationRunID)
		}
	}
	s.loaded, s.lastSync = true, now
	return nil
}

func (s *Scheduler) hasRuns(ctx context.Context, jobID string) bool {
	runs, err := s.st.ListRuns(ctx, jobID, 1)
	return err == nil && len(runs) > 0
}

// track puts the job in the due heap if it awaits an automatic run, and
// takes it out otherwise. Called with mu held.
func (s *Scheduler) track(j store.ReplicationJob) {
	e, ok := s.byJob[j.ReplicationJobID]
	if !schedulable(j.State) || j.NextReplicationRunStartTime.IsZero() {
		if ok {
			heap.Remove(&s.due, e.index)
			delete(s.byJob, j.ReplicationJobID)
		}
		return
	}
	if ok {
		e.next = j.NextReplicationRunStartTime
		heap.Fix(&s.due, e.index)
		return
	}
	e = &dueEntry{jobID: j.ReplicationJobID, next: j.NextReplicationRunStartTime}
	heap.Push(&s.due, e)
	s.byJob[j.ReplicationJobID] = e
}

// firstNext is where a job's schedule starts or restarts at now:
//   - never scheduled (Next unset): at the seed if it is ahead; a seed that
//     has passed means "now", so the latest slot at or before now, due at
//     once (run-once: now);
//   - scheduled: an unprocessed slot still on the job's grid is kept (RunDue
//     will run it or record it MISSED); otherwise the first slot at or after
//     now, which also applies a changed frequency or seed.
func firstNext(j store.ReplicationJob, now time.Time) time.Time {
	if j.RunOnce {
		if j.SeedReplicationTime.After(now) {
			return j.SeedReplicationTime
		}
		if !j.NextReplicationRunStartTime.IsZero() && !j.NextReplicationRunStartTime.After(now) {
			return j.NextReplicationRunStartTime
		}
		return now
	}
	a := schedule(j)
	candidate := a.AtOrAfter(now)
	if j.NextReplicationRunStartTime.IsZero() {
		if last, ok := a.LatestAtOrBefore(now); ok {
			return last
		}
		return candidate
	}
	if n := j.NextReplicationRunStartTime; a.OnGrid(n) && !n.After(candidate) {
		return n
	}
	return candidate
}

// setNext computes and stores the job's next start. Called with mu held.
func (s *Scheduler) setNext(ctx context.Context, jobID string, now time.Time) (store.ReplicationJob, error) {
	j, err := s.st.UpdateJob(ctx, jobID, func(j *store.ReplicationJob) error {
		if schedulable(j.State) {
			j.NextReplicationRunStartTime = firstNext(*j, now)
		}
		return nil
	})
	if err != nil {
		return j, fmt.Errorf("schedule job %s: %w", jobID, err)
	}
	return j, nil
}

// Reschedule re-reads the job and (re)computes its next start; call it after
// a job is created, updated or deleted. Jobs that get no automatic runs
// (paused, completed, deleted, run-once already run) are dropped from the
// schedule.
func (s *Scheduler) Reschedule(ctx context.Context, jobID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureLoaded(ctx); err != nil {
		return fmt.Errorf("reschedule job %s: %w", jobID, err)
	}
	j, err := s.st.GetJob(ctx, jobID)
	if err != nil {
		return fmt.Errorf("reschedule job %s: %w", jobID, err)
	}
	if schedulable(j.State) && !(j.RunOnce && j.NextReplicationRunStartTime.IsZero() && s.hasRuns(ctx, jobID)) {
		if j, err = s.setNext(ctx, jobID, s.clock.Now()); err != nil {
			return err
		}
	}
	s.track(j)
	s.poke()
	return nil
}

// PauseJob stops a job's automatic runs until ResumeJob; a run in progress
// goes on, and on-demand runs are still allowed. Pausing a paused job is not
// an error.
func (s *Scheduler) PauseJob(ctx context.Context, jobID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureLoaded(ctx); err != nil {
		return fmt.Errorf("pause job %s: %w", jobID, err)
	}
	was := store.JobPaused
	j, err := s.st.UpdateJob(ctx, jobID, func(j *store.ReplicationJob) error {
		switch j.State {
		case store.JobCompleted, store.JobDeleting, store.JobDeleted:
			return fmt.Errorf("%w: job is %s", ErrJobState, j.State)
		}
		was = j.State
		j.State, j.NextReplicationRunStartTime = store.JobPaused, time.Time{}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pause job %s: %w", jobID, err)
	}
	s.track(j)
	if was != store.JobPaused {
		s.event(ctx, jobID, "", store.LevelInfo, "job paused: no automatic runs until it is resumed")
	}
	return nil
}

// ResumeJob returns a job in PAUSED, PAUSED_ON_FAILURE (or FAILED) to ACTIVE
// with its failure count reset, and schedules its next run: the next slot at
// or after now (a run-once job runs at once). Slots that passed while it was
// paused are not recorded as missed.
func (s *Scheduler) ResumeJob(ctx context.Context, jobID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureLoaded(ctx); err != nil {
		return fmt.Errorf("resume job %s: %w", jobID, err)
	}
	now := s.clock.Now()
	j, err := s.st.UpdateJob(ctx, jobID, func(j *store.ReplicationJob) error {
		if j.State != store.JobPausedOnFailure && j.State != store.JobFailed && j.State != store.JobPaused {
			return fmt.Errorf("%w: job is %s, not paused", ErrJobState, j.State)
		}
		j.State, j.ConsecutiveFailures, j.StatusMessage = store.JobActive, 0, ""
		if j.RunOnce {
			j.NextReplicationRunStartTime = now
		} else {
			j.NextReplicationRunStartTime = schedule(*j).AtOrAfter(now)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("resume job %s: %w", jobID, err)
	}
	s.track(j)
	s.event(ctx, jobID, "", store.LevelInfo, fmt.Sprintf("job resumed; next run at %s", j.NextReplicationRunStartTime.Format(time.RFC3339)))
	s.poke()
	return nil
}

// retryDelay is how long a job whose scheduling failed waits to be retried.
const retryDelay = time.Minute

// errNotDue aborts a ScheduleRuns transaction that found nothing to do.
var errNotDue = errors.New("not due")

// RunDue creates the runs of every job whose next start has come, records
// slots that cannot run as MISSED, and dispatches queued runs up to the
// concurrency limit. The loop calls it; tests and the daemon may too.
func (s *Scheduler) RunDue(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	if err := s.ensureLoaded(ctx); err != nil {
		return fmt.Errorf("run due jobs: %w", err)
	}
	now := s.clock.Now()
	var errs []error
	for len(s.due) > 0 && !s.due[0].next.After(now) {
		e := heap.Pop(&s.due).(*dueEntry)
		delete(s.byJob, e.jobID)
		if err := s.scheduleDue(ctx, e.jobID, now); err != nil {
			errs = append(errs, err)
			s.log.Error("schedule due run", "job", e.jobID, "err", err)
		}
	}
	s.pump(ctx)
	return errors.Join(errs...)
}

// scheduleDue turns the due slots of one job into runs. Every slot from the
// job's next start up to now gets a row: the latest becomes a PENDING run,
// earlier ones are MISSED (the connector was not running). If the job still
// has a run in progress, all of them are MISSED. Called with mu held.
func (s *Scheduler) scheduleDue(ctx context.Context, jobID string, now time.Time) error {
	var dropped int
	plan := func(allMissed bool) func(j *store.ReplicationJob) ([]store.ReplicationRun, error) {
		return func(j *store.ReplicationJob) ([]store.ReplicationRun, error) {
			dropped = 0
			next := j.NextReplicationRunStartTime
			if !schedulable(j.State) || next.IsZero() || next.After(now) {
				return nil, errNotDue
			}
			run := func(at time.Time, state store.RunState) store.ReplicationRun {
				return store.ReplicationRun{ReplicationJobID: j.ReplicationJobID, Type: store.RunAutomatic, State: state,
					ScheduledStartTime: at, Encrypted: j.Encrypted, KmsKeyID: j.KmsKeyID, Description: j.Description}
			}
			if j.RunOnce {
				if allMissed {
					return nil, errNotDue // retried when the live run ends
				}
				j.NextReplicationRunStartTime = time.Time{}
				if j.State == store.JobPending {
					j.State = store.JobActive
				}
				return []store.ReplicationRun{run(next, store.RunPending)}, nil
			}
			a := schedule(*j)
			every := a.Every
			n := int(now.Sub(next)/every) + 1 // slots in [next, now]
			var runs []store.ReplicationRun
			missed := n - 1
			if allMissed {
				missed = n
			}
			first := next
			if missed > s.o.MaxMissedRecorded {
				dropped = missed - s.o.MaxMissedRecorded
				first = next.Add(time.Duration(dropped) * every)
				missed = s.o.MaxMissedRecorded
			}
			for i := 0; i < missed; i++ {
				runs = append(runs, run(first.Add(time.Duration(i)*every), store.RunMissed))
			}
			if !allMissed {
				runs = append(runs, run(next.Add(time.Duration(n-1)*every), store.RunPending))
			}
			j.NextReplicationRunStartTime = a.Next(now)
			if j.State == store.JobPending && !allMissed {
				j.State = store.JobActive
			}
			return runs, nil
		}
	}
	j, runs, err := s.st.ScheduleRuns(ctx, jobID, plan(false))
	if errors.Is(err, store.ErrConflict) {
		j, runs, err = s.st.ScheduleRuns(ctx, jobID, plan(true))
	}
	if errors.Is(err, errNotDue) {
		// Re-read: the job changed under us or waits for its live run.
		if cur, gerr := s.st.GetJob(ctx, jobID); gerr == nil && !cur.RunOnce {
			s.track(cur)
		}
		return nil
	}
	if err != nil {
		// Retry in a while rather than spin on a failing store; the stored
		// next start is unchanged, so nothing is lost.
		e := &dueEntry{jobID: jobID, next: now.Add(retryDelay)}
		heap.Push(&s.due, e)
		s.byJob[jobID] = e
		return err
	}
	s.track(j)
	var missedAt []string
	for _, r := range runs {
		switch r.State {
		case store.RunMissed:
			missedAt = append(missedAt, r.ScheduledStartTime.Format(time.RFC3339))
		case store.RunPending:
			if s.o.Fleet == nil {
				s.enqueue(r.ReplicationRunID)
			}
			s.log.Info("run scheduled", "job", jobID, "run", r.ReplicationRunID, "at", r.ScheduledStartTime)
			s.event(ctx, jobID, r.ReplicationRunID, store.LevelInfo, fmt.Sprintf("run scheduled for %s", r.ScheduledStartTime.Format(time.RFC3339)))
		}
	}
	if len(missedAt) > 0 || dropped > 0 {
		msg := fmt.Sprintf("%d scheduled runs missed", len(missedAt)+dropped)
		if dropped > 0 {
			msg += fmt.Sprintf(" (%d oldest not recorded)", dropped)
		}
		if len(runs) > len(missedAt) {
			msg += " while the connector was not running; one catch-up run scheduled"
		} else {
			msg += " because the previous run was still in progress"
		}
		s.log.Warn("runs missed", "job", jobID, "count", len(missedAt)+dropped)
		s.event(ctx, jobID, "", store.LevelWarn, msg)
	}
	return nil
}

// Trigger starts an on-demand run of the job (StartOnDemandReplicationRun)
// and returns its id. The run queues like any other. It fails with
// ErrOnDemandLimit past the per-24 h quota, ErrJobState for a completed or
// deleted job, and store.ErrConflict while the job has a run in progress.
func (s *Scheduler) Trigger(ctx context.Context, jobID string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return "", ErrStopped
	}
	if err := s.ensureLoaded(ctx); err != nil {
		return "", fmt.Errorf("start on-demand run of job %s: %w", jobID, err)
	}
	now := s.clock.Now()
	if limit := s.o.OnDemandPer24h; limit > 0 {
		// The window is (now-24h, now]: a run exactly 24 h old has left it,
		// so "next allowed at" below is exact.
		since := now.Add(-24*time.Hour + time.Nanosecond)
		n, err := s.st.CountRuns(ctx, jobID, store.RunOnDemand, since)
		if err != nil {
			return "", fmt.Errorf("start on-demand run of job %s: %w", jobID, err)
		}
		if n >= limit {
			return "", fmt.Errorf("start on-demand run of job %s: %w: %d in the last 24 hours (limit %d); next allowed at %s",
				jobID, ErrOnDemandLimit, n, limit, s.nextOnDemand(ctx, jobID, since).Format(time.RFC3339))
		}
	}
	_, runs, err := s.st.ScheduleRuns(ctx, jobID, func(j *store.ReplicationJob) ([]store.ReplicationRun, error) {
		switch j.State {
		case store.JobCompleted, store.JobDeleting, store.JobDeleted:
			return nil, fmt.Errorf("%w: job is %s", ErrJobState, j.State)
		case store.JobPending:
			j.State = store.JobActive
		}
		return []store.ReplicationRun{{ReplicationJobID: jobID, Type: store.RunOnDemand, State: store.RunPending,
			ScheduledStartTime: now, Encrypted: j.Encrypted, KmsKeyID: j.KmsKeyID, Description: j.Description}}, nil
	})
	if err != nil {
		return "", fmt.Errorf("start on-demand run of job %s: %w", jobID, err)
	}
	r := runs[0]
	if s.o.Fleet == nil {
		s.enqueue(r.ReplicationRunID)
	}
	s.event(ctx, jobID, r.ReplicationRunID, store.LevelInfo, "on-demand run requested")
	s.pump(ctx)
	return r.ReplicationRunID, nil
}

// nextOnDemand is when the oldest on-demand run in the window leaves it.
func (s *Scheduler) nextOnDemand(ctx context.Context, jobID string, since time.Time) time.Time {
	runs, err := s.st.ListRuns(ctx, jobID, 0)
	oldest := time.Time{}
	if err == nil {
		for _, r := range runs {
			if r.Type == store.RunOnDemand && !r.ScheduledStartTime.Before(since) &&
				(oldest.IsZero() || r.ScheduledStartTime.Before(oldest)) {
				oldest = r.ScheduledStartTime
			}
		}
	}
	if oldest.IsZero() {
		oldest = since
	}
	return oldest.Add(24 * time.Hour)
}

func (s *Scheduler) enqueue(runID string) {
	if s.queued[runID] {
		return
	}
	if _, running := s.inflight[runID]; running {
		return
	}
	s.queued[runID] = true
	s.queue = append(s.queue, runID)
}

// Queued reports how many runs wait for a run slot, and how many run.
func (s *Scheduler) Queued() (pending, running int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue), len(s.inflight)
}

// InFlight lists the runs this scheduler runs now.
func (s *Scheduler) InFlight() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.inflight))
	for id := range s.inflight {
		out = append(out, id)
	}
	return out
}

// errSkip aborts the activation of a queued run that is no longer PENDING.
var errSkip = errors.New("run no longer pending")

// pump marks queued runs ACTIVE and starts them while run slots are free.
// Called with mu held.
func (s *Scheduler) pump(ctx context.Context) {
	if s.o.Fleet != nil {
		s.claim(ctx)
		return
	}
	for !s.o.Passive && len(s.inflight) < s.o.MaxConcurrent && len(s.queue) > 0 && !s.stopped {
		id := s.queue[0]
		s.queue = s.queue[1:]
		delete(s.queued, id)
		now := s.clock.Now()
		run, err := s.st.UpdateRun(ctx, id, func(r *store.ReplicationRun) error {
			switch r.State {
			case store.RunActive: // resumed after a restart
				return nil
			case store.RunPending:
				r.State, r.StartedAt = store.RunActive, now
				return nil
			}
			return errSkip
		})
		if errors.Is(err, errSkip) {
			continue
		}
		if err != nil {
			// Leave it for the next pass rather than lose it.
			s.log.Error("activate run", "run", id, "err", err)
			s.enqueue(id)
			return
		}
		s.spawn(run, nil)
	}
}

// spawn runs run in a goroutine; in a fleet, under its lease. Called with
// mu held.
func (s *Scheduler) spawn(run store.ReplicationRun, lease *store.Lease) {
	ctx, cancel := context.WithCancelCause(s.base)
	if lease != nil {
		ctx = store.WithLease(ctx, *lease)
	}
	s.inflight[run.ReplicationRunID] = &flight{cancel: cancel, lease: lease}
	s.wg.Add(1)
	s.log.Info("run started", "job", run.ReplicationJobID, "run", run.ReplicationRunID, "type", run.Type)
	go func() {
		defer s.wg.Done()
		err := s.call(ctx, run)
		lost := fenced(err, ctx)
		cancel(nil)
		s.finish(run, err, lease, lost)
	}()
}

// call runs the Runner, turning a panic into a failed run.
func (s *Scheduler) call(ctx context.Context, run store.ReplicationRun) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error: replication runner panicked: %v", p)
		}
	}()
	return s.runner.Run(ctx, run)
}

// finish records the outcome of a run and dispatches the next queued one.
// In a fleet the outcome is written under the run's lease, and a run whose
// lease was lost records nothing: its new holder owns it.
func (s *Scheduler) finish(run store.ReplicationRun, runErr error, lease *store.Lease, lost bool) {
	// Use a fresh context: the run's own is cancelled by now.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if lease != nil {
		ctx = store.WithLease(ctx, *lease)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inflight, run.ReplicationRunID)
	if lost {
		s.log.Warn("run stopped: its lease was lost and another connector resumes it",
			"job", run.ReplicationJobID, "run", run.ReplicationRunID, "err", runErr)
		s.poke()
		return
	}
	if runErr != nil && s.base.Err() != nil {
		if lease != nil {
			// Another member resumes it at once rather than when the
			// lease would have expired.
			if err := s.o.Fleet.Release(context.WithoutCancel(ctx), *lease); err != nil {
				s.log.Warn("give up the lease of an interrupted run; it is resumed when the lease expires", "run", run.ReplicationRunID, "err", err)
			}
			s.log.Info("run interrupted by shutdown; it stays ACTIVE for another connector to resume",
				"job", run.ReplicationJobID, "run", run.ReplicationRunID)
			return
		}
		s.log.Info("run interrupted by shutdown; it stays ACTIVE and resumes on the next start",
			"job", run.ReplicationJobID, "run", run.ReplicationRunID)
		return
	}
	now := s.clock.Now()
	var paused bool
	r, j, err := s.st.UpdateRunAndJob(ctx, run.ReplicationRunID, func(r *store.ReplicationRun, j *store.ReplicationJob) error {
		if r.State == store.RunActive {
			r.State = store.RunCompleted
			if runErr != nil {
				r.State, r.StatusMessage = store.RunFailed, runErr.Error()
			}
			r.CompletedTime = now
		}
		switch j.State {
		case store.JobDeleting, store.JobDeleted:
			return nil
		case store.JobPaused:
			// Paused by an administrator: it stays paused whatever its
			// on-demand or in-flight run did, unless that run completed a
			// run-once job.
			defer func() {
				if j.State != store.JobCompleted {
					j.State, j.NextReplicationRunStartTime = store.JobPaused, time.Time{}
					paused = false
				}
			}()
		}
		if runErr == nil {
			j.ConsecutiveFailures, j.StatusMessage = 0, ""
			if r.AmiID != "" {
				j.LatestAmiID = r.AmiID
			}
			j.State = store.JobActive
			if j.RunOnce {
				j.State, j.NextReplicationRunStartTime = store.JobCompleted, time.Time{}
			}
			return nil
		}
		j.ConsecutiveFailures++
		switch {
		case j.RunOnce:
			j.State = store.JobFailed
			j.StatusMessage = fmt.Sprintf("run %s failed: %v", r.ReplicationRunID, runErr)
		case j.ConsecutiveFailures >= s.o.PauseAfterFailures:
			paused = true
			j.State, j.NextReplicationRunStartTime = store.JobPausedOnFailure, time.Time{}
			j.StatusMessage = fmt.Sprintf("paused after %d consecutive failed runs; last (%s): %v — fix the cause, then resume the job",
				j.ConsecutiveFailures, r.ReplicationRunID, runErr)
		default:
			j.State = store.JobFailing
			j.StatusMessage = fmt.Sprintf("%d consecutive failed runs; last (%s): %v", j.ConsecutiveFailures, r.ReplicationRunID, runErr)
		}
		return nil
	})
	if errors.Is(err, store.ErrFenced) {
		s.log.Warn("run ended but its lease was lost before the outcome was recorded; the new holder records it",
			"job", run.ReplicationJobID, "run", run.ReplicationRunID, "err", err)
	} else if err != nil {
		s.log.Error("record run outcome", "job", run.ReplicationJobID, "run", run.ReplicationRunID, "err", err)
	} else {
		if runErr == nil {
			s.log.Info("run completed", "job", j.ReplicationJobID, "run", r.ReplicationRunID, "ami", r.AmiID)
			msg := "run completed"
			if r.AmiID != "" {
				msg += "; AMI " + r.AmiID
			}
			s.event(ctx, j.ReplicationJobID, r.ReplicationRunID, store.LevelInfo, msg)
		} else {
			s.log.Warn("run failed", "job", j.ReplicationJobID, "run", r.ReplicationRunID, "err", runErr)
			s.event(ctx, j.ReplicationJobID, r.ReplicationRunID, store.LevelError, "run failed: "+runErr.Error())
		}
		if paused {
			s.event(ctx, j.ReplicationJobID, "", store.LevelError, j.StatusMessage)
		}
		// Also re-arms a run-once job whose start waited for this run.
		s.track(j)
	}
	s.pump(ctx)
	s.poke()
}

func (s *Scheduler) event(ctx context.Context, jobID, runID, level, msg string) {
	if _, err := s.st.AddEvent(ctx, store.Event{Time: s.clock.Now(), JobID: jobID, RunID: runID, Level: level, Message: msg}); err != nil {
		s.log.Error("record event", "job", jobID, "run", runID, "err", err)
	}
}

// dueHeap orders jobs by next start.
type dueEntry struct {
	jobID string
	next  time.Time
	index int
}

type dueHeap []*dueEntry

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if h[i].next.Equal(h[j].next) {
		return h[i].jobID < h[j].jobID
	}
	return h[i].next.Before(h[j].next)
}
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *dueHeap) Push(x any) {
	e := x.(*dueEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
