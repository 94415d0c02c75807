package replication

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/bandwidth"
)

// stepClock is a fake clock for the cap: the test moves it by hand.
type stepClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []stepTimer
}

type stepTimer struct {
	at time.Time
	ch chan time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.timers = append(c.timers, stepTimer{c.now.Add(d), ch})
	return ch
}

// fireNext moves the clock to the earliest timer and fires it; false when
// nobody waits.
func (c *stepClock) fireNext() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return false
	}
	first := 0
	for i, t := range c.timers {
		if t.at.Before(c.timers[first].at) {
			first = i
		}
	}
	t := c.timers[first]
	c.timers = append(c.timers[:first], c.timers[first+1:]...)
	if t.at.After(c.now) {
		c.now = t.at
	}
	t.ch <- c.now
	return true
}

// runUnderCap runs the harness's run while moving the cap's clock each
// time the run waits on it; it returns how many waits there were and the
// simulated time they took.
func runUnderCap(t *testing.T, h *harness, clk *stepClock) (int, time.Duration) {
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
			if clk.fireNext() {
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
	clk := &stepClock{now: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
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
	clk.mu.Lock()
	clk.now = clk.now.Add(time.Minute) // the seed's debt repaid
	clk.mu.Unlock()
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
