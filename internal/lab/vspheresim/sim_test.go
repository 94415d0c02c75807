package vspheresim

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/nfc"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/rehost/rehost/pkg/disk"
)

func startDemo(t *testing.T) (*Sim, *govmomi.Client) {
	t.Helper()
	ctx := context.Background()
	s, err := Start(ctx, Options{VMs: DemoVMs(), MaxChangedAreas: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	u, _ := url.Parse(s.URL())
	u.User = url.UserPassword(s.User(), s.Password())
	c, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func snapshot(t *testing.T, c *govmomi.Client, vm *object.VirtualMachine, name string) types.ManagedObjectReference {
	t.Helper()
	ctx := context.Background()
	task, err := vm.CreateSnapshot(ctx, name, "", false, false)
	if err != nil {
		t.Fatal(err)
	}
	info, err := task.WaitForResult(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.Result.(types.ManagedObjectReference)
}

// exportSnapshot downloads every disk of the snapshot and decodes it.
func exportSnapshot(t *testing.T, c *govmomi.Client, snap types.ManagedObjectReference) ([][]byte, error) {
	ctx := context.Background()
	res, err := methods.ExportSnapshot(ctx, c.Client, &types.ExportSnapshot{This: snap})
	if err != nil {
		t.Fatal(err)
	}
	l := nfc.NewLease(c.Client, res.Returnval)
	info, err := l.Wait(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, d := range info.DeviceUrl {
		u, _ := url.Parse(d.Url)
		rc, _, err := c.Client.Download(ctx, u, &soap.DefaultDownload)
		if err != nil {
			l.Abort(ctx, nil)
			return nil, err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			l.Abort(ctx, nil)
			return nil, err
		}
		img, err := disk.Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		raw := make([]byte, img.Size())
		if _, err := img.ReadAt(raw, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		out = append(out, raw)
	}
	if err := l.Complete(ctx); err != nil {
		t.Fatal(err)
	}
	return out, nil
}

func liveDisk(t *testing.T, s *Sim, vm string, i int) []byte {
	n, _ := s.DiskCapacity(vm, i)
	b := make([]byte, n)
	if _, err := s.ReadDisk(vm, i, 0, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSnapshotIsPointInTimeAndExports(t *testing.T) {
	s, c := startDemo(t)
	ctx := context.Background()
	ref, _ := s.Ref("web-01")
	vm := object.NewVirtualMachine(c.Client, ref)
	want0, want1 := liveDisk(t, s, "web-01", 0), liveDisk(t, s, "web-01", 1)

	snap := snapshot(t, c, vm, "one")
	if err := s.WriteDisk("web-01", 1, 10*mib, []byte("written after the snapshot")); err != nil {
		t.Fatal(err)
	}
	got, err := exportSnapshot(t, c, snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(got[0], want0) || !bytes.Equal(got[1], want1) {
		t.Fatal("exported snapshot differs from the disks at snapshot time")
	}
	if bytes.Equal(got[1], liveDisk(t, s, "web-01", 1)) {
		t.Fatal("live disk did not change")
	}
	if open, completed, _ := s.LeaseCounts(); open != 0 || completed != 1 {
		t.Fatalf("leases open %d completed %d", open, completed)
	}

	// Change tracking: the second snapshot sees exactly the later write.
	snap2 := snapshot(t, c, vm, "two")
	var mvm struct {
		Config types.VirtualMachineConfigInfo
	}
	_ = mvm
	keys := s.vms["web-01"].disks
	first := s.snaps[snap].changeIDs[1]
	res, err := methods.QueryChangedDiskAreas(ctx, c.Client, &types.QueryChangedDiskAreas{
		This: ref, Snapshot: &snap2, DeviceKey: keys[1].key, ChangeId: first})
	if err != nil {
		t.Fatal(err)
	}
	wantArea := []types.DiskChangeExtent{{Start: 10 * mib, Length: 512}}
	if !slices.Equal(res.Returnval.ChangedArea, wantArea) {
		t.Fatalf("changed areas %+v, want %+v", res.Returnval.ChangedArea, wantArea)
	}
	// "*" pages: MaxChangedAreas is 3, the data disk has more extents.
	var all []types.DiskChangeExtent
	for off := int64(0); off < keys[1].capacity; {
		res, err := methods.QueryChangedDiskAreas(ctx, c.Client, &types.QueryChangedDiskAreas{
			This: ref, Snapshot: &snap2, DeviceKey: keys[1].key, StartOffset: off, ChangeId: "*"})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Returnval.ChangedArea) > 3 || res.Returnval.Length <= 0 {
			t.Fatalf("page %+v", res.Returnval)
		}
		all = append(all, res.Returnval.ChangedArea...)
		off = res.Returnval.StartOffset + res.Returnval.Length
	}
	var alloc []types.DiskChangeExtent
	for _, e := range keys[1].live.extents() {
		alloc = append(alloc, types.DiskChangeExtent{Start: e.Offset, Length: e.Length})
	}
	if len(all) < 4 || !slices.Equal(all, alloc) {
		t.Fatalf("paged allocated areas %v, want %v", all, alloc)
	}
	if _, err := methods.QueryChangedDiskAreas(ctx, c.Client, &types.QueryChangedDiskAreas{
		This: ref, Snapshot: &snap2, DeviceKey: keys[1].key, ChangeId: "bogus/1"}); err == nil {
		t.Fatal("bogus change id accepted")
	}

	task, err := vm.RemoveAllSnapshot(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if names, _ := s.Snapshots("web-01"); len(names) != 0 || s.SnapshotFiles() != 0 {
		t.Fatalf("left %v and %d files", names, s.SnapshotFiles())
	}
}

func TestInjectedExportFailure(t *testing.T) {
	s, c := startDemo(t)
	ref, _ := s.Ref("web-01")
	snap := snapshot(t, c, object.NewVirtualMachine(c.Client, ref), "f")
	if err := s.FailExport("web-01", 0, 100000); err != nil {
		t.Fatal(err)
	}
	if _, err := exportSnapshot(t, c, snap); err == nil {
		t.Fatal("export with an injected failure succeeded")
	}
	if open, _, aborted := s.LeaseCounts(); open != 0 || aborted != 1 {
		t.Fatalf("open %d aborted %d", open, aborted)
	}
	if _, err := exportSnapshot(t, c, snap); err != nil {
		t.Fatalf("fault is one-shot, second export: %v", err)
	}
}

func TestQuiesceNeedsTools(t *testing.T) {
	s, c := startDemo(t)
	ctx := context.Background()
	ref, _ := s.Ref("db-01")
	task, err := object.NewVirtualMachine(c.Client, ref).CreateSnapshot(ctx, "q", "", false, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err == nil {
		t.Fatal("quiesced snapshot without tools succeeded")
	}
	if names, _ := s.Snapshots("db-01"); len(names) != 0 || s.SnapshotFiles() != 0 {
		t.Fatalf("left %v", names)
	}
}

func TestLeaseExpiresWithoutProgress(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx, Options{VMs: DemoVMs()[2:], LeaseTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, _ := url.Parse(s.URL())
	u.User = url.UserPassword(s.User(), s.Password())
	c, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := s.Ref("db-01")
	snap := snapshot(t, c, object.NewVirtualMachine(c.Client, ref), "x")
	res, err := methods.ExportSnapshot(ctx, c.Client, &types.ExportSnapshot{This: snap})
	if err != nil {
		t.Fatal(err)
	}
	l := nfc.NewLease(c.Client, res.Returnval)
	info, err := l.Wait(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	du, _ := url.Parse(info.DeviceUrl[0].Url)
	if _, _, err := c.Client.Download(ctx, du, &soap.DefaultDownload); err == nil {
		t.Fatal("download from an expired lease succeeded")
	}
	if s.ExpiredLeases() != 1 || s.OpenLeases() != 0 {
		t.Fatalf("expired %d open %d", s.ExpiredLeases(), s.OpenLeases())
	}
}

// exportLease downloads every disk of a ready lease and opens each image.
func exportLease(t *testing.T, c *govmomi.Client, ref types.ManagedObjectReference) []disk.Image {
	t.Helper()
	ctx := context.Background()
	l := nfc.NewLease(c.Client, ref)
	info, err := l.Wait(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []disk.Image
	for _, d := range info.DeviceUrl {
		u, _ := url.Parse(d.Url)
		rc, _, err := c.Client.Download(ctx, u, &soap.DefaultDownload)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		img, err := disk.Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, img)
	}
	if err := l.Complete(ctx); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExportVmNeedsPowerOff(t *testing.T) {
	s, c := startDemo(t)
	ctx := context.Background()
	on, _ := s.Ref("web-01")
	if _, err := methods.ExportVm(ctx, c.Client, &types.ExportVm{This: on}); err == nil {
		t.Fatal("exported a running vm")
	}
	off, _ := s.Ref("db-01")
	res, err := methods.ExportVm(ctx, c.Client, &types.ExportVm{This: off})
	if err != nil {
		t.Fatal(err)
	}
	imgs := exportLease(t, c, res.Returnval)
	want := liveDisk(t, s, "db-01", 0)
	got := make([]byte, len(want))
	if len(imgs) != 1 || imgs[0].Size() != int64(len(want)) {
		t.Fatalf("%d images", len(imgs))
	}
	if _, err := imgs[0].ReadAt(got, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("ExportVm content differs from the live disk")
	}
}

func TestRevertRestoresContent(t *testing.T) {
	s, c := startDemo(t)
	ctx := context.Background()
	ref, _ := s.Ref("web-01")
	vm := object.NewVirtualMachine(c.Client, ref)
	before := liveDisk(t, s, "web-01", 0)
	snapshot(t, c, vm, "base")
	if err := s.WriteDisk("web-01", 0, 0, []byte("overwritten")); err != nil {
		t.Fatal(err)
	}
	task, err := vm.RevertToSnapshot(ctx, "base", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(liveDisk(t, s, "web-01", 0), before) {
		t.Fatal("revert did not restore the disk")
	}
}

// TestHugeSparseDisk: a 64 GiB disk with two small writes snapshots and
// exports in the space and time of what was written.
func TestHugeSparseDisk(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx, Options{VMs: []VMSpec{{Name: "big", PowerOn: true, Disks: []DiskSpec{{CapacityBytes: 64 << 30}}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, _ := url.Parse(s.URL())
	u.User = url.UserPassword(s.User(), s.Password())
	c, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		t.Fatal(err)
	}
	head, tail := []byte("boot sector"), []byte("far away data")
	if err := s.WriteDisk("big", 0, 0, head); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteDisk("big", 0, 40<<30, tail); err != nil {
		t.Fatal(err)
	}
	ref, _ := s.Ref("big")
	snap := snapshot(t, c, object.NewVirtualMachine(c.Client, ref), "s")
	res, err := methods.ExportSnapshot(ctx, c.Client, &types.ExportSnapshot{This: snap})
	if err != nil {
		t.Fatal(err)
	}
	img := exportLease(t, c, res.Returnval)[0]
	if img.Size() != 64<<30 || img.Info().AllocatedBytes > 1<<20 {
		t.Fatalf("info %+v", img.Info())
	}
	got := make([]byte, len(tail))
	if _, err := img.ReadAt(got, 40<<30); err != nil || !bytes.Equal(got, tail) {
		t.Fatalf("read %q, %v", got, err)
	}
}

func TestNFCNeedsSession(t *testing.T) {
	s, c := startDemo(t)
	ctx := context.Background()
	ref, _ := s.Ref("db-01")
	res, err := methods.ExportVm(ctx, c.Client, &types.ExportVm{This: ref})
	if err != nil {
		t.Fatal(err)
	}
	l := nfc.NewLease(c.Client, res.Returnval)
	info, err := l.Wait(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Abort(ctx, nil)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Get(info.DeviceUrl[0].Url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("download without a session: status %d", resp.StatusCode)
	}
}

// A logged-out session's cookie no longer downloads over NFC, as on
// vCenter; the lease it opened and the snapshot show in the state another
// process reads.
func TestLogoutEndsDownloadsAndStateLists(t *testing.T) {
	s, c := startDemo(t)
	ctx := context.Background()
	ref, _ := s.Ref("db-01")
	snap := snapshot(t, c, object.NewVirtualMachine(c.Client, ref), "rehost-run-1")
	res, err := methods.ExportSnapshot(ctx, c.Client, &types.ExportSnapshot{This: snap})
	if err != nil {
		t.Fatal(err)
	}
	info, err := nfc.NewLease(c.Client, res.Returnval).Wait(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	du, _ := url.Parse(info.DeviceUrl[0].Url)
	rc, _, err := c.Client.Download(ctx, du, &soap.DefaultDownload)
	if err != nil {
		t.Fatalf("download while logged in: %v", err)
	}
	rc.Close()
	st, err := FetchState(ctx, s.URL(), s.Thumbprint())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.OpenLeases) != 1 || st.OpenLeases[0].VM != "db-01" || len(st.Snapshots["db-01"]) != 1 || st.Snapshots["db-01"][0] != "rehost-run-1" {
		t.Fatalf("state %+v", st)
	}
	if _, err := FetchState(ctx, s.URL(), "AA:BB"); err == nil {
		t.Fatal("a wrong thumbprint was accepted")
	}
	if err := c.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Client.Download(ctx, du, &soap.DefaultDownload); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("download with a logged-out cookie: %v", err)
	}
}
