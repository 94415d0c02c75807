package demo

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/internal/lab/hypervsim"
	"github.com/rehost/rehost/pkg/store"
	"github.com/rehost/rehost/scheduler"
)

// Incremental replication from Hyper-V, end to end: a VM of two dynamic
// VHDX (RCT tracks VHDX only) on the WS-Management simulator, read
// through Samba, is seeded through EBS direct into the AWS emulator; then
// twice blocks are written into both disks through the host's write
// request (POST /_hyperv/write) and the job runs again: each run sends
// the 512 KiB blocks written, no more, by rehost's figures and by what
// the emulator received, and its replicas and AMI read back equal the
// disks. Then the host forgets its change tracking (the RCT ids of the
// reference point refused): the next run copies both disks whole,
// records why, and sends only the blocks that differ.
func TestIncrementalHyperV(t *testing.T) {
	l := newHVLabWith(t, hypervsim.Options{}, []hvDisk{
		{guestdisk.Options{Size: 48 << 20, Firmware: guestdisk.EFI, DataBytes: 4 << 20, Seed: 21}, "boot.vhdx", vhdxDynamic},
		{guestdisk.Options{Size: 32 << 20, DataBytes: 2 << 20, Seed: 22}, "data.vhdx", vhdxDynamic},
	})
	d := l.open(t)
	e := &env{peers: l.peers, d: d, bucket: l.bucket, src: l.sim}
	e.addSource(t, l.sourceInput("hv01", "vms", l.smb.Port))
	e.serve(t)
	w := labWriter{url: l.sim.WriteURL(), user: l.sim.User(), password: l.sim.Password(), ca: l.sim.CertificatePEM("")}
	j, r := e.incrementalRuns(t, hvVM, w, 2)
	l.assertNoCheckpoint(t)
	if rps, err := l.sim.ReferencePoints(hvVM); err != nil || len(rps) != 1 {
		t.Errorf("reference points %v, %v; want the last run's", rps, err)
	}

	if err := l.sim.ResetRCT(hvVM); err != nil {
		t.Fatal(err)
	}
	changed := w.write(t, hvVM, 1, 2)
	r = e.again(t, j.ReplicationJobID, r)
	e.checkResync(t, hvVM, r, "resilient change tracking id is not valid", map[int]map[int64]bool{0: {}, 1: changed}, 0, 1)
	l.assertNoCheckpoint(t)
}

// Incremental replication from Azure, end to end: a VM of two managed
// disks in the faked subscription (Azure SDK fakes, Azurite holding the
// disks' pages, the page-range diff answered by azuresim's front, which
// Azurite lacks) is seeded through EBS direct into the AWS emulator; then
// twice blocks are written into both disks through the subscription's
// write request (POST /_azure/write) and the job runs again: each run's
// incremental snapshots are diffed against the previous ones, it sends
// the 512 KiB blocks written, no more, by rehost's figures and by what
// the emulator received, and its replicas and AMI read back equal the
// disks. Then the previous snapshots are deleted in Azure (the base
// gone): the next run copies both disks whole, records why, and sends
// only the blocks that differ; and a replica deleted in AWS behind
// rehost's back makes a new chain for that disk, recorded.
func TestIncrementalAzure(t *testing.T) {
	const vm = "az-inc-01"
	az := startAzureWorld(t, vm)
	d, bucket, _ := az.setup(t, filepath.Join(az.dir, "state"), daemon.Options{Log: slog.New(slog.DiscardHandler),
		Scheduler: scheduler.Options{OnDemandPer24h: -1, PauseAfterFailures: 10}})
	d.Engine.RetryDelay = 50 * time.Millisecond
	e := &env{peers: az.peers, d: d, bucket: bucket, src: az.sim, byName: map[string]store.Server{}}
	servers, err := d.Store.ListServers(context.Background(), store.ServerFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		e.byName[s.Name] = s
	}
	e.serve(t)
	w := labWriter{url: az.sim.WriteURL(), user: az.sim.ClientID, password: az.sim.ClientSecret, ca: []byte(az.sim.CAPEM)}
	held := func() {
		t.Helper()
		if snaps, n := az.sim.Snapshots(), az.sim.OpenGrants(); len(snaps) != 2 || n != 0 {
			t.Errorf("azure holds snapshots %v and %d open read grants; want the base's 2 and none", snaps, n)
		}
	}
	j, r := e.incrementalRuns(t, vm, w, 2)
	held()

	if _, err := az.sim.DeleteSnapshots(vm); err != nil {
		t.Fatal(err)
	}
	changed := w.write(t, vm, 0, 2)
	r = e.again(t, j.ReplicationJobID, r)
	e.checkResync(t, vm, r, "", map[int]map[int64]bool{0: changed, 1: {}}, 0, 1)
	held()

	set, err := d.Store.GetReplicaSet(context.Background(), j.ReplicationJobID)
	if err != nil {
		t.Fatal(err)
	}
	e.deleteSnapshot(t, set.Disks[0].SnapshotID)
	changed = w.write(t, vm, 1, 1)
	r = e.again(t, j.ReplicationJobID, r)
	e.checkResync(t, vm, r, "deleted behind rehost's back", map[int]map[int64]bool{1: changed}, 0)
	if p := r.Replication.Disks[0].Parent; p != "" {
		t.Errorf("disk 0 after its replica's deletion written on top of %s", p)
	}
	held()
}
