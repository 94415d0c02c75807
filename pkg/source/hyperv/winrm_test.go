package hyperv_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/hypervsim"
	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/hyperv"
)

// The real WinRM client against the WS-Management test server: every
// operation opens a shell, runs one command, reads its output, ends it and
// deletes the shell; NTLM authenticates the connection; no command is
// anything but one of rehost's scripts.
func TestWinRMProtocol(t *testing.T) {
	l := newLab(t)
	s, sub := l.sim(t, hypervsim.Options{Password: l.smb.Password})
	l.vm(t, s, "app-01", true)
	src := connect(t, l.config(s, sub))
	ctx := context.Background()
	if _, err := src.Inventory(ctx); err != nil {
		t.Fatal(err)
	}
	c := s.Counts()
	if c["wsman:Create"] != 2 || c["wsman:Command"] != 2 || c["wsman:Delete"] != 2 || c["wsman:Signal"] < 2 || c["wsman:Receive"] < 2 {
		t.Fatalf("operations: %v", c)
	}
	if n := s.OpenShells(); n != 0 {
		t.Fatalf("%d shells left open", n)
	}
	if v := s.Violations(); len(v) != 0 {
		t.Fatalf("violations: %v", v)
	}
	if ev := s.AuthEvents(); len(ev) == 0 || !slices.Contains(ev, "ntlm ok") || slices.ContainsFunc(ev, func(e string) bool { return strings.HasPrefix(e, "basic") }) {
		t.Fatalf("authentication: %v", ev)
	}
	if calls := s.Calls(); calls["hv-inventory"] != 2 {
		t.Fatalf("scripts: %v", calls)
	}
}

// A command that outlives WinRM's operation timeout is polled again until
// it ends; cancelling the caller ends the command and deletes its shell.
func TestSlowCommandsAndCancel(t *testing.T) {
	l := newLab(t)
	s, sub := l.sim(t, hypervsim.Options{Password: l.smb.Password, OperationTimeout: 100 * time.Millisecond, Delay: 300 * time.Millisecond})
	id := l.vm(t, s, "app-01", true)
	src := connect(t, l.config(s, sub))
	if _, err := src.VM(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if s.Counts()["wsman:ReceiveTimedOut"] == 0 {
		t.Fatal("no Receive timed out: the slow path is not exercised")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := src.Checkpoint(ctx, id, "rehost-cancelled"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled checkpoint: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.OpenShells() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := s.OpenShells(); n != 0 {
		t.Fatalf("%d shells left open after a cancel", n)
	}
}

func TestAuthentication(t *testing.T) {
	l := newLab(t)
	s, sub := l.sim(t, hypervsim.Options{Password: l.smb.Password})
	ctx := context.Background()

	bad := l.config(s, sub)
	bad.Password = "wrong-" + bad.Password
	_, err := hyperv.New(ctx, bad)
	if !errors.Is(err, source.ErrAuth) || strings.Contains(err.Error(), bad.Password) {
		t.Fatalf("wrong password: %v", err)
	}
	if ev := s.AuthEvents(); !slices.Contains(ev, "ntlm refused: wrong password") {
		t.Fatalf("the server did not refuse an NTLM proof: %v", ev)
	}

	// Basic is sent only when chosen, and this host, as Windows by
	// default, does not allow it.
	basic := l.config(s, sub)
	basic.Auth = hyperv.AuthBasic
	if _, err := hyperv.New(ctx, basic); !errors.Is(err, source.ErrAuth) {
		t.Fatalf("basic refused by the host: %v", err)
	}
	if _, err := hyperv.New(ctx, hyperv.Config{Endpoint: s.Addr(""), User: "u", Password: "p", Auth: "digest", Insecure: true}); err == nil {
		t.Fatal("an unknown scheme was accepted")
	}

	// A host allowing Basic over its TLS listener.
	sb, subb := l.sim(t, hypervsim.Options{Password: l.smb.Password, AllowBasic: true})
	cfg := l.config(sb, subb)
	cfg.Auth = hyperv.AuthBasic
	src := connect(t, cfg)
	if _, err := src.Inventory(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := sb.AuthEvents(); !slices.Contains(ev, "basic ok") || slices.Contains(ev, "ntlm ok") {
		t.Fatalf("basic: %v", ev)
	}
	cfg.Password = "nope"
	if _, err := hyperv.New(ctx, cfg); !errors.Is(err, source.ErrAuth) {
		t.Fatalf("basic, wrong password: %v", err)
	}
}

func TestCertificates(t *testing.T) {
	l := newLab(t)
	s, sub := l.sim(t, hypervsim.Options{Password: l.smb.Password})
	other, _ := l.sim(t, hypervsim.Options{Password: l.smb.Password})
	ctx := context.Background()
	cfg := l.config(s, sub)

	untrusted := cfg
	untrusted.Thumbprint = ""
	_, err := hyperv.New(ctx, untrusted)
	var ce *hyperv.CertificateError
	if !errors.Is(err, source.ErrCertificate) || !errors.As(err, &ce) || ce.Presented != s.Thumbprint("") {
		t.Fatalf("untrusted: %v", err)
	}
	if tp, err := hyperv.FetchThumbprint(ctx, s.Addr("")); err != nil || tp != s.Thumbprint("") {
		t.Fatalf("FetchThumbprint = %q, %v", tp, err)
	}
	for name, c := range map[string]func(*hyperv.Config){
		"sha256 bare": func(c *hyperv.Config) { c.Thumbprint = strings.ToLower(strings.ReplaceAll(s.Thumbprint(""), ":", "")) },
		"insecure":    func(c *hyperv.Config) { c.Thumbprint, c.Insecure = "", true },
		"ca":          func(c *hyperv.Config) { c.Thumbprint, c.CA = "", s.CertificatePEM("") },
	} {
		cc := cfg
		c(&cc)
		src, err := hyperv.New(ctx, cc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		src.Close()
	}
	changed := cfg
	changed.Endpoint = other.Addr("")
	_, err = hyperv.New(ctx, changed)
	if !errors.As(err, &ce) || ce.Expected != s.Thumbprint("") || ce.Presented != other.Thumbprint("") {
		t.Fatalf("changed certificate: %v", err)
	}
}

// What a host refuses to checkpoint, and a checkpoint Hyper-V fails to
// take, end with the reason and no checkpoint; a guest without
// integration services gets a standard checkpoint, said so.
func TestCheckpointRefusalsAndFailures(t *testing.T) {
	l := newLab(t)
	s, sub := l.sim(t, hypervsim.Options{Password: l.smb.Password})
	src := connect(t, l.config(s, sub))
	ctx := context.Background()
	add := func(name string, d ...hypervsim.DiskSpec) string {
		id, err := s.AddVM(hypervsim.VMSpec{Name: name, Running: true, IntegrationServices: true, Disks: append([]hypervsim.DiskSpec{{Image: l.base["data.vhdx"]}}, d...)})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	for name, c := range map[string]struct {
		id   string
		want string
	}{
		"pass-through": {add("pt", hypervsim.DiskSpec{PassThrough: true}), "a pass-through disk cannot be checkpointed"},
		"shared":       {add("shared", hypervsim.DiskSpec{Image: l.base["logs.vhd"], Shared: true}), "shared virtual disks"},
	} {
		_, err := src.Checkpoint(ctx, c.id, "rehost-x")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	id := add("busy")
	s.SetStatus("busy", "Merging disks (42%)")
	if _, err := src.Checkpoint(ctx, id, "rehost-x"); err == nil || !strings.Contains(err.Error(), "merge is in progress") {
		t.Errorf("merging: %v", err)
	}
	s.SetStatus("busy", "Operating normally")
	s.FailCheckpoint("Checkpoint operation for 'busy' failed. Not enough disk space.")
	if _, err := src.Checkpoint(ctx, id, "rehost-x"); err == nil || !strings.Contains(err.Error(), "Not enough disk space") {
		t.Errorf("failed checkpoint: %v", err)
	}
	for _, vm := range []string{"pt", "shared", "busy"} {
		if cps, _ := s.Checkpoints(vm); len(cps) != 0 {
			t.Errorf("%s: checkpoints left: %v", vm, cps)
		}
	}
	if f := s.DiffFiles(); len(f) != 0 {
		t.Errorf("differencing disks left: %v", f)
	}

	noTools := l.vm(t, s, "no-tools", false)
	cp, err := src.Checkpoint(ctx, noTools, "rehost-std")
	if err != nil || cp.Quiesced {
		t.Fatalf("standard fallback: %+v, %v", cp, err)
	}
	if err := src.Release(ctx, cp); err != nil {
		t.Fatal(err)
	}
}

// A checkpoint taken while older checkpoints exist freezes a differencing
// disk: its export merges the chain (base + the older checkpoint's disk)
// and reads from the share only what the files hold.
func TestExportMergesOlderChainReadingAllocatedOnly(t *testing.T) {
	l := newLab(t)
	s, sub := l.sim(t, hypervsim.Options{Password: l.smb.Password})
	id := l.vm(t, s, "app-01", true)
	src := connect(t, l.config(s, sub))
	ctx := context.Background()
	manual, err := src.Checkpoint(ctx, id, "before patching")
	if err != nil {
		t.Fatal(err)
	}
	// Written after the manual checkpoint: in its differencing disks.
	for i := range 2 {
		if err := s.WriteDisk("app-01", i, 5*mib, bytes.Repeat([]byte{0xA5}, 64<<10)); err != nil {
			t.Fatal(err)
		}
	}
	want := [][]byte{readDisk(t, s, "app-01", 0), readDisk(t, s, "app-01", 1)}
	cp, err := src.Checkpoint(ctx, id, "rehost-run")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteDisk("app-01", 0, 0, bytes.Repeat([]byte{0xFF}, 4096)); err != nil {
		t.Fatal(err)
	}
	before, _ := l.smb.Reads()
	ex, err := src.Export(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range ex.Disks() {
		if d.Format != disk.VMDK {
			t.Fatalf("disk %d streams as %s", i, d.Format)
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
			t.Fatalf("disk %d: the export differs from the disk at checkpoint time", i)
		}
	}
	if err := ex.Close(nil); err != nil {
		t.Fatal(err)
	}
	after, _ := l.smb.Reads()
	perFile := map[string]int64{}
	for _, r := range after[len(before):] {
		perFile[r.File] += r.Bytes
	}
	// Each file is read for its headers and tables (a few hundred KiB at
	// most) and its allocated blocks, never more: the dynamic VHDX's one
	// block, the differencing disks' present sectors, the fixed VHD's
	// data (all of it allocated) once.
	const overhead = 256 << 10
	for f, n := range perFile {
		img, closer, err := disk.OpenFile(filepath.Join(l.smb.ShareDir("vms"), f))
		alloc := int64(-1)
		if err == nil {
			alloc = img.Info().AllocatedBytes
			if img.Info().Subformat == "fixed" {
				alloc = img.Size() // every block of a fixed disk is allocated
			}
			closer.Close()
		} else if st, serr := os.Stat(filepath.Join(l.smb.ShareDir("vms"), f)); serr == nil {
			alloc = st.Size() // a differencing disk alone: bound by its file
		}
		t.Logf("%s: read %d bytes, %d allocated", f, n, alloc)
		if alloc < 0 || n > alloc+overhead {
			t.Errorf("%s: read %d bytes, more than its %d allocated", f, n, alloc)
		}
	}
	if len(perFile) != 4 {
		t.Errorf("read %d files, want 2 bases and 2 differencing disks: %v", len(perFile), perFile)
	}
	for _, c := range []source.Checkpoint{cp, manual} {
		if err := src.Release(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if f := s.DiffFiles(); len(f) != 0 {
		t.Errorf("differencing disks left after both releases: %v", f)
	}
	if got := readDisk(t, s, "app-01", 0); got[0] != 0xFF || got[5*mib] != 0xA5 {
		t.Error("the merges lost the guest's writes")
	}
}

func readDisk(t *testing.T, s *hypervsim.Sim, vm string, i int) []byte {
	t.Helper()
	n, err := s.DiskSize(vm, i)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if _, err := s.ReadDisk(vm, i, 0, b); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return b
}

// A path mapped to a share that does not exist fails the export with the
// share named; the checkpoint is still released.
func TestMissingShare(t *testing.T) {
	l := newLab(t)
	s, sub := l.sim(t, hypervsim.Options{Password: l.smb.Password})
	id := l.vm(t, s, "app-01", true)
	cfg := l.config(s, sub)
	cfg.Shares = []hyperv.Share{{Prefix: `C:\Hyper-V`, Share: "NoSuchShare"}}
	src := connect(t, cfg)
	ctx := context.Background()
	cp, err := src.Checkpoint(ctx, id, "rehost-x")
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Export(ctx, cp)
	if err == nil || !strings.Contains(err.Error(), `\NoSuchShare`) || !strings.Contains(err.Error(), "share") {
		t.Fatalf("export through a missing share: %v", err)
	}
	// No mapping: the admin share C$, which this Samba does not have.
	cfg.Shares = nil
	src2 := connect(t, cfg)
	if _, err := src2.Export(ctx, cp); err == nil || !strings.Contains(err.Error(), "administrative share C$") {
		t.Fatalf("export through the admin share: %v", err)
	}
	if err := src.Release(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if cps, _ := s.Checkpoints("app-01"); len(cps) != 0 {
		t.Fatalf("checkpoints left: %v", cps)
	}
}

// SCVMM: inventory with host groups, checkpoints through VMM, and the
// export follows the VM to the host running it now.
func TestSCVMM(t *testing.T) {
	l := newLab(t)
	s, sub := l.sim(t, hypervsim.Options{Password: l.smb.Password, Nodes: []string{"HV-N1", "HV-N2"}})
	l.vm(t, s, "app-01", true)
	vmmID := s.VMMID("app-01")
	cfg := l.config(s, sub)
	cfg.Manager = hyperv.ManagerSCVMM
	// Each node's SMB server; HV-N1's address is dead, so reading through
	// it fails: the export must go to HV-N2, where the VM moved.
	cfg.Shares = []hyperv.Share{{Prefix: `C:\Hyper-V`, Share: `vms\` + sub}}
	cfg.Nodes = map[string]hyperv.Node{"HV-N1": {SMBAddress: "127.0.0.1:1"}, "HV-N2": {SMBAddress: l.smb.Addr}}
	src := connect(t, cfg)
	ctx := context.Background()
	vms, err := src.Inventory(ctx)
	if err != nil || len(vms) != 1 {
		t.Fatalf("%+v %v", vms, err)
	}
	v := vms[0]
	if v.ID != vmmID || v.ManagerType != hyperv.ManagerSCVMM || v.Host != "HV-N1" || v.Path != "/All Hosts/Lab/HV-N1/app-01" || len(v.Disks) != 2 {
		t.Fatalf("vm %+v", v)
	}
	cp, err := src.Checkpoint(ctx, vmmID, "rehost-vmm")
	if err != nil || !cp.Quiesced {
		t.Fatalf("checkpoint %+v, %v", cp, err)
	}
	if err := s.Migrate("app-01", "HV-N2"); err != nil {
		t.Fatal(err)
	}
	ex, err := src.Export(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ex.Open(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	ex.Close(err)
	if err != nil {
		t.Fatal(err)
	}
	list, err := src.Checkpoints(ctx, vmmID, "rehost-")
	if err != nil || len(list) != 1 || list[0] != cp {
		t.Fatalf("checkpoints %+v, %v", list, err)
	}
	if err := src.Release(ctx, source.Checkpoint{VMID: vmmID, Name: "rehost-vmm"}); err != nil { // by name, as after a crash
		t.Fatal(err)
	}
	if cps, _ := s.Checkpoints("app-01"); len(cps) != 0 {
		t.Fatalf("left: %v", cps)
	}
	if calls := s.Calls(); calls["vmm-checkpoint"] != 1 || calls["hv-checkpoint"] != 0 {
		t.Fatalf("scripts: %v", calls)
	}
}

// A failover cluster: the VM runs on the second node; operations follow
// it there, and again when it moves back.
func TestClusterFollowsOwnerNode(t *testing.T) {
	l := newLab(t)
	s, sub := l.sim(t, hypervsim.Options{Password: l.smb.Password, Nodes: []string{"HV-N1", "HV-N2"}})
	id, err := s.AddVM(hypervsim.VMSpec{Name: "app-01", Node: "HV-N2", Running: true, IntegrationServices: true,
		Disks: []hypervsim.DiskSpec{{Image: l.base["data.vhdx"]}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := l.config(s, sub)
	cfg.Shares = []hyperv.Share{{Prefix: `C:\Hyper-V`, Share: `vms\` + sub}}
	cfg.Nodes = map[string]hyperv.Node{
		"HV-N1": {Address: s.Addr("HV-N1"), SMBAddress: l.smb.Addr},
		"HV-N2": {Address: s.Addr("HV-N2"), SMBAddress: l.smb.Addr, Thumbprint: s.Thumbprint("HV-N2")},
	}
	src := connect(t, cfg)
	ctx := context.Background()
	v, err := src.VM(ctx, id)
	if err != nil || v.Host != "HV-N2" || v.Path != "/HV-N2/app-01" {
		t.Fatalf("%+v %v", v, err)
	}
	cp, err := src.Checkpoint(ctx, id, "rehost-c")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate("app-01", "HV-N1"); err != nil {
		t.Fatal(err)
	}
	ex, err := src.Export(ctx, cp)
	if err != nil {
		t.Fatalf("export after the vm moved: %v", err)
	}
	ex.Close(nil)
	if err := src.Release(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if cps, _ := s.Checkpoints("app-01"); len(cps) != 0 {
		t.Fatalf("left: %v", cps)
	}
}

// BenchmarkExportOverSMB streams a checkpoint's disks (an 8 MiB dynamic
// VHDX holding 2 MiB, a 16 MiB fixed VHD) from Samba through the chain
// reader and the VMDK encoder; bytes are virtual.
func BenchmarkExportOverSMB(b *testing.B) {
	l := newLab(b)
	sub := "bench"
	s, err := hypervsim.Start(hypervsim.Options{Password: l.smb.Password, Dir: filepath.Join(l.smb.ShareDir("vms"), sub)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	id, err := s.AddVM(hypervsim.VMSpec{Name: "bench", Running: true, IntegrationServices: true,
		Disks: []hypervsim.DiskSpec{{Image: l.base["data.vhdx"]}, {Image: l.base["logs.vhd"]}}})
	if err != nil {
		b.Fatal(err)
	}
	src, err := hyperv.New(context.Background(), l.config(s, sub))
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	ctx := context.Background()
	cp, err := src.Checkpoint(ctx, id, "rehost-bench")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(24 * mib)
	b.ResetTimer()
	for range b.N {
		ex, err := src.Export(ctx, cp)
		if err != nil {
			b.Fatal(err)
		}
		for i := range ex.Disks() {
			rc, err := ex.Open(ctx, i)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
		ex.Close(nil)
	}
	b.StopTimer()
	src.Release(ctx, cp)
}

// Kerberos needs a realm and a krb5.conf; without them the source says so
// before sending anything. (No KDC is at hand to test a ticket exchange.)
func TestKerberosConfiguration(t *testing.T) {
	for _, c := range []struct {
		cfg  hyperv.Config
		want string
	}{
		{hyperv.Config{Endpoint: "hv01", User: "svc", Password: "p", Auth: hyperv.AuthKerberos}, "needs a realm"},
		{hyperv.Config{Endpoint: "hv01", User: `CORP\svc`, Password: "p", Auth: hyperv.AuthKerberos,
			Kerberos: hyperv.Kerberos{Config: filepath.Join(t.TempDir(), "missing-krb5.conf")}}, "missing-krb5.conf"},
	} {
		if _, err := hyperv.New(context.Background(), c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg.Kerberos, err, c.want)
		}
	}
}
