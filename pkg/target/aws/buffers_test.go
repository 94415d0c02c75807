package aws

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// getAsync asks for a buffer in a goroutine and returns where it arrives;
// it waits until the get is queued, so gets made one after the other are
// queued in that order.
func getAsync(t *testing.T, b *Buffers, ctx context.Context, size int64) chan []byte {
	t.Helper()
	b.mu.Lock()
	queued := len(b.queue)
	b.mu.Unlock()
	got := make(chan []byte, 1)
	go func() {
		buf, err := b.get(ctx, size)
		if err != nil {
			close(got)
			return
		}
		got <- buf
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		b.mu.Lock()
		n := len(b.queue)
		b.mu.Unlock()
		if n > queued {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("get of %d bytes neither returned nor queued", size)
		}
	}
}

func mustNotArrive(t *testing.T, got chan []byte, what string) {
	t.Helper()
	select {
	case <-got:
		t.Fatalf("%s was granted beyond the budget", what)
	case <-time.After(20 * time.Millisecond):
	}
}

// A pool of three buffers' worth hands out three, makes the fourth wait,
// and gives it the very buffer the first one returned (reused, not
// allocated again).
func TestBuffersBoundAndReuse(t *testing.T) {
	const part = 1 << 20
	b := NewBuffers(3 * part)
	ctx := context.Background()
	var held [][]byte
	for range 3 {
		buf, err := b.get(ctx, part)
		if err != nil || len(buf) != part {
			t.Fatalf("get: %d bytes, %v", len(buf), err)
		}
		held = append(held, buf)
	}
	fourth := getAsync(t, b, ctx, part)
	mustNotArrive(t, fourth, "a fourth buffer")
	if w := b.Stats().Waiting; w != 1 {
		t.Fatalf("%d gets waiting, want 1", w)
	}
	held[0][0] = 42
	b.put(held[0])
	buf := <-fourth
	if &buf[:1][0] != &held[0][:1][0] {
		t.Fatal("the fourth get did not reuse the returned buffer")
	}
	for _, h := range append(held[1:], buf) {
		b.put(h)
	}
	s := b.Stats()
	if s.Allocated != 3 || s.Reused != 1 || s.Waited != 1 || s.Peak != 3*part || s.Held != 3*part {
		t.Fatalf("stats %+v: want 3 allocated, 1 reused, 1 waited, peak and held 3 MiB", s)
	}
}

// Waiters are served in the order they asked: a large part at the head of
// the queue is not passed over by smaller ones, and gets room by the pool
// letting go of free buffers too small for it.
func TestBuffersServeInOrder(t *testing.T) {
	const mib = 1 << 20
	b := NewBuffers(4 * mib)
	ctx := context.Background()
	var held [][]byte
	for range 4 {
		buf, _ := b.get(ctx, mib)
		held = append(held, buf)
	}
	large := getAsync(t, b, ctx, 3*mib)
	small := getAsync(t, b, ctx, mib)
	b.put(held[0])
	mustNotArrive(t, small, "a small buffer ahead of the large one queued before it")
	b.put(held[1])
	mustNotArrive(t, large, "a 3 MiB buffer with 2 MiB free")
	b.put(held[2])
	lb := <-large
	if len(lb) != 3*mib {
		t.Fatalf("large get: %d bytes", len(lb))
	}
	mustNotArrive(t, small, "a small buffer with the budget spent")
	b.put(held[3])
	<-small
	if s := b.Stats(); s.Dropped != 3 || s.Peak > 4*mib {
		t.Fatalf("stats %+v: want the 3 small free buffers dropped for the large one, peak within 4 MiB", s)
	}
}

// A get given up (its context cancelled) leaves the queue, says why, and
// lets the next in line through; a part larger than the whole budget is
// granted once nothing else is held.
func TestBuffersCancelAndOversize(t *testing.T) {
	const mib = 1 << 20
	b := NewBuffers(2 * mib)
	bg := context.Background()
	first, _ := b.get(bg, 2*mib)
	ctx, cancel := context.WithCancelCause(bg)
	gone := getAsync(t, b, ctx, 2*mib)
	huge := getAsync(t, b, bg, 5*mib)
	stop := errors.New("run stopped")
	cancel(stop)
	if _, ok := <-gone; ok {
		t.Fatal("a cancelled get returned a buffer")
	}
	if _, err := b.get(ctx, mib); !errors.Is(err, stop) {
		t.Fatalf("get under a cancelled context: %v, want its cause", err)
	}
	mustNotArrive(t, huge, "a 5 MiB buffer while 2 MiB are held")
	b.put(first)
	if buf := <-huge; len(buf) != 5*mib {
		t.Fatalf("oversized get: %d bytes", len(buf))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) != 0 || b.taken != 1 || b.held != 5*mib {
		t.Fatalf("queue %d, taken %d, held %d: want the oversized buffer alone", len(b.queue), b.taken, b.held)
	}
}

// A pool with nothing taken lets its free buffers go after its idle time;
// one taken again meanwhile keeps them.
func TestBuffersTrimWhenIdle(t *testing.T) {
	b := NewBuffers(4 << 20)
	b.idle = 20 * time.Millisecond
	ctx := context.Background()
	x, _ := b.get(ctx, 1<<20)
	b.put(x)
	x, _ = b.get(ctx, 1<<20) // within the idle time: the armed trim is void
	time.Sleep(50 * time.Millisecond)
	if s := b.Stats(); s.Held != 1<<20 || s.Dropped != 0 {
		t.Fatalf("stats %+v while a buffer is taken: want nothing dropped", s)
	}
	b.put(x)
	for deadline := time.Now().Add(10 * time.Second); b.Stats().Held != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: the idle pool kept its buffers", b.Stats())
		}
	}
}

// Stages on two targets sharing one pool smaller than what they would
// hold apart (each wants Concurrency+1 = 3 parts; the pool holds 4) all
// complete with their bytes intact, the pool never holds more than its
// budget, and later stages reuse the buffers of earlier ones.
func TestStagesShareBuffers(t *testing.T) {
	const part = MinPartSize
	pool := NewBuffers(4 * part)
	a := newPeerTarget(t, false, Config{Concurrency: 2, PartSize: part, Buffers: pool})
	c := newPeerTarget(t, false, Config{Concurrency: 2, PartSize: part, Buffers: pool})
	ctx := context.Background()
	var wg sync.WaitGroup
	for i, env := range []peerEnv{a, c, a, c, a, c} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			size := int64(3*part + 1000*i)
			gen := newGen(uint64(40+i), size)
			key := fmt.Sprintf("share/%d", i)
			obj, err := env.t.Stage(ctx, StageInput{Key: key, Body: gen, SizeHint: size})
			if err != nil {
				t.Errorf("stage %d: %v", i, err)
				return
			}
			if sum, n := downloadSum(t, env.srv, env.t.Bucket(), key); obj.Size != size || n != size || sum != gen.sum() {
				t.Errorf("stage %d: object of %d bytes (%d read back) differs from the %d-byte stream", i, obj.Size, n, size)
			}
		}()
	}
	wg.Wait()
	s := pool.Stats()
	t.Logf("pool after 6 stages of 4 parts: %+v", s)
	if s.Peak > 4*part || s.Allocated > 4 || s.Reused < 24-4 {
		t.Fatalf("stats %+v: want at most 4 buffers of %d bytes ever allocated and the rest of the 24 parts reused", s, part)
	}
}
