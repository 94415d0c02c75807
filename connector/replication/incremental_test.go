package replication

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/replication/memtarget"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

const bs = awstarget.BlockSize

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 5))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// newIncremental is a harness whose job is incremental, on a VM of two
// disks of a few blocks each (the second not a whole number of blocks),
// behind a source that tracks changes.
func newIncremental(t *testing.T, mod func(*store.ReplicationJob)) *harness {
	t.Helper()
	h := newHarness(t)
	ctx := context.Background()
	vm := h.vm
	vm.Disks = []source.Disk{{Key: "2000", Label: "Hard disk 1", CapacityBytes: 6 * bs}, {Key: "2001", Label: "Hard disk 2", CapacityBytes: 5*bs - 4096}}
	d0, d1 := make([]byte, 6*bs), make([]byte, 5*bs-4096)
	copy(d0, randomBytes(1, bs+1000))        // blocks 0 and 1
	copy(d0[4*bs:], randomBytes(2, 300))     // block 4, a little
	copy(d1[4*bs:], randomBytes(3, bs-4096)) // the partial last block
	h.w.vms[vm.ID], h.w.data[vm.ID] = vm, [][]byte{d0, d1}
	h.vm = vm
	tr := h.w.tracked()
	src := h.e.Source
	h.e.Source = func(ctx context.Context, id string) (source.Source, error) {
		s, err := src(ctx, id)
		if err != nil {
			return nil, err
		}
		return trackedSource{fakeSource: s.(fakeSource), tr: tr}, nil
	}
	j, err := h.st.UpdateJob(ctx, h.job.ReplicationJobID, func(j *store.ReplicationJob) error {
		j.Mode = store.ModeIncremental
		if mod != nil {
			mod(j)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h.job = j
	return h
}

// runOK runs the harness's run to its end and returns it as stored.
func (h *harness) runOK() store.ReplicationRun {
	h.t.Helper()
	ami, err := h.e.Run(context.Background(), h.current())
	if err != nil {
		h.t.Fatalf("run: %v", err)
	}
	r := h.current()
	if r.AmiID != ami || ami == "" {
		h.t.Fatalf("run recorded AMI %q, returned %q", r.AmiID, ami)
	}
	return r
}

// snapshot returns a memtarget snapshot by id.
func (h *harness) snapshot(id string) memtarget.Snapshot {
	h.t.Helper()
	for _, s := range h.w.target.Snapshots() {
		if s.ID == id {
			return s
		}
	}
	h.t.Fatalf("no snapshot %s", id)
	return memtarget.Snapshot{}
}

// checkReplicas proves the job's replicas and the run's AMI hold the VM's
// disks as they are now (the run's checkpoint), read back whole, that no
// replica is left pending, and that the run handed everything over.
func (h *harness) checkReplicas(r store.ReplicationRun) store.ReplicaSet {
	h.t.Helper()
	set, err := h.st.GetReplicaSet(context.Background(), h.job.ReplicationJobID)
	if err != nil {
		h.t.Fatal(err)
	}
	if set.RunID != r.ReplicationRunID || len(set.Disks) != 2 {
		h.t.Fatalf("replica set %+v after run %s", set, r.ReplicationRunID)
	}
	var img *memtarget.Image
	for _, im := range h.w.target.Images() {
		if im.ID == r.AmiID {
			img = &im
		}
	}
	if img == nil || len(img.Snapshots) != 2 {
		h.t.Fatalf("image %s: %+v", r.AmiID, img)
	}
	for i, d := range set.Disks {
		want := h.w.data[h.vm.ID][i]
		padded := (int64(len(want)) + bs - 1) / bs * bs
		for what, id := range map[string]string{"replica": d.SnapshotID, "AMI snapshot": img.Snapshots[i]} {
			got := h.snapshot(id).Bytes(padded)
			if !bytes.Equal(got[:len(want)], want) || !bytes.Equal(got[len(want):], make([]byte, padded-int64(len(want)))) {
				h.t.Errorf("disk %d: the %s %s differs from the source disk", i, what, id)
			}
		}
		if d.Capacity != int64(len(want)) || d.ChangeID == "" && !h.changeIDsLost {
			h.t.Errorf("disk %d kept as %+v", i, d)
		}
	}
	for _, s := range h.w.target.Snapshots() {
		if st, _, ok := s.Replica(); ok && st != "completed" {
			h.t.Errorf("replica %s left %s", s.ID, st)
		}
	}
	if u := h.unreleased(); len(u) > 0 {
		h.t.Errorf("ledger still holds %v", u)
	}
	h.w.mu.Lock()
	for n, cp := range h.w.snaps {
		if !cp.Base {
			h.t.Errorf("vm snapshot %s left", n)
		}
	}
	h.w.mu.Unlock()
	return set
}

// blocksOf counts the 512 KiB blocks holding data.
func blocksOf(d []byte) int64 {
	var n int64
	for off := 0; off < len(d); off += bs {
		if !bytes.Equal(d[off:min(off+bs, len(d))], make([]byte, min(bs, len(d)-off))) {
			n++
		}
	}
	return n
}

// The seed writes every block that holds data and no block of zeros; the
// next run, after writes to both disks, sends exactly the blocks those
// writes touched (512 KiB rounding) on top of the seed's replicas; both
// runs' replicas and AMIs equal the source disks read back whole, and each
// run proves it with a verification.
func TestIncrementalRuns(t *testing.T) {
	for _, mode := range []string{"convert", "register"} {
		t.Run(mode, func(t *testing.T) {
			h := newIncremental(t, func(j *store.ReplicationJob) { j.NoConversion = mode == "register" })
			r1 := h.runOK()
			if r1.Progress.Mode != ModeIncremental {
				t.Fatalf("run mode %q", r1.Progress.Mode)
			}
			seed := h.checkReplicas(r1)
			rep := r1.Replication
			want := blocksOf(h.w.data[h.vm.ID][0]) + blocksOf(h.w.data[h.vm.ID][1])
			if rep == nil || rep.BlocksChanged != want || rep.BytesSent != want*bs || rep.Verification == nil {
				t.Fatalf("seed record %+v, want %d blocks", rep, want)
			}
			if v := rep.Verification; v.Blocks != want || v.Mismatches != 0 || v.Full {
				t.Errorf("seed verification %s", v)
			}
			for i, d := range seed.Disks {
				if _, parent, _ := h.snapshot(d.SnapshotID).Replica(); parent != "" {
					t.Errorf("disk %d: the seed's replica has parent %s", i, parent)
				}
			}

			// Writes: two blocks of disk 0 (one straddling a boundary), one
			// of disk 1 within an allocated block.
			h.w.write(h.vm.ID, 0, 3*bs-100, randomBytes(7, 200))
			h.w.write(h.vm.ID, 1, 10, []byte("changed"))
			h.nextRun(r1.AmiID)
			r2 := h.runOK()
			set := h.checkReplicas(r2)
			if r2.Replication.BlocksChanged != 3 || r2.Replication.BytesSent != 3*bs {
				t.Errorf("incremental run sent %d blocks, %d bytes; want 3 blocks", r2.Replication.BlocksChanged, r2.Replication.BytesSent)
			}
			if r2.Replication.BytesRead != 3*bs {
				t.Errorf("incremental run read %d bytes, want %d", r2.Replication.BytesRead, 3*bs)
			}
			for i, d := range set.Disks {
				if _, parent, _ := h.snapshot(d.SnapshotID).Replica(); parent != seed.Disks[i].SnapshotID || d.Seq != 2 {
					t.Errorf("disk %d: replica %s has parent %s (seq %d), want the seed's %s", i, d.SnapshotID, parent, d.Seq, seed.Disks[i].SnapshotID)
				}
			}
			if v := r2.Replication.Verification; v == nil || v.Mismatches != 0 || v.Blocks < 3 {
				t.Errorf("incremental verification %v", v)
			}
			img := h.w.target.Images()
			for _, im := range img {
				if im.ID != r2.AmiID {
					continue
				}
				converted := !slices.Contains(im.Snapshots, set.Disks[0].SnapshotID)
				if converted != (mode == "convert") {
					t.Errorf("mode %s: the AMI's snapshots %v, the replicas %s", mode, im.Snapshots, set.Disks[0].SnapshotID)
				}
			}
		})
	}
}

// A reset change id makes that run read the disks whole (a full resync,
// recorded with its reason) and send only the blocks that differ; a
// replica deleted behind rehost's back starts a new chain for that disk,
// recorded too.
func TestIncrementalResync(t *testing.T) {
	h := newIncremental(t, nil)
	r1 := h.runOK()
	h.checkReplicas(r1)

	h.w.resetTracking()
	h.w.write(h.vm.ID, 0, 5*bs, []byte("after the reset"))
	h.nextRun(r1.AmiID)
	r2 := h.runOK()
	h.checkReplicas(r2)
	for i, d := range r2.Replication.Disks {
		if !strings.Contains(d.Resync, "reset") {
			t.Errorf("disk %d: resync %q, want the reset named", i, d.Resync)
		}
	}
	if r2.Replication.BlocksChanged != 1 {
		t.Errorf("a resync sent %d blocks; only 1 changed", r2.Replication.BlocksChanged)
	}
	allocated := int64(0)
	for _, d := range h.w.data[h.vm.ID] {
		allocated += blocksOf(d)
	}
	if r2.Replication.BytesRead < allocated*bs-4096 {
		t.Errorf("a resync read %d bytes of %d blocks allocated", r2.Replication.BytesRead, allocated)
	}

	// Delete disk 1's replica behind rehost's back.
	set, _ := h.st.GetReplicaSet(context.Background(), h.job.ReplicationJobID)
	if err := h.w.target.DeleteImage(context.Background(), "", []string{set.Disks[1].SnapshotID}); err != nil {
		t.Fatal(err)
	}
	h.nextRun(r2.AmiID)
	r3 := h.runOK()
	now := h.checkReplicas(r3)
	d1 := r3.Replication.Disks[1]
	if !strings.Contains(d1.Resync, "deleted behind rehost's back") || d1.Parent != "" {
		t.Errorf("disk 1 after its replica's deletion: %+v", d1)
	}
	if _, parent, _ := h.snapshot(now.Disks[1].SnapshotID).Replica(); parent != "" {
		t.Errorf("disk 1's new chain has parent %s", parent)
	}
	if r3.Replication.Disks[0].Resync != "" || r3.Replication.Disks[0].BlocksChanged != 0 {
		t.Errorf("disk 0, untouched: %+v", r3.Replication.Disks[0])
	}
	if want := blocksOf(h.w.data[h.vm.ID][1]); d1.BlocksChanged != want {
		t.Errorf("disk 1's new chain: %d blocks sent, %d hold data", d1.BlocksChanged, want)
	}
}

// A disk that grew gets a larger replica on top of the old one, holding
// the written parts of its new tail, and the run says so. (Growing past a
// GiB, into a larger volume, is checked against the vCenter simulator.)
func TestIncrementalResize(t *testing.T) {
	h := newIncremental(t, nil)
	r1 := h.runOK()
	h.checkReplicas(r1)
	h.w.resize(h.vm.ID, 0, 10*bs)
	h.w.write(h.vm.ID, 0, 8*bs+100, []byte("in the new tail"))
	h.nextRun(r1.AmiID)
	r2 := h.runOK()
	set := h.checkReplicas(r2)
	d := set.Disks[0]
	if d.Capacity != 10*bs || r2.Replication.Disks[0].Parent == "" || r2.Replication.Disks[0].Resync != "" || r2.Replication.Disks[0].PreviousCapacity != 6*bs {
		t.Fatalf("grown disk kept as %+v, run %+v", d, r2.Replication.Disks[0])
	}
	if r2.Replication.BlocksChanged != 1 {
		t.Errorf("%d blocks sent after the growth and one write", r2.Replication.BlocksChanged)
	}
	grew := false
	evs, _ := h.st.Events(context.Background(), store.EventFilter{RunID: r2.ReplicationRunID})
	for _, e := range evs {
		grew = grew || strings.Contains(e.Message, "grew from 3.0 MiB to 5.0 MiB")
	}
	if !grew {
		t.Errorf("the run did not say the disk grew: %v", evs)
	}

	// Shrunk: a new chain, read whole.
	h.w.mu.Lock()
	h.w.data[h.vm.ID][1] = h.w.data[h.vm.ID][1][:3*bs]
	v := h.w.vms[h.vm.ID]
	v.Disks[1].CapacityBytes = 3 * bs
	h.w.vms[h.vm.ID] = v
	h.w.mu.Unlock()
	h.nextRun(r2.AmiID)
	r3 := h.runOK()
	h.checkReplicas(r3)
	if d := r3.Replication.Disks[1]; d.Parent != "" || !strings.Contains(d.Resync, "shrank") {
		t.Errorf("shrunk disk: %+v", d)
	}
}

// A byte flipped in a stored block of the replica is found by the next
// run's full verification (requested), sent again into a repair replica
// on top, read back equal, and recorded: mismatches 1, repaired 1.
func TestTamperedBlockIsRepaired(t *testing.T) {
	h := newIncremental(t, nil)
	r1 := h.runOK()
	set := h.checkReplicas(r1)
	if !h.w.target.Tamper(set.Disks[0].SnapshotID, 1) {
		t.Fatal("nothing to tamper with")
	}
	if _, err := h.st.UpdateJob(context.Background(), h.job.ReplicationJobID, func(j *store.ReplicationJob) error {
		j.VerifyRequested = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h.nextRun(r1.AmiID)
	r2 := h.runOK()
	now := h.checkReplicas(r2)
	v := r2.Replication.Verification
	if v == nil || !v.Full || v.Mismatches != 1 || v.Repaired != 1 {
		t.Fatalf("verification %v", v)
	}
	if !strings.Contains(v.String(), "1 mismatches, 1 repaired") {
		t.Errorf("verification reads %q", v)
	}
	// The block sent again is counted: read from the source and sent.
	d := r2.Replication.Disks[0]
	if d.BlocksResent != 1 || d.BytesSent != (d.BlocksChanged+1)*awstarget.BlockSize || d.BytesRead < awstarget.BlockSize ||
		r2.Replication.BytesSent != d.BytesSent+r2.Replication.Disks[1].BytesSent {
		t.Errorf("a run that sent a block again reports %+v (run: %d bytes sent, %d read)", d, r2.Replication.BytesSent, r2.Replication.BytesRead)
	}
	if _, parent, _ := h.snapshot(now.Disks[0].SnapshotID).Replica(); parent != r2.Replication.Disks[0].SnapshotID && parent == "" {
		t.Errorf("disk 0's head %s is not the repair on top of the run's replica", now.Disks[0].SnapshotID)
	}
	if job, _ := h.st.GetJob(context.Background(), h.job.ReplicationJobID); job.VerifyRequested {
		t.Error("the requested full verification is still requested after it ran")
	}
	if now.VerifiedAt.IsZero() {
		t.Error("the full verification was not recorded on the replica set")
	}
}

// A block that reads back wrong even after it was sent again fails the
// run, naming it, and nothing is left behind.
func TestPersistentMismatchFailsTheRun(t *testing.T) {
	h := newIncremental(t, func(j *store.ReplicationJob) { j.VerifyRequested = true })
	// Every block read back comes with one byte flipped.
	h.w.target.Hook = func(ctx context.Context, op, phase string) error {
		if err := h.w.at(ctx, op, phase); err != nil {
			return err
		}
		if op == "GetBlock" && phase == "before" {
			for _, s := range h.w.target.Snapshots() {
				for i := int64(0); i < 12; i++ {
					h.w.target.Tamper(s.ID, i)
				}
			}
		}
		return nil
	}
	_, err := h.e.Run(context.Background(), h.current())
	if err == nil || !strings.Contains(err.Error(), "still read back wrong") {
		t.Fatalf("run with a store that corrupts: %v", err)
	}
	h.w.target.Hook = h.w.at
	h.checkUndone()
}

// An incremental job whose region has no EBS direct, or whose VM cannot
// be tracked, runs full (S3 and VM Import) and says why.
func TestIncrementalFallsBackToFull(t *testing.T) {
	for name, mod := range map[string]func(h *harness){
		"no EBS direct": func(h *harness) {
			h.w.target.NoEBSDirect = errors.New("EBS direct in eu-west-9: its endpoint cannot be reached")
		},
		"no tracking": func(h *harness) { h.w.tracked().noTracking = "virtual hardware version 4 is too old" },
	} {
		t.Run(name, func(t *testing.T) {
			h := newIncremental(t, nil)
			// Parts of 256 KiB: the full path stages the disks.
			h.w.target = memtarget.New(256 << 10)
			h.w.target.Hook = h.w.at
			mod(h)
			r := h.runOK()
			if r.Progress.Mode != ModeFull || r.Replication == nil || r.Replication.FullBecause == "" {
				t.Fatalf("run mode %q, record %+v", r.Progress.Mode, r.Replication)
			}
			if _, err := h.st.GetReplicaSet(context.Background(), h.job.ReplicationJobID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a full run made a replica set: %v", err)
			}
			if objs := h.w.target.Objects(); len(objs) != 0 {
				t.Errorf("staged objects left: %v", objs)
			}
		})
	}
}

// Replicas of runs whose AMIs retention deleted are deleted too; the
// heads stay.
func TestRetentionPrunesReplicas(t *testing.T) {
	h := newIncremental(t, func(j *store.ReplicationJob) { j.NumberOfRecentAmisToKeep = 1 })
	var ami string
	for i := range 3 {
		if i > 0 {
			h.w.write(h.vm.ID, 0, int64(i)*bs, []byte(fmt.Sprintf("run %d", i)))
			h.nextRun(ami)
		}
		ami = h.runOK().AmiID
	}
	hist, err := h.st.ReplicaSnapshots(context.Background(), h.job.ReplicationJobID)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 {
		t.Errorf("%d replicas kept with one AMI kept: %+v", len(hist), hist)
	}
	set := h.checkReplicas(h.current())
	for _, d := range set.Disks {
		if !slices.ContainsFunc(hist, func(s store.ReplicaSnapshot) bool { return s.SnapshotID == d.SnapshotID }) {
			t.Errorf("head %s is not kept", d.SnapshotID)
		}
	}
	replicas := 0
	for _, s := range h.w.target.Snapshots() {
		if _, _, ok := s.Replica(); ok && s.Tags[TagReplica] != "" {
			replicas++
		}
	}
	if replicas != 2 {
		t.Errorf("%d replica snapshots exist, 2 kept", replicas)
	}
}

// incrementalPoints counts the fault points of an undisturbed second
// (incremental) run, after a seed.
func incrementalPoints(t *testing.T, keepBases bool) []string {
	h := seeded(t, keepBases)
	h.w.mu.Lock()
	h.w.ops = nil
	h.w.mu.Unlock()
	h.runOK()
	return append([]string(nil), h.w.ops...)
}

// seeded is an incremental harness after its seed, with a write to each
// disk and the next run started.
func seeded(t *testing.T, keepBases bool) *harness {
	h := newIncremental(t, nil)
	h.w.tracked().keepBases = keepBases
	r1 := h.runOK()
	h.w.write(h.vm.ID, 0, 2*bs+5, randomBytes(9, 2*bs))
	h.w.write(h.vm.ID, 1, 100, []byte("second run"))
	h.nextRun(r1.AmiID)
	return h
}

// An incremental run killed at each kind of call it makes to the source
// or the target (before it, and after it took effect but before the run
// could record it; at the first and the last of several alike) resumes
// and ends with replicas and an AMI equal to the source, nothing pending,
// and — as a source that keeps bases leaves them — only the job's base on
// the source.
func TestIncrementalResumeAfterCrash(t *testing.T) {
	for _, keepBases := range []bool{false, true} {
		ops := incrementalPoints(t, keepBases)
		first, last := map[string]int{}, map[string]int{}
		for k, op := range ops {
			if _, ok := first[op]; !ok {
				first[op] = k
			}
			last[op] = k
		}
		for k := range ops {
			if first[ops[k]] != k && last[ops[k]] != k {
				continue
			}
			t.Run(fmt.Sprintf("bases=%v/%02d-%s", keepBases, k+1, strings.ReplaceAll(ops[k], "/", "-")), func(t *testing.T) {
				h := seeded(t, keepBases)
				ctx, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				var n atomic.Int64
				h.w.hook = func(op, phase string) error {
					if n.Add(1) != int64(k+1) {
						return nil
					}
					h.kill()
					cancel(errShutdown)
					return errKilled
				}
				h.e.Run(ctx, h.current())
				h.restart()
				h.changeIDsLost = ops[k] == "Keep/after" && !keepBases
				r := h.runOK()
				h.checkReplicas(r)
				if h.changeIDsLost {
					// The next run reads the disks whole and sends only
					// what differs.
					h.w.write(h.vm.ID, 0, 5*bs, []byte("after the lost change point"))
					h.nextRun(r.AmiID)
					r = h.runOK()
					h.changeIDsLost = false
					h.checkReplicas(r)
					if d := r.Replication.Disks[0]; d.BlocksChanged != 1 || !strings.Contains(d.Resync, "no change id") {
						t.Errorf("the run after the change point was lost: %+v", d)
					}
				}
				h.w.mu.Lock()
				bases := 0
				for _, cp := range h.w.snaps {
					if cp.Base {
						bases++
					}
				}
				h.w.mu.Unlock()
				if want := map[bool]int{false: 0, true: 1}[keepBases]; bases != want {
					t.Errorf("%d bases held on the source, want %d", bases, want)
				}
			})
		}
	}
}

// An incremental run stopped at the start of each of its steps resumes.
func TestIncrementalStopAtStep(t *testing.T) {
	for _, in := range StepsOf(ModeIncremental) {
		t.Run(in.Name, func(t *testing.T) {
			h := seeded(t, true)
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			h.e.Hook = func(_, step string) {
				if step == in.Name {
					cancel(errShutdown)
				}
			}
			h.e.Run(ctx, h.current())
			h.restart()
			h.checkReplicas(h.runOK())
		})
	}
}

// A failed incremental run deletes its replicas, pending or not, and the
// job's replicas stay those of the run before.
func TestIncrementalUndo(t *testing.T) {
	h := seeded(t, false)
	before, _ := h.st.GetReplicaSet(context.Background(), h.job.ReplicationJobID)
	h.w.hook = func(op, phase string) error {
		if op == "GetBlock" {
			return errors.New("AccessDeniedException: not allowed")
		}
		return nil
	}
	if _, err := h.e.Run(context.Background(), h.current()); err == nil {
		t.Fatal("run did not fail")
	}
	h.w.hook = nil
	after, _ := h.st.GetReplicaSet(context.Background(), h.job.ReplicationJobID)
	if after.RunID != before.RunID {
		t.Errorf("the failed run's replicas became the job's: %s", after.RunID)
	}
	for _, s := range h.w.target.Snapshots() {
		if s.Tags[TagRun] == h.run.ReplicationRunID {
			t.Errorf("replica %s of the failed run left", s.ID)
		}
	}
	if u := h.unreleased(); len(u) > 0 {
		t.Errorf("ledger still holds %v", u)
	}
}

// The block writer resumes from a persisted state without putting the
// blocks before it again, its aggregate is the one the target checks,
// no more puts run at once than its concurrency, and a bandwidth limiter
// is asked for every block's bytes.
func TestBlockWriter(t *testing.T) {
	tg := memtarget.New(4)
	var inFlight, peak, puts atomic.Int64
	tg.Hook = func(ctx context.Context, op, phase string) error {
		if op != "PutBlock" {
			return nil
		}
		if phase == "before" {
			puts.Add(1)
			n := inFlight.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(time.Millisecond)
		} else {
			inFlight.Add(-1)
		}
		return nil
	}
	ctx := context.Background()
	rep, err := tg.StartReplica(ctx, awstarget.ReplicaInput{VolumeGiB: 1, ClientToken: "w"})
	if err != nil {
		t.Fatal(err)
	}
	bw := &countingLimiter{}
	w, err := newBlockWriter(ctx, tg, rep.SnapshotID, writerOptions{concurrency: 3, bandwidth: bw})
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[int64][]byte{}
	for i := int64(0); i < 10; i++ {
		b := randomBytes(uint64(i), bs)
		blocks[i*2] = b
		if err := w.put(ctx, i*2, b, sha256.Sum256(b)); err != nil {
			t.Fatal(err)
		}
	}
	saved, err := w.close()
	if err != nil || saved.Next != 19 || saved.Count != 10 {
		t.Fatalf("state %+v %v", saved, err)
	}
	w, err = newBlockWriter(ctx, tg, rep.SnapshotID, writerOptions{resume: &saved})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.put(ctx, 4, blocks[4], sha256.Sum256(blocks[4])); err == nil {
		t.Error("a block before the resumed state was accepted")
	}
	b := randomBytes(99, bs)
	if err := w.put(ctx, 30, b, sha256.Sum256(b)); err != nil {
		t.Fatal(err)
	}
	w.advance(2048)
	final, err := w.close()
	if err != nil || final.Count != 11 || final.Next != 2048 {
		t.Fatalf("final %+v %v", final, err)
	}
	sum, _ := final.sum()
	if err := tg.CompleteReplica(ctx, rep.SnapshotID, final.Count, sum); err != nil {
		t.Fatalf("the target refused the aggregate of a resumed writer: %v", err)
	}
	if puts.Load() != 11 {
		t.Errorf("%d puts for 11 blocks", puts.Load())
	}
	if peak.Load() > 3 {
		t.Errorf("%d puts at once with a concurrency of 3", peak.Load())
	}
	if bw.n.Load() != 10*bs {
		t.Errorf("the bandwidth limiter was asked for %d bytes, %d sent through it", bw.n.Load(), 10*bs)
	}
}

type countingLimiter struct{ n atomic.Int64 }

func (l *countingLimiter) WaitN(ctx context.Context, n int) error {
	l.n.Add(int64(n))
	return ctx.Err()
}
