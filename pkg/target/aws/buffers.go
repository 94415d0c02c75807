package aws

import (
	"context"
	"slices"
	"sync"
	"time"
)

// DefaultBufferPool is the budget of a Target's part buffers when its
// Config gives no Buffers: every Stage of the target draws from it.
const DefaultBufferPool = 256 << 20

// bufferIdle is how long a pool with no buffer taken keeps its free ones
// before letting them go, so an idle connector does not hold its peak.
const bufferIdle = 2 * time.Minute

// Buffers is a bounded pool of part buffers shared by every Stage given
// it (through Config.Buffers: all the runs of a connector). A part's
// buffer comes back to it once the part is stored and is reused by the
// next part of any Stage: a reused buffer costs nothing to read into,
// while a fresh one costs a page fault per page on its first fill (1–2
// CPU s per GiB measured, against 0.1 reused). The bytes of all buffers in
// existence, free or in use, stay within the budget; a Stage waits for a
// buffer when the budget is spent, and waiting Stages are served in the
// order they asked. Buffers are safe for concurrent use.
type Buffers struct {
	budget int64
	idle   time.Duration

	mu      sync.Mutex
	free    [][]byte // buffers to reuse, by capacity (smallest first)
	held    int64    // bytes of every buffer in existence, free or taken
	taken   int      // buffers handed out and not yet back
	queue   []*bufWaiter
	idleGen int // bumped by every get: an idle trim armed before it is void
	stats   BufferStats
}

// BufferStats counts what a pool did.
type BufferStats struct {
	// Allocated and Reused count the buffers handed out fresh and from the
	// free list; Waited counts the gets that waited for the budget;
	// Dropped the free buffers let go (to make room for a larger one, or
	// after bufferIdle with none taken).
	Allocated, Reused, Waited, Dropped int
	// Held is the bytes of buffers in existence now; Peak the most ever.
	Held, Peak int64
	// Waiting is the gets waiting for the budget now.
	Waiting int
}

type bufWaiter struct {
	size int64
	got  chan []byte // buffered: the buffer granted
}

// NewBuffers returns a pool of at most budget bytes of part buffers
// (DefaultBufferPool when budget ≤ 0). A Stage whose part alone is larger
// than the budget gets it once nothing else is held.
func NewBuffers(budget int64) *Buffers {
	if budget <= 0 {
		budget = DefaultBufferPool
	}
	return &Buffers{budget: budget, idle: bufferIdle}
}

// Budget is the most bytes the pool holds.
func (b *Buffers) Budget() int64 { return b.budget }

// Stats returns the pool's counters.
func (b *Buffers) Stats() BufferStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.stats
	s.Held, s.Waiting = b.held, len(b.queue)
	return s
}

// get returns a buffer of len size, waiting while the budget is spent, or
// ctx's cause when it ends first.
func (b *Buffers) get(ctx context.Context, size int64) ([]byte, error) {
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	b.mu.Lock()
	b.idleGen++
	if len(b.queue) == 0 {
		if buf, ok := b.take(size); ok {
			b.mu.Unlock()
			return buf, nil
		}
	}
	w := &bufWaiter{size: size, got: make(chan []byte, 1)}
	b.queue = append(b.queue, w)
	b.stats.Waited++
	b.mu.Unlock()
	select {
	case buf := <-w.got:
		return buf, nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	if i := slices.Index(b.queue, w); i >= 0 {
		b.queue = slices.Delete(b.queue, i, i+1)
		b.serve() // the next in line may fit where this one did not
		b.mu.Unlock()
	} else {
		// Granted as ctx ended: give it back.
		b.mu.Unlock()
		b.put(<-w.got)
	}
	return nil, context.Cause(ctx)
}

// put gives back a buffer from get.
func (b *Buffers) put(buf []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.taken--
	i, _ := slices.BinarySearchFunc(b.free, cap(buf), func(f []byte, c int) int { return cap(f) - c })
	b.free = slices.Insert(b.free, i, buf[:0])
	b.serve()
	if b.taken == 0 && len(b.free) > 0 {
		gen := b.idleGen
		time.AfterFunc(b.idle, func() { b.trim(gen) })
	}
}

// take hands out a buffer of len size if the budget allows, b.mu held: the
// smallest free one large enough, else a new one, making room by letting
// go of free buffers too small to serve.
func (b *Buffers) take(size int64) ([]byte, bool) {
	if i := slices.IndexFunc(b.free, func(f []byte) bool { return int64(cap(f)) >= size }); i >= 0 {
		buf := b.free[i][:size]
		b.free = slices.Delete(b.free, i, i+1)
		b.taken++
		b.stats.Reused++
		return buf, true
	}
	fits := func() bool { return b.held+size <= b.budget || b.held == 0 }
	for !fits() && len(b.free) > 0 {
		b.held -= int64(cap(b.free[0]))
		b.free = slices.Delete(b.free, 0, 1)
		b.stats.Dropped++
	}
	if !fits() {
		return nil, false
	}
	b.held += size
	b.stats.Peak = max(b.stats.Peak, b.held)
	b.taken++
	b.stats.Allocated++
	return make([]byte, size), true
}

// serve grants waiting gets in order while the budget allows; b.mu held.
// The first in line that does not fit holds the others back, so a large
// part is not passed over for ever by smaller ones.
func (b *Buffers) serve() {
	for len(b.queue) > 0 {
		w := b.queue[0]
		buf, ok := b.take(w.size)
		if !ok {
			return
		}
		b.queue = b.queue[1:]
		w.got <- buf
	}
}

// trim lets the free buffers go when none was taken since gen.
func (b *Buffers) trim(gen int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.idleGen != gen || b.taken > 0 {
		return
	}
	for _, f := range b.free {
		b.held -= int64(cap(f))
	}
	b.stats.Dropped += len(b.free)
	b.free = nil
}
