// Package sourcetest is the conformance suite every source.Source passes:
// inventory fields, checkpoint idempotency, point-in-time export content,
// release idempotency, unknown ids, abort of a failed export and, for a
// source.ChangeTracker, changed areas between checkpoints.
package sourcetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
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
	t.Run("ChangedAreas", func(t *testing.T) { testChanged(t, newSource(t)) })
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

func testChanged(t *testing.T, h Harness) {
	ct, ok := h.Source.(source.ChangeTracker)
	if !ok || !h.Want.CBTEnabled {
		t.Skip("no change tracking")
	}
	ctx := ctxT(t)
	d1 := h.Want.Disks[1].CapacityBytes
	if err := h.WriteDisk(1, 1<<20, pattern(6, 64<<10, "base")); err != nil {
		t.Fatal(err)
	}
	vm, err := h.Source.VM(ctx, h.VMID)
	if err != nil {
		t.Fatal(err)
	}
	key := vm.Disks[1].Key
	cp1, err := h.Source.Checkpoint(ctx, h.VMID, "rehost-cbt-1")
	if err != nil {
		t.Fatal(err)
	}
	all, id1, err := ct.ChangedAreas(ctx, cp1, key, "*")
	if err != nil {
		t.Fatal(err)
	}
	if id1 == "" || !covers(all, 1<<20, 64<<10) {
		t.Fatalf("allocated areas %v (change id %q) miss the written block", all, id1)
	}
	raw := readLive(t, h, 1, d1)
	checkExtentsCover(t, 1, all, raw)
	if err := h.WriteDisk(1, d1-8192, pattern(7, 4096, "delta")); err != nil {
		t.Fatal(err)
	}
	cp2, err := h.Source.Checkpoint(ctx, h.VMID, "rehost-cbt-2")
	if err != nil {
		t.Fatal(err)
	}
	delta, id2, err := ct.ChangedAreas(ctx, cp2, key, id1)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, e := range delta {
		total += e.Length
	}
	if id2 == "" || id2 == id1 || !covers(delta, d1-8192, 4096) || total > 1<<20 {
		t.Fatalf("changed areas since %q: %v (total %d, id %q); want the one 4 KiB write", id1, delta, total, id2)
	}
	if covers(delta, 1<<20, 4096) {
		t.Fatalf("changed areas %v include the block written before the first checkpoint", delta)
	}
	if _, _, err := ct.ChangedAreas(ctx, cp2, "no-such-disk", id1); err == nil {
		t.Fatal("changed areas of an unknown disk succeeded")
	}
	for _, cp := range []source.Checkpoint{cp1, cp2} {
		if err := h.Source.Release(ctx, cp); err != nil {
			t.Fatal(err)
		}
	}
	if list, err := h.Source.Checkpoints(ctx, h.VMID, ""); err != nil || len(list) != 0 {
		t.Fatalf("after release: %+v, %v", list, err)
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
