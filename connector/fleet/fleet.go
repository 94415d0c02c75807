// Package fleet makes a connector one member of a fleet sharing one
// PostgreSQL store: it joins with its id, the sources it can reach and its
// capacity, heartbeats, holds the scheduler's leadership when it can, and
// gives the scheduler its claims, lease renewals and VM Import slots (it
// implements scheduler.Fleet). Secrets stay sealed with a key every member
// holds (Key: provisioned by the first member, given to the next by
// `rehost fleet join`).
//
// Timing: a lease lives TTL (default 30 s) unless renewed; members renew
// and heartbeat every TTL/3, so a member that stops (killed, cut off)
// loses its runs within TTL, and another claims them at its next tick. A
// member is HEALTHY while its heartbeat is younger than TTL.
package fleet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

// Store is what a member needs of the shared store.
type Store interface {
	store.Fleet
	store.Settings
}

// DefaultTTL is a lease's time to live unless renewed.
const DefaultTTL = 30 * time.Second

// schedulerLock names the leadership: its holder computes the fleet's due
// runs.
const schedulerLock = "scheduler"

// Config describes this member.
type Config struct {
	// ID names the member in the fleet (GetConnectors' connectorId).
	ID string
	// Incarnation is kept in the member's state directory: the same
	// incarnation is a restart, another one a second connector with the
	// same id.
	Incarnation string
	Version     string
	Address     string
	// Capacity is how many runs the member takes at once.
	Capacity int
	// TTL of a lease (default DefaultTTL); heartbeats, renewals and claims
	// happen every TTL/3.
	TTL time.Duration
	// Sources lists the ids of the sources this member can reach. It is
	// asked at the join and then every SourcesEvery (default 5 min), or
	// sooner after Refresh.
	Sources      func(ctx context.Context) ([]string, error)
	SourcesEvery time.Duration
	// SourcesChanged, when set, is asked at every heartbeat for a cheap
	// fingerprint of the fleet's sources (their ids and endpoints): when
	// it changes (a source added on another member), Sources is asked
	// again at once.
	SourcesChanged func(ctx context.Context) (string, error)
	Log            *slog.Logger
}

// Member is this connector's membership of the fleet.
type Member struct {
	st  Store
	c   Config
	log *slog.Logger

	leader  atomic.Bool
	refresh chan struct{}

	mu sync.Mutex
	me store.Member
}

// ErrRemoved: the member was removed from the fleet (DisassociateConnector)
// or its id was taken over by another connector; it must stop.
var ErrRemoved = errors.New("removed from the fleet")

// Join adds this connector to the fleet. A second connector with the same
// id is refused (store.ErrConflict) while the first one's heartbeat is
// fresh.
func Join(ctx context.Context, st Store, c Config) (*Member, error) {
	c.TTL = cmp.Or(c.TTL, DefaultTTL)
	c.SourcesEvery = cmp.Or(c.SourcesEvery, 5*time.Minute)
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Capacity <= 0 {
		c.Capacity = 1
	}
	m := &Member{st: st, c: c, log: c.Log.With("connector", c.ID), refresh: make(chan struct{}, 1)}
	sources, err := m.sources(ctx)
	if err != nil {
		return nil, fmt.Errorf("join the fleet as connector %s: %w", c.ID, err)
	}
	me, err := st.JoinFleet(ctx, store.Member{ID: c.ID, Incarnation: c.Incarnation, Version: c.Version, Address: c.Address,
		Sources: sources, Capacity: c.Capacity}, c.TTL)
	if err != nil {
		return nil, err
	}
	m.me = me
	m.log.Info("joined the fleet", "sources", len(sources), "capacity", c.Capacity, "leaseTTL", c.TTL)
	m.tryLead(ctx)
	return m, nil
}

func (m *Member) sources(ctx context.Context) ([]string, error) {
	if m.c.Sources == nil {
		return []string{}, nil
	}
	s, err := m.c.Sources(ctx)
	if err != nil {
		return nil, fmt.Errorf("find the sources this connector reaches: %w", err)
	}
	slices.Sort(s)
	return s, nil
}

// ID is the member's id.
func (m *Member) ID() string { return m.c.ID }

// TTL is a lease's time to live.
func (m *Member) TTL() time.Duration { return m.c.TTL }

// Tick is how often the member heartbeats, renews and claims.
func (m *Member) Tick() time.Duration { return m.c.TTL / 3 }

// Reaches reports whether the member serves the source.
func (m *Member) Reaches(sourceID string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Contains(m.me.Sources, sourceID)
}

// Leader reports whether this member computes the fleet's due runs.
func (m *Member) Leader() bool { return m.leader.Load() }

// Refresh makes the member find its sources again at the next heartbeat
// (a source was added or changed).
func (m *Member) Refresh() {
	select {
	case m.refresh <- struct{}{}:
	default:
	}
}

// Run heartbeats and keeps the leadership every Tick until ctx ends (nil)
// or the member is removed from the fleet (an error wrapping ErrRemoved).
// A heartbeat that cannot reach the store is retried at the next tick: the
// member stays in the fleet, and its leases lapse only if the outage
// outlasts the TTL.
func (m *Member) Run(ctx context.Context) error {
	t := time.NewTicker(m.Tick())
	defer t.Stop()
	lastSources := time.Now()
	seen := ""
	if m.c.SourcesChanged != nil {
		seen, _ = m.c.SourcesChanged(ctx)
	}
	for {
		refresh := false
		select {
		case <-ctx.Done():
			return nil
		case <-m.refresh:
			refresh = true
		case <-t.C:
		}
		if m.c.SourcesChanged != nil {
			if now, err := m.c.SourcesChanged(ctx); err == nil && now != seen {
				seen, refresh = now, true
			}
		}
		if refresh || time.Since(lastSources) >= m.c.SourcesEvery {
			if s, err := m.sources(ctx); err != nil {
				m.log.Warn("find the sources this connector reaches; keeping the last list", "err", err)
			} else {
				m.mu.Lock()
				m.me.Sources = s
				m.mu.Unlock()
				lastSources = time.Now()
			}
		}
		if err := m.heartbeat(ctx); err != nil {
			return err
		}
	}
}

func (m *Member) heartbeat(ctx context.Context) error {
	m.mu.Lock()
	me := m.me
	m.mu.Unlock()
	hctx, cancel := context.WithTimeout(ctx, m.Tick())
	defer cancel()
	err := m.st.Heartbeat(hctx, me)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict):
		m.leader.Store(false)
		return fmt.Errorf("connector %s: %w: %v", m.c.ID, ErrRemoved, err)
	case err != nil:
		if ctx.Err() == nil {
			m.log.Warn("heartbeat failed; retried at the next tick", "err", err)
		}
		return nil
	}
	m.tryLead(ctx)
	return nil
}

func (m *Member) tryLead(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, m.Tick())
	defer cancel()
	got, err := m.st.TryLock(lctx, schedulerLock, m.c.ID, m.c.TTL)
	if err != nil {
		// Unknown: keep what we had until the lock's TTL says otherwise;
		// a leader that cannot renew loses the lock to another member,
		// whose due pass is transactional with ours.
		m.log.Warn("renew the scheduler's leadership", "err", err)
		return
	}
	if was := m.leader.Swap(got); was != got {
		if got {
			m.log.Info("this connector now schedules the fleet's due runs")
		} else {
			m.log.Info("another connector schedules the fleet's due runs now")
		}
	}
}

// Claim leases up to n runs this member can run.
func (m *Member) Claim(ctx context.Context, n int) ([]store.Claim, error) {
	return m.st.ClaimRuns(ctx, m.c.ID, n, m.c.TTL)
}

// Renew extends the leases of the runs in flight.
func (m *Member) Renew(ctx context.Context, leases []store.Lease) ([]string, error) {
	return m.st.RenewLeases(ctx, leases, m.c.TTL)
}

// Release gives up a lease.
func (m *Member) Release(ctx context.Context, l store.Lease) error {
	return m.st.ReleaseLease(ctx, l)
}

// LeaseRun leases a finished run for its cleanup (the janitor), so one
// member at a time undoes it.
func (m *Member) LeaseRun(ctx context.Context, runID string) (store.Lease, error) {
	return m.st.LeaseRun(ctx, m.c.ID, runID, m.c.TTL)
}

// ImportSlot waits for n of the region's VM Import slots (one per import
// task), counted across the fleet, for the run whose lease ctx carries.
// Held slots are looked at again every second.
func (m *Member) ImportSlot(ctx context.Context, region string, limit, n int) (func(), error) {
	l, ok := store.LeaseOf(ctx)
	if !ok {
		return nil, fmt.Errorf("wait for a VM Import slot in %s: the run holds no lease", region)
	}
	logged := false
	for {
		got, err := m.st.AcquireImportSlots(ctx, region, limit, n, l)
		if err != nil {
			return nil, fmt.Errorf("wait for a VM Import slot in %s: %w", region, err)
		}
		if got {
			var once sync.Once
			return func() {
				once.Do(func() {
					rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.c.TTL)
					defer cancel()
					if err := m.st.ReleaseImportSlot(rctx, region, l); err != nil {
						m.log.Warn("free a VM Import slot; it frees itself when the run's lease ends", "run", l.RunID, "err", err)
					}
				})
			}, nil
		}
		if !logged {
			m.log.Info("all VM Import slots of the region are taken across the fleet; waiting", "region", region, "limit", limit, "run", l.RunID)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for a VM Import slot in %s: %w", region, context.Cause(ctx))
		case <-time.After(time.Second):
		}
	}
}
