package replication

import (
	"context"
	"slices"
	"testing"

	"github.com/rehost/rehost/pkg/store"
)

// throwawayStep exists only in this test file. It makes nothing outside the
// process, and it proves that a step shows up in a run's progress, the
// console's run page and the metrics from its own file alone.
type throwawayStep struct{}

// Throwaway is what the throwaway step says of itself.
var Throwaway = Info{
	Name: "count-staged", Title: "Count the staged disks", Weight: 7, Metric: "count_staged",
	Advice: "The throwaway step of a test failed: read the test.",
}

func (throwawayStep) info() Info { return Throwaway }

// ThrowawayReached is closed when a run enters the throwaway step, which
// then waits for ThrowawayGo to be closed, so a test sees the run in it.
var ThrowawayReached, ThrowawayGo chan struct{}

func (throwawayStep) do(ctx context.Context, r *run) error {
	r.event(ctx, store.LevelInfo, "%s: %d disks staged", Throwaway.Title, len(r.staged))
	close(ThrowawayReached)
	select {
	case <-ThrowawayGo:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (throwawayStep) undo(context.Context, *undoer, store.LedgerEntry) error { return nil }

// InsertThrowawayStep puts the throwaway step after the step named after,
// until the test ends. Tests that call it must not run in parallel.
func InsertThrowawayStep(t testing.TB, after string) {
	t.Helper()
	i := slices.IndexFunc(steps, func(s step) bool { return s.info().Name == after })
	if i < 0 {
		t.Fatalf("no step %q", after)
	}
	old := steps
	ThrowawayReached, ThrowawayGo = make(chan struct{}), make(chan struct{})
	steps = slices.Insert(slices.Clone(steps), i+1, step(throwawayStep{}))
	t.Cleanup(func() { steps = old })
}
