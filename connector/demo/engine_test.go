package demo

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
	"github.com/rehost/rehost/scheduler"
)

// env is a connector serving in-process against the peers.
type env struct {
	peers  *Peers
	d      *daemon.Daemon
	bucket string
	byName map[string]store.Server
	// src reads the source's disks; nil for the simulated vCenter.
	src Disks
}

// disks reads the live disks of the source's VMs.
func (e *env) disks() Disks {
	if e.src == nil {
		return VCenterDisks{e.peers.Sim}
	}
	return e.src
}

// addSource adds a source and imports its catalog into byName.
func (e *env) addSource(t *testing.T, in daemon.SourceInput) {
	t.Helper()
	ctx := context.Background()
	src, err := e.d.AddSource(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	servers, err := e.d.ImportCatalog(ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.byName == nil {
		e.byName = map[string]store.Server{}
	}
	for _, s := range servers {
		e.byName[s.Name] = s
	}
}

// serve runs the connector until the test ends, and closes it then.
func (e *env) serve(t *testing.T) {
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.d.Serve(sctx) }()
	t.Cleanup(func() {
		stop()
		<-done
		e.d.Close()
	})
}

func newEnv(t *testing.T, vms []vspheresim.VMSpec) *env {
	t.Helper()
	return newEnvWith(t, envOptions{VMs: vms})
}

// envOptions vary the env: the emulator's quotas, the scheduler's limits
// and the registration's import mode.
type envOptions struct {
	VMs        []vspheresim.VMSpec
	Quotas     map[string]float64
	Scheduler  scheduler.Options
	ImportMode string
}

func newEnvWith(t *testing.T, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	peers, err := StartPeers(ctx, PeerOptions{Dir: filepath.Join(dir, "peers"), VMs: o.VMs, ImportDuration: 500 * time.Millisecond, Quotas: o.Quotas})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(peers.Close)
	so := o.Scheduler
	so.OnDemandPer24h, so.PauseAfterFailures = -1, 2
	d, err := daemon.Open(ctx, filepath.Join(dir, "state"), daemon.Options{Log: slog.New(slog.DiscardHandler), Scheduler: so})
	if err != nil {
		t.Fatal(err)
	}
	d.Engine.RetryDelay = 50 * time.Millisecond
	settings, err := peers.AWSSettings()
	if err != nil {
		t.Fatal(err)
	}
	settings.ImportMode = o.ImportMode
	rep, err := d.Register(ctx, settings, awstarget.SetupOptions{CreateRole: true})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{peers: peers, d: d, bucket: rep.Bucket}
	e.addSource(t, peers.SourceInput())
	e.serve(t)
	return e
}

// onboard does what an administrator does first on an appliance: it
// registers d with the peers' AWS account (creating the vmimport role),
// adds the peers' vCenter and imports its catalog. It returns the staging
// bucket and the servers.
func onboard(ctx context.Context, t *testing.T, d *daemon.Daemon, peers *Peers) (string, []store.Server) {
	t.Helper()
	settings, err := peers.AWSSettings()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := d.Register(ctx, settings, awstarget.SetupOptions{CreateRole: true})
	if err != nil {
		t.Fatal(err)
	}
	src, err := d.AddSource(ctx, peers.SourceInput())
	if err != nil {
		t.Fatal(err)
	}
	servers, err := d.ImportCatalog(ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	return rep.Bucket, servers
}

func (e *env) job(t *testing.T, vm string, keep int) store.ReplicationJob {
	t.Helper()
	j, err := e.d.CreateJob(context.Background(), store.ReplicationJob{ServerID: e.byName[vm].ServerID,
		SeedReplicationTime: time.Now(), Frequency: 24, LicenseType: store.LicenseAWS, NumberOfRecentAmisToKeep: keep})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// wait returns the job's newest run once it has ended.
func (e *env) wait(t *testing.T, jobID string, after string) store.ReplicationRun {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		runs, err := e.d.Store.ListRuns(context.Background(), jobID, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) > 0 && runs[0].ReplicationRunID != after && (runs[0].State == store.RunCompleted || runs[0].State == store.RunFailed) {
			return runs[0]
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("job %s: no run ended within 2 minutes", jobID)
	return store.ReplicationRun{}
}

func (e *env) assertClean(t *testing.T, claimed ...string) {
	t.Helper()
	c := map[string]bool{}
	for _, id := range claimed {
		c[id] = true
	}
	l, err := e.peers.Leftovers(context.Background(), e.bucket, c)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Empty() {
		t.Errorf("left behind: %s", l)
	}
}

func twoDiskVM() []vspheresim.VMSpec {
	return []vspheresim.VMSpec{{
		Name: "vm-a", Firmware: "efi", PowerOn: true, ToolsRunning: true,
		Disks: []vspheresim.DiskSpec{
			// A real guest disk: VM Import refuses a boot disk without a
			// partition table and an OS it recognises. Its 8 MiB of
			// seeded data make the export stream long enough to cut.
			{CapacityBytes: 48 << 20, Seed: vspheresim.GuestDisk(guestdisk.Options{Size: 48 << 20, Firmware: guestdisk.EFI, DataBytes: 8 << 20, Seed: 1})},
			{CapacityBytes: 32 << 20, Seed: func(w io.WriterAt) error {
				return vspheresim.PseudoRandom(w, 2, 20<<20, 1<<20)
			}},
		},
	}}
}

// A VM's two disks arrive byte for byte in the AMI's snapshots; the run
// leaves nothing behind; a second run writes after the first and the new
// AMI holds the new bytes while retention keeps one AMI.
func TestReplicationContentAndRetention(t *testing.T) {
	e := newEnv(t, twoDiskVM())
	j := e.job(t, "vm-a", 1)
	r1 := e.wait(t, j.ReplicationJobID, "")
	if r1.State != store.RunCompleted {
		t.Fatalf("run 1: %s: %s", r1.State, r1.StatusMessage)
	}
	checks, err := e.peers.Verify("vm-a", r1.AmiID)
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 2 || !checks[0].Equal || !checks[1].Equal {
		t.Fatalf("content differs: %+v", checks)
	}
	e.assertClean(t, r1.AmiID)

	// New content, a second (on-demand) run.
	if err := e.peers.Sim.WriteDisk("vm-a", 1, 5<<20, []byte(strings.Repeat("after run 1 ", 1000))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Sched.Trigger(context.Background(), j.ReplicationJobID); err != nil {
		t.Fatal(err)
	}
	r2 := e.wait(t, j.ReplicationJobID, r1.ReplicationRunID)
	if r2.State != store.RunCompleted || r2.AmiID == r1.AmiID {
		t.Fatalf("run 2: %s %s: %s", r2.State, r2.AmiID, r2.StatusMessage)
	}
	checks, err = e.peers.Verify("vm-a", r2.AmiID)
	if err != nil {
		t.Fatal(err)
	}
	if !checks[0].Equal || !checks[1].Equal {
		t.Fatalf("run 2 content differs: %+v", checks)
	}
	// Retention (keep 1) removed the first AMI and its snapshots.
	e.assertClean(t, r2.AmiID)
	jj, _ := e.d.Store.GetJob(context.Background(), j.ReplicationJobID)
	if jj.LatestAmiID != r2.AmiID {
		t.Errorf("job's latest AMI %q, want %q", jj.LatestAmiID, r2.AmiID)
	}
}

// A broken export stream is retried and the run completes; the upload
// resumes from the parts it had.
func TestDroppedExportIsRetried(t *testing.T) {
	e := newEnv(t, twoDiskVM())
	if err := e.peers.Sim.FailExport("vm-a", 0, 6<<20); err != nil {
		t.Fatal(err)
	}
	j := e.job(t, "vm-a", 0)
	r := e.wait(t, j.ReplicationJobID, "")
	if r.State != store.RunCompleted {
		t.Fatalf("run: %s: %s", r.State, r.StatusMessage)
	}
	checks, err := e.peers.Verify("vm-a", r.AmiID)
	if err != nil || !checks[0].Equal || !checks[1].Equal {
		t.Fatalf("content: %+v %v", checks, err)
	}
	e.assertClean(t, r.AmiID)
}

// An export that keeps failing fails the run with the cause, and the run
// undoes itself: no VM snapshot, lease, upload or object is left.
func TestFailedExportCleansUp(t *testing.T) {
	e := newEnv(t, twoDiskVM())
	for range 3 {
		if err := e.peers.Sim.FailExport("vm-a", 1, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	j := e.job(t, "vm-a", 0)
	r := e.wait(t, j.ReplicationJobID, "")
	if r.State != store.RunFailed {
		t.Fatalf("run %s, want FAILED", r.State)
	}
	if !strings.Contains(r.StatusMessage, "stage disk 2 of 2") || !strings.Contains(r.StatusMessage, "vm-a") {
		t.Errorf("status message does not say what failed: %q", r.StatusMessage)
	}
	e.assertClean(t)
}

// VM Import's own rejection reaches the user, and the run leaves nothing.
func TestImportRejectionIsSurfaced(t *testing.T) {
	e := newEnv(t, twoDiskVM())
	e.peers.AWS.InjectImportFault(func(taskID string, disk int) error {
		if disk == 1 {
			return errors.New("ClientError: Disk validation failed [Unsupported VMDK File Format]")
		}
		return nil
	})
	j := e.job(t, "vm-a", 0)
	r := e.wait(t, j.ReplicationJobID, "")
	if r.State != store.RunFailed {
		t.Fatalf("run %s, want FAILED", r.State)
	}
	if !strings.Contains(r.StatusMessage, "Unsupported VMDK File Format") || !strings.Contains(r.StatusMessage, "vm-a") {
		t.Errorf("status message lacks VM Import's cause: %q", r.StatusMessage)
	}
	e.assertClean(t)
}

// Deleting a job with --delete-amis removes its AMIs and snapshots.
func TestDeleteJobWithAMIs(t *testing.T) {
	e := newEnv(t, twoDiskVM())
	j := e.job(t, "vm-a", 0)
	r := e.wait(t, j.ReplicationJobID, "")
	if r.State != store.RunCompleted {
		t.Fatalf("run: %s: %s", r.State, r.StatusMessage)
	}
	if err := e.d.DeleteJob(context.Background(), j.ReplicationJobID, true); err != nil {
		t.Fatal(err)
	}
	e.assertClean(t)
	jj, _ := e.d.Store.GetJob(context.Background(), j.ReplicationJobID)
	if jj.State != store.JobDeleted {
		t.Errorf("job state %s, want DELETED", jj.State)
	}
	if _, err := e.d.Store.CreateJob(context.Background(), store.ReplicationJob{ServerID: j.ServerID, SeedReplicationTime: time.Now(), Frequency: 0, LicenseType: "AWS"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("frequency 0 accepted: %v", err)
	}
}
