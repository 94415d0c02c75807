package scheduler

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Slot kinds: the pools of a region's VM Import slots.
const (
	KindImage    = "image"
	KindSnapshot = "snapshot"
)

// SlotPool names one pool of VM Import slots: a region's slots of a kind.
type SlotPool struct {
	Region, Kind string
}

// SlotWait is where a run waiting for VM Import slots stands.
type SlotWait struct {
	SlotPool
	// Slots is how many slots the run asks for; Ahead how many runs asked
	// before it and still wait (it is granted after all of them); InLine
	// how many wait in the pool's queue, the run included.
	Slots, Ahead, InLine int
}

// slotQueue is a counting semaphore that grants its slots in the order
// they were asked for: a waiter is never overtaken by a later one, even
// one asking for fewer slots, so with many runs queued for a region's VM
// Import slots none starves.
type slotQueue struct {
	mu      sync.Mutex
	limit   int
	held    int
	waiters []*slotWaiter // oldest first
}

type slotWaiter struct {
	run   string
	n     int
	grant chan struct{} // closed when granted
}

// acquire waits for n slots for run; it fails at once when n is beyond
// the limit (it could never be granted), and when ctx ends first, holding
// nothing then.
func (q *slotQueue) acquire(ctx context.Context, run string, n int) error {
	q.mu.Lock()
	if n > q.limit {
		q.mu.Unlock()
		return fmt.Errorf("%d slots are asked for at once and the limit is %d: raise the region's VM Import quota and the connector's limit with it", n, q.limit)
	}
	if q.held+n <= q.limit && len(q.waiters) == 0 {
		q.held += n
		q.mu.Unlock()
		return nil
	}
	w := &slotWaiter{run: run, n: n, grant: make(chan struct{})}
	q.waiters = append(q.waiters, w)
	q.mu.Unlock()
	select {
	case <-w.grant:
		return nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := slices.Index(q.waiters, w); i >= 0 {
		q.waiters = slices.Delete(q.waiters, i, i+1)
		// A large waiter leaving may let smaller ones behind it in.
		q.grantLocked()
		return ctx.Err()
	}
	// Granted while ctx ended: hand the slots on rather than drop them.
	q.releaseLocked(n)
	return ctx.Err()
}

func (q *slotQueue) release(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.releaseLocked(n)
}

func (q *slotQueue) releaseLocked(n int) {
	q.held -= n
	q.grantLocked()
}

// grantLocked grants waiters, oldest first, while the oldest fits.
func (q *slotQueue) grantLocked() {
	for len(q.waiters) > 0 && q.held+q.waiters[0].n <= q.limit {
		w := q.waiters[0]
		q.waiters = q.waiters[1:]
		q.held += w.n
		close(w.grant)
	}
}

// counts are the slots held and the waiters queued.
func (q *slotQueue) counts() (held, waiting int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.held, len(q.waiters)
}

// waiting reports whether run waits, for how many slots, behind how many
// waiters, and how many wait in all.
func (q *slotQueue) waiting(run string) (n, ahead, inLine int, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, w := range q.waiters {
		if w.run == run {
			return w.n, i, len(q.waiters), true
		}
	}
	return 0, 0, 0, false
}

// ImportSlot waits for the VM Import slots run's import needs in region,
// image ImportImage tasks and snapshot ImportSnapshot tasks (AWS counts
// each kind against a quota of its own; an import of snapshots is one task
// per disk), and returns the function that frees them; calling that more
// than once is harmless. A run calls it around its import stage, so
// imports beyond the quota queue instead of failing. Each kind's slots are
// taken from its own pool, the image pool first; waiters get slots oldest
// first. It fails when ctx ends first, holding nothing then, and at once
// when the import needs more slots of a kind than the region allows.
func (s *Scheduler) ImportSlot(ctx context.Context, region, run string, image, snapshot int) (release func(), err error) {
	if s.o.Fleet != nil {
		return s.fleetImportSlot(ctx, region, image, snapshot)
	}
	var frees []func()
	freeAll := func() {
		for _, f := range slices.Backward(frees) {
			f()
		}
	}
	for _, k := range []struct {
		kind string
		n    int
	}{{KindImage, image}, {KindSnapshot, snapshot}} {
		if k.n <= 0 {
			continue
		}
		q := s.slotPool(SlotPool{region, k.kind})
		if err := q.acquire(ctx, run, k.n); err != nil {
			freeAll()
			return nil, fmt.Errorf("wait for %d VM Import %s slots in %s: %w", k.n, k.kind, region, err)
		}
		n := k.n
		frees = append(frees, func() { q.release(n) })
	}
	var once sync.Once
	return func() { once.Do(freeAll) }, nil
}

// fleetImportSlot takes the fleet's slots, counted in its store: the image
// pool under the region's name, the snapshot pool under "<region>
// snapshot". (An import needs slots of one kind only.)
func (s *Scheduler) fleetImportSlot(ctx context.Context, region string, image, snapshot int) (func(), error) {
	if snapshot > 0 {
		if snapshot > s.o.SnapshotImportLimitPerRegion {
			return nil, fmt.Errorf("wait for %d VM Import snapshot slots in %s: the limit is %d: raise the region's VM Import quota and the connector's limit with it", snapshot, region, s.o.SnapshotImportLimitPerRegion)
		}
		return s.o.Fleet.ImportSlot(ctx, region+" "+KindSnapshot, s.o.SnapshotImportLimitPerRegion, snapshot)
	}
	if image > 0 {
		return s.o.Fleet.ImportSlot(ctx, region, s.o.ImportLimitPerRegion, image)
	}
	return func() {}, nil
}

func (s *Scheduler) slotPool(p SlotPool) *slotQueue {
	s.semMu.Lock()
	defer s.semMu.Unlock()
	q, ok := s.sems[p]
	if !ok {
		q = &slotQueue{limit: s.o.ImportLimitPerRegion}
		if p.Kind == KindSnapshot {
			q.limit = s.o.SnapshotImportLimitPerRegion
		}
		s.sems[p] = q
	}
	return q
}

// ImportLimit is how many ImportImage tasks (runs importing as an image)
// one region allows at once.
func (s *Scheduler) ImportLimit() int { return s.o.ImportLimitPerRegion }

// SnapshotImportLimit is how many ImportSnapshot tasks (disks of runs
// importing as snapshots) one region allows at once.
func (s *Scheduler) SnapshotImportLimit() int { return s.o.SnapshotImportLimitPerRegion }

// ImportSlotsInUse reports how many import slots each pool has taken.
func (s *Scheduler) ImportSlotsInUse() map[SlotPool]int {
	held, _ := s.importSlots()
	return held
}

// ImportSlotsWaiting reports how many runs wait for each pool's slots
// (granted oldest first).
func (s *Scheduler) ImportSlotsWaiting() map[SlotPool]int {
	_, waiting := s.importSlots()
	return waiting
}

// ImportSlotWait says where run stands if it waits for VM Import slots in
// this process (a fleet's waits are not queued here).
func (s *Scheduler) ImportSlotWait(run string) (SlotWait, bool) {
	s.semMu.Lock()
	defer s.semMu.Unlock()
	for p, q := range s.sems {
		if n, ahead, inLine, ok := q.waiting(run); ok {
			return SlotWait{SlotPool: p, Slots: n, Ahead: ahead, InLine: inLine}, true
		}
	}
	return SlotWait{}, false
}

func (s *Scheduler) importSlots() (held, waiting map[SlotPool]int) {
	s.semMu.Lock()
	defer s.semMu.Unlock()
	held, waiting = make(map[SlotPool]int, len(s.sems)), make(map[SlotPool]int, len(s.sems))
	for p, q := range s.sems {
		held[p], waiting[p] = q.counts()
	}
	return held, waiting
}
