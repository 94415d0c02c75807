package daemon

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/azuresim"
	"github.com/rehost/rehost/internal/lab/hvdisk"
	"github.com/rehost/rehost/internal/lab/hypervsim"
	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/azure"
	"github.com/rehost/rehost/pkg/source/hyperv"
	"github.com/rehost/rehost/pkg/store"
)

const mib = 1 << 20

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

// serverNamed is the catalog's server of that name, if any.
func serverNamed(t *testing.T, d *Daemon, name string) (store.Server, bool) {
	t.Helper()
	servers, err := d.Store.ListServers(context.Background(), store.ServerFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if s.Name == name {
			return s, true
		}
	}
	return store.Server{}, false
}

// keeping starts keeping the catalogs as Serve does, until the test ends.
func keeping(t *testing.T, d *Daemon) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.keepCatalogs(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// vcenterCatalog is a daemon keeping the imported catalog of a simulated
// vCenter with VMs of these names.
func vcenterCatalog(t *testing.T, names ...string) (*vspheresim.Sim, *Daemon) {
	t.Helper()
	ctx := context.Background()
	var vms []vspheresim.VMSpec
	for _, n := range names {
		vms = append(vms, vspheresim.VMSpec{Name: n, Disks: []vspheresim.DiskSpec{{CapacityBytes: 4 * mib}}})
	}
	sim, err := vspheresim.Start(ctx, vspheresim.Options{VMs: vms, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	o := quiet()
	o.CatalogPoll = 100 * time.Millisecond // how often changes held for a run are tried again
	d, err := Open(ctx, t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	keeping(t, d)
	src, err := d.AddSource(ctx, SourceInput{Kind: store.SourceVSphere, Name: "vc", URL: sim.URL(),
		User: sim.User(), Password: sim.Password(), Thumbprint: sim.Thumbprint()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ImportCatalog(ctx, src.ID); err != nil {
		t.Fatal(err)
	}
	return sim, d
}

// replicating gives the server a job with an ACTIVE run, as a run in
// flight has; the function returned completes the run.
func replicating(t *testing.T, d *Daemon, serverID string) (runEnds func()) {
	t.Helper()
	ctx := context.Background()
	job, err := d.Store.CreateJob(ctx, store.ReplicationJob{ServerID: serverID, SeedReplicationTime: time.Now().Add(time.Hour), Frequency: 12, LicenseType: store.LicenseAWS})
	if err != nil {
		t.Fatal(err)
	}
	runs, err := d.Store.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, Type: store.RunOnDemand, State: store.RunActive, ScheduledStartTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if _, err := d.Store.UpdateRun(ctx, runs[0].ReplicationRunID, func(r *store.ReplicationRun) error {
			r.State, r.CompletedTime = store.RunCompleted, time.Now()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// An imported vCenter catalog stays current from the property
// collector's updates: a VM added, renamed, given a disk or removed shows
// in the catalog without another import.
func TestCatalogFollowsVCenter(t *testing.T) {
	ctx := context.Background()
	sim, d := vcenterCatalog(t, "web-01", "db-01")

	if err := sim.AddVM(ctx, vspheresim.VMSpec{Name: "app-01", Disks: []vspheresim.DiskSpec{{CapacityBytes: 4 * mib}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "app-01 in the catalog", func() bool { _, ok := serverNamed(t, d, "app-01"); return ok })
	added, _ := serverNamed(t, d, "app-01")
	if r, ok, _ := d.Preflight(ctx, added.ServerID); !ok || r.Status == "" {
		t.Errorf("the added server has no preflight: %+v", r)
	}

	if err := sim.RenameVM(ctx, "app-01", "app-02"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "app-01 renamed app-02", func() bool {
		s, ok := serverNamed(t, d, "app-02")
		return ok && s.ServerID == added.ServerID && s.Path == "/DC0/vm/app-02"
	})
	if err := sim.AddDisk(ctx, "app-02", 8*mib); err != nil {
		t.Fatal(err)
	}
	eventually(t, "app-02's second disk", func() bool { s, _ := serverNamed(t, d, "app-02"); return s.DiskCount == 2 })
	if err := sim.RemoveVM(ctx, "app-02"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "app-02 out of the catalog", func() bool { _, ok := serverNamed(t, d, "app-02"); return !ok })
}

// detailsPath is the inventory path a server's details (the VM as the
// source described it) say.
func detailsPath(t *testing.T, s store.Server) string {
	t.Helper()
	var vm source.VM
	if err := json.Unmarshal([]byte(s.Details), &vm); err != nil {
		t.Fatalf("server %s details: %v", s.Name, err)
	}
	return vm.Path
}

// A folder renamed in vCenter changes the inventory paths of the servers
// of the VMs below it, their details with them, and nothing else: their
// preflights stand. A VM being replicated moves too (the path is not
// what its run holds back), and its changes held for the run keep the
// new path when they are applied after it.
func TestCatalogFollowsFolderRenames(t *testing.T) {
	ctx := context.Background()
	sim, d := vcenterCatalog(t, "web-01", "db-01")
	if err := sim.CreateFolder(ctx, "/DC0/vm", "shop"); err != nil {
		t.Fatal(err)
	}
	if err := sim.MoveInto(ctx, "/DC0/vm/shop", []string{"web-01", "db-01"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web-01 and db-01 in shop", func() bool {
		w, _ := serverNamed(t, d, "web-01")
		b, _ := serverNamed(t, d, "db-01")
		return w.Path == "/DC0/vm/shop/web-01" && b.Path == "/DC0/vm/shop/db-01"
	})
	web, _ := serverNamed(t, d, "web-01")
	// The simulator reports a move as every object entering again, in
	// batches of its own: web-01's entry is settled once its preflight
	// stays as it is for half a second.
	var before Report
	eventually(t, "web-01's entry settled", func() bool {
		r, ok, err := d.Preflight(ctx, web.ServerID)
		if err != nil || !ok {
			t.Fatalf("web-01's preflight: %v %v", ok, err)
		}
		settled := r.CheckedAt.Equal(before.CheckedAt)
		before = r
		if !settled {
			time.Sleep(500 * time.Millisecond)
		}
		return settled
	})

	db, _ := serverNamed(t, d, "db-01")
	runEnds := replicating(t, d, db.ServerID)
	if err := sim.AddDisk(ctx, "db-01", 8*mib); err != nil {
		t.Fatal(err)
	}
	if err := sim.RenameFolder(ctx, "/DC0/vm/shop", "store"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "shop renamed store in the catalog", func() bool {
		w, _ := serverNamed(t, d, "web-01")
		b, _ := serverNamed(t, d, "db-01")
		return w.Path == "/DC0/vm/store/web-01" && b.Path == "/DC0/vm/store/db-01"
	})
	for _, name := range []string{"web-01", "db-01"} {
		s, _ := serverNamed(t, d, name)
		if got := detailsPath(t, s); got != s.Path {
			t.Errorf("%s: details say path %q, the server %q", name, got, s.Path)
		}
	}
	if after, _, _ := d.Preflight(ctx, web.ServerID); !after.CheckedAt.Equal(before.CheckedAt) {
		t.Errorf("web-01 checked again (at %v, before at %v) for a folder renamed", after.CheckedAt, before.CheckedAt)
	}
	if s, _ := serverNamed(t, d, "db-01"); s.DiskCount != 1 {
		t.Errorf("db-01's disk written while it replicated: %d disks", s.DiskCount)
	}

	runEnds()
	eventually(t, "db-01's second disk after its run", func() bool { s, _ := serverNamed(t, d, "db-01"); return s.DiskCount == 2 })
	if s, _ := serverNamed(t, d, "db-01"); s.Path != "/DC0/vm/store/db-01" || detailsPath(t, s) != s.Path {
		t.Errorf("db-01 after its run: path %q, details %q; want the renamed folder's", s.Path, detailsPath(t, s))
	}
}

// A VM's changes seen while it replicates (rehost's own snapshot among
// them) wait for its run to end, then show from a watched vCenter too.
func TestCatalogHoldsVMBeingReplicated(t *testing.T) {
	ctx := context.Background()
	sim, d := vcenterCatalog(t, "web-01", "db-01")
	db, _ := serverNamed(t, d, "db-01")
	runEnds := replicating(t, d, db.ServerID)
	if err := sim.AddDisk(ctx, "db-01", 8*mib); err != nil {
		t.Fatal(err)
	}
	// The property collector reports in order: once web-01's rename is in
	// the catalog, db-01's disk has been seen.
	if err := sim.RenameVM(ctx, "web-01", "web-02"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web-01 renamed web-02", func() bool { _, ok := serverNamed(t, d, "web-02"); return ok })
	if s, _ := serverNamed(t, d, "db-01"); s.DiskCount != 1 || !s.ImportedAt.Equal(db.ImportedAt) {
		t.Errorf("db-01 was written while it replicated: %d disks, imported at %v (was %v)", s.DiskCount, s.ImportedAt, db.ImportedAt)
	}
	runEnds()
	eventually(t, "db-01's second disk after its run", func() bool { s, _ := serverNamed(t, d, "db-01"); return s.DiskCount == 2 })
}

// A job whose VM leaves its source says so, its runs fail at once saying
// why, and it recovers when the VM is back.
func TestJobOfVMGoneFromSource(t *testing.T) {
	ctx := context.Background()
	sim, d := vcenterCatalog(t, "web-01")
	web, _ := serverNamed(t, d, "web-01")
	job, err := d.Store.CreateJob(ctx, store.ReplicationJob{ServerID: web.ServerID, SeedReplicationTime: time.Now().Add(time.Hour), Frequency: 12, LicenseType: store.LicenseAWS})
	if err != nil {
		t.Fatal(err)
	}

	if err := sim.RemoveVM(ctx, "web-01"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the job saying its VM is gone", func() bool {
		j, _ := d.Store.GetJob(ctx, job.ReplicationJobID)
		return strings.Contains(j.StatusMessage, `vm "web-01" is gone from source "vc"`)
	})
	if _, ok := serverNamed(t, d, "web-01"); !ok {
		t.Fatal("the server of a job was removed from the catalog with its VM")
	}
	if r, _, _ := d.Preflight(ctx, web.ServerID); r.Status != "blocked" || len(r.Findings) != 1 || r.Findings[0].Code != CodeVMGone {
		t.Errorf("preflight of the gone VM: %+v", r)
	}
	runs, err := d.Store.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, Type: store.RunOnDemand, ScheduledStartTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	err = runner{d}.Run(ctx, runs[0])
	if err == nil || !strings.Contains(err.Error(), `is gone from source "vc"`) || !strings.Contains(err.Error(), "rehost job delete "+job.ReplicationJobID) {
		t.Fatalf("run of a job whose VM is gone: %v", err)
	}

	// The scheduler pauses a job after failed runs, with the last error as
	// its message (as scheduler.finish records it).
	if _, err := d.Store.UpdateJob(ctx, job.ReplicationJobID, func(j *store.ReplicationJob) error {
		j.State, j.ConsecutiveFailures = store.JobPausedOnFailure, 3
		j.StatusMessage = "paused after 3 consecutive failed runs; last (" + runs[0].ReplicationRunID + "): " + err.Error()
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The VM registered again, with its instance UUID: the same VM.
	if err := sim.AddVM(ctx, vspheresim.VMSpec{Name: "web-01", InstanceUUID: web.VMID, Disks: []vspheresim.DiskSpec{{CapacityBytes: 4 * mib}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the job recovered", func() bool {
		j, _ := d.Store.GetJob(ctx, job.ReplicationJobID)
		return j.StatusMessage == "" && j.State == store.JobActive && j.ConsecutiveFailures == 0
	})
	if err := d.vmGoneError(ctx, runs[0]); err != nil {
		t.Errorf("the VM is back, but a run would not start: %v", err)
	}
	if s, _ := serverNamed(t, d, "web-01"); s.ServerID != web.ServerID {
		t.Errorf("the VM back is server %s, want %s", s.ServerID, web.ServerID)
	}
}

// A Hyper-V catalog is kept current by polling: a VM added, renamed or
// removed shows, and a server whose VM did not change is not written
// again.
func TestCatalogPollsHyperV(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sim, err := hypervsim.Start(hypervsim.Options{Dir: filepath.Join(dir, "host")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	img := filepath.Join(dir, "os.vhdx")
	disk, _ := hvdisk.NewVHDX(64<<20, 1<<20, 512, nil)
	if err := disk.Save(img); err != nil {
		t.Fatal(err)
	}
	add := func(name string) {
		t.Helper()
		if _, err := sim.AddVM(hypervsim.VMSpec{Name: name, CPUs: 2, MemoryMiB: 1024, Disks: []hypervsim.DiskSpec{{Image: img}}}); err != nil {
			t.Fatal(err)
		}
	}
	add("web-01")
	add("db-01")
	o := quiet()
	o.CatalogPoll = 100 * time.Millisecond
	d, err := Open(ctx, filepath.Join(dir, "state"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	keeping(t, d)
	src, err := d.AddSource(ctx, SourceInput{Kind: store.SourceHyperV, Name: "hv", URL: sim.Addr(""), User: sim.User(),
		Password: sim.Password(), Thumbprint: sim.Thumbprint("")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ImportCatalog(ctx, src.ID); err != nil {
		t.Fatal(err)
	}
	db, _ := serverNamed(t, d, "db-01")

	add("app-01")
	eventually(t, "app-01 in the catalog", func() bool { _, ok := serverNamed(t, d, "app-01"); return ok })
	if err := sim.RenameVM("web-01", "web-02"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web-01 renamed web-02", func() bool { _, ok := serverNamed(t, d, "web-02"); return ok })
	if err := sim.RemoveVM("app-01"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "app-01 out of the catalog", func() bool { _, ok := serverNamed(t, d, "app-01"); return !ok })
	if now, _ := serverNamed(t, d, "db-01"); !now.ImportedAt.Equal(db.ImportedAt) {
		t.Errorf("db-01 did not change but was written again (imported at %v, then %v)", db.ImportedAt, now.ImportedAt)
	}
	// Polls that find nothing changed run the light listing; the full
	// inventory runs one poll in fullPollEvery.
	before := sim.Calls()
	eventually(t, "20 quiet polls", func() bool { return sim.Calls()["hv-digest"] >= before["hv-digest"]+20 })
	after := sim.Calls()
	if full, light := after["hv-inventory"]-before["hv-inventory"], after["hv-digest"]-before["hv-digest"]; full > light/fullPollEvery+1 {
		t.Errorf("%d full inventories in %d quiet polls, want one in %d", full, light, fullPollEvery)
	}

	// While db-01 replicates, what the host shows of it is rehost's own
	// checkpoint (its disks are the checkpoint's .avhdx): its entry and
	// preflight stay as they are, and a change made meanwhile shows once
	// the run is over.
	runEnds := replicating(t, d, db.ServerID)
	if err := sim.RenameVM("db-01", "db-02"); err != nil {
		t.Fatal(err)
	}
	polls := sim.Calls()["hv-digest"]
	eventually(t, "two polls after the rename", func() bool { return sim.Calls()["hv-digest"] >= polls+2 })
	if now, ok := serverNamed(t, d, "db-01"); !ok || !now.ImportedAt.Equal(db.ImportedAt) {
		t.Errorf("db-01 was written while it replicated: %+v", now)
	}
	runEnds()
	eventually(t, "db-01 renamed db-02 after its run", func() bool { _, ok := serverNamed(t, d, "db-02"); return ok })
}

// An Azure catalog is kept current by polling: a disk resized shows, and
// a job whose VM is deleted says so until the VM is created again.
func TestCatalogPollsAzure(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sim, err := azuresim.Start(ctx, azuresim.Options{Dir: dir, VMs: []azuresim.VMSpec{
		{Name: "web-01", Disks: []azuresim.DiskSpec{{SizeBytes: 4 * mib}}},
		{Name: "db-01", Disks: []azuresim.DiskSpec{{SizeBytes: 4 * mib}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	opts, err := json.Marshal(azure.Config{
		SubscriptionID: sim.SubscriptionID, TenantID: sim.TenantID, ClientID: sim.ClientID,
		Endpoints: &azure.Endpoints{ResourceManager: sim.ARMURL, AuthorityHost: sim.AuthorityURL},
		CAPEM:     sim.CAPEM,
	})
	if err != nil {
		t.Fatal(err)
	}
	o := quiet()
	o.CatalogPoll = 100 * time.Millisecond
	d, err := Open(ctx, filepath.Join(dir, "state"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	keeping(t, d)
	src, err := d.AddSource(ctx, SourceInput{Kind: store.SourceAzure, Name: "azure", URL: "azure:/subscriptions/" + sim.SubscriptionID,
		User: sim.ClientID, Password: sim.ClientSecret, Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ImportCatalog(ctx, src.ID); err != nil {
		t.Fatal(err)
	}
	web, _ := serverNamed(t, d, "web-01")
	job, err := d.Store.CreateJob(ctx, store.ReplicationJob{ServerID: web.ServerID, SeedReplicationTime: time.Now().Add(time.Hour), Frequency: 12, LicenseType: store.LicenseAWS})
	if err != nil {
		t.Fatal(err)
	}

	if err := sim.ResizeDisk("db-01", 0, 8*mib); err != nil {
		t.Fatal(err)
	}
	eventually(t, "db-01's disk resized", func() bool {
		s, _ := serverNamed(t, d, "db-01")
		vm := catalogVM(s)
		return len(vm.Disks) == 1 && vm.Disks[0].CapacityBytes == 8*mib
	})

	if err := sim.RemoveVM("web-01"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the job saying its VM is gone", func() bool {
		j, _ := d.Store.GetJob(ctx, job.ReplicationJobID)
		return strings.Contains(j.StatusMessage, `vm "web-01" is gone from source "azure"`)
	})
	if err := sim.RestoreVM("web-01"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the job recovered", func() bool {
		j, _ := d.Store.GetJob(ctx, job.ReplicationJobID)
		return j.StatusMessage == ""
	})
}

// A catalog imported before the daemon serves (or by another process on
// the same state) is kept current once it serves.
func TestCatalogKeptAfterRestart(t *testing.T) {
	ctx := context.Background()
	sim, err := vspheresim.Start(ctx, vspheresim.Options{VMs: []vspheresim.VMSpec{{Name: "web-01", Disks: []vspheresim.DiskSpec{{CapacityBytes: 4 * mib}}}}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	state := t.TempDir()
	cli, err := Open(ctx, state, quiet())
	if err != nil {
		t.Fatal(err)
	}
	src, err := cli.AddSource(ctx, SourceInput{Kind: store.SourceVSphere, Name: "vc", URL: sim.URL(),
		User: sim.User(), Password: sim.Password(), Thumbprint: sim.Thumbprint()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ImportCatalog(ctx, src.ID); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	d, err := Open(ctx, state, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	keeping(t, d)
	if err := sim.AddVM(ctx, vspheresim.VMSpec{Name: "app-01", Disks: []vspheresim.DiskSpec{{CapacityBytes: 4 * mib}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "app-01 in the catalog", func() bool { _, ok := serverNamed(t, d, "app-01"); return ok })
}

// A VM being replicated that comes re-read with a new path (its folder
// renamed in the same batch of updates as a change of its own) has its
// path written at once, the rest held for after its run.
func TestCatalogMovesVMBeingReplicated(t *testing.T) {
	ctx := context.Background()
	sim, err := vspheresim.Start(ctx, vspheresim.Options{VMs: []vspheresim.VMSpec{{Name: "db-01", Disks: []vspheresim.DiskSpec{{CapacityBytes: 4 * mib}}}}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	d, err := Open(ctx, t.TempDir(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	s, err := d.AddSource(ctx, SourceInput{Kind: store.SourceVSphere, Name: "vc", URL: sim.URL(),
		User: sim.User(), Password: sim.Password(), Thumbprint: sim.Thumbprint()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ImportCatalog(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	db, _ := serverNamed(t, d, "db-01")
	replicating(t, d, db.ServerID)
	var vm source.VM
	if err := json.Unmarshal([]byte(db.Details), &vm); err != nil {
		t.Fatal(err)
	}
	vm.Path = "/DC0/vm/store/db-01"
	vm.Disks = append(vm.Disks, source.Disk{Key: "2001", CapacityBytes: 8 * mib})
	src, err := d.OpenSource(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	held, err := d.applyChange(ctx, src, s.ID, source.Change{VMs: []source.VM{vm}})
	if err != nil {
		t.Fatal(err)
	}
	now, _ := serverNamed(t, d, "db-01")
	if len(held) != 1 || now.Path != vm.Path || detailsPath(t, now) != vm.Path || now.DiskCount != 1 {
		t.Errorf("held %d vms; server path %q, details %q, %d disks: want it held, moved, with 1 disk", len(held), now.Path, detailsPath(t, now), now.DiskCount)
	}
}

// What a light poll of a Hyper-V cluster catches and what waits for the
// full poll (one in fullPollEvery): a VM live-migrated to another node
// (its host and path) is read at the next light poll, with no full
// inventory; a disk resized in place is not in the digest (its size is
// in the VHDX header) and shows at the full poll.
func TestLightPollHyperV(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sim, err := hypervsim.Start(hypervsim.Options{Dir: filepath.Join(dir, "host"), Nodes: []string{"HV-N1", "HV-N2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	img := filepath.Join(dir, "os.vhdx")
	disk, _ := hvdisk.NewVHDX(64<<20, 1<<20, 512, nil)
	if err := disk.Save(img); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web-01", "db-01"} {
		if _, err := sim.AddVM(hypervsim.VMSpec{Name: name, Node: "HV-N1", CPUs: 2, MemoryMiB: 1024, Disks: []hypervsim.DiskSpec{{Image: img}}}); err != nil {
			t.Fatal(err)
		}
	}
	src, err := hyperv.New(ctx, hyperv.Config{Endpoint: sim.Addr("HV-N1"), User: sim.User(), Password: sim.Password(), Thumbprint: sim.Thumbprint("HV-N1"),
		Nodes: map[string]hyperv.Node{"HV-N1": {Address: sim.Addr("HV-N1")}, "HV-N2": {Address: sim.Addr("HV-N2"), Thumbprint: sim.Thumbprint("HV-N2")}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	full, prints, err := fullPoll(ctx, src, src)
	if err != nil || len(full.VMs) != 2 || len(prints) != 2 {
		t.Fatalf("full poll: %d vms, %d fingerprints, %v", len(full.VMs), len(prints), err)
	}
	web := vmNamed(t, full.VMs, "web-01")

	if err := sim.Migrate("web-01", "HV-N2"); err != nil {
		t.Fatal(err)
	}
	before := sim.Calls()
	ch, prints, err := lightPoll(ctx, src, src, prints)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.VMs) != 1 || ch.VMs[0].ID != web.ID || ch.VMs[0].Host != "HV-N2" || ch.VMs[0].Path != "/HV-N2/web-01" || len(ch.Gone) != 0 || ch.Full {
		t.Errorf("light poll after web-01 moved to HV-N2: %+v", ch)
	}
	// One digest per node, then web-01 read where it runs now.
	after := sim.Calls()
	if digests, reads := after["hv-digest"]-before["hv-digest"], after["hv-inventory"]-before["hv-inventory"]; digests != 2 || reads > 2 {
		t.Errorf("light poll ran %d digests and %d inventories, want 2 and at most 2 (web-01 looked for node by node)", digests, reads)
	}

	if err := sim.ResizeDisk("db-01", 0, 128<<20); err != nil {
		t.Fatal(err)
	}
	if ch, _, err := lightPoll(ctx, src, src, prints); err != nil || len(ch.VMs)+len(ch.Gone) != 0 {
		t.Errorf("light poll after db-01's disk resized in place: %+v, %v; the digest has no disk sizes", ch, err)
	}
	full, _, err = fullPoll(ctx, src, src)
	if err != nil {
		t.Fatal(err)
	}
	if db := vmNamed(t, full.VMs, "db-01"); len(db.Disks) != 1 || db.Disks[0].CapacityBytes != 128<<20 {
		t.Errorf("full poll after db-01's disk resized: %+v", db.Disks)
	}
}

func vmNamed(t *testing.T, vms []source.VM, name string) source.VM {
	t.Helper()
	for _, vm := range vms {
		if vm.Name == name {
			return vm
		}
	}
	t.Fatalf("no vm %s in %d", name, len(vms))
	return source.VM{}
}
