package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/rehost/rehost/connector/replication/memtarget"
	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
)

// world is what the fakes share: the hypervisor's and the cloud's state, and
// the fault injection of a test. Every fake call passes through at(op,
// phase) before and after it takes effect.
type world struct {
	mu sync.Mutex

	// Hypervisor.
	vms   map[string]source.VM
	data  map[string][][]byte // vm id → disk contents
	snaps map[string]source.Checkpoint
	// leases are the exports open (an NFC lease each), by id; a killed
	// process leaves its lease open for the restart to abort.
	leases  map[string]bool
	nextLse int
	// aborted counts leases aborted by AbortExport.
	aborted int
	// checkpointTags are the tags the last Checkpoint call carried.
	checkpointTags map[string]string
	// progress, when set, is what reporting export progress does (a slow
	// vCenter blocks in it).
	progress func(percent int)
	nextSnp  int

	// tr is the hypervisor's change tracking (tracked_test.go), nil
	// until a test uses it.
	tr *tracking

	// Cloud.
	target *memtarget.Target
	calls  map[string]int

	// dead makes every call fail, as if the process had been killed; the
	// crash hook sets it and the test clears it to "restart".
	dead bool
	// hook is called with each op and phase ("before", "after") and may
	// return an error the op then fails with.
	hook func(op, phase string) error
	ops  []string // trace: "op/phase" of every call made while alive
}

var errKilled = errors.New("fake: the process was killed")

func newWorld() *world {
	w := &world{
		vms: map[string]source.VM{}, data: map[string][][]byte{}, snaps: map[string]source.Checkpoint{},
		leases: map[string]bool{}, target: memtarget.New(4), calls: map[string]int{},
	}
	w.target.Hook = w.at
	return w
}

// at runs the fault hook; w.mu is not held. The fake source and the
// memtarget both call it.
func (w *world) at(ctx context.Context, op, phase string) error {
	w.mu.Lock()
	dead, hook := w.dead, w.hook
	if !dead {
		w.ops = append(w.ops, op+"/"+phase)
		if phase == "before" {
			w.calls[op]++
		}
	}
	w.mu.Unlock()
	if dead {
		return errKilled
	}
	if phase == "before" && ctx != nil {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
	}
	if hook != nil {
		return hook(op, phase)
	}
	return nil
}

// leftovers lists what a finished run must not leave behind, apart from the
// images in keep and their snapshots.
func (w *world) leftovers(keep ...string) []string {
	w.mu.Lock()
	var out []string
	for n := range w.snaps {
		out = append(out, "vm snapshot "+n)
	}
	for id := range w.leases {
		out = append(out, "export lease "+id)
	}
	w.mu.Unlock()
	for _, k := range w.target.Uploads() {
		out = append(out, "multipart upload of "+k)
	}
	for _, k := range w.target.Objects() {
		out = append(out, "s3 object "+k)
	}
	for _, id := range w.target.ActiveImports() {
		out = append(out, "active import "+id)
	}
	kept := map[string]bool{}
	for _, k := range keep {
		kept[k] = true
	}
	for _, im := range w.target.Images() {
		if kept[im.ID] {
			for _, s := range im.Snapshots {
				kept[s] = true
			}
		} else {
			out = append(out, "image "+im.ID)
		}
	}
	for _, s := range w.target.Snapshots() {
		if !kept[s.ID] {
			out = append(out, "ebs snapshot "+s.ID)
		}
	}
	sort.Strings(out)
	return out
}

// fakeSource is a hypervisor holding VMs with disk contents.
type fakeSource struct{ w *world }

func (s fakeSource) Inventory(ctx context.Context) ([]source.VM, error) {
	if err := s.w.at(ctx, "Inventory", "before"); err != nil {
		return nil, err
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	var out []source.VM
	for _, vm := range s.w.vms {
		out = append(out, vm)
	}
	return out, nil
}

func (s fakeSource) VM(ctx context.Context, id string) (source.VM, error) {
	if err := s.w.at(ctx, "VM", "before"); err != nil {
		return source.VM{}, err
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	vm, ok := s.w.vms[id]
	if !ok {
		return source.VM{}, fmt.Errorf("vm %s: %w", id, source.ErrNotFound)
	}
	return vm, nil
}

func (s fakeSource) Checkpoint(ctx context.Context, vmID, name string) (source.Checkpoint, error) {
	if err := s.w.at(ctx, "Checkpoint", "before"); err != nil {
		return source.Checkpoint{}, err
	}
	s.w.mu.Lock()
	s.w.checkpointTags = source.Tags(ctx)
	if _, ok := s.w.vms[vmID]; !ok {
		s.w.mu.Unlock()
		return source.Checkpoint{}, fmt.Errorf("vm %s: %w", vmID, source.ErrNotFound)
	}
	cp, ok := s.w.snaps[name]
	if !ok {
		s.w.nextSnp++
		cp = source.Checkpoint{VMID: vmID, ID: fmt.Sprintf("snapshot-%d", s.w.nextSnp), Name: name}
		s.w.snaps[name] = cp
	}
	s.w.mu.Unlock()
	return cp, s.w.at(ctx, "Checkpoint", "after")
}

func (s fakeSource) Checkpoints(ctx context.Context, vmID, prefix string) ([]source.Checkpoint, error) {
	if err := s.w.at(ctx, "Checkpoints", "before"); err != nil {
		return nil, err
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	var out []source.Checkpoint
	for n, cp := range s.w.snaps {
		if cp.VMID == vmID && strings.HasPrefix(n, prefix) {
			out = append(out, cp)
		}
	}
	return out, nil
}

func (s fakeSource) Release(ctx context.Context, cp source.Checkpoint) error {
	if err := s.w.at(ctx, "Release", "before"); err != nil {
		return err
	}
	s.w.mu.Lock()
	if cur, ok := s.w.snaps[cp.Name]; ok && cur.ID == cp.ID {
		delete(s.w.snaps, cp.Name)
	}
	s.w.mu.Unlock()
	return s.w.at(ctx, "Release", "after")
}

func (s fakeSource) Export(ctx context.Context, cp source.Checkpoint) (source.Export, error) {
	if err := s.w.at(ctx, "Export", "before"); err != nil {
		return nil, err
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	cur, ok := s.w.snaps[cp.Name]
	if !ok || cur.ID != cp.ID {
		return nil, fmt.Errorf("export: snapshot %s of vm %s: %w", cp.ID, cp.VMID, source.ErrNotFound)
	}
	vm := s.w.vms[cp.VMID]
	var ds []source.ExportDisk
	for i, d := range vm.Disks {
		ds = append(ds, source.ExportDisk{Disk: d, Format: disk.Raw, StreamSize: int64(len(s.w.data[vm.ID][i]))})
	}
	s.w.nextLse++
	id := fmt.Sprintf("lease-%d", s.w.nextLse)
	s.w.leases[id] = true
	return &fakeExport{w: s.w, id: id, disks: ds, data: s.w.data[vm.ID]}, nil
}

// AbortExport aborts a lease a killed process left open.
func (s fakeSource) AbortExport(ctx context.Context, cp source.Checkpoint, id string) error {
	if err := s.w.at(ctx, "AbortExport", "before"); err != nil {
		return err
	}
	s.w.mu.Lock()
	if s.w.leases[id] {
		delete(s.w.leases, id)
		s.w.aborted++
	}
	s.w.mu.Unlock()
	return nil
}

func (s fakeSource) Close() error { return nil }

type fakeExport struct {
	w      *world
	id     string
	disks  []source.ExportDisk
	data   [][]byte
	closed bool
}

func (e *fakeExport) Disks() []source.ExportDisk { return e.disks }
func (e *fakeExport) ID() string                 { return e.id }

func (e *fakeExport) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	if err := e.w.at(ctx, "Open", "before"); err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(e.data[i])), nil
}

func (e *fakeExport) Progress(pct int) {
	e.w.mu.Lock()
	p := e.w.progress
	e.w.mu.Unlock()
	if p != nil {
		p(pct)
	}
}

// Close ends the lease; a killed process never gets to, and the restart
// must abort it.
func (e *fakeExport) Close(error) error {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	if e.w.dead {
		return errKilled
	}
	if !e.closed {
		e.closed = true
		delete(e.w.leases, e.id)
	}
	return nil
}
