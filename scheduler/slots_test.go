package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	pool := SlotPool{region, KindImage}
	first, err := h.s.ImportSlot(ctx, region, "first", 1, 0)
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
			r, err := h.s.ImportSlot(c, region, fmt.Sprint("run-", i), 1, 0)
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
		waitFor(t, fmt.Sprintf("waiter %d to queue", i), func() bool { return h.s.ImportSlotsWaiting()[pool] == i+1 })
	}
	if held := h.s.ImportSlotsInUse()[pool]; held != 1 {
		t.Fatalf("slots in use = %d, want 1", held)
	}
	quit()
	if err := <-quitErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiter whose context ended: %v", err)
	}
	if w := h.s.ImportSlotsWaiting()[pool]; w != n-1 {
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
			if held := h.s.ImportSlotsInUse()[pool]; held != 1 {
				t.Fatalf("slots in use = %d with one granted, want 1", held)
			}
			releases[got]()
			releases[got]() // a second release frees nothing more
		case <-time.After(5 * time.Second):
			t.Fatalf("waiter %d never granted a slot", want)
		}
	}
	if held, w := h.s.ImportSlotsInUse()[pool], h.s.ImportSlotsWaiting()[pool]; held != 0 || w != 0 {
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

// TestImportSlotsByKindAndTasks: ImportSnapshot tasks take slots of a
// pool of their own, one per disk; a waiter for several slots is not
// overtaken by a later one asking for fewer (none starves), each waiter
// can be told where it stands, the image pool is not held up by the
// snapshot one, and an import needing more slots than the region allows
// fails at once instead of waiting forever.
func TestImportSlotsByKindAndTasks(t *testing.T) {
	h := newHarness(t, seed, Options{ImportLimitPerRegion: 1, SnapshotImportLimitPerRegion: 3})
	ctx := context.Background()
	const region = "eu-west-1"
	snaps := SlotPool{region, KindSnapshot}
	a, err := h.s.ImportSlot(ctx, region, "a", 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	granted := make(chan string, 2)
	frees := map[string]chan func(){"b": make(chan func(), 1), "c": make(chan func(), 1)}
	ask := func(run string, n int) {
		go func() {
			r, err := h.s.ImportSlot(ctx, region, run, 0, n)
			if err != nil {
				t.Error(err)
				return
			}
			frees[run] <- r
			granted <- run
		}()
	}
	ask("b", 2)
	waitFor(t, "b to queue", func() bool { return h.s.ImportSlotsWaiting()[snaps] == 1 })
	ask("c", 1) // one slot is free, but b asked first
	waitFor(t, "c to queue", func() bool { return h.s.ImportSlotsWaiting()[snaps] == 2 })
	if w, ok := h.s.ImportSlotWait("b"); !ok || w.Ahead != 0 || w.Slots != 2 || w.SlotPool != snaps {
		t.Errorf("b waits: %+v %v; want next in line for 2 snapshot slots", w, ok)
	}
	if w, ok := h.s.ImportSlotWait("c"); !ok || w.Ahead != 1 || w.Slots != 1 || w.InLine != 2 {
		t.Errorf("c waits: %+v %v; want 1 ahead for 1 slot", w, ok)
	}
	if _, ok := h.s.ImportSlotWait("a"); ok {
		t.Error("a holds its slots but is said to wait")
	}
	img, err := h.s.ImportSlot(ctx, region, "d", 1, 0)
	if err != nil {
		t.Fatalf("an image slot while snapshot imports queue: %v", err)
	}
	img()
	if _, err := h.s.ImportSlot(ctx, region, "e", 0, 4); err == nil || !strings.Contains(err.Error(), "limit is 3") {
		t.Errorf("4 snapshot tasks where 3 are allowed: %v", err)
	}
	if held := h.s.ImportSlotsInUse()[snaps]; held != 2 {
		t.Fatalf("snapshot slots in use = %d, want 2", held)
	}
	select {
	case got := <-granted:
		t.Fatalf("%s was granted a slot while b, asking before it, still waits", got)
	default:
	}
	a() // frees 2: b's 2 and then c's 1 fit, granted in that order at once
	for range 2 {
		select {
		case <-granted:
		case <-time.After(5 * time.Second):
			t.Fatal("b and c were not both granted")
		}
	}
	if held, w := h.s.ImportSlotsInUse()[snaps], h.s.ImportSlotsWaiting()[snaps]; held != 3 || w != 0 {
		t.Fatalf("after a's release: %d held, %d waiting; want 3, 0", held, w)
	}
	(<-frees["b"])()
	(<-frees["c"])()
	if held := h.s.ImportSlotsInUse()[snaps]; held != 0 {
		t.Fatalf("after all released: %d held", held)
	}
}

// TestImportSlotWaiterLeavingLetsOthersIn: a waiter for many slots that
// gives up no longer holds back the smaller waiters behind it.
func TestImportSlotWaiterLeavingLetsOthersIn(t *testing.T) {
	h := newHarness(t, seed, Options{SnapshotImportLimitPerRegion: 2})
	ctx := context.Background()
	const region = "us-west-2"
	snaps := SlotPool{region, KindSnapshot}
	a, err := h.s.ImportSlot(ctx, region, "a", 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer a()
	big, quit := context.WithCancel(ctx)
	bigErr := make(chan error, 1)
	go func() {
		_, err := h.s.ImportSlot(big, region, "big", 0, 2)
		bigErr <- err
	}()
	waitFor(t, "big to queue", func() bool { return h.s.ImportSlotsWaiting()[snaps] == 1 })
	small := make(chan func(), 1)
	go func() {
		r, err := h.s.ImportSlot(ctx, region, "small", 0, 1)
		if err != nil {
			t.Error(err)
		}
		small <- r
	}()
	waitFor(t, "small to queue", func() bool { return h.s.ImportSlotsWaiting()[snaps] == 2 })
	quit()
	if err := <-bigErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("the big waiter: %v", err)
	}
	select {
	case r := <-small:
		r()
	case <-time.After(5 * time.Second):
		t.Fatal("the small waiter was not granted the free slot once the big one left")
	}
}
