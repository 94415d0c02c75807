// Package replication runs one replication of a server into an AMI as a
// persisted, resumable list of steps (the table in step.go; one file each,
// step_<name>.go, carrying its name, title, weight, advice and metrics
// label, which every display of a run reads through Steps):
//
//	preflight → snapshot → stage (export each disk, stream it to S3) → release-snapshot →
//	import → wait-import → finalize → unstage → retention
//
// A step owns its effects. Before it creates anything outside the process it
// records the intent in the store's ledger under its own name, and after,
// the resource's id; its do is idempotent, so re-entered after a crash it
// finds what it already made (by the ledger, a snapshot's name, an import's
// client token) and goes on; its undo removes one thing it recorded, and
// finds by name, tag or prefix what a crash cut off before its id was
// recorded. A step that passes something on to a later one (the snapshot to
// its release, the staged objects to their deletion, the AMI to the job)
// hands its entry over explicitly; the taker then owns it. The ledger, not
// memory, drives cleanup: Undo walks it backwards, handing each entry to the
// step that owns it.
package replication

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rehost/rehost/pkg/retry"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// ErrCancelled is the cause to cancel a run's context with when the user
// cancels the run: it is then undone like a failed run. A context cancelled
// with any other cause (the connector stopping) leaves the run as it is, for
// Run to resume after the restart.
var ErrCancelled = errors.New("run cancelled by the user")

// Tag keys every cloud resource of a run carries.
const (
	TagJob    = "rehost:job"
	TagRun    = "rehost:run"
	TagServer = "rehost:server"
	TagVM     = "rehost:source-vm"
)

// Store is what runs need of the persisted state: the ledger, the runs,
// their events, what incremental jobs keep between runs, and the job and
// server a run replicates.
type Store interface {
	store.Ledger
	store.Runs
	store.History
	store.Replicas
	GetJob(ctx context.Context, id string) (store.ReplicationJob, error)
	GetServer(ctx context.Context, serverID string) (store.Server, error)
	// UpdateJob clears a job's request for a full verification once a run
	// did it.
	UpdateJob(ctx context.Context, id string, fn func(*store.ReplicationJob) error) (store.ReplicationJob, error)
}

// Engine runs replication runs.
type Engine struct {
	Store Store
	// Source opens the source a server belongs to; the engine closes it when
	// the run ends.
	Source func(ctx context.Context, sourceID string) (source.Source, error)
	// Target returns the registered target; it is asked at the start of
	// every run and cleanup, so a connector that starts unregistered picks
	// up a registration made later.
	Target func(ctx context.Context) (Target, error)
	// ImportSlot, when set, is acquired around the import and its wait,
	// for the tasks the run's import holds, so a per-region quota of
	// concurrent VM Import tasks queues runs rather than failing them.
	ImportSlot func(ctx context.Context, runID string, tasks awstarget.ImportTasks) (release func(), err error)
	// Limiter, when set, caps the bytes every run sends to AWS, together:
	// one limiter shared by the runs in flight (nil: no cap).
	Limiter awstarget.Limiter
	Log     *slog.Logger
	// CleanupTimeout bounds Undo after a failure; default 10 minutes.
	CleanupTimeout time.Duration
	// ProgressEvery is how often progress is written to the store and
	// reported to the source (default 1 s).
	ProgressEvery time.Duration
	// StepAttempts is how often a step failing transiently is tried
	// (default 3); RetryDelay the first pause between tries (default 2 s,
	// doubled each time). Calls retried below (every AWS and Azure call)
	// are not retried again here: pkg/retry marks what they gave up on.
	StepAttempts int
	RetryDelay   time.Duration
	// Hook, when set, is called at the start of every step (tests kill or
	// fail the run there).
	Hook func(runID, step string)

	// Incremental runs. BlockConcurrency is the number of blocks put or
	// read back at once per disk (default 8); Bandwidth, when set, caps the
	// bytes sent to EBS (nil: no cap).
	BlockConcurrency int
	Bandwidth        awstarget.Limiter
	// VerifyBudget is how many changed blocks per disk a run reads back at
	// most (default 1024, 512 MiB; beyond it a random sample of them);
	// VerifySample how many unchanged blocks per disk it reads back at
	// random (default 64); FullVerifyEvery how often every block is read
	// back (default weekly).
	VerifyBudget    int
	VerifySample    int
	FullVerifyEvery time.Duration
}

// run is the state of one run while it executes, typed: everything in it
// can be rebuilt from the store and the ledger.
type run struct {
	e      *Engine
	target Target
	run    store.ReplicationRun
	job    store.ReplicationJob
	server store.Server
	src    source.Source
	vm     source.VM
	log    *slog.Logger

	cp     source.Checkpoint
	staged []awstarget.Object
	imp    awstarget.Import
	result awstarget.Result

	// Incremental runs: the job's replica set before the run (nil: none),
	// each disk's plan (changes), and each disk's replica as verified.
	prev  *store.ReplicaSet
	plans []diskPlan
	heads map[int]string

	// releaseSlot, when not nil, gives back the import slot the run holds
	// from before it starts VM Import until the import ends.
	releaseSlot func()
}

func (e *Engine) logger() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.Default()
}

// stepPolicy is the retry policy around one step.
func (e *Engine) stepPolicy(onRetry func(attempt int, err error)) retry.Policy {
	return retry.Policy{
		Attempts: cmp.Or(e.StepAttempts, 3),
		Base:     cmp.Or(e.RetryDelay, 2*time.Second),
		OnRetry:  func(attempt int, err error, _ time.Duration) { onRetry(attempt, err) },
	}
}

// Run executes the run, or resumes it after a restart, and returns the AMI
// id. On failure it undoes what the run made (under its own context, so a
// cancelled run still cleans up) and returns an error that says what failed
// and what to do. If ctx was cancelled with a cause other than ErrCancelled
// (the connector stopping), nothing is undone: the run is left for Run to
// resume later. In a fleet, a write refused by the run's fencing token
// (store.ErrFenced: another member holds the run now) stops the run the
// same way, undoing nothing.
//
// Run does not change the run's State: the caller (the scheduler) owns it.
// It records stage, progress, status message and AMI id.
func (e *Engine) Run(ctx context.Context, rr store.ReplicationRun) (string, error) {
	r, err := e.loadRetrying(ctx, rr)
	if err != nil {
		return "", err
	}
	defer r.src.Close()
	defer r.freeSlot()
	if err = r.priorFailure(ctx); err != nil {
		// Resuming over a half-undone ledger would import deleted objects or
		// finish a run the user cancelled: finish the cleanup instead.
		r.log.Warn("run had failed before the connector stopped; finishing its cleanup", "err", err)
	} else {
		r.log.Info("run starting")
		err = r.execute(ctx)
		if err == nil {
			r.log.Info("run completed", "ami", r.result.ImageID)
			return r.result.ImageID, nil
		}
		if errors.Is(err, store.ErrFenced) || errors.Is(context.Cause(ctx), store.ErrFenced) {
			// Another connector of the fleet holds the run now and resumes
			// it from the ledger: undoing here would undo its work.
			r.log.Warn("lease lost: this connector stops the run and leaves it to the new holder", "err", err)
			return "", fmt.Errorf("vm %q: %w", r.server.Name, err)
		}
		if ctx.Err() != nil && !errors.Is(context.Cause(ctx), ErrCancelled) && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			r.log.Info("run interrupted by shutdown; it resumes on restart", "err", err)
			return "", err
		}
		if errors.Is(context.Cause(ctx), ErrCancelled) && !errors.Is(err, ErrCancelled) {
			// Say so rather than leave the user a bare "context canceled".
			err = fmt.Errorf("vm %q: %w (%v)", r.server.Name, ErrCancelled, err)
		}
		r.log.Error("run failed; cleaning up", "err", err)
		// The failure is kept with the stage: a restart during the cleanup
		// reports it (see priorFailure).
		msg := err.Error()
		if _, serr := e.Store.UpdateRun(context.WithoutCancel(ctx), rr.ReplicationRunID, func(x *store.ReplicationRun) error {
			if x.Progress.Step != stageCleanup {
				x.Progress.FailedStep = x.Progress.Step
			}
			enterStep(&x.Progress, stageCleanup, time.Now())
			x.Stage, x.StageProgress, x.StatusMessage, x.Progress.Step = stageCleanup, "", msg, stageCleanup
			return nil
		}); serr != nil {
			r.log.Warn("record stage", "stage", stageCleanup, "err", serr)
		}
	}
	r.freeSlot() // cancelling the import needs no slot; other runs may
	if uerr := e.Undo(context.WithoutCancel(ctx), rr.ReplicationRunID); uerr != nil {
		r.log.Error("cleanup incomplete; it is retried at the next start", "err", uerr)
		err = fmt.Errorf("%w (cleanup incomplete, retried at next start: %v)", err, uerr)
	}
	return "", err
}

// loadRetrying loads the run, retrying while its source is unreachable: a
// restart while vCenter is down must not fail runs that were nearly done.
func (e *Engine) loadRetrying(ctx context.Context, rr store.ReplicationRun) (*run, error) {
	var r *run
	err := e.stepPolicy(func(i int, err error) {
		e.logger().Warn("source unreachable; retrying", "run", rr.ReplicationRunID, "attempt", i, "err", err)
	}).Do(ctx, func(ctx context.Context) error {
		var err error
		r, err = e.load(ctx, rr)
		return err
	})
	return r, err
}

// stageCleanup is the stage a failed run is in while it is undone. A run
// found in it at the next start (the process stopped during the cleanup, or
// the scheduler left the failed run ACTIVE because it was stopping) is
// undone again, never resumed.
const stageCleanup = "cleanup"

// priorFailure returns the error a run failed with before a restart if its
// cleanup had begun, else nil.
func (r *run) priorFailure(ctx context.Context) error {
	cur, err := r.e.Store.GetRun(ctx, r.run.ReplicationRunID)
	if err != nil || cur.Stage != stageCleanup {
		return nil
	}
	if cur.StatusMessage != "" {
		return errors.New(cur.StatusMessage)
	}
	return fmt.Errorf("vm %q: the run failed before the connector restarted; the next run starts over", r.server.Name)
}

func (e *Engine) load(ctx context.Context, rr store.ReplicationRun) (*run, error) {
	r := &run{e: e, run: rr}
	var err error
	if r.job, err = e.Store.GetJob(ctx, rr.ReplicationJobID); err != nil {
		return nil, fmt.Errorf("run %s: load job: %w", rr.ReplicationRunID, err)
	}
	if r.server, err = e.Store.GetServer(ctx, r.job.ServerID); err != nil {
		return nil, fmt.Errorf("run %s: load server %s: %w", rr.ReplicationRunID, r.job.ServerID, err)
	}
	r.log = e.logger().With("job", r.job.ReplicationJobID, "run", rr.ReplicationRunID, "server", r.server.ServerID, "vm", r.server.Name)
	if r.target, err = e.Target(ctx); err != nil {
		return nil, fmt.Errorf("vm %q: %w", r.server.Name, err)
	}
	if r.src, err = e.Source(ctx, r.server.SourceID); err != nil {
		return nil, fmt.Errorf("vm %q: connect to its source: %w", r.server.Name, err)
	}
	if r.vm, err = r.src.VM(ctx, r.server.VMID); err != nil {
		r.src.Close()
		if errors.Is(err, source.ErrNotFound) {
			return nil, fmt.Errorf("vm %q (%s) is no longer in its source: %w — re-import the server catalog or delete the job", r.server.Name, r.server.VMID, err)
		}
		return nil, fmt.Errorf("vm %q: read its configuration: %w", r.server.Name, err)
	}
	if len(r.vm.Disks) == 0 {
		r.src.Close()
		return nil, fmt.Errorf("vm %q has no disks to replicate", r.server.Name)
	}
	return r, nil
}

// execute runs every step of the run's mode in order. A resumed run passes
// again through the steps it had done: each finds its effects in the
// ledger and returns. The mode is the job's, recorded when the run starts;
// an incremental run may turn full in a step that finds the incremental
// way closed, and the steps of full mode then follow.
func (r *run) execute(ctx context.Context) error {
	if r.run.Progress.Mode == "" {
		mode := ModeFull
		if r.job.Mode == store.ModeIncremental {
			mode = ModeIncremental
		}
		if err := r.setMode(ctx, mode); err != nil {
			return err
		}
	}
	for _, s := range steps {
		in := s.info()
		if !in.In(r.run.Progress.Mode) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("vm %q: before %s: %w", r.server.Name, in.Name, context.Cause(ctx))
		}
		if r.e.Hook != nil {
			r.e.Hook(r.run.ReplicationRunID, in.Name)
		}
		r.setStep(ctx, in.Name)
		err := r.e.stepPolicy(func(i int, err error) {
			r.log.Warn("step failed transiently; retrying", "step", in.Name, "attempt", i, "err", err)
			r.event(ctx, store.LevelWarn, "%s failed (attempt %d), retrying: %v", in.Title, i, err)
		}).Do(ctx, func(ctx context.Context) error { return s.do(ctx, r) })
		if err != nil {
			return err
		}
	}
	r.setStep(ctx, stageCompleted)
	return nil
}

// setMode records the run's mode, which decides its steps from here on.
func (r *run) setMode(ctx context.Context, mode string) error {
	x, err := r.e.Store.UpdateRun(ctx, r.run.ReplicationRunID, func(x *store.ReplicationRun) error {
		x.Progress.Mode = mode
		return nil
	})
	if err != nil {
		return fmt.Errorf("vm %q: record the run's mode: %w", r.server.Name, err)
	}
	r.run.Progress.Mode = x.Progress.Mode
	return nil
}

// stageCompleted is the stage of a run whose steps all ran.
const stageCompleted = "completed"

func (r *run) tags() map[string]string {
	return map[string]string{
		TagJob:    r.job.ReplicationJobID,
		TagRun:    r.run.ReplicationRunID,
		TagServer: r.server.ServerID,
		TagVM:     r.server.VMID,
	}
}

func (r *run) event(ctx context.Context, level, format string, args ...any) {
	_, err := r.e.Store.AddEvent(ctx, store.Event{JobID: r.job.ReplicationJobID, RunID: r.run.ReplicationRunID, Level: level, Message: fmt.Sprintf(format, args...)})
	if err != nil {
		r.log.Warn("record event", "err", err)
	}
}

// Recoverable lists the runs a restart must deal with: runs left ACTIVE by a
// crash (to resume) and finished runs whose ledger still holds unreleased
// resources (to undo).
func (e *Engine) Recoverable(ctx context.Context) (resume []store.ReplicationRun, undo []string, err error) {
	// The ledger is read before the active runs: a run that starts in
	// between and records an intent must not be taken for a finished one
	// (the janitor would undo it under its feet). A finished run never
	// becomes active again, so this order cannot miss one.
	left, err := e.Store.UnreleasedLedger(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list unreleased resources: %w", err)
	}
	active, err := e.Store.RunsInState(ctx, store.RunActive)
	if err != nil {
		return nil, nil, fmt.Errorf("list active runs: %w", err)
	}
	isActive := map[string]bool{}
	for _, r := range active {
		isActive[r.ReplicationRunID] = true
	}
	seen := map[string]bool{}
	for _, le := range left {
		if !isActive[le.RunID] && !seen[le.RunID] {
			seen[le.RunID] = true
			undo = append(undo, le.RunID)
		}
	}
	return active, undo, nil
}
