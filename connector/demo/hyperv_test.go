package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/internal/lab/hypervsim"
	"github.com/rehost/rehost/internal/lab/smbpeer"
	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source/hyperv"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
	"github.com/rehost/rehost/scheduler"
)

// hvLab is a Hyper-V host (the WS-Management simulator), Samba serving its
// VM files, S3 and the AWS emulator, and a connector registered with them.
type hvLab struct {
	peers    *Peers
	smb      *smbpeer.Server
	sim      *hypervsim.Sim
	vmID     string
	fixtures []hvFixture
	stateDir string
	bucket   string
}

// hvFixture is a disk of the VM: the guest disk and its image on the host.
type hvFixture struct {
	raw, image string
	size       int64
	sha256     string
}

const hvVM = "web-01"

// newHVLab builds the VM's two disks from real guest disks (a UEFI boot
// disk with GPT, an ESP and ext4 holding /etc/os-release, and a data
// disk, 64 MiB each, mostly empty) converted by qemu-img to what Hyper-V
// keeps: a dynamic VHDX and a fixed VHD.
func newHVLab(t *testing.T, o hypervsim.Options) *hvLab {
	t.Helper()
	return newHVLabWith(t, o, []hvDisk{
		{guestdisk.Options{Size: 64 << 20, Firmware: guestdisk.EFI, DataBytes: 6 << 20, Seed: 11}, "boot.vhdx", vhdxDynamic},
		{guestdisk.Options{Size: 64 << 20, DataBytes: 3 << 20, Seed: 12}, "data.vhd", []string{"-O", "vpc", "-o", "subformat=fixed,force_size=on"}},
	})
}

// hvDisk is a disk of the lab's VM: the guest disk, and the name and
// qemu-img output options of its file on the host.
type hvDisk struct {
	opts   guestdisk.Options
	name   string
	format []string
}

var vhdxDynamic = []string{"-O", "vhdx", "-o", "subformat=dynamic"}

// newHVLabWith is newHVLab with the VM's disks given.
func newHVLabWith(t *testing.T, o hypervsim.Options, disks []hvDisk) *hvLab {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	peers, err := StartPeers(ctx, PeerOptions{Dir: filepath.Join(dir, "peers"), VMs: []vspheresim.VMSpec{}, ImportDuration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(peers.Close)
	smb, err := smbpeer.Start(ctx, smbpeer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { smb.Close() })
	o.Dir, o.Password = smb.ShareDir("vms"), smb.Password
	sim, err := hypervsim.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	l := &hvLab{peers: peers, smb: smb, sim: sim, stateDir: filepath.Join(dir, "state")}
	var specs []hypervsim.DiskSpec
	for i, d := range disks {
		raw := filepath.Join(dir, fmt.Sprintf("disk%d.raw", i))
		if _, err := guestdisk.Build(ctx, raw, d.opts); err != nil {
			t.Fatal(err)
		}
		img := filepath.Join(dir, d.name)
		args := append(append([]string{"convert", "-f", "raw"}, d.format...), raw, img)
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
		}
		sum, size := fileSHA256(t, raw)
		l.fixtures = append(l.fixtures, hvFixture{raw: raw, image: img, size: size, sha256: sum})
		specs = append(specs, hypervsim.DiskSpec{Image: img})
	}
	l.vmID, err = sim.AddVM(hypervsim.VMSpec{Name: hvVM, CPUs: 2, MemoryMiB: 4096, Running: true, IntegrationServices: true,
		SecureBoot: true, GuestOS: "Debian GNU/Linux 12 (bookworm)",
		Disks: specs,
		NICs:  []hypervsim.NICSpec{{Name: "Network Adapter", MAC: "00:15:5d:00:10:01", Switch: "External"}}})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func fileSHA256(t *testing.T, path string) (string, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// sourceInput adds the simulated host with its certificate pinned and
// its VM folder read through Samba (at smbPort, Samba's unless a test
// puts a proxy in between).
func (l *hvLab) sourceInput(name, share string, smbPort int) daemon.SourceInput {
	opts, _ := json.Marshal(hyperv.Options{SMBPort: smbPort, Shares: []hyperv.Share{{Prefix: `C:\Hyper-V`, Share: share}}})
	return daemon.SourceInput{Kind: store.SourceHyperV, Name: name, URL: l.sim.Addr(""), User: l.sim.User(),
		Password: l.sim.Password(), Thumbprint: l.sim.Thumbprint(""), Options: opts}
}

// open opens the connector's state, registered with the emulated account.
func (l *hvLab) open(t *testing.T) *daemon.Daemon {
	t.Helper()
	return l.openWith(t, daemon.Options{})
}

// openWith is open with options (the log and scheduler are the lab's).
func (l *hvLab) openWith(t *testing.T, o daemon.Options) *daemon.Daemon {
	t.Helper()
	ctx := context.Background()
	o.Log, o.Scheduler = slog.New(slog.DiscardHandler), scheduler.Options{OnDemandPer24h: -1, PauseAfterFailures: 10}
	d, err := daemon.Open(ctx, l.stateDir, o)
	if err != nil {
		t.Fatal(err)
	}
	d.Engine.RetryDelay = 50 * time.Millisecond
	settings, err := l.peers.AWSSettings()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := d.Register(ctx, settings, awstarget.SetupOptions{CreateRole: true})
	if err != nil {
		t.Fatal(err)
	}
	l.bucket = rep.Bucket
	return d
}

// job imports the source's catalog and schedules its VM.
func (l *hvLab) job(t *testing.T, d *daemon.Daemon, in daemon.SourceInput) store.ReplicationJob {
	t.Helper()
	ctx := context.Background()
	src, err := d.AddSource(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	servers, err := d.ImportCatalog(ctx, src.ID)
	if err != nil || len(servers) != 1 {
		t.Fatalf("catalog: %+v, %v", servers, err)
	}
	j, err := d.CreateJob(ctx, store.ReplicationJob{ServerID: servers[0].ServerID, SeedReplicationTime: time.Now(), Frequency: 24,
		LicenseType: store.LicenseBYOL})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func waitRun(t *testing.T, st store.Store, jobID, after string) store.ReplicationRun {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		runs, err := st.ListRuns(context.Background(), jobID, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) > 0 && runs[0].ReplicationRunID != after && (runs[0].State == store.RunCompleted || runs[0].State == store.RunFailed) {
			return runs[0]
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("job %s: no run ended within 2 minutes", jobID)
	return store.ReplicationRun{}
}

// assertNoCheckpoint: the host holds no checkpoint of the VM and no
// differencing disk, no WinRM shell is left open, and the connector sent
// nothing but its scripts.
func (l *hvLab) assertNoCheckpoint(t *testing.T) {
	t.Helper()
	if cps, err := l.sim.Checkpoints(hvVM); err != nil || len(cps) != 0 {
		t.Errorf("checkpoints left on the host: %v %v", cps, err)
	}
	if f := l.sim.DiffFiles(); len(f) != 0 {
		t.Errorf("differencing disks left on the host: %v", f)
	}
	if v := l.sim.Violations(); len(v) != 0 {
		t.Errorf("the WS-Management server saw: %v", v)
	}
}

func (l *hvLab) assertClean(t *testing.T, claimed ...string) {
	t.Helper()
	l.assertNoCheckpoint(t)
	c := map[string]bool{}
	for _, id := range claimed {
		c[id] = true
	}
	left, err := l.peers.Leftovers(context.Background(), l.bucket, c)
	if err != nil {
		t.Fatal(err)
	}
	if !left.Empty() {
		t.Errorf("left behind: %s", left)
	}
}

// A Hyper-V VM with a dynamic VHDX and a fixed VHD replicates through
// WinRM and SMB into an AMI whose snapshots hold the guest disks byte for
// byte, reading from the share only the allocated blocks; then a failed
// checkpoint, credentials refused and a missing share each fail a run
// with the cause and leave no checkpoint.
func TestHyperVReplication(t *testing.T) {
	l := newHVLab(t, hypervsim.Options{})
	d := l.open(t)
	ctx := context.Background()
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Serve(sctx) }()
	t.Cleanup(func() {
		stop()
		<-done
		d.Close()
	})

	started := time.Now()
	j := l.job(t, d, l.sourceInput("hv01", "vms", l.smb.Port))
	r := waitRun(t, d.Store, j.ReplicationJobID, "")
	if r.State != store.RunCompleted {
		t.Fatalf("run: %s: %s", r.State, r.StatusMessage)
	}
	t.Logf("replication of %s took %v", hvVM, time.Since(started).Round(time.Millisecond))
	var img *struct {
		boot string
		devs []string
	}
	for _, im := range l.peers.AWS.Images() {
		if im.ID == r.AmiID {
			img = &struct {
				boot string
				devs []string
			}{boot: im.BootMode}
			for _, dv := range im.Devices {
				img.devs = append(img.devs, dv.SnapshotID)
			}
		}
	}
	if img == nil || img.boot != "uefi" || len(img.devs) != 2 {
		t.Fatalf("image %s: %+v", r.AmiID, img)
	}
	for i, snap := range img.devs {
		sum, size, err := l.peers.AWS.SnapshotSHA256(snap)
		if err != nil {
			t.Fatal(err)
		}
		if sum != l.fixtures[i].sha256 || size != l.fixtures[i].size {
			t.Fatalf("disk %d: snapshot %s holds %s (%d bytes), the guest disk %s (%d bytes)", i, snap, sum, size, l.fixtures[i].sha256, l.fixtures[i].size)
		}
	}
	// What Samba served, per file, against what each file holds.
	reads, err := l.smb.Reads()
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]int64{}
	for _, rd := range reads {
		served[filepath.Base(rd.File)] += rd.Bytes
	}
	var sizes, allocatedAll, servedAll int64
	for i, f := range l.fixtures {
		name := filepath.Base(f.image)
		im, closer, err := disk.OpenFile(f.image)
		if err != nil {
			t.Fatal(err)
		}
		info := im.Info()
		closer.Close()
		allocated := info.AllocatedBytes
		if info.Subformat == "fixed" {
			allocated = info.VirtualSize // a fixed disk is allocated whole
		}
		sizes, allocatedAll, servedAll = sizes+info.VirtualSize, allocatedAll+allocated, servedAll+served[name]
		st, _ := os.Stat(f.image)
		t.Logf("disk %d %s (%s %s): virtual %d, file %d, allocated %d, read at the share %d",
			i, name, info.Subformat, info.Format, info.VirtualSize, st.Size(), allocated, served[name])
		// Beyond the allocated blocks: the image's metadata (256 KiB at
		// most) and, on the boot disk, preflight's probes of its partition
		// table and file systems, read at catalog import and again in the
		// run's first step (about 19 KB each; docs/benchmarks.md).
		slack := int64(256 << 10)
		if i == 0 {
			slack += 64 << 10
		}
		if served[name] == 0 || served[name] > allocated+slack {
			t.Errorf("disk %d: read %d bytes of %s, allocated %d", i, served[name], name, allocated)
		}
	}
	// The run says what it read of the disks' data: no more than the share
	// served, about what the images hold, far from their size.
	if got := apiBytesRead(t, d, r); got < allocatedAll*9/10 || got > servedAll {
		t.Errorf("GetReplicationRuns: bytes read %d; the share served %d, the disks hold %d allocated of %d", got, servedAll, allocatedAll, sizes)
	} else {
		t.Logf("GetReplicationRuns: bytes read %d; the share served %d, the disks hold %d allocated of %d", got, servedAll, allocatedAll, sizes)
	}
	for name, n := range served {
		if !strings.HasPrefix(name, "boot") && !strings.HasPrefix(name, "data") {
			t.Errorf("read %d bytes of %s", n, name)
		}
	}
	srv, err := d.Store.ListServers(ctx, store.ServerFilter{})
	if err != nil || len(srv) != 1 || !strings.Contains(srv[0].Details, `"vmManagerType":"HYPERV-MANAGER"`) || !strings.Contains(srv[0].Details, `"host":"HV-LAB01"`) {
		t.Fatalf("catalog: %+v %v", srv, err)
	}
	l.assertClean(t, r.AmiID)

	t.Run("FailedCheckpoint", func(t *testing.T) {
		l.sim.FailCheckpoint("Checkpoint operation for 'web-01' failed. (Virtual machine ID 1) 'web-01' could not initiate a checkpoint operation: Not enough space on the disk.")
		prev := r.ReplicationRunID
		if _, err := d.Sched.Trigger(ctx, j.ReplicationJobID); err != nil {
			t.Fatal(err)
		}
		r := waitRun(t, d.Store, j.ReplicationJobID, prev)
		if r.State != store.RunFailed || !strings.Contains(r.StatusMessage, "Not enough space on the disk") || !strings.Contains(r.StatusMessage, hvVM) {
			t.Fatalf("run %s: %q", r.State, r.StatusMessage)
		}
		l.assertNoCheckpoint(t)
	})

	t.Run("CredentialsRefused", func(t *testing.T) {
		bad := l.sourceInput("hv-bad", "vms", l.smb.Port)
		bad.Password = "not-" + bad.Password
		if _, err := d.AddSource(ctx, bad); err == nil || !strings.Contains(err.Error(), "refused the credentials") {
			t.Fatalf("add a source with a wrong password: %v", err)
		}
		// The password changed on the host after the source was added.
		runs, _ := d.Store.ListRuns(ctx, j.ReplicationJobID, 1)
		srcs, _ := d.Store.ListSources(ctx)
		var orig []byte
		for _, s := range srcs {
			if s.Name == "hv01" {
				orig = s.Secret
				if _, err := d.Store.UpdateSource(ctx, s.ID, func(x *store.Source) error { x.Secret = d.Box.Seal([]byte("stale")); return nil }); err != nil {
					t.Fatal(err)
				}
				defer d.Store.UpdateSource(ctx, s.ID, func(x *store.Source) error { x.Secret = orig; return nil })
			}
		}
		if _, err := d.Sched.Trigger(ctx, j.ReplicationJobID); err != nil {
			t.Fatal(err)
		}
		r := waitRun(t, d.Store, j.ReplicationJobID, runs[0].ReplicationRunID)
		if r.State != store.RunFailed || !strings.Contains(r.StatusMessage, "refused the credentials") {
			t.Fatalf("run %s: %q", r.State, r.StatusMessage)
		}
		l.assertNoCheckpoint(t)
	})

	t.Run("MissingShare", func(t *testing.T) {
		jm := l.job(t, d, l.sourceInput("hv-noshare", "VMStore", l.smb.Port))
		r := waitRun(t, d.Store, jm.ReplicationJobID, "")
		if r.State != store.RunFailed || !strings.Contains(r.StatusMessage, `\VMStore`) || !strings.Contains(r.StatusMessage, "share") {
			t.Fatalf("run %s: %q", r.State, r.StatusMessage)
		}
		l.assertNoCheckpoint(t)
	})
	l.assertClean(t, r.AmiID)
}
