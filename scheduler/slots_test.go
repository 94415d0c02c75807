package scheduler

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestImportSlotsGrantedInOrder: with one slot and many runs queued, each
// freed slot goes to the run that has waited longest, a waiter that gives
// up leaves the queue without taking a slot, and the counts of held and
// waiting slots say so meanwhile.
func TestImportSlotsGrantedInOrder(t *testing.T) {
	h := newHarness(t, seed, Options{ImportLimitPerRegion: 1})
	ctx := context.Background()
	const region = "us-east-1"
	first, err := h.s.ImportSlot(ctx, region)
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	granted := make(chan int, n)
	releases := make([]func(), n)
	quitter, quit := context.WithCancel(ctx)
	quitErr := make(chan error, 1)
	for i := range n {
		c := ctx
		if i == 3 {
			c = quitter
		}
		go func() {
			r, err := h.s.ImportSlot(c, region)
			if i == 3 {
				quitErr <- err
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			releases[i] = r
			granted <- i
		}()
		// The next waiter asks only once this one is queued.
		waitFor(t, fmt.Sprintf("waiter %d to queue", i), func() bool { return h.s.ImportSlotsWaiting()[region] == i+1 })
	}
	if held := h.s.ImportSlotsInUse()[region]; held != 1 {
		t.Fatalf("slots in use = %d, want 1", held)
	}
	quit()
	if err := <-quitErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiter whose context ended: %v", err)
	}
	if w := h.s.ImportSlotsWaiting()[region]; w != n-1 {
		t.Fatalf("after one waiter gave up, %d wait; want %d", w, n-1)
	}
	first()
	for want := range n {
		if want == 3 {
			continue
		}
		select {
		case got := <-granted:
			if got != want {
				t.Fatalf("slot granted to waiter %d, want %d (the oldest)", got, want)
			}
			if held := h.s.ImportSlotsInUse()[region]; held != 1 {
				t.Fatalf("slots in use = %d with one granted, want 1", held)
			}
			releases[got]()
			releases[got]() // a second release frees nothing more
		case <-time.After(5 * time.Second):
			t.Fatalf("waiter %d never granted a slot", want)
		}
	}
	if held, w := h.s.ImportSlotsInUse()[region], h.s.ImportSlotsWaiting()[region]; held != 0 || w != 0 {
		t.Fatalf("after all released: %d held, %d waiting", held, w)
	}
}

// TestImportLimitDefault: the default is AWS's default quota of concurrent
// VM Import tasks.
func TestImportLimitDefault(t *testing.T) {
	h := newHarness(t, seed, Options{})
	if got := h.s.ImportLimit(); got != DefaultImportLimit || DefaultImportLimit != 20 {
		t.Fatalf("ImportLimit() = %d, DefaultImportLimit = %d; want 20", got, DefaultImportLimit)
	}
}
