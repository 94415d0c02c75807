package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

// A job created and an on-demand run requested by another process (the CLI,
// whose scheduler is passive) are picked up by the serving scheduler at its
// next resync, and a Resync makes that happen at once.
func TestServingSchedulerPicksUpWorkOfAPassiveOne(t *testing.T) {
	h := newHarness(t, seed, Options{ResyncInterval: time.Hour})
	called := make(chan store.ReplicationRun, 4)
	h.runner.fn = func(ctx context.Context, run store.ReplicationRun) error { called <- run; return nil }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := h.s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitTimer(t, h.clock)

	// The CLI's scheduler: it records, never runs.
	cli := New(h.st, h.runner, Options{Clock: h.clock, Passive: true})
	defer cli.Stop()
	j := h.job(store.ReplicationJob{SeedReplicationTime: seed.Add(24 * time.Hour), Frequency: 12})
	runID, err := cli.Trigger(ctx, j.ReplicationJobID)
	if err != nil {
		t.Fatal(err)
	}
	if _, running := cli.Queued(); running != 0 {
		t.Fatal("a passive scheduler started a run")
	}
	if r, _ := h.st.GetRun(ctx, runID); r.State != store.RunPending {
		t.Fatalf("run is %s, want PENDING", r.State)
	}
	h.s.Resync()
	select {
	case r := <-called:
		if r.ReplicationRunID != runID {
			t.Errorf("ran %s, want %s", r.ReplicationRunID, runID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the serving scheduler did not pick up the pending run")
	}
}

func TestDefaultResyncIsTheDocumentedOne(t *testing.T) {
	o := Options{}
	o.defaults()
	if o.ResyncInterval != 30*time.Second {
		t.Errorf("default resync %v, docs say 30s", o.ResyncInterval)
	}
}
