package vsphere

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/sourcetest"
)

const mib = 1 << 20

func testVMs() []vspheresim.VMSpec {
	return []vspheresim.VMSpec{
		{Name: "app-01", GuestID: "ubuntu64Guest", Firmware: "efi", CPUs: 2, MemoryMiB: 2048,
			PowerOn: true, ToolsRunning: true, CBT: true, NICs: 2,
			Disks: []vspheresim.DiskSpec{{CapacityBytes: 8 * mib}, {CapacityBytes: 16 * mib}}},
		{Name: "crash-01", GuestID: "rhel8_64Guest", PowerOn: true,
			Disks: []vspheresim.DiskSpec{{CapacityBytes: 4 * mib}, {CapacityBytes: 4 * mib}}},
	}
}

func startSim(t testing.TB, vms []vspheresim.VMSpec) *vspheresim.Sim {
	t.Helper()
	// Few areas per QueryChangedDiskAreas answer, so that clients page.
	sim, err := vspheresim.Start(context.Background(), vspheresim.Options{VMs: vms, Dir: t.TempDir(), MaxChangedAreas: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

func connect(t testing.TB, sim *vspheresim.Sim) *Source {
	t.Helper()
	s, err := New(context.Background(), Config{URL: sim.URL(), User: sim.User(), Password: sim.Password(), Thumbprint: sim.Thumbprint()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T) sourcetest.Harness {
		// old-01's hardware is too old for changed block tracking.
		sim := startSim(t, append(testVMs(), vspheresim.VMSpec{Name: "old-01", GuestID: "rhel6_64Guest", HardwareVersion: "vmx-04",
			Disks: []vspheresim.DiskSpec{{CapacityBytes: 4 * mib}}}))
		s := connect(t, sim)
		id, _ := sim.InstanceUUID("app-01")
		untracked, _ := sim.InstanceUUID("crash-01")
		untrackable, _ := sim.InstanceUUID("old-01")
		return sourcetest.Harness{
			Source:          s,
			VMID:            id,
			UntrackedVMID:   untracked,
			UntrackableVMID: untrackable,
			ResetTracking:   func() error { return sim.ResetCBT("app-01") },
			ResizeDisk:      func(i int, size int64) error { return sim.ResizeDisk("app-01", i, size) },
			Want: source.VM{
				Name: "app-01", Path: "/DC0/vm/app-01", GuestOS: "ubuntu64Guest", CPUs: 2, MemoryMiB: 2048,
				Firmware: source.FirmwareEFI, PowerState: "poweredOn", ToolsRunning: true, CBTEnabled: true,
				Disks: []source.Disk{{CapacityBytes: 8 * mib}, {CapacityBytes: 16 * mib}},
				NICs:  []source.NIC{{Network: "VM Network", Type: "vmxnet3"}, {Network: "VM Network", Type: "vmxnet3"}},
			},
			WriteDisk:   func(i int, off int64, p []byte) error { return sim.WriteDisk("app-01", i, off, p) },
			ReadDisk:    func(i int, off int64, p []byte) (int, error) { return sim.ReadDisk("app-01", i, off, p) },
			FailExport:  func(i int, n int64) error { return sim.FailExport("app-01", i, n) },
			OpenExports: sim.OpenLeases,
		}
	})
}

// TestEndToEnd: two disks of known content, one mostly empty, through
// snapshot, export and release; then a failure injected mid-export leaves
// neither a snapshot nor an open lease.
func TestEndToEnd(t *testing.T) {
	sim := startSim(t, testVMs())
	s := connect(t, sim)
	ctx := context.Background()
	id, _ := sim.InstanceUUID("app-01")

	if err := vspheresim.PseudoRandom(writerAt{sim, "app-01", 0}, 7, 0, 3*mib); err != nil {
		t.Fatal(err)
	}
	if err := sim.WriteDisk("app-01", 1, 9*mib, []byte("the only data on the second disk")); err != nil {
		t.Fatal(err)
	}
	want := [][]byte{live(t, sim, "app-01", 0), live(t, sim, "app-01", 1)}

	cp, err := s.Checkpoint(ctx, id, "rehost-e2e")
	if err != nil {
		t.Fatal(err)
	}
	if !cp.Quiesced {
		t.Error("tools run in the guest, yet the checkpoint is not quiesced")
	}
	if err := sim.WriteDisk("app-01", 0, 0, bytes.Repeat([]byte{0xFF}, 4096)); err != nil {
		t.Fatal(err)
	}
	ex, err := s.Export(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range ex.Disks() {
		if d.Format != disk.VMDK || d.StreamSize != -1 {
			t.Errorf("disk %d: format %q stream size %d", i, d.Format, d.StreamSize)
		}
		rc, err := ex.Open(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		sr, err := disk.NewStreamOptimizedReader(rc)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(sr)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want[i]) {
			t.Fatalf("disk %d: exported bytes differ from the seeded content", i)
		}
		if i == 1 && (len(d.Extents) != 1 || d.Extents[0].Offset != 9*mib || d.Extents[0].Length != 512) {
			t.Errorf("mostly empty disk: extents %v, want the one sector written", d.Extents)
		}
	}
	if err := ex.Close(nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if names, _ := sim.Snapshots("app-01"); len(names) != 0 || sim.SnapshotFiles() != 0 {
		t.Fatalf("snapshots left: %v (%d files)", names, sim.SnapshotFiles())
	}
	if open, completed, _ := sim.LeaseCounts(); open != 0 || completed != 1 {
		t.Fatalf("leases open %d completed %d", open, completed)
	}

	// A failure mid-export: the caller aborts the export and releases the
	// checkpoint, as the replication run's undo does.
	cp, err = s.Checkpoint(ctx, id, "rehost-e2e-fail")
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.FailExport("app-01", 0, 200<<10); err != nil {
		t.Fatal(err)
	}
	ex, err = s.Export(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ex.Open(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := disk.NewStreamOptimizedReader(rc)
	if err == nil {
		_, err = io.Copy(io.Discard, sr)
	}
	rc.Close()
	if err == nil {
		t.Fatal("export survived the injected failure")
	}
	if cerr := ex.Close(err); cerr != nil {
		t.Fatal(cerr)
	}
	if err := s.Release(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if names, _ := sim.Snapshots("app-01"); len(names) != 0 {
		t.Fatalf("snapshots left: %v", names)
	}
	if open, _, aborted := sim.LeaseCounts(); open != 0 || aborted != 1 {
		t.Fatalf("leases open %d aborted %d", open, aborted)
	}
}

func TestCrashConsistentWithoutTools(t *testing.T) {
	sim := startSim(t, testVMs())
	s := connect(t, sim)
	id, _ := sim.InstanceUUID("crash-01")
	cp, err := s.Checkpoint(context.Background(), id, "rehost-c")
	if err != nil {
		t.Fatal(err)
	}
	if cp.Quiesced {
		t.Error("quiesced without tools")
	}
	vm, err := s.VM(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if vm.CBTEnabled || vm.ToolsRunning || vm.Firmware != source.FirmwareBIOS {
		t.Errorf("crash-01: %+v", vm)
	}
	if _, err := s.ChangedAreas(context.Background(), cp, source.ChangeQuery{Disk: vm.Disks[0].Key}); !errors.Is(err, source.ErrNoTracking) || !strings.Contains(err.Error(), "changed block tracking is off") {
		t.Errorf("changed areas without cbt: %v", err)
	}
}

type writerAt struct {
	sim  *vspheresim.Sim
	vm   string
	disk int
}

func (w writerAt) WriteAt(p []byte, off int64) (int, error) {
	return len(p), w.sim.WriteDisk(w.vm, w.disk, off, p)
}

func live(t *testing.T, sim *vspheresim.Sim, vm string, i int) []byte {
	n, _ := sim.DiskCapacity(vm, i)
	b := make([]byte, n)
	if _, err := sim.ReadDisk(vm, i, 0, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBadPassword(t *testing.T) {
	sim := startSim(t, nil)
	_, err := New(context.Background(), Config{URL: sim.URL(), User: sim.User(), Password: "wrong-" + sim.Password(), Thumbprint: sim.Thumbprint()})
	if !errors.Is(err, source.ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if strings.Contains(err.Error(), sim.Password()) {
		t.Fatal("the error shows the password")
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = New(context.Background(), Config{URL: "https://" + addr + "/sdk", User: "u", Password: "p", Insecure: true, Timeout: 5 * time.Second})
	if !errors.Is(err, source.ErrUnreachable) {
		t.Fatalf("nothing listening: err = %v, want ErrUnreachable", err)
	}
	_, err = New(context.Background(), Config{URL: "https://vcenter.invalid/sdk", User: "u", Password: "p", Insecure: true, Timeout: 5 * time.Second})
	if !errors.Is(err, source.ErrUnreachable) {
		t.Fatalf("unknown host: err = %v, want ErrUnreachable", err)
	}
}

func TestCertificates(t *testing.T) {
	sim := startSim(t, nil)
	other := startSim(t, nil) // a different certificate
	ctx := context.Background()
	cfg := Config{URL: sim.URL(), User: sim.User(), Password: sim.Password()}

	// Default: verify against the system roots, which do not hold the
	// simulator's self-signed certificate.
	_, err := New(ctx, cfg)
	var ce *CertificateError
	if !errors.Is(err, source.ErrCertificate) || !errors.As(err, &ce) || ce.Presented != sim.Thumbprint() {
		t.Fatalf("untrusted certificate: err = %v", err)
	}

	// The thumbprint shown for acceptance is the one served.
	tp, err := FetchThumbprint(ctx, sim.URL())
	if err != nil || tp != sim.Thumbprint() {
		t.Fatalf("FetchThumbprint = %q, %v; want %q", tp, err, sim.Thumbprint())
	}

	for name, c := range map[string]Config{
		"sha256":   {Thumbprint: sim.Thumbprint()},
		"sha1":     {Thumbprint: sim.ThumbprintSHA1()},
		"bare hex": {Thumbprint: strings.ToLower(strings.ReplaceAll(sim.Thumbprint(), ":", ""))},
		"insecure": {Insecure: true},
		"ca":       {CA: sim.CertificatePEM()},
	} {
		c.URL, c.User, c.Password = cfg.URL, cfg.User, cfg.Password
		s, err := New(ctx, c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := s.Inventory(ctx); err != nil {
			t.Fatalf("%s: inventory: %v", name, err)
		}
		s.Close()
	}

	// The certificate changed: the pinned thumbprint no longer matches.
	_, err = New(ctx, Config{URL: other.URL(), User: other.User(), Password: other.Password(), Thumbprint: sim.Thumbprint()})
	if !errors.Is(err, source.ErrCertificate) || !errors.As(err, &ce) {
		t.Fatalf("changed certificate: err = %v", err)
	}
	if ce.Expected != sim.Thumbprint() || ce.Presented != other.Thumbprint() ||
		!strings.Contains(err.Error(), sim.Thumbprint()) || !strings.Contains(err.Error(), other.Thumbprint()) {
		t.Fatalf("the error must name both thumbprints: %v", err)
	}
	if _, err := New(ctx, Config{URL: sim.URL(), Thumbprint: "not-a-thumbprint"}); err == nil {
		t.Fatal("malformed thumbprint accepted")
	}
}

type countingTransport struct {
	rt http.RoundTripper
	n  atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}

// TestInventoryRoundTrips: the inventory of 300 VMs costs a few round
// trips and one per page of VMs, not one per VM.
func TestInventoryRoundTrips(t *testing.T) {
	var vms []vspheresim.VMSpec
	for i := range 300 {
		vms = append(vms, vspheresim.VMSpec{Name: fmt.Sprintf("vm-%03d", i), Disks: []vspheresim.DiskSpec{{CapacityBytes: mib}}, CBT: i%2 == 0})
	}
	sim := startSim(t, vms)
	s := connect(t, sim)
	ct := &countingTransport{rt: s.c.HTTP.Transport}
	s.c.HTTP.Transport = ct
	list, err := s.Inventory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 300 {
		t.Fatalf("%d vms, want 300", len(list))
	}
	t.Logf("inventory of %d vms: %d round trips", len(list), ct.n.Load())
	// The view made and destroyed, its folders and networks, and the VMs
	// in pages of inventoryPage.
	if n, want := ct.n.Load(), int64(3+(300+inventoryPage-1)/inventoryPage); n > want {
		t.Fatalf("inventory of 300 vms took %d round trips, want at most %d", n, want)
	}
	ids := map[string]bool{}
	for i, vm := range list {
		if ids[vm.ID] {
			t.Fatalf("duplicate id %s", vm.ID)
		}
		ids[vm.ID] = true
		want := fmt.Sprintf("vm-%03d", i)
		if vm.Name != want || vm.Path != "/DC0/vm/"+want || len(vm.Disks) != 1 || vm.Disks[0].CapacityBytes != mib ||
			vm.CBTEnabled != (i%2 == 0) || len(vm.NICs) != 1 || vm.NICs[0].Network != "VM Network" || vm.Disks[0].Controller != "scsi0:0" ||
			!strings.HasPrefix(vm.Disks[0].Backing, "[LocalDS_0] ") {
			t.Fatalf("vm %d: %+v", i, vm)
		}
	}
}

func BenchmarkInventory300(b *testing.B) {
	var vms []vspheresim.VMSpec
	for i := range 300 {
		vms = append(vms, vspheresim.VMSpec{Name: fmt.Sprintf("vm-%03d", i), Disks: []vspheresim.DiskSpec{{CapacityBytes: mib}}})
	}
	sim := startSim(b, vms)
	s := connect(b, sim)
	b.ResetTimer()
	for range b.N {
		if _, err := s.Inventory(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLeaseKeptAlive: the simulator expires a lease after 3 s without a
// progress call, as vCenter does after its timeout; the export's lease
// updater keeps it alive across a pause longer than that.
func TestLeaseKeptAlive(t *testing.T) {
	sim, err := vspheresim.Start(context.Background(), vspheresim.Options{VMs: testVMs(), Dir: t.TempDir(), LeaseTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	s := connect(t, sim)
	ctx := context.Background()
	id, _ := sim.InstanceUUID("app-01")
	cp, err := s.Checkpoint(ctx, id, "rehost-slow")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := s.Export(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(7 * time.Second)
	for i := range ex.Disks() {
		rc, err := ex.Open(ctx, i)
		if err != nil {
			t.Fatalf("disk %d after a pause: %v", i, err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	if err := ex.Close(nil); err != nil {
		t.Fatal(err)
	}
	if sim.ExpiredLeases() != 0 {
		t.Fatal("the lease expired")
	}
	if err := s.Release(ctx, cp); err != nil {
		t.Fatal(err)
	}
}

// TestRelogin: a lost session (vCenter restarted, session expired) is
// logged in again transparently.
func TestRelogin(t *testing.T) {
	sim := startSim(t, testVMs())
	s := connect(t, sim)
	ctx := context.Background()
	if err := s.c.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	vms, err := s.Inventory(ctx)
	if err != nil || len(vms) != 2 {
		t.Fatalf("inventory after the session was lost: %d vms, %v", len(vms), err)
	}
}

// BenchmarkExport streams a 64 MiB disk (half pseudo-random, half empty)
// from snapshot through the NFC lease and decodes it; bytes are virtual.
func BenchmarkExport(b *testing.B) {
	sim := startSim(b, []vspheresim.VMSpec{{Name: "bench", PowerOn: true, Disks: []vspheresim.DiskSpec{{CapacityBytes: 64 * mib,
		Seed: func(w io.WriterAt) error { return vspheresim.PseudoRandom(w, 1, 0, 32*mib) }}}}})
	s := connect(b, sim)
	ctx := context.Background()
	id, _ := sim.InstanceUUID("bench")
	cp, err := s.Checkpoint(ctx, id, "rehost-bench")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(64 * mib)
	b.ResetTimer()
	for range b.N {
		ex, err := s.Export(ctx, cp)
		if err != nil {
			b.Fatal(err)
		}
		rc, err := ex.Open(ctx, 0)
		if err != nil {
			b.Fatal(err)
		}
		sr, err := disk.NewStreamOptimizedReader(rc)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, sr); err != nil {
			b.Fatal(err)
		}
		rc.Close()
		if err := ex.Close(nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDatacenterFilter(t *testing.T) {
	sim := startSim(t, testVMs())
	ctx := context.Background()
	for dc, want := range map[string]int{"DC0": 2, "DC9": 0} {
		s, err := New(ctx, Config{URL: sim.URL(), User: sim.User(), Password: sim.Password(), Insecure: true, Datacenter: dc})
		if err != nil {
			t.Fatal(err)
		}
		vms, err := s.Inventory(ctx)
		s.Close()
		if err != nil || len(vms) != want {
			t.Fatalf("datacenter %s: %d vms, %v; want %d", dc, len(vms), err, want)
		}
	}
}

// TestAbortExportLeftOpen: a process killed mid-export leaves its NFC lease
// open; a new connection aborts it by the recorded id, at once rather than
// at vCenter's timeout.
func TestAbortExportLeftOpen(t *testing.T) {
	sim := startSim(t, testVMs())
	ctx := context.Background()
	killed := connect(t, sim)
	id, _ := sim.InstanceUUID("app-01")
	cp, err := killed.Checkpoint(ctx, id, "rehost-killed")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := killed.Export(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	lease := ex.ID()
	if lease == "" || sim.OpenLeases() != 1 {
		t.Fatalf("export id %q, %d open leases; want an id and 1", lease, sim.OpenLeases())
	}
	// The process dies: nothing closes ex. The restarted one aborts it.
	restarted := connect(t, sim)
	var ab source.ExportAborter = restarted
	if err := ab.AbortExport(ctx, cp, lease); err != nil {
		t.Fatal(err)
	}
	if n := sim.OpenLeases(); n != 0 {
		t.Fatalf("%d leases open after the abort", n)
	}
	if err := ab.AbortExport(ctx, cp, lease); err != nil {
		t.Fatalf("aborting an ended lease: %v", err)
	}
	if err := restarted.Release(ctx, cp); err != nil {
		t.Fatal(err)
	}
}
