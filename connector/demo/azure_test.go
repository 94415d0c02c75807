package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/internal/lab/azuresim"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/source/azure"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
	"github.com/rehost/rehost/scheduler"
)

// azureWorld is the AWS peers plus a faked Azure subscription whose VMs
// boot from a real guest disk.
type azureWorld struct {
	peers *Peers
	sim   *azuresim.Sim
	dir   string
}

func startAzureWorld(t *testing.T, vms ...string) *azureWorld {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	peers, err := StartPeers(ctx, PeerOptions{Dir: filepath.Join(dir, "peers"), VMs: []vspheresim.VMSpec{}, ImportDuration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(peers.Close)
	img := filepath.Join(dir, "guest.img")
	if _, err := guestdisk.Build(ctx, img, guestdisk.Options{Size: 64 << 20, Firmware: guestdisk.EFI, DataBytes: 3 << 20, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	var specs []azuresim.VMSpec
	for _, name := range vms {
		specs = append(specs, azuresim.VMSpec{Name: name, Size: "Standard_B2s", Generation: "V2", AgentReady: true,
			Disks: []azuresim.DiskSpec{{Image: img}, {SizeBytes: 16 << 20, SKU: "StandardSSD_LRS"}},
			NICs:  []azuresim.NICSpec{{PrivateIP: "10.2.0.4"}}})
	}
	sim, err := azuresim.Start(ctx, azuresim.Options{Dir: dir, VMs: specs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	for _, name := range vms {
		if err := sim.WriteDisk(name, 1, 9<<20, bytes.Repeat([]byte("azure data disk "), 8192)); err != nil {
			t.Fatal(err)
		}
	}
	return &azureWorld{peers: peers, sim: sim, dir: dir}
}

// sourceInput adds the faked subscription as `rehost source add --type
// azure` would, with its endpoints overridden (azure.Config.Endpoints).
func (w *azureWorld) sourceInput(t *testing.T) daemon.SourceInput {
	opts, err := json.Marshal(azure.Config{
		SubscriptionID: w.sim.SubscriptionID, TenantID: w.sim.TenantID, ClientID: w.sim.ClientID,
		Endpoints: &azure.Endpoints{ResourceManager: w.sim.ARMURL, AuthorityHost: w.sim.AuthorityURL},
		CAPEM:     w.sim.CAPEM, PollInterval: 20 * time.Millisecond, ChunkBytes: 256 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	return daemon.SourceInput{Kind: store.SourceAzure, Name: "azure", URL: "azure:/subscriptions/" + w.sim.SubscriptionID,
		User: w.sim.ClientID, Password: w.sim.ClientSecret, Options: opts}
}

// setup registers a connector state dir with the peers, adds the source,
// imports the catalog and creates a job per VM named.
func (w *azureWorld) setup(t *testing.T, dir string, o daemon.Options, vms ...string) (*daemon.Daemon, string, map[string]store.ReplicationJob) {
	t.Helper()
	ctx := context.Background()
	d, err := daemon.Open(ctx, dir, o)
	if err != nil {
		t.Fatal(err)
	}
	settings, err := w.peers.AWSSettings()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := d.Register(ctx, settings, awstarget.SetupOptions{CreateRole: true})
	if err != nil {
		t.Fatal(err)
	}
	src, err := d.AddSource(ctx, w.sourceInput(t))
	if err != nil {
		t.Fatal(err)
	}
	servers, err := d.ImportCatalog(ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string]store.ReplicationJob{}
	for _, s := range servers {
		if !strings.Contains(s.Details, `"vmManagerType":"AZURE"`) || s.Firmware != "efi" || s.CPUs != 2 || s.MemoryMiB != 4096 {
			t.Errorf("catalog entry %+v", s)
		}
		for _, name := range vms {
			if s.Name == name {
				j, err := d.CreateJob(ctx, store.ReplicationJob{ServerID: s.ServerID, SeedReplicationTime: time.Now(), Frequency: 24,
					LicenseType: store.LicenseAWS, NumberOfRecentAmisToKeep: 1})
				if err != nil {
					t.Fatal(err)
				}
				jobs[name] = j
			}
		}
	}
	return d, rep.Bucket, jobs
}

// diskSHA256 hashes a disk of a faked VM.
func (w *azureWorld) diskSHA256(t *testing.T, vm string, i int) string {
	size, err := w.sim.DiskSize(vm, i)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	buf := make([]byte, 4<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n, err := w.sim.ReadDisk(vm, i, off, buf[:min(int64(len(buf)), size-off)])
		if err != nil {
			t.Fatal(err)
		}
		h.Write(buf[:n])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// verifyAMI compares every disk of vm with its snapshot in the AMI.
func (w *azureWorld) verifyAMI(t *testing.T, vm, ami string) {
	t.Helper()
	for _, im := range w.peers.AWS.Images() {
		if im.ID != ami {
			continue
		}
		if len(im.Devices) != 2 {
			t.Fatalf("ami %s has %d devices, want 2", ami, len(im.Devices))
		}
		for i, dev := range im.Devices {
			got, _, err := w.peers.AWS.SnapshotSHA256(dev.SnapshotID)
			if err != nil {
				t.Fatal(err)
			}
			if want := w.diskSHA256(t, vm, i); got != want {
				t.Errorf("vm %s disk %d: snapshot %s holds %s, the azure disk %s", vm, i, dev.SnapshotID, got, want)
			}
		}
		return
	}
	t.Fatalf("ami %s not found", ami)
}

// assertAzureClean fails when a snapshot or a read grant is left.
func (w *azureWorld) assertAzureClean(t *testing.T) {
	t.Helper()
	if snaps, n := w.sim.Snapshots(), w.sim.OpenGrants(); len(snaps) != 0 || n != 0 {
		t.Errorf("azure holds snapshots %v and %d open read grants", snaps, n)
	}
}

// TestAzure replicates VMs of a faked Azure subscription (one world of
// peers for all cases, to keep the test short):
//   - a replication ends in an AMI whose snapshots hold the VM's disks byte
//     for byte, having read from Azure only the allocated page ranges;
//   - a run whose reads keep failing fails with the cause;
//   - `rehost serve`, a process of its own reaching the subscription over
//     HTTPS, killed with SIGKILL while it reads a disk (snapshots taken, a
//     read grant open), finishes the run after its restart;
//
// and after each, Azure holds no snapshot and no open read grant, and S3
// and EC2 nothing but the AMIs of completed runs.
func TestAzure(t *testing.T) {
	w := startAzureWorld(t, "az-web-01", "az-db-01", "az-app-01")
	var amis []string
	t.Run("Replication", func(t *testing.T) { amis = append(amis, w.testReplication(t, amis)...) })
	t.Run("KilledMidRead", func(t *testing.T) {
		if runtime.GOOS == "windows" {
			t.Skip("uses POSIX signals")
		}
		amis = append(amis, w.testKilledMidRead(t, amis)...)
	})
}

func (w *azureWorld) testReplication(t *testing.T, amis []string) []string {
	d, bucket, jobs := w.setup(t, filepath.Join(w.dir, "state"), daemon.Options{Log: slog.New(slog.DiscardHandler),
		Scheduler: scheduler.Options{OnDemandPer24h: -1}}, "az-web-01")
	d.Engine.RetryDelay = 50 * time.Millisecond
	e := &env{peers: w.peers, d: d, bucket: bucket}
	var alloc int64
	for i := range 2 {
		n, err := w.sim.AllocatedBytes("az-web-01", i)
		if err != nil {
			t.Fatal(err)
		}
		alloc += n
	}
	read0, reqs0 := w.sim.BytesRead(), w.sim.RangeReads()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	defer func() { stop(); <-done; d.Close() }()

	r := e.wait(t, jobs["az-web-01"].ReplicationJobID, "")
	if r.State != store.RunCompleted {
		t.Fatalf("run: %s: %s", r.State, r.StatusMessage)
	}
	amis = append(amis, r.AmiID)
	read := w.sim.BytesRead() - read0
	size0, _ := w.sim.DiskSize("az-web-01", 0)
	size1, _ := w.sim.DiskSize("az-web-01", 1)
	t.Logf("virtual %d bytes, allocated %d, read %d in %d range reads", size0+size1, alloc, read, w.sim.RangeReads()-reqs0)
	if read != alloc {
		t.Errorf("read %d bytes from azure for %d allocated", read, alloc)
	}
	// The run says what it read: Azure's count, the allocated data, not
	// the disks' size.
	if got := apiBytesRead(t, d, r); got != read || got >= size0+size1 {
		t.Errorf("GetReplicationRuns: bytes read %d; azure served %d of %d allocated, virtual %d", got, read, alloc, size0+size1)
	}
	w.verifyAMI(t, "az-web-01", r.AmiID)
	w.assertAzureClean(t)
	e.assertClean(t, amis...)

	// A VM whose disk reads always break: the run fails with the cause and
	// undoes itself.
	if err := w.sim.FailExports("az-db-01", 0, 300<<10); err != nil {
		t.Fatal(err)
	}
	defer w.sim.FailExports("az-db-01", 0, -1)
	servers, err := d.Store.ListServers(context.Background(), store.ServerFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var db store.Server
	for _, s := range servers {
		if s.Name == "az-db-01" {
			db = s
		}
	}
	j, err := d.CreateJob(context.Background(), store.ReplicationJob{ServerID: db.ServerID, SeedReplicationTime: time.Now(), Frequency: 24, LicenseType: store.LicenseAWS})
	if err != nil {
		t.Fatal(err)
	}
	r = e.wait(t, j.ReplicationJobID, "")
	if r.State != store.RunFailed || !strings.Contains(r.StatusMessage, "az-db-01") || strings.Contains(r.StatusMessage, "sig=") && !strings.Contains(r.StatusMessage, "sig=REDACTED") {
		t.Fatalf("run of a VM whose reads break: %s: %s", r.State, r.StatusMessage)
	}
	t.Logf("failed as expected: %s", r.StatusMessage)
	w.assertAzureClean(t)
	e.assertClean(t, amis...)
	return amis[len(amis)-1:]
}

func (w *azureWorld) testKilledMidRead(t *testing.T, amis []string) []string {
	bin := buildRehost(t)
	stateDir := filepath.Join(w.dir, "state-crash")
	d, bucket, jobs := w.setup(t, stateDir, daemon.Options{Log: slog.New(slog.DiscardHandler)}, "az-app-01")
	d.Close()

	logPath := filepath.Join(w.dir, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	serve := func() *exec.Cmd {
		cmd := exec.Command(bin, "serve", "--state-dir", stateDir, "--listen", "127.0.0.1:0", "--resync", "500ms", "--log-format", "text", "--on-demand-per-24h", "-1")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	resume := w.sim.PauseReads()
	defer resume()
	cmd := serve()
	for deadline := time.Now().Add(time.Minute); w.sim.WaitingReads() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			log, _ := os.ReadFile(logPath)
			t.Fatalf("the daemon never read a disk; log:\n%s", tail(log, 40))
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	resume()
	if len(w.sim.Snapshots()) != 2 || w.sim.OpenGrants() == 0 {
		t.Fatalf("killed mid-read, azure holds snapshots %v and %d grants; want the checkpoint's 2 and an open grant", w.sim.Snapshots(), w.sim.OpenGrants())
	}
	fmt.Fprintln(logf, "=== test: SIGKILL mid-read, restarting")

	cmd = serve()
	st, err := store.OpenSQLite(filepath.Join(stateDir, "rehost.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var run store.ReplicationRun
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		runs, err := st.ListRuns(context.Background(), jobs["az-app-01"].ReplicationJobID, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) > 0 && (runs[0].State == store.RunCompleted || runs[0].State == store.RunFailed) {
			run = runs[0]
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			log, _ := os.ReadFile(logPath)
			t.Fatalf("the run did not end after the restart; log:\n%s", tail(log, 60))
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if run.State != store.RunCompleted {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("run after the restart: %s: %s\nlog:\n%s", run.State, run.StatusMessage, tail(log, 40))
	}
	w.verifyAMI(t, "az-app-01", run.AmiID)
	w.assertAzureClean(t)
	e := &env{peers: w.peers, bucket: bucket}
	e.assertClean(t, append(amis, run.AmiID)...)
	return []string{run.AmiID}
}

// apiBytesRead is what GetReplicationRuns says run r read from the source.
func apiBytesRead(t *testing.T, d *daemon.Daemon, r store.ReplicationRun) int64 {
	t.Helper()
	out, err := (&api.Local{D: d}).GetReplicationRuns(context.Background(), &api.GetReplicationRunsInput{ReplicationJobID: r.ReplicationJobID})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range out.ReplicationRunList {
		if x.ReplicationRunID == r.ReplicationRunID {
			if x.Rehost == nil || x.Rehost.Replication == nil {
				t.Fatalf("run %s: GetReplicationRuns says nothing of what it moved", r.ReplicationRunID)
			}
			return x.Rehost.Replication.BytesRead
		}
	}
	t.Fatalf("run %s: not in GetReplicationRuns", r.ReplicationRunID)
	return 0
}
