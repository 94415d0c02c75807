package replication

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// A step is one stage of a run, and owns its effects: do makes them,
// recording each in the ledger under the step's name (intent before the
// call, id after), and undo removes one of them given its ledger entry.
// Both are idempotent: do re-entered after a crash finds what it made and
// goes on; undo of something already gone succeeds. A step lives in a file
// of its own; its ledger kinds are its own vocabulary.
type step interface {
	name() string
	do(ctx context.Context, r *run) error
	// undo removes what entry le (one of this step's, not released)
	// stands for; the caller then marks it released.
	undo(ctx context.Context, u *undoer, le store.LedgerEntry) error
}

// steps is the run, in order. Adding a step is a file and a line here.
var steps = []step{
	snapshotStep{},
	stageStep{},
	releaseSnapshotStep{},
	importStep{},
	waitImportStep{},
	finalizeStep{},
	unstageStep{},
	retentionStep{},
}

// Steps names the steps of a run, in order (for progress displays).
func Steps() []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.name()
	}
	return out
}

func stepNamed(name string) step {
	for _, s := range steps {
		if s.name() == name {
			return s
		}
	}
	return nil
}

// noEffects is embedded by steps that make nothing outside the process.
type noEffects struct{}

func (noEffects) undo(context.Context, *undoer, store.LedgerEntry) error {
	return errors.New("this step records nothing to undo")
}

// entries returns the run's ledger entries a step recorded of a kind, in
// insertion order.
func (r *run) entries(ctx context.Context, s step, kind string) ([]store.LedgerEntry, error) {
	all, err := r.e.Store.LedgerForRun(ctx, r.run.ReplicationRunID)
	if err != nil {
		return nil, fmt.Errorf("vm %q: read the run's ledger: %w", r.server.Name, err)
	}
	var out []store.LedgerEntry
	for _, le := range all {
		if le.Step == s.name() && le.Kind == kind {
			out = append(out, le)
		}
	}
	return out, nil
}

func unreleased(le store.LedgerEntry) bool {
	return le.State == store.LedgerIntent || le.State == store.LedgerCreated
}

// intend records that step s is about to make a kind of resource.
func (r *run) intend(ctx context.Context, s step, kind string, intent any) (int64, error) {
	return r.e.Store.RecordIntent(ctx, r.run.ReplicationRunID, s.name(), kind, mustJSON(intent))
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		// Only types of this package and plain data are marshalled.
		panic(err)
	}
	return b
}

// undoer is what undoing a run's effects needs: the run, the target, and
// the sources its entries name (opened once each).
type undoer struct {
	e       *Engine
	rr      store.ReplicationRun
	target  Target
	sources map[string]source.Source
	swept   bool
}

func (u *undoer) source(ctx context.Context, id string) (source.Source, error) {
	if s, ok := u.sources[id]; ok {
		return s, nil
	}
	s, err := u.e.Source(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("connect to the source: %w", err)
	}
	u.sources[id] = s
	return s, nil
}

// sweep aborts the uploads and deletes the objects under the run's staging
// prefix, once: every upload and object of the run lives there, whichever
// entries name them.
func (u *undoer) sweep(ctx context.Context, deleteObjects bool) error {
	if u.swept {
		return nil
	}
	prefix := awstarget.RunPrefix(u.rr.ReplicationJobID, u.rr.ReplicationRunID)
	if _, err := u.target.AbortUploads(ctx, prefix); err != nil {
		return fmt.Errorf("abort uploads under %s: %w", prefix, err)
	}
	if deleteObjects {
		if _, err := u.target.DeleteStaged(ctx, prefix); err != nil {
			return fmt.Errorf("delete objects under %s: %w", prefix, err)
		}
	}
	u.swept = true
	return nil
}

// Undo removes whatever the run made that is not released, newest first,
// each by the step that made it, then sweeps the run's staging prefix for
// uploads and objects whose creation was cut off before they were recorded.
// It is idempotent; an error leaves the remaining entries for the next call.
func (e *Engine) Undo(ctx context.Context, runID string) error {
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(e.CleanupTimeout, 10*time.Minute))
	defer cancel()

	rr, err := e.Store.GetRun(ctx, runID)
	if err != nil {
		return fmt.Errorf("undo run %s: %w", runID, err)
	}
	entries, err := e.Store.LedgerForRun(ctx, runID)
	if err != nil {
		return fmt.Errorf("undo run %s: read ledger: %w", runID, err)
	}
	t, err := e.Target(ctx)
	if err != nil {
		return fmt.Errorf("undo run %s: %w", runID, err)
	}
	u := &undoer{e: e, rr: rr, target: t, sources: map[string]source.Source{}}
	defer func() {
		for _, s := range u.sources {
			s.Close()
		}
	}()
	log := e.logger().With("run", runID, "job", rr.ReplicationJobID)
	var errs []error
	for i := len(entries) - 1; i >= 0; i-- {
		le := entries[i]
		if !unreleased(le) {
			continue
		}
		s := stepNamed(le.Step)
		if s == nil {
			errs = append(errs, fmt.Errorf("%s %s: recorded by step %q, which this connector does not know", le.Kind, le.ResourceID, le.Step))
			continue
		}
		if err := s.undo(ctx, u, le); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", le.Kind, cmp.Or(le.ResourceID, "(id not recorded)"), err))
			continue
		}
		if err := e.Store.RecordReleased(ctx, le.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("undone", "step", le.Step, "kind", le.Kind, "resource", le.ResourceID)
	}
	// The prefix may hold an upload or object whose entry was already
	// released (a crash between completing an upload and recording its
	// object), so it is swept even when no entry asked for it.
	if err := u.sweep(ctx, rr.State != store.RunCompleted); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
