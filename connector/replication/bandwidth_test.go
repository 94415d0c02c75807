package replication

import (
	"context"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/bandwidth"

	"github.com/rehost/rehost/internal/lab/fakeclock"
)

// runUnderCap runs the harness's run while moving the cap's clock each
// time the run waits on it; it returns how many waits there were and the
// simulated time they took.
func runUnderCap(t *testing.T, h *harness, clk *fakeclock.Clock) (int, time.Duration) {
	t.Helper()
	start := clk.Now()
	done := make(chan error, 1)
	go func() {
		_, err := h.e.Run(context.Background(), h.current())
		done <- err
	}()
	waits := 0
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			return waits, clk.Now().Sub(start)
		case <-time.After(time.Millisecond):
			if clk.FireNext() {
				waits++
			}
		}
	}
}

// One cap, given to the engine as both limiters the way the daemon does:
// a full run's S3 staging and an incremental run's EBS writes wait on it
// and count in its one budget.
func TestStagingAndEBSWritesWaitOnTheSharedCap(t *testing.T) {
	h := newIncremental(t, nil)
	clk := fakeclock.New(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	c := bandwidth.New(clk)
	s, err := bandwidth.Compile(bandwidth.Spec{Default: "1Mbit"}) // 125,000 B/s
	if err != nil {
		t.Fatal(err)
	}
	c.Set(s)
	h.e.Limiter, h.e.Bandwidth = c, c

	// The seed of an incremental job: every allocated block to EBS.
	waits, took := runUnderCap(t, h, clk)
	r1 := h.current()
	if r1.AmiID == "" || r1.Replication == nil {
		t.Fatalf("seed run %s %+v", r1.State, r1.Replication)
	}
	ebs := c.Status().Total
	if ebs != r1.Replication.BytesSent || waits == 0 {
		t.Errorf("EBS writes: the cap granted %d bytes with %d waits; the run sent %d", ebs, waits, r1.Replication.BytesSent)
	}
	// At 125,000 B/s the bytes take their time, less the first burst.
	if min := time.Duration(float64(ebs-2*512<<10) / 125_000 * float64(time.Second)); took < min {
		t.Errorf("EBS writes took %s of the cap's clock, want at least %s", took, min)
	}
	t.Logf("EBS: %d bytes, %d waits, %s simulated", ebs, waits, took)

	// A full run of another job, while the cap is in debt for a block
	// another run just sent: its parts to S3 wait on the same budget.
	h2 := newHarness(t)
	h2.e.Limiter, h2.e.Bandwidth = c, c
	clk.Advance(time.Minute) // the seed's debt repaid
	if err := c.WaitN(context.Background(), 512<<10); err != nil {
		t.Fatal(err)
	}
	before := c.Status().Total
	waits, took = runUnderCap(t, h2, clk)
	if r2 := h2.current(); r2.AmiID == "" {
		t.Fatalf("full run %s: %s", r2.State, r2.StatusMessage)
	}
	staged := c.Status().Total - before
	if len(h2.w.target.Images()) != 1 || staged < 23+9 || waits == 0 || took < 4*time.Second {
		t.Errorf("staging: the cap granted %d bytes with %d waits over %s", staged, waits, took)
	}
	t.Logf("S3: %d bytes, %d waits, %s simulated", staged, waits, took)
}
