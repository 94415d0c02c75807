package bandwidth

import (
	"context"
	"sync"
	"time"
)

// Clock is the time a Cap counts in; tests give it a fake one.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// burstTime is how much of the rate in force may pass at once after an
// idle spell: a tenth of a second's worth (0.17 % of a minute), besides
// the request that finds the bucket full.
const burstTime = 100 * time.Millisecond

// meterSeconds is how many whole seconds Throughput averages over.
const meterSeconds = 5

// Cap is the connector's bandwidth cap: a token bucket whose rate is the
// schedule's rate in force, shared by every caller. It satisfies the
// engine's limiter contract (WaitN); its zero value is not usable (New).
//
// Waiters queue in arrival order and only the first draws from the bucket
// (others wait for their turn), so a rate change at a window's edge or by
// Set applies from the next request on, not after a backlog computed at
// the old rate. A request may exceed the burst: the bucket goes into debt
// for it, and the next waits until the debt is repaid, so over any span T
// at most rate×T + burst + the largest request passes.
type Cap struct {
	clock Clock
	// turn is held by the one waiter drawing from the bucket; Go queues
	// the senders blocked on it in order.
	turn chan struct{}

	mu      sync.Mutex
	sched   *Schedule
	changed chan struct{} // closed and replaced by Set
	rate    Rate          // in force until `until` (zero: recompute)
	until   time.Time
	fresh   bool // rate and until are current for sched
	tokens  float64
	last    time.Time
	meter   [meterSeconds + 2]slot
	total   int64
}

type slot struct {
	sec   int64
	bytes int64
}

// New returns a cap without limit (Set gives it a schedule); clock nil is
// the real clock.
func New(clock Clock) *Cap {
	if clock == nil {
		clock = realClock{}
	}
	return &Cap{clock: clock, turn: make(chan struct{}, 1), changed: make(chan struct{})}
}

// Set makes s the schedule in force (nil: no cap), at once for every
// waiter.
func (c *Cap) Set(s *Schedule) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sched, c.fresh = s, false
	close(c.changed)
	c.changed = make(chan struct{})
}

// Schedule is the schedule in force (nil: no cap).
func (c *Cap) Schedule() *Schedule {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sched
}

// WaitN blocks until n more bytes may be sent under the cap, or returns
// ctx's cause; bytes it grants count in Throughput.
func (c *Cap) WaitN(ctx context.Context, n int) error {
	if n <= 0 {
		return nil
	}
	if c.unlimited(n) {
		return nil
	}
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-c.turn }()
	for {
		wait, changed := c.take(n)
		if wait <= 0 {
			return nil
		}
		select {
		case <-c.clock.After(wait):
		case <-changed:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// inForce is the rate now, recomputed at the schedule's edges; c.mu held.
func (c *Cap) inForce(now time.Time) Rate {
	if !c.fresh || !c.until.IsZero() && !now.Before(c.until) {
		c.rate, _, c.until = c.sched.InForce(now)
		c.fresh = true
	}
	return c.rate
}

// unlimited grants n at once when no cap is in force.
func (c *Cap) unlimited(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	if c.inForce(now) != 0 {
		return false
	}
	c.tokens, c.last = 0, now
	c.count(now, n)
	return true
}

// take grants n when the bucket is not in debt, else says how long to wait
// before asking again (at most until the rate next changes) and the
// channel Set closes.
func (c *Cap) take(n int) (time.Duration, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	rate := c.inForce(now)
	if rate == 0 {
		c.tokens, c.last = 0, now
		c.count(now, n)
		return 0, c.changed
	}
	r := float64(rate)
	burst := r * burstTime.Seconds()
	if c.last.IsZero() {
		c.tokens = burst
	} else if dt := now.Sub(c.last); dt > 0 {
		c.tokens = min(c.tokens+dt.Seconds()*r, burst)
	}
	c.last = now
	if c.tokens >= 0 {
		c.tokens -= float64(n)
		c.count(now, n)
		return 0, c.changed
	}
	wait := time.Duration(-c.tokens / r * float64(time.Second))
	wait = max(wait, time.Microsecond)
	if !c.until.IsZero() {
		wait = min(wait, max(c.until.Sub(now), time.Microsecond))
	}
	return wait, c.changed
}

// count adds n granted bytes to the meter; c.mu held.
func (c *Cap) count(now time.Time, n int) {
	sec := now.Unix()
	s := &c.meter[sec%int64(len(c.meter))]
	if s.sec != sec {
		*s = slot{sec: sec}
	}
	s.bytes += int64(n)
	c.total += int64(n)
}

// Status is the cap as it stands at one moment.
type Status struct {
	// Spec is the schedule in canonical form (the zero Spec: no cap).
	Spec Spec
	// Rate is the rate in force (0: none), from Window (-1: the default)
	// until Until (zero: no change ahead).
	Rate   Rate
	Window int
	Until  time.Time
	// Throughput is what the cap granted per second over the last few
	// whole seconds; Total what it granted since it was made.
	Throughput float64
	Total      int64
}

// Status reports the cap now.
func (c *Cap) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	st := Status{Window: -1, Total: c.total}
	if c.sched != nil {
		st.Spec = c.sched.Spec()
		st.Rate, st.Window, st.Until = c.sched.InForce(now)
	} else {
		st.Spec.Default = Unlimited
	}
	sec := now.Unix()
	var sum int64
	for _, s := range c.meter {
		if s.sec >= sec-meterSeconds && s.sec < sec {
			sum += s.bytes
		}
	}
	st.Throughput = float64(sum) / meterSeconds
	return st
}
