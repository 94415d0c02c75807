package vsphere

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/vsphere/internal/vim"
)

// watched is what a test's watch has been told: the inventory by VM id,
// kept as the catalog keeps it.
type watched struct {
	mu    sync.Mutex
	vms   map[string]source.VM
	fulls int
	moved int // VMs reported moved (Change.Moved), not read again
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
	for _, m := range c.Moved {
		vm, ok := w.vms[m.ID]
		if !ok {
			w.errs = append(w.errs, fmt.Errorf("vm %s moved, never reported", m.ID))
			continue
		}
		vm.Path = m.Path
		w.vms[m.ID] = vm
		w.moved++
	}
	return nil
}

// same reports whether the watch has told what a listing says now.
func (w *watched) same(ctx context.Context, s *Source) bool {
	vms, err := s.Inventory(ctx)
	if err != nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(vms) != len(w.vms) {
		return false
	}
	for _, vm := range vms {
		if !reflect.DeepEqual(w.vms[vm.ID], vm) {
			return false
		}
	}
	return true
}

func (w *watched) paths() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, vm := range w.vms {
		out = append(out, vm.Path)
	}
	slices.Sort(out)
	return out
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

// A folder renamed or moved, and a datacenter renamed, change the
// inventory paths of the VMs below them and no property of the VMs: the
// watch follows the containers too and reports those VMs moved (without
// reading them again), so what it told matches a listing after each.
func TestWatchFollowsFolders(t *testing.T) {
	sim, s, w := watching(t)
	ctx := context.Background()
	step := func(what string, want ...string) {
		t.Helper()
		eventually(t, what, func() bool { return slices.Equal(w.paths(), want) && w.same(ctx, s) })
	}
	if err := sim.CreateFolder(ctx, "/DC0/vm", "web"); err != nil {
		t.Fatal(err)
	}
	if err := sim.MoveInto(ctx, "/DC0/vm/web", []string{"app-01"}); err != nil {
		t.Fatal(err)
	}
	step("app-01 moved into web", "/DC0/vm/crash-01", "/DC0/vm/web/app-01")
	movedBy := func(what string, change func() error, want int, paths ...string) {
		t.Helper()
		w.mu.Lock()
		before := w.moved
		w.mu.Unlock()
		if err := change(); err != nil {
			t.Fatal(err)
		}
		step(what, paths...)
		w.mu.Lock()
		defer w.mu.Unlock()
		if got := w.moved - before; got != want {
			t.Errorf("%s: %d vms reported moved, want %d", what, got, want)
		}
	}
	movedBy("web renamed frontend", func() error { return sim.RenameFolder(ctx, "/DC0/vm/web", "frontend") },
		1, "/DC0/vm/crash-01", "/DC0/vm/frontend/app-01")

	// The simulator reports a folder moved as every object of the filter
	// entering again (vCenter as the folder's parent changed): the VMs
	// are read again, not moved, but end up where they are all the same.
	if err := sim.CreateFolder(ctx, "/DC0/vm", "prod"); err != nil {
		t.Fatal(err)
	}
	if err := sim.MoveInto(ctx, "/DC0/vm/prod", nil, "/DC0/vm/frontend"); err != nil {
		t.Fatal(err)
	}
	step("frontend moved into prod", "/DC0/vm/crash-01", "/DC0/vm/prod/frontend/app-01")

	movedBy("DC0 renamed DC9", func() error { return sim.RenameFolder(ctx, "/DC0", "DC9") },
		2, "/DC9/vm/crash-01", "/DC9/vm/prod/frontend/app-01")

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fulls != 1 || len(w.errs) != 0 {
		t.Errorf("%d full listings, errors %v: want one listing and no errors", w.fulls, w.errs)
	}
}

// A source limited to a datacenter sees its VMs leave when the
// datacenter is renamed and come back, read again, when it has its name
// back.
func TestWatchDatacenterRenamed(t *testing.T) {
	sim := startSim(t, testVMs())
	s, err := New(context.Background(), Config{URL: sim.URL(), User: sim.User(), Password: sim.Password(), Thumbprint: sim.Thumbprint(), Datacenter: "DC0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	old := watchWait
	watchWait = time.Second
	t.Cleanup(func() { watchWait = old })
	w := &watched{}
	go s.Watch(ctx, w.apply)
	eventually(t, "the first full inventory", func() bool { return w.count() == 2 })

	if err := sim.RenameFolder(ctx, "/DC0", "DC9"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the vms gone with DC0", func() bool { return w.count() == 0 })
	if err := sim.RenameFolder(ctx, "/DC9", "DC0"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the vms back with DC0", func() bool { return w.count() == 2 && w.same(ctx, s) })
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fulls != 1 || len(w.errs) != 0 {
		t.Errorf("%d full listings, errors %v: want one listing and no errors", w.fulls, w.errs)
	}
}

// The tree turns a container's updates into the VMs they move, as vCenter
// sends them (a folder's parent changed, a vApp's folder changed), which
// the simulator does not: it re-enters every object instead.
func TestTreeMoves(t *testing.T) {
	ref := func(typ, v string) vim.Ref { return vim.Ref{Type: typ, Value: v} }
	node := func(s string) *vim.Node { return &vim.Node{Text: s} }
	refNode := func(r vim.Ref) *vim.Node {
		return &vim.Node{Text: r.Value, Attrs: []xml.Attr{{Name: xml.Name{Local: "type"}, Value: r.Type}}}
	}
	dc, vmf, a, b, vapp := ref("Datacenter", "dc"), ref("Folder", "vmf"), ref("Folder", "a"), ref("Folder", "b"), ref("VirtualApp", "va")
	root := ref("Folder", "root")
	vm1, vm2 := ref("VirtualMachine", "1"), ref("VirtualMachine", "2")
	tr := newTree()
	for _, u := range []vim.ObjectUpdate{
		{Ref: dc, Kind: vim.Enter, Changes: map[string]*vim.Node{"name": node("DC0"), "parent": refNode(root)}},
		{Ref: vmf, Kind: vim.Enter, Changes: map[string]*vim.Node{"name": node("vm"), "parent": refNode(dc)}},
		{Ref: a, Kind: vim.Enter, Changes: map[string]*vim.Node{"name": node("a"), "parent": refNode(vmf)}},
		{Ref: b, Kind: vim.Enter, Changes: map[string]*vim.Node{"name": node("b"), "parent": refNode(vmf)}},
		{Ref: vapp, Kind: vim.Enter, Changes: map[string]*vim.Node{"name": node("app"), "parent": nil, "parentFolder": refNode(a)}},
		{Ref: vm1, Kind: vim.Enter, Changes: map[string]*vim.Node{"name": node("one"), "parent": refNode(a)}},
		{Ref: vm2, Kind: vim.Enter, Changes: map[string]*vim.Node{"name": node("two"), "parentVApp": refNode(vapp)}},
	} {
		if tr.update(u) {
			t.Errorf("%v entering reported as a change of shape", u.Ref)
		}
	}
	tr.reported(listed{ref: vm1, vm: source.VM{ID: "id-1", Name: "one", Path: "/DC0/vm/a/one"}, ok: true})
	tr.reported(listed{ref: vm2, vm: source.VM{ID: "id-2", Name: "two", Path: "/DC0/vm/a/app/two"}, ok: true})
	moves := func(dc string) ([]source.Move, []string, []vim.Ref) {
		m, g, e := tr.moves(dc, nil)
		slices.SortFunc(m, func(x, y source.Move) int { return strings.Compare(x.ID, y.ID) })
		return m, g, e
	}
	if m, g, e := moves("DC0"); len(m)+len(g)+len(e) != 0 {
		t.Fatalf("nothing changed, yet moved %v, gone %v, entered %v", m, g, e)
	}

	// Folder a moved into b: both VMs below it move.
	if !tr.update(vim.ObjectUpdate{Ref: a, Kind: vim.Modify, Changes: map[string]*vim.Node{"parent": refNode(b)}}) {
		t.Fatal("a folder's parent changed is a change of shape")
	}
	m, g, e := moves("DC0")
	want := []source.Move{{ID: "id-1", Path: "/DC0/vm/b/a/one"}, {ID: "id-2", Path: "/DC0/vm/b/a/app/two"}}
	if !slices.Equal(m, want) || len(g)+len(e) != 0 {
		t.Errorf("a moved into b: moved %v, gone %v, entered %v; want moved %v", m, g, e, want)
	}
	// Asked again, nothing more has moved.
	if m, _, _ := moves("DC0"); len(m) != 0 {
		t.Errorf("moved twice: %v", m)
	}
	// The vApp renamed: only the VM in it moves.
	tr.update(vim.ObjectUpdate{Ref: vapp, Kind: vim.Modify, Changes: map[string]*vim.Node{"name": node("shop")}})
	if m, _, _ := moves("DC0"); !slices.Equal(m, []source.Move{{ID: "id-2", Path: "/DC0/vm/b/a/shop/two"}}) {
		t.Errorf("vapp renamed: moved %v", m)
	}
	// The datacenter renamed, the source limited to DC0: both leave; named
	// DC0 again, both are to be read again.
	tr.update(vim.ObjectUpdate{Ref: dc, Kind: vim.Modify, Changes: map[string]*vim.Node{"name": node("DC9")}})
	m, g, e = moves("DC0")
	slices.Sort(g)
	if len(m) != 0 || !slices.Equal(g, []string{"id-1", "id-2"}) || len(e) != 0 {
		t.Errorf("datacenter renamed: moved %v, gone %v, entered %v; want both gone", m, g, e)
	}
	tr.update(vim.ObjectUpdate{Ref: dc, Kind: vim.Modify, Changes: map[string]*vim.Node{"name": node("DC0")}})
	m, g, e = moves("DC0")
	slices.SortFunc(e, func(x, y vim.Ref) int { return strings.Compare(x.Value, y.Value) })
	if len(m)+len(g) != 0 || !slices.Equal(e, []vim.Ref{vm1, vm2}) {
		t.Errorf("datacenter named back: moved %v, gone %v, entered %v; want both entered", m, g, e)
	}
}
