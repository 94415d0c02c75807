package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

// Fleet is what a scheduler needs of the fleet of connectors it is a member
// of, all sharing one store (connector/fleet implements it). In a fleet:
//
//   - one member at a time, the leader, computes every job's due runs
//     (RunDue creates their rows, as a lone scheduler does); the others
//     compute none, so a due run is planned once per job, not once per
//     member;
//   - every member claims PENDING runs (and ACTIVE runs whose holder's
//     lease expired) it can run, up to MaxConcurrent, and runs each under
//     its lease: the lease's fencing token goes with every write of the
//     run (store.WithLease), so a member that lost it cannot write over
//     the new holder's progress;
//   - while a run is in flight its lease is renewed every FleetTick; a
//     run whose lease is lost is stopped (its context cancelled with a
//     cause wrapping store.ErrFenced) and left to the new holder, which
//     resumes it from the ledger as a restarted connector would;
//   - a member that stops gives its runs' leases up, so others resume
//     them at once rather than after the lease expires;
//   - VM Import slots and on-demand limits are counted in the store, so
//     across the fleet.
type Fleet interface {
	// Leader reports whether this member computes the fleet's due runs
	// now.
	Leader() bool
	// Claim leases up to n runs this member can run (store.Fleet's
	// ClaimRuns: PENDING ones become ACTIVE).
	Claim(ctx context.Context, n int) ([]store.Claim, error)
	// Renew extends the leases of the runs in flight and returns the runs
	// whose leases are no longer this member's.
	Renew(ctx context.Context, leases []store.Lease) (lost []string, err error)
	// Release gives up the lease of a run stopped unfinished, so another
	// member may resume it at once.
	Release(ctx context.Context, l store.Lease) error
	// ImportSlot waits for n of the region's limit VM Import slots (one
	// per import task), counted across the fleet, for the run whose lease
	// ctx carries, and returns the function that frees them (harmless to
	// call twice). It fails only when ctx ends or the lease is lost.
	ImportSlot(ctx context.Context, region string, limit, n int) (release func(), err error)
}

// DefaultFleetTick is how often a fleet member renews its leases and
// claims runs, by default.
const DefaultFleetTick = 10 * time.Second

// renewLoop renews the leases of the runs in flight every FleetTick and
// stops the runs whose leases were lost. It runs apart from the loop, so a
// long pass of RunDue cannot let leases lapse.
func (s *Scheduler) renewLoop(ctx context.Context) {
	defer close(s.renewDone)
	t := s.clock.NewTimer(s.o.FleetTick)
	for {
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.base.Done():
			t.Stop()
			return
		case <-t.C():
		}
		next := s.o.FleetTick
		if !s.renew(ctx) {
			next = s.o.FleetTick / renewRetries
		}
		t = s.clock.NewTimer(next)
	}
}

// renewRetries is how many times a tick a renewal that failed is tried
// again. A lease outlives several ticks (connector/fleet: three), but a
// failure waited out for a whole tick spends one of them: after a short
// outage the leases would hang on the one renewal left, and a reconnection
// slower than that (a loaded machine, a TLS handshake to a far store)
// would hand the runs to another member although the store was back.
const renewRetries = 4

// renew renews the leases of the runs in flight; it reports false when the
// store could not be reached.
func (s *Scheduler) renew(ctx context.Context) bool {
	s.mu.Lock()
	leases := make([]store.Lease, 0, len(s.inflight))
	for _, f := range s.inflight {
		if f.lease != nil {
			leases = append(leases, *f.lease)
		}
	}
	s.mu.Unlock()
	if len(leases) == 0 {
		return true
	}
	// A renewal that cannot reach the store waits no longer than a tick:
	// another one tries again soon, and the runs' own writes wait for the
	// store meanwhile.
	rctx, cancel := context.WithTimeout(ctx, s.o.FleetTick)
	lost, err := s.o.Fleet.Renew(rctx, leases)
	cancel()
	if err != nil {
		s.log.Warn("renew the leases of the runs in flight; retried shortly", "runs", len(leases), "err", err, "in", s.o.FleetTick/renewRetries)
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range lost {
		f, ok := s.inflight[id]
		if !ok || f.lost {
			continue
		}
		// The run's next write is refused by its fencing token, which stops
		// it (a run writes its progress every second or so); one that
		// writes nothing for a while is stopped here.
		f.lost = true
		s.log.Warn("lease lost: another connector holds the run now; it stops at its next write", "run", id)
		cancel, t := f.cancel, s.clock.NewTimer(s.o.FleetTick*3)
		go func() {
			select {
			case <-t.C():
				cancel(fmt.Errorf("run %s: %w: another connector holds it now", id, store.ErrFenced))
			case <-s.base.Done():
				t.Stop()
			}
		}()
	}
	return true
}

// claim leases runs while run slots are free and starts them. Called with
// mu held.
func (s *Scheduler) claim(ctx context.Context) {
	free := s.o.MaxConcurrent - len(s.inflight)
	if s.o.Passive || free <= 0 || s.stopped {
		return
	}
	claims, err := s.o.Fleet.Claim(ctx, free)
	if err != nil {
		s.log.Error("claim runs", "err", err)
		return
	}
	for _, c := range claims {
		if _, running := s.inflight[c.Run.ReplicationRunID]; running {
			// Ours already (a lease we lost and took again): the old run
			// stops on its own lease; this one resumes after it.
			s.log.Warn("claimed a run still in flight here; releasing it", "run", c.Run.ReplicationRunID)
			_ = s.o.Fleet.Release(ctx, c.Lease)
			continue
		}
		lease := c.Lease
		s.log.Info("run claimed", "job", c.Run.ReplicationJobID, "run", c.Run.ReplicationRunID, "token", lease.Token)
		s.event(store.WithLease(ctx, lease), c.Run.ReplicationJobID, c.Run.ReplicationRunID, store.LevelInfo,
			fmt.Sprintf("run claimed by connector %s (lease token %d)", lease.Holder, lease.Token))
		s.spawn(c.Run, &lease)
	}
}

// fenced reports whether a run ended because its lease was lost.
func fenced(runErr error, runCtx context.Context) bool {
	return errors.Is(runErr, store.ErrFenced) || errors.Is(context.Cause(runCtx), store.ErrFenced)
}
