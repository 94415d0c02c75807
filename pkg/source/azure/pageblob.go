package azure

import (
	"context"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/rehost/rehost/pkg/disk"
)

// blobReader is a snapshot's page blob as a disk.Sparse: its extents are
// the allocated page ranges, bytes outside them read as zeros without a
// request, and the allocated bytes are fetched ahead of the reader in
// parallel ranged reads of at most chunk bytes, window at a time, each into
// one of window buffers. The disk writers read in ascending order from one
// goroutine, which is what the prefetch expects (each allocated byte is
// then fetched once); a read behind the window is served by a direct
// ranged read.
type blobReader struct {
	ctx    context.Context
	cancel context.CancelFunc
	read   func(ctx context.Context, off int64, p []byte) error
	size   int64
	ext    []disk.Extent
	chunks []disk.Extent
	window int
	chunk  int64

	// Owned by the reading goroutine.
	low, next int // chunks below low are released; [low, next) started
	slots     map[int]*slot
	free      [][]byte
	wg        sync.WaitGroup

	fetched  atomic.Int64 // bytes read from the blob
	requests atomic.Int64
}

type slot struct {
	done chan struct{}
	buf  []byte
	err  error
}

func newBlobReader(ctx context.Context, size int64, ext []disk.Extent, window int, chunk int64, read func(context.Context, int64, []byte) error) *blobReader {
	ctx, cancel := context.WithCancel(ctx)
	b := &blobReader{ctx: ctx, cancel: cancel, size: size, ext: ext, window: max(1, window), chunk: chunk, slots: map[int]*slot{}}
	b.read = func(ctx context.Context, off int64, p []byte) error {
		b.requests.Add(1)
		err := read(ctx, off, p)
		if err == nil {
			b.fetched.Add(int64(len(p)))
		}
		return err
	}
	for _, e := range ext {
		for off := e.Offset; off < e.End(); off += chunk {
			b.chunks = append(b.chunks, disk.Extent{Offset: off, Length: min(chunk, e.End()-off)})
		}
	}
	return b
}

func (b *blobReader) Size() int64            { return b.size }
func (b *blobReader) Extents() []disk.Extent { return b.ext }

// close stops the fetches in flight and waits for them.
func (b *blobReader) close() {
	b.cancel()
	b.wg.Wait()
}

func (b *blobReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= b.size {
		return 0, io.EOF
	}
	var eof error
	if rem := b.size - off; int64(len(p)) > rem {
		p, eof = p[:rem], io.EOF
	}
	clear(p)
	end := off + int64(len(p))
	k := sort.Search(len(b.chunks), func(i int) bool { return b.chunks[i].End() > off })
	if err := b.advance(k); err != nil {
		return 0, err
	}
	for ; k < len(b.chunks) && b.chunks[k].Offset < end; k++ {
		c := b.chunks[k]
		lo, hi := max(off, c.Offset), min(end, c.End())
		dst := p[lo-off : hi-off]
		if k >= b.next {
			// A read larger than the window slides it: the chunks before
			// k are copied already.
			if err := b.advance(k); err != nil {
				return 0, err
			}
		}
		sl, ok := b.slots[k]
		if !ok { // behind the window: read again
			if err := b.read(b.ctx, lo, dst); err != nil {
				return 0, err
			}
			continue
		}
		select {
		case <-sl.done:
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		}
		if sl.err != nil {
			return 0, sl.err
		}
		copy(dst, sl.buf[lo-c.Offset:])
	}
	return len(p), eof
}

// advance releases the chunks before k (the reader has moved past them)
// and starts fetches up to the window.
func (b *blobReader) advance(k int) error {
	for ; b.low < k && b.low < b.next; b.low++ {
		sl := b.slots[b.low]
		select {
		case <-sl.done:
		case <-b.ctx.Done():
			return b.ctx.Err()
		}
		b.free = append(b.free, sl.buf)
		delete(b.slots, b.low)
	}
	// Chunks the reader skipped without starting them need no fetch.
	b.low = max(b.low, k)
	b.next = max(b.next, b.low)
	for b.next < len(b.chunks) && b.next-b.low < b.window {
		var buf []byte
		if n := len(b.free); n > 0 {
			buf, b.free = b.free[n-1], b.free[:n-1]
		} else {
			buf = make([]byte, b.chunk)
		}
		c := b.chunks[b.next]
		sl := &slot{done: make(chan struct{}), buf: buf[:c.Length]}
		b.slots[b.next] = sl
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer close(sl.done)
			sl.err = b.read(b.ctx, c.Offset, sl.buf)
		}()
		b.next++
	}
	return nil
}
