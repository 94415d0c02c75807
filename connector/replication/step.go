package replication

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
)

// A step is one stage of a run, and owns its effects: do makes them,
// recording each in the ledger under the step's name (intent before the
// call, id after), and undo removes one of them given its ledger entry.
// Both are idempotent: do re-entered after a crash finds what it made and
// goes on; undo of something already gone succeeds. A step lives in a file
// of its own, with what it says of itself (info) and its ledger kinds.
//
// A step hands something it made to a later step explicitly (handOver):
// the entry then belongs to the step that took it, which releases or
// undoes it; no step releases another step's entries.
type step interface {
	info() Info
	do(ctx context.Context, r *run) error
	// undo removes what entry le (one of this step's, not released)
	// stands for; the caller then marks it released.
	undo(ctx context.Context, u *undoer, le store.LedgerEntry) error
}

// Info is what a step says of itself. Every display of a run — the
// console, the CLI, the demo, the metrics and the docs — reads it from the
// step table, so a new step shows up everywhere from its own file.
type Info struct {
	// Name is the step's name in the ledger and a run's progress.
	Name string `json:"name"`
	// Title says what the step does, for people ("VM Import").
	Title string `json:"title"`
	// Weight is the step's share of a typical run's duration, relative to
	// the other steps' weights; Overall turns it into a percent.
	Weight int `json:"weight"`
	// Metric is the step's value of the "step" label of the step-duration
	// histogram.
	Metric string `json:"metric"`
	// Advice says what to do when a run fails in the step; the error
	// message says what happened.
	Advice string `json:"advice"`
	// Effects says what the step makes or takes over (its ledger kinds)
	// and how it finds them again after a crash, for the docs.
	Effects string `json:"effects"`
	// Modes are the run modes the step runs in (ModeFull, ModeIncremental);
	// none means every mode.
	Modes []string `json:"modes,omitempty"`
}

// Run modes: which steps a run runs (store.RunProgress.Mode).
const (
	// ModeFull exports each disk whole, stages it in S3 and imports it.
	ModeFull = "full"
	// ModeIncremental writes the changed blocks into EBS direct replicas
	// and builds the AMI from them.
	ModeIncremental = "incremental"
)

var (
	fullOnly        = []string{ModeFull}
	incrementalOnly = []string{ModeIncremental}
)

// In reports whether the step runs in mode ("" is a run recorded before
// modes existed: full).
func (in Info) In(mode string) bool {
	return len(in.Modes) == 0 || slices.Contains(in.Modes, cmp.Or(mode, ModeFull))
}

// progresser is a step whose work inside it is measured: it says how much
// of its work is done, from the run's progress numbers.
type progresser interface {
	progress(p store.RunProgress) (done, total int64)
}

// steps is the run, in order: every mode's steps in one table, each step
// saying which modes it runs in (Info.Modes). Adding a step is a file and
// a line here.
var steps = []step{
	preflightStep{},
	trackStep{},
	snapshotStep{},
	changesStep{},
	stageStep{},
	writeStep{},
	verifyStep{},
	releaseSnapshotStep{},
	keepStep{},
	importStep{},
	waitImportStep{},
	finalizeStep{},
	unstageStep{},
	retentionStep{},
}

// Steps lists what every step of a run says of itself, in order, whatever
// its mode.
func Steps() []Info {
	out := make([]Info, len(steps))
	for i, s := range steps {
		out[i] = s.info()
	}
	return out
}

// StepsOf lists the steps of a run in mode, in order.
func StepsOf(mode string) []Info {
	var out []Info
	for _, s := range steps {
		if in := s.info(); in.In(mode) {
			out = append(out, in)
		}
	}
	return out
}

// StepInfo returns what the step named says of itself; a name no step has
// (a run recorded by another version) gets the name as its title.
func StepInfo(name string) Info {
	if s := stepNamed(name); s != nil {
		return s.info()
	}
	switch name {
	case stageCompleted:
		return Info{Name: name, Title: "Completed", Metric: name}
	case stageCleanup:
		return Info{Name: name, Title: "Removing what the failed run made", Metric: name}
	}
	return Info{Name: name, Title: name, Metric: "other"}
}

func stepNamed(name string) step {
	for _, s := range steps {
		if s.info().Name == name {
			return s
		}
	}
	return nil
}

// Overall is a run's progress as a percent of the whole run, from the
// steps' weights and the progress inside the current step. A completed
// run is at 100.
func Overall(p store.RunProgress) int {
	if p.Step == stageCompleted {
		return 100
	}
	var total, before, within int
	found := false
	for _, s := range steps {
		in := s.info()
		if !in.In(p.Mode) {
			continue
		}
		total += in.Weight
		switch {
		case found:
		case in.Name == p.Step:
			found = true
			if pr, ok := s.(progresser); ok {
				if done, all := pr.progress(p); all > 0 {
					within = int(int64(in.Weight) * min(done, all) / all)
				}
			}
		default:
			before += in.Weight
		}
	}
	if !found || total == 0 {
		return 0
	}
	return (before + within) * 100 / total
}

// Advice says what to do about a run that failed in step with message msg.
// Causes that any step can meet (no registration, refused credentials, an
// unreachable host) are recognised in the message; otherwise the step's
// own advice applies.
func Advice(step, msg string) string {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "not registered"):
		return "Register the connector with AWS (rehost register, or the console's AWS page), then start the job again."
	case strings.Contains(m, "authentication") || strings.Contains(m, "password"):
		return "The source refused the connector's credentials: fix them (remove and add the source again with the right password), test the connection, then start the job again."
	case strings.Contains(m, "unreachable"):
		return "The connector could not reach the source: test the source (rehost source test, or the console's Sources page), check the network and that the host is up, then start the job again."
	}
	if s := stepNamed(step); s != nil && s.info().Advice != "" {
		return s.info().Advice
	}
	return "Fix the cause the message names, then start the job again. If it keeps failing, download a support bundle (rehost support bundle, or the console's Support page) for whoever helps you."
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
		if le.Step == s.info().Name && le.Kind == kind {
			out = append(out, le)
		}
	}
	return out, nil
}

// handOver makes step to the owner of the unreleased entries of a kind that
// step from recorded, and returns every entry of that kind to owns (those
// it took before a restart included), in insertion order. From then on to
// releases or undoes them; from no longer sees them.
func (r *run) handOver(ctx context.Context, from, to step, kind string) ([]store.LedgerEntry, error) {
	all, err := r.e.Store.LedgerForRun(ctx, r.run.ReplicationRunID)
	if err != nil {
		return nil, fmt.Errorf("vm %q: read the run's ledger: %w", r.server.Name, err)
	}
	giver, taker := from.info().Name, to.info().Name
	var out []store.LedgerEntry
	for _, le := range all {
		if le.Kind != kind {
			continue
		}
		switch {
		case le.Step == taker:
			out = append(out, le)
		case le.Step == giver && unreleased(le):
			taken, err := r.e.Store.HandOver(ctx, le.ID, taker)
			if err != nil {
				return nil, fmt.Errorf("vm %q: hand %s %s over to %s: %w", r.server.Name, kind, le.ResourceID, taker, err)
			}
			out = append(out, taken)
		}
	}
	return out, nil
}

// made reports whether an entry's resource was made (whoever owns it now),
// not only intended.
func made(le store.LedgerEntry) bool {
	return le.State == store.LedgerCreated || le.State == store.LedgerReleased || le.State == store.LedgerHandedOver
}

func unreleased(le store.LedgerEntry) bool {
	return le.State == store.LedgerIntent || le.State == store.LedgerCreated
}

// intend records that step s is about to make a kind of resource.
func (r *run) intend(ctx context.Context, s step, kind string, intent any) (int64, error) {
	return r.e.Store.RecordIntent(ctx, r.run.ReplicationRunID, s.info().Name, kind, mustJSON(intent))
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

// stillHeld fails with store.ErrFenced when ctx carries a lease (a fleet)
// that is no longer the run's; alone, it is always nil.
func (e *Engine) stillHeld(ctx context.Context, runID string) error {
	if _, fleet := store.LeaseOf(ctx); !fleet {
		return nil
	}
	// A run update under the lease is refused unless it still holds.
	_, err := e.Store.UpdateRun(ctx, runID, func(*store.ReplicationRun) error { return nil })
	return err
}

// Undo removes whatever the run made that is not released, newest first,
// each by the step that owns its entry (the one that made it, or took it
// over). It is idempotent; an error leaves the remaining entries for the
// next call.
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
			// A step of another version of rehost: its entries wait for one
			// that knows them rather than being guessed at.
			errs = append(errs, fmt.Errorf("%s %s: recorded by step %q, which this connector does not know", le.Kind, le.ResourceID, le.Step))
			continue
		}
		// In a fleet, deleting is for the run's holder only: a member that
		// lost the lease stops before touching what the new holder uses.
		if err := e.stillHeld(ctx, runID); err != nil {
			return fmt.Errorf("undo run %s: %w", runID, err)
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
	return errors.Join(errs...)
}
