package scheduler

import (
	"context"
	"sync"
)

// slotQueue is a counting semaphore that grants its slots in the order
// they were asked for: a waiter is never overtaken by a later one, so with
// many runs queued for a region's VM Import slots none starves.
type slotQueue struct {
	mu      sync.Mutex
	limit   int
	held    int
	waiters []chan struct{} // oldest first; closed when granted
}

// acquire waits for a slot; it fails only when ctx ends first, and then
// holds nothing.
func (q *slotQueue) acquire(ctx context.Context) error {
	q.mu.Lock()
	if q.held < q.limit && len(q.waiters) == 0 {
		q.held++
		q.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	q.waiters = append(q.waiters, ch)
	q.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, w := range q.waiters {
		if w == ch {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			return ctx.Err()
		}
	}
	// Granted while ctx ended: hand the slot on rather than drop it.
	q.releaseLocked()
	return ctx.Err()
}

func (q *slotQueue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.releaseLocked()
}

// releaseLocked gives the slot to the oldest waiter, or frees it.
func (q *slotQueue) releaseLocked() {
	if len(q.waiters) > 0 {
		close(q.waiters[0])
		q.waiters = q.waiters[1:]
		return
	}
	q.held--
}

// counts are the slots held and the waiters queued.
func (q *slotQueue) counts() (held, waiting int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.held, len(q.waiters)
}
