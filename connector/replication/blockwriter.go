package replication

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding"
	"fmt"
	"hash"
	"sync"

	"golang.org/x/time/rate"

	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// EBS direct's per-snapshot request rates are quotas of the account (1,000
// PutSnapshotBlock and 1,000 GetSnapshotBlock requests per second per
// snapshot by default); a run stays well below them, so that several disks
// and a verification at once are not throttled.
const defaultBlockRate = 400

// writeState is how far a blockWriter got, to persist and resume from:
// every block below Next that was given to the writer is stored.
type writeState struct {
	Next int64 `json:"next"`
	// Count is the number of blocks stored below Next.
	Count int64 `json:"count"`
	// Aggregate is the running SHA-256 of those blocks' checksums in index
	// order (its marshalled state): EBS's LINEAR aggregate checksum.
	Aggregate []byte `json:"aggregate,omitempty"`
}

// sum is the aggregate checksum of the blocks the state counts.
func (s writeState) sum() ([]byte, error) {
	h := sha256.New()
	if len(s.Aggregate) > 0 {
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(s.Aggregate); err != nil {
			return nil, fmt.Errorf("the recorded checksum state is unreadable: %w", err)
		}
	}
	return h.Sum(nil), nil
}

// blockWriter puts blocks into one pending replica a few at a time, at a
// bounded request rate and (with a limiter) bandwidth, and keeps the
// checksum bookkeeping CompleteReplica needs. Put is called from one
// goroutine in ascending block order; state may be read from any (the
// progress ticker persists it). Its memory is its buffers, whatever the
// disk's size.
type blockWriter struct {
	t     Target
	snap  string
	limit *rate.Limiter
	bw    awstarget.Limiter
	work  chan *pendingBlock
	free  chan []byte
	wg    sync.WaitGroup
	ctx   context.Context
	stop  context.CancelFunc

	mu    sync.Mutex
	queue []*pendingBlock // given, in index order, not yet below the frontier
	next  int64           // every block below it was given
	count int64
	agg   hash.Hash
	err   error
}

type pendingBlock struct {
	index int64
	data  []byte
	sum   [sha256.Size]byte
	done  bool
}

// writerOptions tune a blockWriter.
type writerOptions struct {
	// concurrency is the number of blocks put at once (default 8).
	concurrency int
	// rate bounds the puts per second on this snapshot (default 400).
	rate float64
	// bandwidth, when not nil, is waited on for every block's bytes.
	bandwidth awstarget.Limiter
	// resume continues from a persisted state.
	resume *writeState
}

func newBlockWriter(ctx context.Context, t Target, snap string, o writerOptions) (*blockWriter, error) {
	n := max(1, cmp.Or(o.concurrency, 8))
	w := &blockWriter{t: t, snap: snap, bw: o.bandwidth, agg: sha256.New(),
		limit: rate.NewLimiter(rate.Limit(cmp.Or(o.rate, defaultBlockRate)), n),
		work:  make(chan *pendingBlock, n), free: make(chan []byte, 2*n)}
	if r := o.resume; r != nil {
		w.next, w.count = r.Next, r.Count
		if len(r.Aggregate) > 0 {
			if err := w.agg.(encoding.BinaryUnmarshaler).UnmarshalBinary(r.Aggregate); err != nil {
				return nil, fmt.Errorf("write replica %s: the recorded checksum state is unreadable: %w", snap, err)
			}
		}
	}
	for range 2 * n {
		w.free <- make([]byte, awstarget.BlockSize)
	}
	w.ctx, w.stop = context.WithCancel(ctx)
	for range n {
		w.wg.Add(1)
		go w.worker()
	}
	return w, nil
}

// put stores block index with data (BlockSize bytes, copied) whose SHA-256
// is sum. It waits while every buffer is in flight, and returns the first
// failure of any put so far.
func (w *blockWriter) put(ctx context.Context, index int64, data []byte, sum [sha256.Size]byte) error {
	w.mu.Lock()
	err, next := w.err, w.next
	w.mu.Unlock()
	if err != nil {
		return err
	}
	if index < next {
		return fmt.Errorf("write replica %s: block %d given after %d", w.snap, index, next-1)
	}
	var buf []byte
	select {
	case buf = <-w.free:
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-w.ctx.Done():
		return w.failure()
	}
	copy(buf, data)
	p := &pendingBlock{index: index, data: buf, sum: sum}
	w.mu.Lock()
	w.queue = append(w.queue, p)
	w.next = index + 1
	w.mu.Unlock()
	select {
	case w.work <- p:
		return nil
	case <-w.ctx.Done():
		return w.failure()
	}
}

// advance tells the writer every block below next that needs writing was
// given (the rest were skipped: unchanged), so its state moves past them.
func (w *blockWriter) advance(next int64) {
	w.mu.Lock()
	w.next = max(w.next, next)
	w.mu.Unlock()
}

func (w *blockWriter) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	return context.Cause(w.ctx)
}

func (w *blockWriter) worker() {
	defer w.wg.Done()
	for p := range w.work {
		err := w.send(p)
		w.mu.Lock()
		if err != nil && w.err == nil {
			w.err = err
			w.stop()
		}
		p.done = err == nil
		// The frontier moves over the blocks stored in order; their
		// checksums join the aggregate in index order.
		for len(w.queue) > 0 && w.queue[0].done {
			w.agg.Write(w.queue[0].sum[:])
			w.count++
			w.queue = w.queue[1:]
		}
		w.mu.Unlock()
		w.free <- p.data
	}
}

func (w *blockWriter) send(p *pendingBlock) error {
	if w.bw != nil {
		if err := w.bw.WaitN(w.ctx, awstarget.BlockSize); err != nil {
			return fmt.Errorf("put block %d of %s: wait for bandwidth: %w", p.index, w.snap, err)
		}
	}
	if err := w.limit.Wait(w.ctx); err != nil {
		return fmt.Errorf("put block %d of %s: %w", p.index, w.snap, err)
	}
	return w.t.PutBlock(w.ctx, w.snap, p.index, p.data, p.sum)
}

// state is what the writer has stored so far.
func (w *blockWriter) state() writeState {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := writeState{Next: w.next, Count: w.count}
	if len(w.queue) > 0 {
		st.Next = w.queue[0].index
	}
	st.Aggregate, _ = w.agg.(encoding.BinaryMarshaler).MarshalBinary()
	return st
}

// close waits for the puts in flight and returns the final state and the
// first failure; a failed writer's state keeps what was stored before it.
func (w *blockWriter) close() (writeState, error) {
	close(w.work)
	w.wg.Wait()
	w.stop()
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	return w.state(), err
}
