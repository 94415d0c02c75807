package scheduler

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

// An administrator's pause stops automatic runs, survives an on-demand run
// (successful or not), and a resume picks the schedule up at the next slot
// without recording the slots it skipped as missed.
func TestPauseByAdministrator(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, seed, Options{PauseAfterFailures: 1})
	fail := false
	h.runner.fn = func(context.Context, store.ReplicationRun) error {
		if fail {
			return errors.New("export disk 1: NFC lease expired")
		}
		return nil
	}
	j := h.job(store.ReplicationJob{SeedReplicationTime: seed, Frequency: 1})
	id := j.ReplicationJobID
	h.tick() // the seed slot
	if err := h.s.PauseJob(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := h.s.PauseJob(ctx, id); err != nil {
		t.Errorf("pausing a paused job: %v", err)
	}
	if j := h.getJob(id); j.State != store.JobPaused || !j.NextReplicationRunStartTime.IsZero() {
		t.Fatalf("paused job: %+v", j)
	}
	for i := 1; i <= 5; i++ {
		h.clock.Set(seed.Add(time.Duration(i) * time.Hour))
		h.tick()
	}
	if n := len(h.runner.callsOf(id)); n != 1 {
		t.Fatalf("a paused job ran %d times, want 1 (before the pause)", n)
	}
	for _, f := range []bool{false, true} {
		fail = f
		if _, err := h.s.Trigger(ctx, id); err != nil {
			t.Fatal(err)
		}
		h.s.Wait()
		if j := h.getJob(id); j.State != store.JobPaused {
			t.Errorf("after an on-demand run (failed: %v) the paused job is %s", f, j.State)
		}
	}
	h.clock.Set(seed.Add(5*time.Hour + 30*time.Minute))
	if err := h.s.ResumeJob(ctx, id); err != nil {
		t.Fatal(err)
	}
	if j := h.getJob(id); j.State != store.JobActive || !j.NextReplicationRunStartTime.Equal(seed.Add(6*time.Hour)) {
		t.Fatalf("resumed job: %+v", j)
	}
	for _, r := range h.runs(id) {
		if r.State == store.RunMissed {
			t.Errorf("slot %s skipped while paused recorded as missed", r.ScheduledStartTime)
		}
	}
	if err := h.s.PauseJob(ctx, "sms-job-00000000000000000"); err == nil {
		t.Error("pausing a job that does not exist succeeded")
	}
}
