// Package replication runs one replication of a server into an AMI as a
// persisted, resumable list of steps:
//
//	snapshot → stage (export each disk, stream it to S3) → release-snapshot →
//	import → wait-import → finalize → unstage → retention
//
// Before a step creates anything outside the process it records the intent in
// the store's ledger, and after, the resource's id. Every step's Do is
// idempotent: re-entered after a crash it finds what it already made (by the
// ledger, by the snapshot's name, by the import's client token) and goes on.
// The ledger, not memory, drives cleanup: Undo walks it backwards and removes
// whatever is not released, then sweeps by name and prefix for resources
// whose creation was cut off before their id was recorded.
package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
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

// Step names, persisted in the store.
const (
	StepSnapshot        = "snapshot"
	StepStage           = "stage"
	StepReleaseSnapshot = "release-snapshot"
	StepImport          = "import"
	StepWaitImport      = "wait-import"
	StepFinalize        = "finalize"
	StepUnstage         = "unstage"
	StepRetention       = "retention"
)

// Engine runs replication runs.
type Engine struct {
	Store store.Store
	// Source opens the source a server belongs to; the engine closes it when
	// the run ends.
	Source func(ctx context.Context, sourceID string) (source.Source, error)
	Target Target
	// ImportSlot, when set, is acquired around the import and its wait, so a
	// per-region limit of concurrent VM Import tasks queues runs rather than
	// failing them.
	ImportSlot func(ctx context.Context) (release func(), err error)
	Log        *slog.Logger
	// CleanupTimeout bounds Undo after a failure; default 10 minutes.
	CleanupTimeout time.Duration
	// ProgressEvery throttles progress writes to the store; default 1 s.
	ProgressEvery time.Duration
	// StepAttempts is how often a step failing transiently is tried
	// (default 3); RetryDelay the first pause between tries (default 2 s,
	// doubled each time).
	StepAttempts int
	RetryDelay   time.Duration
	// Hook, when set, is called at the start of every step (tests kill or
	// fail the run there).
	Hook func(runID, step string)
}

// run is the state of one run while it executes. Everything in it can be
// rebuilt from the store and the ledger.
type run struct {
	e      *Engine
	run    store.ReplicationRun
	job    store.ReplicationJob
	server store.Server
	src    source.Source
	vm     source.VM
	log    *slog.Logger

	cp      source.Checkpoint
	staged  []Staged
	ref     json.RawMessage
	result  ImportResult
	started time.Time

	progressMu   sync.Mutex
	lastProgress time.Time

	// releaseSlot, when not nil, gives back the import slot the run holds
	// from before it starts VM Import until the import ends.
	releaseSlot func()
}

type step struct {
	name string
	do   func(*run, context.Context) error
}

var steps = []step{
	{StepSnapshot, (*run).snapshot},
	{StepStage, (*run).stage},
	{StepReleaseSnapshot, (*run).releaseSnapshot},
	{StepImport, (*run).startImport},
	{StepWaitImport, (*run).waitImport},
	{StepFinalize, (*run).finalize},
	{StepUnstage, (*run).unstage},
	{StepRetention, (*run).retention},
}

func (e *Engine) logger() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.Default()
}

// Run executes the run, or resumes it after a restart, and returns the AMI
// id. On failure it undoes what the run made (under its own context, so a
// cancelled run still cleans up) and returns an error that says what failed
// and what to do. If ctx was cancelled with a cause other than ErrCancelled
// (the connector stopping), nothing is undone: the run is left for Run to
// resume later.
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
			x.Stage, x.StageProgress, x.StatusMessage = stageCleanup, "", msg
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
	err := e.retry(ctx, max(e.StepAttempts, 3), func() error {
		var err error
		r, err = e.load(ctx, rr)
		return err
	}, func(i int, err error) {
		e.logger().Warn("source unreachable; retrying", "run", rr.ReplicationRunID, "attempt", i, "err", err)
	})
	return r, err
}

// retry calls fn up to tries times while it fails transiently, pausing
// RetryDelay (default 2 s) doubled after each try; onRetry hears of each
// failure that is retried.
func (e *Engine) retry(ctx context.Context, tries int, fn func() error, onRetry func(attempt int, err error)) error {
	delay := e.RetryDelay
	if delay <= 0 {
		delay = 2 * time.Second
	}
	for i := 1; ; i++ {
		err := fn()
		if err == nil || i >= tries || !Transient(err) || ctx.Err() != nil {
			return err
		}
		onRetry(i, err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay << (i - 1)):
		}
	}
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
	var last error
	if sts, err := r.e.Store.Steps(ctx, r.run.ReplicationRunID); err == nil {
		for _, s := range sts {
			if s.State == store.StepFailed && s.Error != "" {
				last = errors.New(s.Error)
			}
		}
	}
	if last == nil {
		last = fmt.Errorf("vm %q: the run failed before the connector restarted; the next run starts over", r.server.Name)
	}
	return last
}

func (e *Engine) load(ctx context.Context, rr store.ReplicationRun) (*run, error) {
	r := &run{e: e, run: rr, started: time.Now()}
	var err error
	if r.job, err = e.Store.GetJob(ctx, rr.ReplicationJobID); err != nil {
		return nil, fmt.Errorf("run %s: load job: %w", rr.ReplicationRunID, err)
	}
	if r.server, err = e.Store.GetServer(ctx, r.job.ServerID); err != nil {
		return nil, fmt.Errorf("run %s: load server %s: %w", rr.ReplicationRunID, r.job.ServerID, err)
	}
	r.log = e.logger().With("job", r.job.ReplicationJobID, "run", rr.ReplicationRunID, "server", r.server.ServerID, "vm", r.server.Name)
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

func (r *run) execute(ctx context.Context) error {
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("vm %q: before %s: %w", r.server.Name, s.name, context.Cause(ctx))
		}
		if r.e.Hook != nil {
			r.e.Hook(r.run.ReplicationRunID, s.name)
		}
		r.setStep(ctx, s.name, store.StepPending, "")
		r.setStage(ctx, s.name, "")
		if err := r.attempt(ctx, s); err != nil {
			r.setStep(context.WithoutCancel(ctx), s.name, store.StepFailed, err.Error())
			return err
		}
		r.setStep(ctx, s.name, store.StepDone, "")
	}
	r.setStage(ctx, "completed", "100%")
	return nil
}

// attempt runs a step, retrying it with backoff while it fails transiently
// (a dropped export stream, an unreachable host): every step is idempotent,
// and a retried stage resumes its upload from the recorded parts.
func (r *run) attempt(ctx context.Context, s step) error {
	tries := r.e.StepAttempts
	if tries <= 0 {
		tries = 3
	}
	return r.e.retry(ctx, tries, func() error { return s.do(r, ctx) }, func(i int, err error) {
		r.log.Warn("step failed transiently; retrying", "step", s.name, "attempt", i, "err", err)
		r.event(ctx, store.LevelWarn, "%s failed (attempt %d of %d), retrying: %v", s.name, i, tries, err)
	})
}

// Transient reports whether err is worth retrying: the peer was unreachable
// or a connection broke mid-stream.
//
// The caller checks its own context: a network timeout (which may also wrap
// context.DeadlineExceeded) is transient, the run's cancellation is not.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, source.ErrUnreachable) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// snapshotName is the name of the run's VM checkpoint; leftovers are found by
// it.
func snapshotName(runID string) string { return "rehost-" + runID }

// stagingPrefix holds every object of a run.
func stagingPrefix(jobID, runID string) string { return "rehost/" + jobID + "/" + runID + "/" }

func (r *run) tags() map[string]string {
	return map[string]string{
		TagJob:    r.job.ReplicationJobID,
		TagRun:    r.run.ReplicationRunID,
		TagServer: r.server.ServerID,
		TagVM:     r.server.VMID,
	}
}

// entries returns the run's ledger entries of a kind, in insertion order.
func (r *run) entries(ctx context.Context, kind string) ([]store.LedgerEntry, error) {
	all, err := r.e.Store.LedgerForRun(ctx, r.run.ReplicationRunID)
	if err != nil {
		return nil, fmt.Errorf("vm %q: read the run's ledger: %w", r.server.Name, err)
	}
	var out []store.LedgerEntry
	for _, le := range all {
		if le.Kind == kind {
			out = append(out, le)
		}
	}
	return out, nil
}

func (r *run) setStep(ctx context.Context, name string, state store.StepState, msg string) {
	if err := r.e.Store.SetStep(ctx, store.StepStatus{RunID: r.run.ReplicationRunID, Step: name, State: state, Error: msg}); err != nil {
		r.log.Warn("record step", "step", name, "err", err)
	}
}

func (r *run) setStage(ctx context.Context, stage, progress string) {
	_, err := r.e.Store.UpdateRun(ctx, r.run.ReplicationRunID, func(x *store.ReplicationRun) error {
		x.Stage, x.StageProgress = stage, progress
		return nil
	})
	if err != nil {
		r.log.Warn("record stage", "stage", stage, "err", err)
	}
}

// progress records stage progress at most once per ProgressEvery.
func (r *run) progress(ctx context.Context, stage, text string, force bool) {
	every := r.e.ProgressEvery
	if every == 0 {
		every = time.Second
	}
	r.progressMu.Lock()
	now := time.Now()
	if !force && now.Sub(r.lastProgress) < every {
		r.progressMu.Unlock()
		return
	}
	r.lastProgress = now
	r.progressMu.Unlock()
	r.setStage(ctx, stage, text)
}

func (r *run) event(ctx context.Context, level, format string, args ...any) {
	_, err := r.e.Store.AddEvent(ctx, store.Event{JobID: r.job.ReplicationJobID, RunID: r.run.ReplicationRunID, Level: level, Message: fmt.Sprintf(format, args...)})
	if err != nil {
		r.log.Warn("record event", "err", err)
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		// Only types of this package are marshalled; failing is a bug.
		panic(err)
	}
	return b
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func bootMode(firmware string) string {
	if firmware == source.FirmwareEFI {
		return "uefi"
	}
	return "legacy-bios"
}

func platform(guestOS string) string {
	if strings.Contains(strings.ToLower(guestOS), "windows") {
		return "Windows"
	}
	return "Linux"
}
