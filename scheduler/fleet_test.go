package scheduler

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

// renewFleet is a Fleet whose store is unreachable for the first renewals.
type renewFleet struct {
	clock *FakeClock
	start time.Time
	fails int

	mu    sync.Mutex
	calls []time.Duration // clock time of each renewal, from start
}

func (f *renewFleet) Leader() bool { return false }
func (f *renewFleet) Claim(context.Context, int) ([]store.Claim, error) {
	return nil, nil
}
func (f *renewFleet) Release(context.Context, store.Lease) error { return nil }
func (f *renewFleet) ImportSlot(context.Context, string, int, int) (func(), error) {
	return nil, errors.New("not in this test")
}

func (f *renewFleet) Renew(_ context.Context, leases []store.Lease) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, f.clock.Now().Sub(f.start))
	if len(f.calls) <= f.fails {
		return nil, errors.New("connection refused")
	}
	return nil, nil
}

// A renewal the store refused is tried again a quarter tick later, not a
// tick later: a lease lives three ticks, and after a short outage waiting
// a whole tick would leave one renewal between the run and its takeover.
func TestRenewalRetriedSoonAfterAFailure(t *testing.T) {
	start := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	h := newHarness(t, start, Options{})
	clock := h.clock
	f := &renewFleet{clock: clock, start: start, fails: 2}
	s := h.newScheduler(Options{Fleet: f, FleetTick: 8 * time.Second})
	s.inflight["run-1"] = &flight{cancel: func(error) {}, lease: &store.Lease{RunID: "run-1", Holder: "c-1", Token: 1}}
	ctx, cancel := context.WithCancel(context.Background())
	s.renewDone = make(chan struct{})
	go s.renewLoop(ctx)
	defer func() { cancel(); <-s.renewDone }()

	for range 30 {
		for deadline := time.Now().Add(10 * time.Second); clock.Timers() != 1; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the renewal loop never went back to sleep")
			}
		}
		clock.Advance(time.Second)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	want := []time.Duration{8 * time.Second, 10 * time.Second, 12 * time.Second, 20 * time.Second, 28 * time.Second}
	if !slices.Equal(f.calls, want) {
		t.Errorf("renewals at %v, want %v (two refused, then every tick)", f.calls, want)
	}
}
