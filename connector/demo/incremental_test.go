package demo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/internal/lab/diskwrite"
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
		c, err := e.peers.CompareWith(e.disks(), vm, d.Disk, d.SnapshotID)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Equal {
			t.Errorf("disk %d: replica %s (sha256 %s) differs from the source (%s)", d.Disk, d.SnapshotID, c.TargetHash, c.SourceHash)
		}
	}
	if r.AmiID == "" {
		t.Fatalf("run %s built no AMI", r.ReplicationRunID)
	}
	checks, err := e.peers.VerifyWith(e.disks(), vm, r.AmiID)
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != len(set.Disks) {
		t.Errorf("AMI %s has %d disks, the VM %d", r.AmiID, len(checks), len(set.Disks))
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

// sentByEBS is what the emulator's PutSnapshotBlock received for the
// replicas a run made (tagged with its id), by disk key.
func (e *env) sentByEBS(runID string) map[string]int64 {
	out := map[string]int64{}
	for _, s := range e.peers.AWS.Snapshots() {
		tags := map[string]string{}
		for _, tg := range s.Tags {
			tags[tg.Key] = tg.Value
		}
		if tags[replication.TagRun] == runID && tags[replication.TagReplica] != "" {
			_, key, _ := strings.Cut(tags[replication.TagReplica], "/")
			out[key] += s.PutBytes
		}
	}
	return out
}

// checkSent checks that a run sent the 512 KiB blocks want holds for
// each disk (nil: any number) and nothing more, as rehost records it and
// as the emulator received it, and that each disk's replica sits on top
// of the previous run's (prev; nil for a new chain).
func (e *env) checkSent(t *testing.T, r store.ReplicationRun, want map[int]map[int64]bool, prev *store.ReplicaSet) {
	t.Helper()
	rep := r.Replication
	if rep == nil || r.Progress.Mode != store.ModeIncremental {
		t.Fatalf("run %s ran %q: %+v", r.ReplicationRunID, r.Progress.Mode, rep)
	}
	got := e.sentByEBS(r.ReplicationRunID)
	var total int64
	for i, d := range rep.Disks {
		total += got[d.Key]
		if got[d.Key] != d.BytesSent || d.BytesSent != d.BlocksChanged*awstarget.BlockSize {
			t.Errorf("disk %d: rehost says %d blocks, %d bytes sent; the emulator received %d bytes", i, d.BlocksChanged, d.BytesSent, got[d.Key])
		}
		if w, ok := want[i]; ok && d.BlocksChanged != int64(len(w)) {
			t.Errorf("disk %d: sent %d blocks, %d were written; resync %q", i, d.BlocksChanged, len(w), d.Resync)
		}
		if prev != nil && (d.Parent != prev.Disks[i].SnapshotID || d.Resync != "") {
			t.Errorf("disk %d: replica on top of %q (resync %q), the previous run's is %s", i, d.Parent, d.Resync, prev.Disks[i].SnapshotID)
		}
	}
	if total != rep.BytesSent || len(got) != len(rep.Disks) {
		t.Errorf("run %s: rehost says %d bytes sent, the emulator received %d in replicas %v", r.ReplicationRunID, rep.BytesSent, total, got)
	}
	if v := rep.Verification; v == nil || v.Mismatches != 0 {
		t.Errorf("verification %v", v)
	}
}

// labWriter is a simulated source's write request (internal/lab/diskwrite),
// the way a user of the lab changes a VM's disk between runs.
type labWriter struct {
	url, user, password string
	ca                  []byte
}

// write writes n 4 KiB blocks of random bytes at random places of disk i
// of vm and returns the 512 KiB blocks they fall in.
func (w labWriter) write(t *testing.T, vm string, i, n int) map[int64]bool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(w.ca) {
		t.Fatal("no certificate in the peer's CA")
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	res, err := diskwrite.Post(context.Background(), hc, w.url, w.user, w.password, diskwrite.Request{VM: vm, Disk: i, Blocks: n, BlockSize: 4096})
	if err != nil || len(res.Offsets) != n {
		t.Fatalf("write %d blocks into %s disk %d: %+v, %v", n, vm, i, res, err)
	}
	touched := map[int64]bool{}
	for _, off := range res.Offsets {
		touched[off/awstarget.BlockSize] = true // 4 KiB-aligned: within one block
	}
	return touched
}

// incrementalRuns seeds vm with an incremental job, then rounds times
// writes blocks into each of its disks through the lab's write request
// and runs the job again. Every run's figures are checked against what
// the emulator received (checkSent), each later run on top of the one
// before and sending exactly the blocks written, and its replicas and AMI
// are read back whole against the disks (checkReplicas).
func (e *env) incrementalRuns(t *testing.T, vm string, w labWriter, rounds int) (store.ReplicationJob, store.ReplicationRun) {
	t.Helper()
	started := time.Now()
	j := e.incrementalJob(t, vm, 2, false)
	r := e.wait(t, j.ReplicationJobID, "")
	if r.State != store.RunCompleted {
		t.Fatalf("seed: %s: %s", r.State, r.StatusMessage)
	}
	set := e.checkReplicas(t, vm, r)
	e.checkSent(t, r, nil, nil)
	if len(set.Disks) != 2 || r.Replication.BytesSent == 0 {
		t.Fatalf("seed of %d disks sent %d bytes", len(set.Disks), r.Replication.BytesSent)
	}
	t.Logf("seed: %d bytes read, %d sent, in %v", r.Replication.BytesRead, r.Replication.BytesSent, time.Since(started).Round(time.Millisecond))
	for k := range rounds {
		want := map[int]map[int64]bool{}
		for i := range set.Disks {
			want[i] = w.write(t, vm, i, 3+2*i+k)
		}
		started = time.Now()
		r = e.again(t, j.ReplicationJobID, r)
		ran := time.Since(started).Round(time.Millisecond)
		now := e.checkReplicas(t, vm, r)
		e.checkSent(t, r, want, &set)
		for i, d := range r.Replication.Disks {
			if d.Resync != "" || now.Disks[i].Seq != set.Disks[i].Seq+1 {
				t.Errorf("disk %d: resync %q, replica %d of its chain after %d", i, d.Resync, now.Disks[i].Seq, set.Disks[i].Seq)
			}
		}
		t.Logf("run %d: %d blocks changed, %d bytes read, %d sent; run %v, checks %v", k+2, r.Replication.BlocksChanged, r.Replication.BytesRead,
			r.Replication.BytesSent, ran, time.Since(started).Round(time.Millisecond)-ran)
		set = now
	}
	return j, r
}

// checkResync checks a run that copied the disks resync names whole
// (their tracking lost, their reason containing why) and sent of each
// only the blocks that differ from the replica before, want; the other
// disks ran as usual.
func (e *env) checkResync(t *testing.T, vm string, r store.ReplicationRun, why string, want map[int]map[int64]bool, resync ...int) {
	t.Helper()
	e.checkReplicas(t, vm, r)
	e.checkSent(t, r, want, nil)
	for i, d := range r.Replication.Disks {
		if got := d.Resync != "" && strings.Contains(d.Resync, why); got != slices.Contains(resync, i) {
			t.Errorf("disk %d: resync %q; want one saying %q: %v", i, d.Resync, why, slices.Contains(resync, i))
		}
	}
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
	e.checkSent(t, r2, want, &seed)
	for i := range now.Disks {
		if now.Disks[i].Seq != 2 {
			t.Errorf("disk %d: replica %d of its chain, want 2", i, now.Disks[i].Seq)
		}
	}
	if v := r2.Replication.Verification; v == nil || v.Blocks < int64(len(want[0])+len(want[1])) {
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
