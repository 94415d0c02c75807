package vsphere

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/source"
)

// watched is what a test's watch has been told: the inventory by VM id,
// kept as the catalog keeps it.
type watched struct {
	mu    sync.Mutex
	vms   map[string]source.VM
	fulls int
	errs  []error
}

func (w *watched) apply(c source.Change) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c.Err != nil {
		w.errs = append(w.errs, c.Err)
		return nil
	}
	if c.Full {
		w.fulls++
		w.vms = map[string]source.VM{}
	}
	for _, vm := range c.VMs {
		w.vms[vm.ID] = vm
	}
	for _, id := range c.Gone {
		delete(w.vms, id)
	}
	return nil
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (w *watched) byName(name string) (source.VM, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, vm := range w.vms {
		if vm.Name == name {
			return vm, true
		}
	}
	return source.VM{}, false
}

func (w *watched) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.vms)
}

// The watch starts with the whole inventory and then reports a VM added,
// renamed, given a disk and removed, from the property collector's
// updates (govmomi's simulator implements WaitForUpdatesEx with enter,
// modify and leave updates; vspheresim's admin changes go through its
// API so the updates are vCenter's own).
func TestWatchReportsChanges(t *testing.T) {
	sim := startSim(t, testVMs())
	s := connect(t, sim)
	ctx, cancel := context.WithCancel(context.Background())
	w := &watched{}
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, w.apply) }()
	eventually(t, "the first full inventory", func() bool { return w.count() == 2 })

	if err := sim.AddVM(ctx, vspheresim.VMSpec{Name: "new-01", Disks: []vspheresim.DiskSpec{{CapacityBytes: 4 * mib}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new-01 added", func() bool { _, ok := w.byName("new-01"); return ok })
	vm, _ := w.byName("new-01")
	if vm.Path != "/DC0/vm/new-01" || len(vm.Disks) != 1 {
		t.Errorf("new-01 reported as %+v", vm)
	}

	if err := sim.RenameVM(ctx, "new-01", "renamed-01"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new-01 renamed", func() bool {
		got, ok := w.byName("renamed-01")
		return ok && got.ID == vm.ID && got.Path == "/DC0/vm/renamed-01"
	})

	if err := sim.AddDisk(ctx, "renamed-01", 8*mib); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a second disk on renamed-01", func() bool {
		got, _ := w.byName("renamed-01")
		return len(got.Disks) == 2 && got.Disks[1].CapacityBytes == 8*mib
	})

	if err := sim.RemoveVM(ctx, "renamed-01"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "renamed-01 gone", func() bool { _, ok := w.byName("renamed-01"); return !ok && w.count() == 2 })

	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("watch ended with %v, want its context's cause", err)
	}
	if w.fulls != 1 || len(w.errs) != 0 {
		t.Errorf("%d full listings, errors %v: want one listing and no errors", w.fulls, w.errs)
	}
}

// watching is a watch of a simulated vCenter of testVMs, waiting a
// second at most per WaitForUpdatesEx, once it has listed them.
func watching(t *testing.T) (*vspheresim.Sim, *Source, *watched) {
	sim := startSim(t, testVMs())
	s := connect(t, sim)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	old := watchWait
	watchWait = time.Second
	t.Cleanup(func() { watchWait = old })
	w := &watched{}
	go s.Watch(ctx, w.apply)
	eventually(t, "the first full inventory", func() bool { return w.count() == 2 })
	return sim, s, w
}

// A session lost under the watch (vCenter restarted, the session
// expired) makes it list everything again once and go on watching.
func TestWatchRecoversLostSession(t *testing.T) {
	sim, s, w := watching(t)
	ctx := context.Background()

	// Logging out ends the session and its property collector, as a
	// vCenter restart does; the client logs in again at its next call.
	if err := s.c.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a second full listing", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.fulls == 2
	})
	if err := sim.AddVM(ctx, vspheresim.VMSpec{Name: "after-01", Disks: []vspheresim.DiskSpec{{CapacityBytes: 4 * mib}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "after-01 added after the recovery", func() bool { _, ok := w.byName("after-01"); return ok })
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) == 0 {
		t.Errorf("the interruption was not reported to the watcher")
	}
}

// A version vCenter no longer knows (InvalidCollectorVersion; vspheresim
// injects it, the simulator never answers it by itself) makes the watch
// list everything again once and go on.
func TestWatchRecoversLostVersion(t *testing.T) {
	sim, _, w := watching(t)
	ctx := context.Background()
	sim.LoseUpdateVersion()
	eventually(t, "a second full listing", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.fulls == 2
	})
	if err := sim.RenameVM(ctx, "crash-01", "crash-02"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "crash-01 renamed after the recovery", func() bool { _, ok := w.byName("crash-02"); return ok })
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) != 1 || !strings.Contains(w.errs[0].Error(), "InvalidCollectorVersion") {
		t.Errorf("errors reported: %v, want the one InvalidCollectorVersion", w.errs)
	}
}
