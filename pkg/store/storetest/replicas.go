package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

// testReplicas checks the Replicas role: a set is committed whole and read
// back, its history grows with what each commit made, a chain head cannot
// be forgotten, and job deletion forgets everything.
func testReplicas(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, j := fixture(t, s)
	_, err := s.GetReplicaSet(ctx, j.ReplicationJobID)
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.CommitReplicaSet(ctx, store.ReplicaSet{JobID: "sms-job-00000000000000000", Disks: []store.ReplicaDisk{{Key: "2000", SnapshotID: "snap-1"}}}, nil), store.ErrNotFound)
	wantErr(t, s.CommitReplicaSet(ctx, store.ReplicaSet{JobID: j.ReplicationJobID, Disks: []store.ReplicaDisk{{Key: "2000"}}}, nil), store.ErrInvalid)
	wantErr(t, s.CommitReplicaSet(ctx, store.ReplicaSet{JobID: j.ReplicationJobID, Disks: []store.ReplicaDisk{
		{Key: "2000", SnapshotID: "snap-1"}, {Key: "2000", SnapshotID: "snap-2"}}}, nil), store.ErrInvalid)

	base := json.RawMessage(`{"checkpoint":{"vmId":"vm-1","name":"rehost-r1","base":true}}`)
	set := store.ReplicaSet{JobID: j.ReplicationJobID, RunID: "sms-run-1", Base: base, Disks: []store.ReplicaDisk{
		{Disk: 1, Key: "2001", SnapshotID: "snap-b1", Seq: 1, ChangeID: "v1:8:b", Capacity: 8 << 30, VolumeGiB: 8},
		{Disk: 0, Key: "2000", SnapshotID: "snap-a1", Seq: 1, ChangeID: "v1:4:a", Capacity: 4 << 30, VolumeGiB: 4, Encrypted: true, KMSKeyID: "arn:k"},
	}}
	made := []store.ReplicaSnapshot{{SnapshotID: "snap-a1", RunID: "sms-run-1", DiskKey: "2000", Seq: 1}, {SnapshotID: "snap-b1", RunID: "sms-run-1", DiskKey: "2001", Seq: 1}}
	if err := s.CommitReplicaSet(ctx, set, made); err != nil {
		t.Fatal(err)
	}
	got := ok(s.GetReplicaSet(ctx, j.ReplicationJobID)).must(t)
	if got.RunID != "sms-run-1" || string(got.Base) != string(base) || len(got.Disks) != 2 || got.UpdatedAt.IsZero() {
		t.Fatalf("set read back: %+v", got)
	}
	if d := got.Disks[0]; d.Key != "2000" || d.SnapshotID != "snap-a1" || d.ChangeID != "v1:4:a" || d.Capacity != 4<<30 || d.VolumeGiB != 4 || !d.Encrypted || d.KMSKeyID != "arn:k" {
		t.Errorf("disks are listed by their place in the VM: the first is %+v", d)
	}
	if d, ok := got.Disk("2001"); !ok || d.SnapshotID != "snap-b1" {
		t.Errorf("disk 2001: %+v %v", d, ok)
	}

	// Job-wide fields change without touching the chains.
	at := t0.Add(time.Hour)
	ok(s.UpdateReplicaSet(ctx, j.ReplicationJobID, func(x *store.ReplicaSet) error {
		x.VerifiedAt = at
		return nil
	})).must(t)
	if got := ok(s.GetReplicaSet(ctx, j.ReplicationJobID)).must(t); !got.VerifiedAt.Equal(at) || len(got.Disks) != 2 {
		t.Errorf("after an update: %+v", got)
	}

	// A second run replaces one disk's head and drops the other disk.
	set2 := store.ReplicaSet{JobID: j.ReplicationJobID, RunID: "sms-run-2", Disks: []store.ReplicaDisk{
		{Disk: 0, Key: "2000", SnapshotID: "snap-a2", Seq: 2, Capacity: 4 << 30, VolumeGiB: 4}}}
	if err := s.CommitReplicaSet(ctx, set2, []store.ReplicaSnapshot{{SnapshotID: "snap-a2", RunID: "sms-run-2", DiskKey: "2000", Seq: 2}}); err != nil {
		t.Fatal(err)
	}
	second := ok(s.GetReplicaSet(ctx, j.ReplicationJobID)).must(t)
	if len(second.Disks) != 1 || second.Disks[0].SnapshotID != "snap-a2" || second.Base != nil {
		t.Errorf("after the second commit: %+v", second)
	}
	if !second.CreatedAt.Equal(got.CreatedAt) || second.CreatedAt.IsZero() {
		t.Errorf("the set's creation moved from %v to %v", got.CreatedAt, second.CreatedAt)
	}
	hist := ok(s.ReplicaSnapshots(ctx, j.ReplicationJobID)).must(t)
	if len(hist) != 3 || hist[2].SnapshotID != "snap-a2" || hist[0].JobID != j.ReplicationJobID || hist[0].CreatedAt.IsZero() {
		t.Fatalf("history: %+v", hist)
	}
	wantErr(t, s.ForgetReplicaSnapshot(ctx, "snap-a2"), store.ErrConflict, j.ReplicationJobID)
	if err := s.ForgetReplicaSnapshot(ctx, "snap-a1"); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetReplicaSnapshot(ctx, "snap-never"); err != nil {
		t.Errorf("forgetting a snapshot not kept: %v", err)
	}
	if all := ok(s.ReplicaSnapshots(ctx, "")).must(t); len(all) != 2 {
		t.Errorf("every job's history: %+v", all)
	}

	if err := s.DeleteReplicaSet(ctx, j.ReplicationJobID); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetReplicaSet(ctx, j.ReplicationJobID)
	wantErr(t, err, store.ErrNotFound)
	if left := ok(s.ReplicaSnapshots(ctx, j.ReplicationJobID)).must(t); len(left) != 0 {
		t.Errorf("history after deletion: %+v", left)
	}
	if err := s.DeleteReplicaSet(ctx, j.ReplicationJobID); err != nil {
		t.Errorf("deleting again: %v", err)
	}
}

// testManifest checks manifest chunks: read as of a seq (the newest not
// above it), replaced in place, dropped from a seq, and compacted by a
// commit to the newest version at or below the head.
func testManifest(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, j := fixture(t, s)
	job := j.ReplicationJobID
	put := func(chunk, seq int64, data string) {
		t.Helper()
		if err := s.PutManifestChunk(ctx, store.ManifestChunk{JobID: job, DiskKey: "2000", Chunk: chunk, Seq: seq, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	read := func(chunk, seq int64) string {
		t.Helper()
		c, err := s.ManifestChunk(ctx, job, "2000", chunk, seq)
		if err != nil {
			t.Fatalf("chunk %d as of %d: %v", chunk, seq, err)
		}
		return string(c.Data)
	}
	wantErr(t, s.PutManifestChunk(ctx, store.ManifestChunk{JobID: job, Chunk: 0}), store.ErrInvalid)
	put(0, 1, "c0 at 1")
	put(1, 1, "c1 at 1")
	put(0, 2, "c0 at 2")
	put(1, 3, "c1 at 3 (a run writing)")
	if got := read(0, 1); got != "c0 at 1" {
		t.Errorf("chunk 0 as of 1: %q", got)
	}
	if got := read(0, 5); got != "c0 at 2" {
		t.Errorf("chunk 0 as of 5: %q", got)
	}
	if got := read(1, 2); got != "c1 at 1" {
		t.Errorf("chunk 1 as of 2: %q", got)
	}
	_, err := s.ManifestChunk(ctx, job, "2000", 0, 0)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.ManifestChunk(ctx, job, "2001", 0, 9)
	wantErr(t, err, store.ErrNotFound)
	put(0, 2, "c0 at 2, again")
	if got := read(0, 2); got != "c0 at 2, again" {
		t.Errorf("a chunk put again at its seq: %q", got)
	}

	// Committing seq 2 keeps, per chunk, the newest at or below 2 and what
	// is above it.
	if err := s.CommitReplicaSet(ctx, store.ReplicaSet{JobID: job, Disks: []store.ReplicaDisk{{Key: "2000", SnapshotID: "snap-2", Seq: 2}}}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = s.ManifestChunk(ctx, job, "2000", 0, 1)
	wantErr(t, err, store.ErrNotFound) // superseded by seq 2
	if got := read(1, 2); got != "c1 at 1" {
		t.Errorf("a chunk unchanged since seq 1 is kept: %q", got)
	}
	if got := read(1, 3); got != "c1 at 3 (a run writing)" {
		t.Errorf("a chunk above the head is kept: %q", got)
	}
	if err := s.DropManifest(ctx, job, "2000", 3); err != nil {
		t.Fatal(err)
	}
	if got := read(1, 3); got != "c1 at 1" {
		t.Errorf("after dropping from 3: %q", got)
	}
	big := bytes.Repeat([]byte{0, 1, 2, 0xff}, 8<<10)
	if err := s.PutManifestChunk(ctx, store.ManifestChunk{JobID: job, DiskKey: "2000", Chunk: 7, Seq: 2, Data: big}); err != nil {
		t.Fatal(err)
	}
	if c := ok(s.ManifestChunk(ctx, job, "2000", 7, 2)).must(t); !bytes.Equal(c.Data, big) || c.Seq != 2 {
		t.Error("a binary chunk did not read back byte for byte")
	}
}

// testJobModes checks the incremental fields of a job: the sub-hour
// frequencies exist for incremental jobs only, and every field reads back.
func testJobModes(t *testing.T, s store.Store) {
	ctx := context.Background()
	src := newSource(t, s, "vc-modes")
	sv := newServer(t, s, src, "vm-modes")
	base := store.ReplicationJob{ServerID: sv.ServerID, SeedReplicationTime: t0}
	for _, bad := range []store.ReplicationJob{
		func(j store.ReplicationJob) store.ReplicationJob { j.FrequencyMinutes = 15; return j }(base),
		func(j store.ReplicationJob) store.ReplicationJob {
			j.Mode, j.FrequencyMinutes = store.ModeIncremental, 10
			return j
		}(base),
		func(j store.ReplicationJob) store.ReplicationJob {
			j.Mode, j.FrequencyMinutes, j.Frequency = store.ModeIncremental, 30, 2
			return j
		}(base),
		func(j store.ReplicationJob) store.ReplicationJob { j.Mode, j.Frequency = "sometimes", 1; return j }(base),
		func(j store.ReplicationJob) store.ReplicationJob { j.Frequency, j.NoConversion = 1, true; return j }(base),
	} {
		_, err := s.CreateJob(ctx, bad)
		wantErr(t, err, store.ErrInvalid)
	}
	j := base
	j.Mode, j.FrequencyMinutes, j.NoConversion = store.ModeIncremental, 20, true
	made := ok(s.CreateJob(ctx, j)).must(t)
	if made.Interval() != 20*time.Minute {
		t.Errorf("interval %s", made.Interval())
	}
	ok(s.UpdateJob(ctx, made.ReplicationJobID, func(x *store.ReplicationJob) error {
		x.VerifyRequested = true
		return nil
	})).must(t)
	got := ok(s.GetJob(ctx, made.ReplicationJobID)).must(t)
	if got.Mode != store.ModeIncremental || got.FrequencyMinutes != 20 || !got.NoConversion || !got.VerifyRequested || got.Frequency != 0 {
		t.Errorf("job read back: %+v", got)
	}
	_, err := s.UpdateJob(ctx, made.ReplicationJobID, func(x *store.ReplicationJob) error {
		x.Mode = store.ModeFull
		return nil
	})
	wantErr(t, err, store.ErrInvalid) // 20 minutes apart is for incremental jobs

	// A run's replication record reads back.
	r := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: made.ReplicationJobID})).must(t)[0]
	rep := &store.RunReplication{BytesRead: 3 << 20, BytesSent: 1 << 20, BlocksChanged: 2,
		Disks:        []store.DiskReplication{{Disk: 0, Key: "2000", SnapshotID: "snap-1", Capacity: 4 << 30, BlocksChanged: 2, Resync: "reset"}},
		Verification: &store.Verification{Blocks: 66, Sampled: 64, At: t0}}
	ok(s.UpdateRun(ctx, r.ReplicationRunID, func(x *store.ReplicationRun) error {
		x.Replication, x.Progress.Mode = rep, store.ModeIncremental
		return nil
	})).must(t)
	back := ok(s.GetRun(ctx, r.ReplicationRunID)).must(t)
	if back.Replication == nil || back.Replication.BytesSent != 1<<20 || back.Replication.Disks[0].Resync != "reset" ||
		back.Replication.Verification.Sampled != 64 || back.Progress.Mode != store.ModeIncremental {
		t.Errorf("run read back: %+v", back.Replication)
	}
	if v := back.Replication.Verification.String(); v != "verified: 66 blocks (64 sampled), 0 mismatches" {
		t.Errorf("verification reads %q", v)
	}
}
