package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Replicas is the store's role for incremental replication: what a job
// keeps between runs. Per disk, the replica snapshot the next run writes on
// top of (its parent), the source's change id of the point in time that
// replica equals, and the manifest of every block's checksum there, carried
// forward run to run; per job, the source's base checkpoint; and the
// replica snapshots the job keeps (its history), which retention prunes
// with the job's AMIs. connector/replication owns what the fields mean
// (the manifest chunks are opaque here); the store keeps them consistent:
// a set is committed whole, and a chunk is read as of a replica.
type Replicas interface {
	// GetReplicaSet returns the job's current replica set; ErrNotFound
	// when the job has none (no incremental run has finished its copy).
	GetReplicaSet(ctx context.Context, jobID string) (ReplicaSet, error)
	// CommitReplicaSet makes set the job's current one, in one
	// transaction: its disks become the heads of the chains (a disk not in
	// set is dropped), the snapshots in made join the job's history, and
	// each disk's manifest chunks superseded at its Seq are deleted (only
	// the newest at or below Seq of each chunk is kept, and those above
	// Seq, which a running run may be writing). UpdatedAt is set by the
	// store, and CreatedAt kept from the set before (now for the first). ErrNotFound if the job does not exist; ErrInvalid on a disk
	// without a snapshot or key, or two disks with one key.
	CommitReplicaSet(ctx context.Context, set ReplicaSet, made []ReplicaSnapshot) error
	// UpdateReplicaSet applies fn to the job's current set and stores its
	// job-wide fields (Base, VerifiedAt, RunID); fn must not change the
	// disks (CommitReplicaSet does). ErrNotFound when there is no set.
	UpdateReplicaSet(ctx context.Context, jobID string, fn func(*ReplicaSet) error) (ReplicaSet, error)
	// DeleteReplicaSet forgets everything the job keeps: its set, history
	// and manifests (the job is deleted; the caller deleted the snapshots
	// first). Deleting what does not exist is not an error.
	DeleteReplicaSet(ctx context.Context, jobID string) error

	// ReplicaSnapshots lists the replica snapshots kept, of one job (every
	// job's when jobID is ""), oldest first.
	ReplicaSnapshots(ctx context.Context, jobID string) ([]ReplicaSnapshot, error)
	// ForgetReplicaSnapshot removes a snapshot from its job's history once
	// it is deleted. ErrConflict while it is the head of a chain;
	// forgetting one not kept is not an error.
	ForgetReplicaSnapshot(ctx context.Context, snapshotID string) error

	// PutManifestChunk stores a chunk of a disk's manifest at a seq,
	// replacing one stored at the same place.
	PutManifestChunk(ctx context.Context, c ManifestChunk) error
	// ManifestChunk returns chunk number chunk of a disk's manifest as of
	// seq: the one stored at the highest seq not above it. ErrNotFound
	// when none is.
	ManifestChunk(ctx context.Context, jobID, diskKey string, chunk, seq int64) (ManifestChunk, error)
	// DropManifest deletes a disk's chunks stored at fromSeq or above (a
	// failed run's writes, before another run writes that seq again).
	DropManifest(ctx context.Context, jobID, diskKey string, fromSeq int64) error
}

// ReplicaSet is what an incremental job keeps between runs.
type ReplicaSet struct {
	JobID string `json:"jobId"`
	// RunID is the run that made the set current.
	RunID string `json:"runId"`
	// Base is the source's base checkpoint (source.Base, opaque here): the
	// next run releases it once it kept a newer one.
	Base json.RawMessage `json:"base,omitempty"`
	// VerifiedAt is when every block of the set was last read back and
	// found equal to the manifest (zero: never).
	VerifiedAt time.Time     `json:"verifiedAt,omitzero"`
	Disks      []ReplicaDisk `json:"disks"`
	// CreatedAt is when the job's first set was committed (kept by later
	// commits); UpdatedAt when this one was.
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Disk returns the set's disk with key, if any.
func (s ReplicaSet) Disk(key string) (ReplicaDisk, bool) {
	for _, d := range s.Disks {
		if d.Key == key {
			return d, true
		}
	}
	return ReplicaDisk{}, false
}

// ReplicaDisk is the head of one disk's chain.
type ReplicaDisk struct {
	// Disk is the disk's place in the VM (0: the boot disk); Key the
	// source's key of it.
	Disk int    `json:"disk"`
	Key  string `json:"key"`
	// SnapshotID is the replica the next run writes a child of.
	SnapshotID string `json:"snapshotId"`
	// Seq numbers the replicas of the chain; the manifest is read as of
	// it.
	Seq int64 `json:"seq"`
	// ChangeID is the source's change id of the point in time the replica
	// equals ("" when the source gave none: the next run reads the disk
	// whole, and sends only what differs).
	ChangeID string `json:"changeId,omitempty"`
	// Capacity is the source disk's size in bytes; VolumeGiB the replica's.
	Capacity  int64 `json:"capacity"`
	VolumeGiB int64 `json:"volumeGiB"`
	// Encrypted and KMSKeyID are the chain's encryption, set at its seed.
	Encrypted bool   `json:"encrypted,omitempty"`
	KMSKeyID  string `json:"kmsKeyId,omitempty"`
}

// ReplicaSnapshot is a replica snapshot a job keeps.
type ReplicaSnapshot struct {
	SnapshotID string    `json:"snapshotId"`
	JobID      string    `json:"jobId"`
	RunID      string    `json:"runId"`
	DiskKey    string    `json:"diskKey"`
	Seq        int64     `json:"seq"`
	CreatedAt  time.Time `json:"createdAt"`
}

// ManifestChunk is a run of consecutive blocks' checksums of one disk's
// manifest, as of a replica (Seq); Data is the caller's encoding.
type ManifestChunk struct {
	JobID   string `json:"jobId"`
	DiskKey string `json:"diskKey"`
	Chunk   int64  `json:"chunk"`
	Seq     int64  `json:"seq"`
	Data    []byte `json:"-"`
}

func validateReplicaSet(s ReplicaSet) error {
	if s.JobID == "" {
		return fmt.Errorf("%w: replica set: job id is empty", ErrInvalid)
	}
	seen := map[string]bool{}
	for _, d := range s.Disks {
		switch {
		case d.Key == "":
			return fmt.Errorf("%w: replica set of job %s: disk %d has no key", ErrInvalid, s.JobID, d.Disk)
		case d.SnapshotID == "":
			return fmt.Errorf("%w: replica set of job %s: disk %s has no replica snapshot", ErrInvalid, s.JobID, d.Key)
		case seen[d.Key]:
			return fmt.Errorf("%w: replica set of job %s: disk %s listed twice", ErrInvalid, s.JobID, d.Key)
		}
		seen[d.Key] = true
	}
	if len(s.Base) > 0 && !json.Valid(s.Base) {
		return fmt.Errorf("%w: replica set of job %s: base is not valid JSON", ErrInvalid, s.JobID)
	}
	return nil
}
