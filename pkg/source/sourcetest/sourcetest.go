// Package sourcetest is the conformance suite every source.Source passes:
// inventory fields, checkpoint idempotency, point-in-time export content,
// release idempotency, unknown ids, abort of a failed export, random reads
// of a checkpoint's disks (source.CheckpointReader) and, for a
// source.ChangeTracker, enabling tracking, the exact changed areas between
// checkpoints, bases kept and released, resets and resizes.
package sourcetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
)

// Harness is one source under test and a VM of it whose disks the test can
// write and read as the guest would.
type Harness struct {
	Source source.Source
	// VMID is the id of a VM with at least two disks of a few MiB each.
	VMID string
	// Want holds the VM's expected inventory fields; zero fields are not
	// checked, Disks and NICs are checked for count and disk capacities.
	Want source.VM
	// WriteDisk writes p at off of the VM's live disk i.
	WriteDisk func(i int, off int64, p []byte) error
	// ReadDisk reads the VM's live disk i at off.
	ReadDisk func(i int, off int64, p []byte) (int, error)
	// FailExport makes the next export stream of disk i break after n
	// bytes; nil skips the abort test.
	FailExport func(i int, n int64) error
	// OpenExports counts exports (leases) the source side still holds open;
	// nil skips those checks.
	OpenExports func() int

	// For a source.ChangeTracker:
	// UntrackedVMID is a VM whose tracking is off, that EnableTracking
	// turns on; UntrackableVMID one it must refuse (ErrNoTracking). ""
	// skips either check.
	UntrackedVMID, UntrackableVMID string
	// ResetTracking makes the platform forget the VM's tracking (a CBT
	// reset, a storage vMotion); nil skips that test.
	ResetTracking func() error
	// ResizeDisk grows the VM's live disk i to size bytes; nil skips that
	// test.
	ResizeDisk func(i int, size int64) error
}

// Run runs the suite; newSource makes a fresh harness for each subtest and
// registers its own cleanup with t.
func Run(t *testing.T, newSource func(t *testing.T) Harness) {
	t.Run("Inventory", func(t *testing.T) { testInventory(t, newSource(t)) })
	t.Run("UnknownVM", func(t *testing.T) { testUnknown(t, newSource(t)) })
	t.Run("CheckpointIdempotent", func(t *testing.T) { testCheckpoint(t, newSource(t)) })
	t.Run("ExportPointInTime", func(t *testing.T) { testExport(t, newSource(t)) })
	t.Run("ExportAbort", func(t *testing.T) { testAbort(t, newSource(t)) })
	t.Run("ExportLeftOpen", func(t *testing.T) { testLeftOpen(t, newSource(t)) })
	t.Run("OpenDisk", func(t *testing.T) { testOpenDisk(t, newSource(t)) })
	t.Run("TrackingEnable", func(t *testing.T) { testTrackingEnable(t, newSource(t)) })
	t.Run("Tracking", func(t *testing.T) { testTracking(t, newSource(t)) })
	t.Run("TrackingReset", func(t *testing.T) { testTrackingReset(t, newSource(t)) })
	t.Run("TrackingResize", func(t *testing.T) { testTrackingResize(t, newSource(t)) })
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func testInventory(t *testing.T, h Harness) {
	ctx := ctxT(t)
	vms, err := h.Source.Inventory(ctx)
	if err != nil {
		t.Fatalf("inventory: %v", err)
	}
	var got *source.VM
	ids := map[string]bool{}
	for i := range vms {
		if vms[i].ID == "" || ids[vms[i].ID] {
			t.Errorf("vm %q has an empty or duplicate id %q", vms[i].Name, vms[i].ID)
		}
		ids[vms[i].ID] = true
		if vms[i].ID == h.VMID {
			got = &vms[i]
		}
	}
	if got == nil {
		t.Fatalf("vm %s not in the inventory of %d vms", h.VMID, len(vms))
	}
	checkVM(t, *got, h.Want)
	one, err := h.Source.VM(ctx, h.VMID)
	if err != nil {
		t.Fatalf("vm %s: %v", h.VMID, err)
	}
	if fmt.Sprintf("%+v", one) != fmt.Sprintf("%+v", *got) {
		t.Errorf("VM(id) differs from the inventory entry:\n%+v\n%+v", one, *got)
	}
}

func checkVM(t *testing.T, got, want source.VM) {
	t.Helper()
	str := func(field, g, w string) {
		if w != "" && g != w {
			t.Errorf("%s = %q, want %q", field, g, w)
		}
	}
	str("name", got.Name, want.Name)
	str("path", got.Path, want.Path)
	str("guest os", got.GuestOS, want.GuestOS)
	str("firmware", got.Firmware, want.Firmware)
	str("power state", got.PowerState, want.PowerState)
	if got.Firmware != source.FirmwareBIOS && got.Firmware != source.FirmwareEFI {
		t.Errorf("firmware %q is neither bios nor efi", got.Firmware)
	}
	if want.CPUs != 0 && got.CPUs != want.CPUs {
		t.Errorf("cpus = %d, want %d", got.CPUs, want.CPUs)
	}
	if want.MemoryMiB != 0 && got.MemoryMiB != want.MemoryMiB {
		t.Errorf("memory = %d MiB, want %d", got.MemoryMiB, want.MemoryMiB)
	}
	if got.ToolsRunning != want.ToolsRunning || got.CBTEnabled != want.CBTEnabled {
		t.Errorf("tools running %v cbt %v, want %v %v", got.ToolsRunning, got.CBTEnabled, want.ToolsRunning, want.CBTEnabled)
	}
	if len(got.Disks) != len(want.Disks) {
		t.Fatalf("%d disks, want %d", len(got.Disks), len(want.Disks))
	}
	keys := map[string]bool{}
	for i, d := range got.Disks {
		if d.CapacityBytes != want.Disks[i].CapacityBytes {
			t.Errorf("disk %d capacity %d, want %d", i, d.CapacityBytes, want.Disks[i].CapacityBytes)
		}
		if d.Key == "" || keys[d.Key] || d.Controller == "" {
			t.Errorf("disk %d: empty or duplicate key %q or no controller %q", i, d.Key, d.Controller)
		}
		keys[d.Key] = true
	}
	if len(got.NICs) != len(want.NICs) {
		t.Errorf("%d nics, want %d", len(got.NICs), len(want.NICs))
	}
	for i, n := range got.NICs {
		if n.MAC == "" || n.Network == "" || n.Type == "" {
			t.Errorf("nic %d lacks mac, network or type: %+v", i, n)
		}
		if i < len(want.NICs) {
			str("nic network", n.Network, want.NICs[i].Network)
			str("nic type", n.Type, want.NICs[i].Type)
		}
	}
}

func testUnknown(t *testing.T, h Harness) {
	ctx := ctxT(t)
	const bogus = "00000000-0000-4000-8000-00000000dead"
	if _, err := h.Source.VM(ctx, bogus); !errors.Is(err, source.ErrNotFound) {
		t.Errorf("VM(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := h.Source.Checkpoint(ctx, bogus, "rehost-x"); !errors.Is(err, source.ErrNotFound) {
		t.Errorf("Checkpoint(unknown vm) = %v, want ErrNotFound", err)
	}
	if _, err := h.Source.Checkpoints(ctx, bogus, "rehost-"); !errors.Is(err, source.ErrNotFound) {
		t.Errorf("Checkpoints(unknown vm) = %v, want ErrNotFound", err)
	}
	if _, err := h.Source.Export(ctx, source.Checkpoint{VMID: h.VMID, ID: "no-such-checkpoint", Name: "rehost-gone"}); !errors.Is(err, source.ErrNotFound) {
		t.Errorf("Export(unknown checkpoint) = %v, want ErrNotFound", err)
	}
	if err := h.Source.Release(ctx, source.Checkpoint{VMID: bogus, ID: "x", Name: "rehost-x"}); err != nil {
		t.Errorf("Release(checkpoint of unknown vm) = %v, want nil", err)
	}
	if err := h.Source.Release(ctx, source.Checkpoint{VMID: h.VMID, ID: "no-such-checkpoint", Name: "rehost-gone"}); err != nil {
		t.Errorf("Release(unknown checkpoint) = %v, want nil", err)
	}
}

func testCheckpoint(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, err := h.Source.Checkpoint(ctx, h.VMID, "rehost-run-1")
	if err != nil {
		t.Fatal(err)
	}
	if a.VMID != h.VMID || a.ID == "" || a.Name != "rehost-run-1" {
		t.Fatalf("checkpoint %+v", a)
	}
	if a.Quiesced && !h.Want.ToolsRunning {
		t.Errorf("checkpoint claims quiesced but the guest tools do not run")
	}
	b, err := h.Source.Checkpoint(ctx, h.VMID, "rehost-run-1")
	if err != nil {
		t.Fatal(err)
	}
	if b != a {
		t.Fatalf("second Checkpoint with the same name made %+v, want the first %+v", b, a)
	}
	other, err := h.Source.Checkpoint(ctx, h.VMID, "manual-backup")
	if err != nil {
		t.Fatal(err)
	}
	list, err := h.Source.Checkpoints(ctx, h.VMID, "rehost-")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0] != a {
		t.Fatalf("Checkpoints(rehost-) = %+v, want only %+v", list, a)
	}
	for i := 0; i < 2; i++ {
		if err := h.Source.Release(ctx, a); err != nil {
			t.Fatalf("release %d: %v", i+1, err)
		}
	}
	if list, err := h.Source.Checkpoints(ctx, h.VMID, "rehost-"); err != nil || len(list) != 0 {
		t.Fatalf("after release: %+v, %v", list, err)
	}
	if list, err := h.Source.Checkpoints(ctx, h.VMID, ""); err != nil || len(list) != 1 || list[0].Name != other.Name {
		t.Fatalf("release removed more than its checkpoint: %+v, %v", list, err)
	}
	if err := h.Source.Release(ctx, other); err != nil {
		t.Fatal(err)
	}
}

// pattern is recognisable, incompressible-enough content for disk i.
func pattern(i, n int, tag string) []byte {
	b := make([]byte, n)
	x := uint32(2654435761*uint32(i+1)) ^ uint32(len(tag))
	for k := range b {
		x = x*1664525 + 1013904223
		b[k] = byte(x >> 24)
	}
	copy(b, tag)
	return b
}

func readLive(t *testing.T, h Harness, i int, size int64) []byte {
	t.Helper()
	b := make([]byte, size)
	if n, err := h.ReadDisk(i, 0, b); int64(n) != size || (err != nil && err != io.EOF) {
		t.Fatalf("read live disk %d: %d bytes, %v", i, n, err)
	}
	return b
}

// decode reads an exported disk stream back to the raw virtual disk.
func decode(t *testing.T, d source.ExportDisk, r io.Reader) []byte {
	t.Helper()
	switch d.Format {
	case disk.VMDK:
		sr, err := disk.NewStreamOptimizedReader(r)
		if err != nil {
			t.Fatalf("disk %s: %v", d.Key, err)
		}
		b, err := io.ReadAll(sr)
		if err != nil {
			t.Fatalf("disk %s: read stream: %v", d.Key, err)
		}
		if sr.Size() != int64(len(b)) {
			t.Fatalf("disk %s: stream says %d bytes, yielded %d", d.Key, sr.Size(), len(b))
		}
		return b
	case disk.Raw:
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	default:
		f, err := os.CreateTemp(t.TempDir(), "export-*")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		n, err := io.Copy(f, r)
		if err != nil {
			t.Fatal(err)
		}
		img, err := disk.Open(f, n)
		if err != nil {
			t.Fatalf("disk %s: %v", d.Key, err)
		}
		b := make([]byte, img.Size())
		if _, err := img.ReadAt(b, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		return b
	}
}

func testExport(t *testing.T, h Harness) {
	ctx := ctxT(t)
	disks := h.Want.Disks
	if len(disks) < 2 {
		t.Fatal("the harness vm needs two disks")
	}
	// Disk 0 gets content at its start and near its end; disk 1 stays
	// mostly empty with one block in the middle.
	if err := h.WriteDisk(0, 0, pattern(0, 256<<10, "disk0-start")); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteDisk(0, disks[0].CapacityBytes-128<<10, pattern(1, 128<<10, "disk0-end")); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteDisk(1, disks[1].CapacityBytes/2, pattern(2, 4096, "disk1-mid")); err != nil {
		t.Fatal(err)
	}
	want := [][]byte{readLive(t, h, 0, disks[0].CapacityBytes), readLive(t, h, 1, disks[1].CapacityBytes)}

	cp, err := h.Source.Checkpoint(ctx, h.VMID, "rehost-export")
	if err != nil {
		t.Fatal(err)
	}
	// Written after the checkpoint: must not show in its export.
	if err := h.WriteDisk(0, 4096, pattern(3, 8192, "after-checkpoint")); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteDisk(1, 0, pattern(4, 8192, "after-checkpoint")); err != nil {
		t.Fatal(err)
	}

	ex, err := h.Source.Export(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	eds := ex.Disks()
	if len(eds) != len(disks) {
		t.Fatalf("export has %d disks, want %d", len(eds), len(disks))
	}
	for i, d := range eds {
		if d.CapacityBytes != disks[i].CapacityBytes {
			t.Errorf("export disk %d capacity %d, want %d", i, d.CapacityBytes, disks[i].CapacityBytes)
		}
		rc, err := ex.Open(ctx, i)
		if err != nil {
			ex.Close(err)
			t.Fatal(err)
		}
		got := decode(t, d, rc)
		rc.Close()
		if !bytes.Equal(got, want[i]) {
			ex.Close(errors.New("content mismatch"))
			t.Fatalf("disk %d: exported content differs from the disk at checkpoint time (first difference at %d)", i, firstDiff(got, want[i]))
		}
		if d.Extents != nil {
			checkExtentsCover(t, i, d.Extents, got)
		}
		ex.Progress((i + 1) * 100 / len(eds))
	}
	if err := ex.Close(nil); err != nil {
		t.Fatalf("close export: %v", err)
	}
	if err := ex.Close(nil); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if h.OpenExports != nil && h.OpenExports() != 0 {
		t.Errorf("%d exports still open after Close", h.OpenExports())
	}
	if err := h.Source.Release(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if list, err := h.Source.Checkpoints(ctx, h.VMID, ""); err != nil || len(list) != 0 {
		t.Fatalf("after release: %+v, %v", list, err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// checkExtentsCover fails when a non-zero byte lies outside the extents.
func checkExtentsCover(t *testing.T, i int, ext []disk.Extent, raw []byte) {
	t.Helper()
	pos := int64(0)
	for _, e := range append(ext, disk.Extent{Offset: int64(len(raw))}) {
		if e.Offset < pos {
			t.Fatalf("disk %d: extents unsorted or overlapping at %d", i, e.Offset)
		}
		if k := bytes.IndexFunc(raw[pos:e.Offset], func(r rune) bool { return r != 0 }); k >= 0 {
			t.Fatalf("disk %d: data at %d lies outside the reported extents", i, pos+int64(k))
		}
		pos = e.End()
	}
}

func testAbort(t *testing.T, h Harness) {
	if h.FailExport == nil {
		t.Skip("the harness cannot inject export failures")
	}
	ctx := ctxT(t)
	if err := h.WriteDisk(0, 0, pattern(5, 1<<20, "abort")); err != nil {
		t.Fatal(err)
	}
	cp, err := h.Source.Checkpoint(ctx, h.VMID, "rehost-abort")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.FailExport(0, 64<<10); err != nil {
		t.Fatal(err)
	}
	ex, err := h.Source.Export(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	var readErr error
	rc, err := ex.Open(ctx, 0)
	if err == nil {
		_, readErr = io.Copy(io.Discard, rc)
		rc.Close()
	} else {
		readErr = err
	}
	if readErr == nil {
		t.Fatal("a stream cut by the source read to the end without error")
	}
	if err := ex.Close(readErr); err != nil {
		t.Fatalf("abort export: %v", err)
	}
	if h.OpenExports != nil && h.OpenExports() != 0 {
		t.Errorf("%d exports still open after an aborted export", h.OpenExports())
	}
	if err := h.Source.Release(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if list, err := h.Source.Checkpoints(ctx, h.VMID, ""); err != nil || len(list) != 0 {
		t.Fatalf("after release: %+v, %v", list, err)
	}
}

// testLeftOpen: an export a crashed process never closed holds a
// server-side resource only if the source can abort it by its ID.
func testLeftOpen(t *testing.T, h Harness) {
	ctx := ctxT(t)
	cp, err := h.Source.Checkpoint(ctx, h.VMID, "rehost-left-open")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := h.Source.Export(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	ab, ok := h.Source.(source.ExportAborter)
	switch {
	case ex.ID() == "":
		// Nothing outlives the process: closing is all there is.
		if err := ex.Close(nil); err != nil {
			t.Fatal(err)
		}
	case !ok:
		t.Fatalf("export %q holds a server-side resource but the source cannot abort it (no ExportAborter)", ex.ID())
	default:
		// Not closed: the process "died". Abort it by its id, twice.
		for range 2 {
			if err := ab.AbortExport(ctx, cp, ex.ID()); err != nil {
				t.Fatalf("abort export %s: %v", ex.ID(), err)
			}
		}
		if h.OpenExports != nil && h.OpenExports() != 0 {
			t.Errorf("%d exports still open after AbortExport", h.OpenExports())
		}
	}
	if err := h.Source.Release(ctx, cp); err != nil {
		t.Fatal(err)
	}
}

// block is one write of a tracking test.
type block struct {
	disk int
	off  int64
	n    int
}

func writeBlocks(t *testing.T, h Harness, tag string, bs []block) {
	t.Helper()
	for k, b := range bs {
		if err := h.WriteDisk(b.disk, b.off, pattern(100+k, b.n, fmt.Sprintf("%s-%d", tag, k))); err != nil {
			t.Fatalf("write %d bytes at %d of disk %d: %v", b.n, b.off, b.disk, err)
		}
	}
}

// written is the merged set of areas the blocks of disk i cover.
func written(bs []block, i int) []disk.Extent {
	var out []disk.Extent
	for _, b := range bs {
		if b.disk == i {
			out = addArea(out, disk.Extent{Offset: b.off, Length: int64(b.n)})
		}
	}
	return out
}

// addArea inserts e into the sorted list l, merging what touches.
func addArea(l []disk.Extent, e disk.Extent) []disk.Extent {
	out := []disk.Extent{}
	for _, x := range l {
		switch {
		case x.End() < e.Offset:
			out = append(out, x)
		case e.End() < x.Offset:
			out = append(out, e)
			e = x
		default:
			e = disk.Extent{Offset: min(e.Offset, x.Offset), Length: max(e.End(), x.End()) - min(e.Offset, x.Offset)}
		}
	}
	return append(out, e)
}

func merged(l []disk.Extent) []disk.Extent {
	var out []disk.Extent
	for _, e := range l {
		out = addArea(out, e)
	}
	return out
}

// changes drains ChangedAreas, checking the stream's order and bounds.
func changes(t *testing.T, ct source.ChangeTracker, cp source.Checkpoint, q source.ChangeQuery) (source.Changes, []disk.Extent) {
	t.Helper()
	ctx := ctxT(t)
	ch, err := ct.ChangedAreas(ctx, cp, q)
	if err != nil {
		t.Fatalf("changed areas of disk %s of %q since %q: %v", q.Disk, cp.Name, q.Since, err)
	}
	var all []disk.Extent
	pos, pages := q.From, 0
	for {
		page, err := ch.Areas.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("changed areas of disk %s, page %d: %v", q.Disk, pages+1, err)
		}
		pages++
		for _, e := range page {
			if e.Offset < pos || e.Length <= 0 || e.End() > ch.Capacity || e.Offset%512 != 0 || e.Length%512 != 0 {
				t.Fatalf("disk %s: area %+v out of order, unaligned or outside [%d, %d)", q.Disk, e, pos, ch.Capacity)
			}
			pos = e.End()
		}
		all = append(all, page...)
		if pages > 1<<16 {
			t.Fatal("the areas never end")
		}
	}
	if _, err := ch.Areas.Next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("Next after the last page = %v, want io.EOF", err)
	}
	return ch, all
}

// diskKeys are the keys of the VM's disks, in VM order.
func diskKeys(t *testing.T, h Harness) []string {
	t.Helper()
	vm, err := h.Source.VM(ctxT(t), h.VMID)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, d := range vm.Disks {
		keys = append(keys, d.Key)
	}
	return keys
}

func testTrackingEnable(t *testing.T, h Harness) {
	ct, ok := h.Source.(source.ChangeTracker)
	if !ok {
		t.Skip("no change tracking")
	}
	ctx := ctxT(t)
	for _, id := range []string{h.VMID, h.UntrackedVMID} {
		if id == "" {
			continue
		}
		for k := range 2 { // idempotent
			if err := ct.EnableTracking(ctx, id); err != nil {
				t.Fatalf("enable tracking of vm %s (call %d): %v", id, k+1, err)
			}
		}
		vm, err := h.Source.VM(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !vm.CBTEnabled {
			t.Errorf("vm %s: tracking enabled, yet the inventory says it is off", id)
		}
		if list, err := h.Source.Checkpoints(ctx, id, ""); err != nil || len(list) != 0 {
			t.Errorf("enabling tracking left checkpoints: %+v, %v", list, err)
		}
	}
	if h.UntrackableVMID != "" {
		err := ct.EnableTracking(ctx, h.UntrackableVMID)
		if !errors.Is(err, source.ErrNoTracking) {
			t.Fatalf("enable tracking of a vm that cannot track = %v, want ErrNoTracking", err)
		}
		t.Logf("refused as it should be: %v", err)
	}
	if err := ct.EnableTracking(ctx, "00000000-0000-4000-8000-00000000dead"); !errors.Is(err, source.ErrNotFound) {
		t.Errorf("enable tracking of an unknown vm = %v, want ErrNotFound", err)
	}
}

// testTracking: a seed, then blocks written between two checkpoints on
// both disks are reported exactly, read back through OpenDisk, and make
// the disk at the second checkpoint from the disk at the first; bases are
// kept, listed and released.
func testTracking(t *testing.T, h Harness) {
	ct, ok := h.Source.(source.ChangeTracker)
	if !ok {
		t.Skip("no change tracking")
	}
	dr, ok := h.Source.(source.CheckpointReader)
	if !ok {
		t.Fatal("a change tracker must read disks at random (source.CheckpointReader)")
	}
	ctx := ctxT(t)
	if err := ct.EnableTracking(ctx, h.VMID); err != nil {
		t.Fatal(err)
	}
	keys := diskKeys(t, h)
	caps := []int64{h.Want.Disks[0].CapacityBytes, h.Want.Disks[1].CapacityBytes}
	seed := []block{{1, 1 << 20, 64 << 10}, {0, 0, 8192}}
	writeBlocks(t, h, "seed", seed)

	cp1, err := h.Source.Checkpoint(ctx, h.VMID, "rehost-track-1")
	if err != nil {
		t.Fatal(err)
	}
	at1 := [][]byte{readLive(t, h, 0, caps[0]), readLive(t, h, 1, caps[1])}
	for i, key := range keys {
		ch, all := changes(t, ct, cp1, source.ChangeQuery{Disk: key})
		if ch.Capacity != caps[i] || ch.PreviousCapacity != 0 {
			t.Errorf("seed of disk %d: capacity %d previous %d, want %d and 0", i, ch.Capacity, ch.PreviousCapacity, caps[i])
		}
		checkExtentsCover(t, i, merged(all), at1[i])
		for _, w := range written(seed, i) {
			if !covers(merged(all), w.Offset, w.Length) {
				t.Fatalf("seed of disk %d: allocated areas %v miss the block written at %d", i, all, w.Offset)
			}
		}
	}
	base1 := keep(t, ct, cp1, keys)

	// Blocks on both disks, some touching, one at each disk's end, many
	// enough that a source paging its answers has to.
	delta := []block{{0, 64 << 10, 4096}, {0, caps[0] - 4096, 4096}, {1, caps[1] - 8192, 8192}, {1, 3 << 20, 4096}, {1, 3<<20 + 4096, 4096}}
	for k := range 12 {
		delta = append(delta, block{1, int64(5+k) << 19, 4096})
	}
	writeBlocks(t, h, "delta", delta)
	cp2, err := h.Source.Checkpoint(ctx, h.VMID, "rehost-track-2")
	if err != nil {
		t.Fatal(err)
	}
	at2 := [][]byte{readLive(t, h, 0, caps[0]), readLive(t, h, 1, caps[1])}
	// After the checkpoint: in neither its changes nor its content.
	after := []block{{1, 2 << 20, 4096}, {0, 128 << 10, 4096}}
	writeBlocks(t, h, "after", after)

	for i, key := range keys {
		ch, all := changes(t, ct, cp2, source.ChangeQuery{Disk: key, Since: base1.ChangeIDs[key]})
		if ch.Capacity != caps[i] || ch.PreviousCapacity != caps[i] {
			t.Errorf("disk %d: capacity %d previous %d, want %d both", i, ch.Capacity, ch.PreviousCapacity, caps[i])
		}
		if got, want := merged(all), written(delta, i); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("disk %d: changed areas %v, want exactly the blocks written %v", i, got, want)
		}
		// The disk at cp1 with the changed areas read from cp2 is the
		// disk at cp2: what a replica chain relies on.
		d, err := dr.OpenDisk(ctx, cp2, key)
		if err != nil {
			t.Fatal(err)
		}
		if d.Size() != caps[i] {
			t.Errorf("disk %d opened with size %d, want %d", i, d.Size(), caps[i])
		}
		replica := append([]byte(nil), at1[i]...)
		for _, e := range all {
			if _, err := d.ReadAt(replica[e.Offset:e.End()], e.Offset); err != nil && err != io.EOF {
				t.Fatalf("disk %d: read %d bytes at %d: %v", i, e.Length, e.Offset, err)
			}
		}
		if !bytes.Equal(replica, at2[i]) {
			t.Fatalf("disk %d: the base plus the changed areas differs from the disk at the checkpoint (first at %d)", i, firstDiff(replica, at2[i]))
		}
		if n, err := d.ReadAt(make([]byte, 512), caps[i]); n != 0 || err != io.EOF {
			t.Errorf("disk %d: read at its end = %d, %v; want 0, io.EOF", i, n, err)
		}
		for k := 0; k < 2; k++ {
			if err := d.Close(); err != nil {
				t.Fatalf("close disk %d (call %d): %v", i, k+1, err)
			}
		}
		if i == 1 {
			// A resumed query from the middle of an area.
			from := int64(3<<20 + 2048)
			_, rest := changes(t, ct, cp2, source.ChangeQuery{Disk: key, Since: base1.ChangeIDs[key], From: from})
			var want []disk.Extent
			for _, w := range written(delta, i) {
				if w.End() > from {
					s := max(w.Offset, from)
					want = append(want, disk.Extent{Offset: s, Length: w.End() - s})
				}
			}
			if got := merged(rest); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("disk 1 from %d: areas %v, want %v", from, got, want)
			}
		}
	}
	if _, err := ct.ChangedAreas(ctx, cp2, source.ChangeQuery{Disk: "no-such-disk", Since: base1.ChangeIDs[keys[0]]}); !errors.Is(err, source.ErrNotFound) {
		t.Errorf("changed areas of an unknown disk = %v, want ErrNotFound", err)
	}
	if _, err := dr.OpenDisk(ctx, cp2, "no-such-disk"); !errors.Is(err, source.ErrNotFound) {
		t.Errorf("open an unknown disk = %v, want ErrNotFound", err)
	}
	if _, err := ct.ChangedAreas(ctx, cp2, source.ChangeQuery{Disk: keys[1], Since: "not-a-change-id"}); !errors.Is(err, source.ErrResync) {
		t.Errorf("changed areas since a bogus change id = %v, want ErrResync", err)
	}
	base2 := keep(t, ct, cp2, keys)
	if base2.ChangeIDs[keys[1]] == base1.ChangeIDs[keys[1]] {
		t.Errorf("the second base has the first's change id %q", base1.ChangeIDs[keys[1]])
	}
	checkBases(t, h, base2, base1)
	for _, b := range []source.Base{base1, base2} {
		for k := range 2 {
			if err := h.Source.Release(ctx, b.Checkpoint); err != nil {
				t.Fatalf("release base %q (call %d): %v", b.Checkpoint.Name, k+1, err)
			}
		}
	}
	if list, err := h.Source.Checkpoints(ctx, h.VMID, ""); err != nil || len(list) != 0 {
		t.Fatalf("after releasing the bases: %+v, %v", list, err)
	}
}

// keep keeps cp and checks the base names every disk; a second Keep gives
// the same base, or ErrNotFound where the first released all there was.
func keep(t *testing.T, ct source.ChangeTracker, cp source.Checkpoint, keys []string) source.Base {
	t.Helper()
	ctx := ctxT(t)
	b, err := ct.Keep(ctx, cp)
	if err != nil {
		t.Fatalf("keep %q: %v", cp.Name, err)
	}
	for _, k := range keys {
		if b.ChangeIDs[k] == "" {
			t.Fatalf("keep %q: no change id for disk %s: %+v", cp.Name, k, b)
		}
	}
	if len(b.ChangeIDs) != len(keys) || b.Checkpoint.VMID != cp.VMID || b.Checkpoint.Name != cp.Name || !b.Checkpoint.Base {
		t.Fatalf("keep %q: base %+v", cp.Name, b)
	}
	again, err := ct.Keep(ctx, cp)
	switch {
	case errors.Is(err, source.ErrNotFound):
	case err != nil:
		t.Fatalf("keep %q again: %v", cp.Name, err)
	case fmt.Sprint(again) != fmt.Sprint(b):
		t.Fatalf("keep %q again: %+v, want %+v", cp.Name, again, b)
	}
	return b
}

// checkBases: the VM's checkpoints are the bases that hold something on
// the source, nothing else.
func checkBases(t *testing.T, h Harness, bases ...source.Base) {
	t.Helper()
	list, err := h.Source.Checkpoints(ctxT(t), h.VMID, "rehost-")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, b := range bases {
		if b.Checkpoint.ID != "" {
			want = append(want, b.Checkpoint.Name)
		}
	}
	var got []string
	for _, cp := range list {
		if !cp.Base {
			t.Errorf("checkpoint %q is left after Keep", cp.Name)
		}
		got = append(got, cp.Name)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("checkpoints after Keep: %v, want the bases %v", got, want)
	}
}

// testTrackingReset: a reset of the VM's tracking makes the next query
// since an older change id a resync, with a reason.
func testTrackingReset(t *testing.T, h Harness) {
	ct, ok := h.Source.(source.ChangeTracker)
	if !ok || h.ResetTracking == nil {
		t.Skip("no change tracking, or the harness cannot reset it")
	}
	ctx := ctxT(t)
	if err := ct.EnableTracking(ctx, h.VMID); err != nil {
		t.Fatal(err)
	}
	keys := diskKeys(t, h)
	cp1, err := h.Source.Checkpoint(ctx, h.VMID, "rehost-reset-1")
	if err != nil {
		t.Fatal(err)
	}
	base := keep(t, ct, cp1, keys)
	if err := h.ResetTracking(); err != nil {
		t.Fatal(err)
	}
	writeBlocks(t, h, "reset", []block{{1, 1 << 20, 4096}})
	cp2, err := h.Source.Checkpoint(ctx, h.VMID, "rehost-reset-2")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ct.ChangedAreas(ctx, cp2, source.ChangeQuery{Disk: keys[1], Since: base.ChangeIDs[keys[1]]})
	var re *source.ResyncError
	if !errors.As(err, &re) || !errors.Is(err, source.ErrResync) || re.Reason == "" || re.Disk != keys[1] {
		t.Fatalf("changed areas since a change id from before the reset = %v, want a *ResyncError with a reason", err)
	}
	t.Logf("resync, as it should be: %v", err)
	// The resync itself: every allocated area, the new write among them.
	_, all := changes(t, ct, cp2, source.ChangeQuery{Disk: keys[1]})
	if !covers(merged(all), 1<<20, 4096) {
		t.Fatalf("allocated areas after the reset %v miss the block written", all)
	}
	b2 := keep(t, ct, cp2, keys)
	for _, b := range []source.Base{base, b2} {
		if err := h.Source.Release(ctx, b.Checkpoint); err != nil {
			t.Fatal(err)
		}
	}
	if list, err := h.Source.Checkpoints(ctx, h.VMID, ""); err != nil || len(list) != 0 {
		t.Fatalf("after release: %+v, %v", list, err)
	}
}

// testTrackingResize: a disk grown between two checkpoints says so, and a
// block written in the new tail is among the changes.
func testTrackingResize(t *testing.T, h Harness) {
	ct, ok := h.Source.(source.ChangeTracker)
	if !ok || h.ResizeDisk == nil {
		t.Skip("no change tracking, or the harness cannot resize a disk")
	}
	ctx := ctxT(t)
	if err := ct.EnableTracking(ctx, h.VMID); err != nil {
		t.Fatal(err)
	}
	keys := diskKeys(t, h)
	old := h.Want.Disks[1].CapacityBytes
	cp1, err := h.Source.Checkpoint(ctx, h.VMID, "rehost-grow-1")
	if err != nil {
		t.Fatal(err)
	}
	base := keep(t, ct, cp1, keys)
	grown := old + 4<<20
	if err := h.ResizeDisk(1, grown); err != nil {
		t.Fatal(err)
	}
	tail := []block{{1, old + 1<<20, 4096}, {1, 4096, 4096}}
	writeBlocks(t, h, "grown", tail)
	cp2, err := h.Source.Checkpoint(ctx, h.VMID, "rehost-grow-2")
	if err != nil {
		t.Fatal(err)
	}
	ch, all := changes(t, ct, cp2, source.ChangeQuery{Disk: keys[1], Since: base.ChangeIDs[keys[1]]})
	if ch.Capacity != grown || ch.PreviousCapacity != old {
		t.Fatalf("resized disk: capacity %d previous %d, want %d and %d", ch.Capacity, ch.PreviousCapacity, grown, old)
	}
	for _, w := range written(tail, 1) {
		if !covers(merged(all), w.Offset, w.Length) {
			t.Fatalf("areas %v of the grown disk miss the block written at %d", all, w.Offset)
		}
	}
	b2 := keep(t, ct, cp2, keys)
	for _, b := range []source.Base{base, b2} {
		if err := h.Source.Release(ctx, b.Checkpoint); err != nil {
			t.Fatal(err)
		}
	}
}

// testOpenDisk: a checkpoint's disk read at random equals the disk at the
// checkpoint, from several goroutines at once.
func testOpenDisk(t *testing.T, h Harness) {
	dr, ok := h.Source.(source.CheckpointReader)
	if !ok {
		t.Skip("no random reads")
	}
	ctx := ctxT(t)
	keys := diskKeys(t, h)
	writeBlocks(t, h, "open", []block{{0, 4096, 64 << 10}, {1, 7 << 20, 4096}})
	cp, err := h.Source.Checkpoint(ctx, h.VMID, "rehost-open")
	if err != nil {
		t.Fatal(err)
	}
	size := h.Want.Disks[1].CapacityBytes
	want := readLive(t, h, 1, size)
	writeBlocks(t, h, "open-after", []block{{1, 7 << 20, 4096}})
	d, err := dr.OpenDisk(ctx, cp, keys[1])
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size)
	const part = 1 << 20
	errc := make(chan error, size/part+1)
	for off := int64(0); off < size; off += part {
		go func(off int64) {
			_, err := d.ReadAt(got[off:min(off+part, size)], off)
			if err == io.EOF {
				err = nil
			}
			errc <- err
		}(off)
	}
	for off := int64(0); off < size; off += part {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("disk read at random differs from the disk at the checkpoint (first at %d)", firstDiff(got, want))
	}
	if _, err := dr.OpenDisk(ctx, source.Checkpoint{VMID: h.VMID, ID: "no-such-checkpoint", Name: "rehost-gone"}, keys[1]); !errors.Is(err, source.ErrNotFound) {
		t.Errorf("open a disk of an unknown checkpoint = %v, want ErrNotFound", err)
	}
	if err := h.Source.Release(ctx, cp); err != nil {
		t.Fatal(err)
	}
}

func covers(ext []disk.Extent, off, n int64) bool {
	for _, e := range ext {
		if e.Offset <= off && e.End() >= off+n {
			return true
		}
	}
	return false
}

// WrittenBetweenRuns is the check of a lab peer's write request: between
// two checkpoints of h's VM, write (the peer, asked over its write URL)
// writes blocks into disk i and says where; the source must then report
// exactly those areas, and read them back as the disk holds them.
func WrittenBetweenRuns(t *testing.T, h Harness, i int, write func() ([]disk.Extent, error)) {
	t.Helper()
	ct, ok := h.Source.(source.ChangeTracker)
	if !ok {
		t.Fatal("the source tracks no changes")
	}
	dr := h.Source.(source.CheckpointReader)
	ctx := ctxT(t)
	if err := ct.EnableTracking(ctx, h.VMID); err != nil {
		t.Fatal(err)
	}
	keys := diskKeys(t, h)
	cp1, err := h.Source.Checkpoint(ctx, h.VMID, "rehost-lab-1")
	if err != nil {
		t.Fatal(err)
	}
	base := keep(t, ct, cp1, keys)
	wrote, err := write()
	if err != nil {
		t.Fatal(err)
	}
	cp2, err := h.Source.Checkpoint(ctx, h.VMID, "rehost-lab-2")
	if err != nil {
		t.Fatal(err)
	}
	ch, got := changes(t, ct, cp2, source.ChangeQuery{Disk: keys[i], Since: base.ChangeIDs[keys[i]]})
	if g, w := merged(got), merged(wrote); fmt.Sprint(g) != fmt.Sprint(w) {
		t.Fatalf("changed areas %v, want exactly the blocks written %v", g, w)
	}
	d, err := dr.OpenDisk(ctx, cp2, keys[i])
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, e := range got {
		a, b := make([]byte, e.Length), make([]byte, e.Length)
		if _, err := d.ReadAt(a, e.Offset); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if _, err := h.ReadDisk(i, e.Offset, b); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("area %+v read from the checkpoint differs from the disk", e)
		}
	}
	t.Logf("%d blocks written by request, %d bytes changed of the %d-byte disk, reported exactly", len(wrote), total(got), ch.Capacity)
	b2 := keep(t, ct, cp2, keys)
	for _, b := range []source.Base{base, b2} {
		if err := h.Source.Release(ctx, b.Checkpoint); err != nil {
			t.Fatal(err)
		}
	}
}

func total(l []disk.Extent) int64 {
	var n int64
	for _, e := range l {
		n += e.Length
	}
	return n
}
