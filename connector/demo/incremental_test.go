package demo

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// incrementalJob creates an incremental job for vm.
func (e *env) incrementalJob(t *testing.T, vm string, keep int, noConversion bool) store.ReplicationJob {
	t.Helper()
	j, err := e.d.CreateJob(context.Background(), store.ReplicationJob{ServerID: e.byName[vm].ServerID, Mode: store.ModeIncremental,
		NoConversion: noConversion, SeedReplicationTime: time.Now(), Frequency: 24, LicenseType: store.LicenseAWS, NumberOfRecentAmisToKeep: keep})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// again triggers the job's next run and waits for it.
func (e *env) again(t *testing.T, jobID string, after store.ReplicationRun) store.ReplicationRun {
	t.Helper()
	if _, err := e.d.Sched.Trigger(context.Background(), jobID); err != nil {
		t.Fatal(err)
	}
	r := e.wait(t, jobID, after.ReplicationRunID)
	if r.State != store.RunCompleted {
		t.Fatalf("run %s: %s: %s", r.ReplicationRunID, r.State, r.StatusMessage)
	}
	return r
}

// checkReplicas reads every replica of the job back whole from the
// emulator and compares it with the simulated VM's disk, and the AMI too.
func (e *env) checkReplicas(t *testing.T, vm string, r store.ReplicationRun) store.ReplicaSet {
	t.Helper()
	set, err := e.d.Store.GetReplicaSet(context.Background(), r.ReplicationJobID)
	if err != nil {
		t.Fatal(err)
	}
	if set.RunID != r.ReplicationRunID {
		t.Fatalf("replicas of run %s, want %s", set.RunID, r.ReplicationRunID)
	}
	for _, d := range set.Disks {
		c, err := e.peers.compare(vm, d.Disk, d.SnapshotID)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Equal {
			t.Errorf("disk %d: replica %s (sha256 %s) differs from the source (%s)", d.Disk, d.SnapshotID, c.TargetHash, c.SourceHash)
		}
	}
	checks, err := e.peers.Verify(vm, r.AmiID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if !c.Equal {
			t.Errorf("AMI %s disk %d differs from the source", r.AmiID, c.Disk)
		}
	}
	claimed := map[string]bool{r.AmiID: true}
	hist, _ := e.d.Store.ReplicaSnapshots(context.Background(), r.ReplicationJobID)
	for _, h := range hist {
		claimed[h.SnapshotID] = true
	}
	runs, _ := e.d.Store.ListRuns(context.Background(), r.ReplicationJobID, 0)
	for _, x := range runs {
		claimed[x.AmiID] = true
	}
	e.assertClean(t, keys(claimed)...)
	return set
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// writeBlocks writes n random 4 KiB pieces at random offsets of disk i and
// returns the set of 512 KiB blocks they touch.
func (e *env) writeBlocks(t *testing.T, vm string, i, n int, seed uint64) map[int64]bool {
	t.Helper()
	size, err := e.peers.Sim.DiskCapacity(vm, i)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	touched := map[int64]bool{}
	for range n {
		off := r.Int64N(size-4096) / 512 * 512
		p := make([]byte, 4096)
		for k := range p {
			p[k] = byte(r.Uint32())
		}
		if err := e.peers.Sim.WriteDisk(vm, i, off, p); err != nil {
			t.Fatal(err)
		}
		for b := off / awstarget.BlockSize; b <= (off+4095)/awstarget.BlockSize; b++ {
			touched[b] = true
		}
	}
	return touched
}

// The checks of incremental replication against the simulated vCenter,
// the AWS emulator and versitygw: a two-disk VM is seeded, then blocks
// written into both disks between runs; every run sends exactly the
// changed blocks and its replicas equal the disks, read back whole; a
// reset of CBT and a replica deleted behind rehost's back each make a
// recorded full resync; a flipped byte in a replica block is found by the
// next (requested) verification and repaired.
func TestIncrementalVSphere(t *testing.T) {
	e := newEnv(t, twoDiskVM())
	j := e.incrementalJob(t, "vm-a", 2, false)
	r1 := e.wait(t, j.ReplicationJobID, "")
	if r1.State != store.RunCompleted {
		t.Fatalf("seed: %s: %s", r1.State, r1.StatusMessage)
	}
	if r1.Progress.Mode != "incremental" || r1.Replication == nil || r1.Replication.Verification == nil {
		t.Fatalf("seed ran %q: %+v", r1.Progress.Mode, r1.Replication)
	}
	seed := e.checkReplicas(t, "vm-a", r1)

	// Blocks written into both disks: the run sends those, no more.
	want := map[int]map[int64]bool{0: e.writeBlocks(t, "vm-a", 0, 5, 1), 1: e.writeBlocks(t, "vm-a", 1, 7, 2)}
	r2 := e.again(t, j.ReplicationJobID, r1)
	now := e.checkReplicas(t, "vm-a", r2)
	for i, d := range r2.Replication.Disks {
		if d.BlocksChanged != int64(len(want[i])) || d.BytesSent != int64(len(want[i]))*awstarget.BlockSize || d.Resync != "" {
			t.Errorf("disk %d: sent %d blocks (%d bytes), %d were written; resync %q", i, d.BlocksChanged, d.BytesSent, len(want[i]), d.Resync)
		}
		if d.Parent != seed.Disks[i].SnapshotID || now.Disks[i].Seq != 2 {
			t.Errorf("disk %d: replica on top of %s, the seed's is %s", i, d.Parent, seed.Disks[i].SnapshotID)
		}
	}
	if v := r2.Replication.Verification; v == nil || v.Mismatches != 0 || v.Blocks < int64(len(want[0])+len(want[1])) {
		t.Errorf("verification %v", v)
	}

	// CBT reset: a full resync of both disks, recorded; only what differs
	// is sent.
	if err := e.peers.Sim.ResetCBT("vm-a"); err != nil {
		t.Fatal(err)
	}
	changed := e.writeBlocks(t, "vm-a", 1, 2, 3)
	r3 := e.again(t, j.ReplicationJobID, r2)
	e.checkReplicas(t, "vm-a", r3)
	for i, d := range r3.Replication.Disks {
		if d.Resync == "" {
			t.Errorf("disk %d after a CBT reset: no resync recorded", i)
		}
	}
	if r3.Replication.BlocksChanged != int64(len(changed)) {
		t.Errorf("the resync sent %d blocks, %d changed", r3.Replication.BlocksChanged, len(changed))
	}

	// A replica deleted behind rehost's back: a new chain, recorded.
	set, _ := e.d.Store.GetReplicaSet(context.Background(), j.ReplicationJobID)
	e.deleteSnapshot(t, set.Disks[0].SnapshotID)
	r4 := e.again(t, j.ReplicationJobID, r3)
	e.checkReplicas(t, "vm-a", r4)
	if d := r4.Replication.Disks[0]; d.Parent != "" || !strings.Contains(d.Resync, "deleted behind rehost's back") {
		t.Errorf("disk 0 after its replica's deletion: %+v", d)
	}

	// A flipped byte in a replica block: found by a full verification on
	// request, and repaired.
	set, _ = e.d.Store.GetReplicaSet(context.Background(), j.ReplicationJobID)
	if err := e.peers.AWS.TamperBlock(set.Disks[1].SnapshotID, 40); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Store.UpdateJob(context.Background(), j.ReplicationJobID, func(x *store.ReplicationJob) error {
		x.VerifyRequested = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r5 := e.again(t, j.ReplicationJobID, r4)
	e.checkReplicas(t, "vm-a", r5)
	if v := r5.Replication.Verification; v == nil || !v.Full || v.Mismatches != 1 || v.Repaired != 1 {
		t.Errorf("verification after the tampering: %v", v)
	}
}

// deleteSnapshot deletes an EBS snapshot as a user in the console would.
func (e *env) deleteSnapshot(t *testing.T, id string) {
	t.Helper()
	ak, sk := e.peers.AWS.Credentials()
	c := ec2.New(ec2.Options{Region: e.peers.AWS.Region(), BaseEndpoint: sdk.String(e.peers.AWSURL),
		Credentials: credentials.NewStaticCredentialsProvider(ak, sk, "")})
	if _, err := c.DeleteSnapshot(context.Background(), &ec2.DeleteSnapshotInput{SnapshotId: sdk.String(id)}); err != nil {
		t.Fatal(err)
	}
}

// A disk grown past a GiB gets a larger replica on top of the old one,
// and an AMI registered on the replicas (no conversion) holds the disks.
func TestIncrementalResizeAndRegister(t *testing.T) {
	e := newEnv(t, twoDiskVM())
	j := e.incrementalJob(t, "vm-a", 1, true)
	r1 := e.wait(t, j.ReplicationJobID, "")
	if r1.State != store.RunCompleted {
		t.Fatalf("seed: %s: %s", r1.State, r1.StatusMessage)
	}
	e.checkReplicas(t, "vm-a", r1)
	if err := e.peers.Sim.ResizeDisk("vm-a", 1, 1<<30+64<<20); err != nil {
		t.Fatal(err)
	}
	if err := e.peers.Sim.WriteDisk("vm-a", 1, 1<<30+8<<20, []byte("written in the new tail")); err != nil {
		t.Fatal(err)
	}
	r2 := e.again(t, j.ReplicationJobID, r1)
	set := e.checkReplicas(t, "vm-a", r2)
	if d := set.Disks[1]; d.VolumeGiB != 2 || r2.Replication.Disks[1].Parent == "" || r2.Replication.Disks[1].BlocksChanged != 1 {
		t.Errorf("grown disk kept as %+v; run %+v", d, r2.Replication.Disks[1])
	}
	for _, im := range e.peers.AWS.Images() {
		if im.ID == r2.AmiID && im.Devices[1].SnapshotID != set.Disks[1].SnapshotID {
			t.Errorf("registered AMI uses %s, the replica is %s", im.Devices[1].SnapshotID, set.Disks[1].SnapshotID)
		}
	}
}
