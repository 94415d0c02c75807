package replication

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
)

// StepKeep ends the source's side of an incremental run: the VM checkpoint
// becomes the base the next run's changed areas are asked against
// (source.Keep: vSphere removes the snapshot and keeps the change ids,
// Hyper-V turns it into a reference point, Azure keeps the snapshots), and
// the verified replicas become the job's, the parents of the next run's.
// The base before is then released.
const StepKeep = "keep"

// Kinds of the keep step.
const (
	// kindKeptBase is the base Keep made of the checkpoint (its data the
	// source.Base), recorded before anything else; once the replica set
	// is committed it is the job's.
	kindKeptBase = "source-base"
	// kindOldBase is the base of the run before, released once the new
	// set is committed (intent: oldBase).
	kindOldBase = "old-base"
)

type keepStep struct{}

func (keepStep) info() Info {
	return Info{
		Name: StepKeep, Title: "Keep the change point, remove the VM snapshot", Weight: 3, Metric: "keep", Modes: incrementalOnly,
		Advice:  "The connector could not keep the VM's change point: test the source; the snapshot is named rehost-<run id>. The next run reads the disks whole if the change point is lost, and sends only what differs.",
		Effects: "takes the `vm-snapshot` over from snapshot and keeps it as the next run's base (`source-base`, recorded the moment the source answers); commits the replica set (the verified replicas, their change ids and seqs become the job's); releases the base of the run before (`old-base`, recorded first)",
	}
}

// oldBase is what the ledger holds of a base to release.
type oldBase struct {
	SourceID string      `json:"sourceId"`
	Base     source.Base `json:"base"`
}

func (s keepStep) do(ctx context.Context, r *run) error {
	if err := r.loadPlans(ctx); err != nil {
		return err
	}
	if err := r.loadHeads(ctx); err != nil {
		return err
	}
	if err := r.loadPrevious(ctx); err != nil {
		return err
	}
	committed := r.prev != nil && r.prev.RunID == r.run.ReplicationRunID
	if !committed {
		base, err := s.keepBase(ctx, r)
		if err != nil {
			return err
		}
		if err := s.recordOldBase(ctx, r, base); err != nil {
			return err
		}
		if err := s.commit(ctx, r, base); err != nil {
			return err
		}
	}
	// The replicas and the base are the job's now.
	all, err := r.e.Store.LedgerForRun(ctx, r.run.ReplicationRunID)
	if err != nil {
		return fmt.Errorf("vm %q: read the run's ledger: %w", r.server.Name, err)
	}
	for _, le := range all {
		if unreleased(le) && (le.Kind == kindReplica || le.Kind == kindKeptBase) {
			if err := r.e.Store.RecordReleased(ctx, le.ID); err != nil {
				return fmt.Errorf("vm %q: hand the replicas to the job: %w", r.server.Name, err)
			}
		}
	}
	for _, le := range all {
		if le.Step == s.info().Name && le.Kind == kindOldBase && unreleased(le) {
			if err := releaseBase(ctx, r.src, le); err != nil {
				return fmt.Errorf("vm %q: release the change point of the run before: %w", r.server.Name, err)
			}
			if err := r.e.Store.RecordReleased(ctx, le.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// keepBase makes the checkpoint the next run's base, or reads the base a
// restart found recorded.
func (s keepStep) keepBase(ctx context.Context, r *run) (source.Base, error) {
	snaps, err := r.handOver(ctx, snapshotStep{}, s, kindVMSnapshot)
	if err != nil {
		return source.Base{}, err
	}
	for _, le := range snaps {
		// Taken over before a restart: the snapshot step no longer reads it.
		if unreleased(le) && r.cp.ID == "" && len(le.Data) > 0 {
			if err := json.Unmarshal(le.Data, &r.cp); err != nil {
				return source.Base{}, fmt.Errorf("vm %q: read the recorded snapshot: %w", r.server.Name, err)
			}
		}
	}
	bases, err := r.entries(ctx, s, kindKeptBase)
	if err != nil {
		return source.Base{}, err
	}
	var base source.Base
	var id int64
	if n := len(bases); n > 0 {
		if le := bases[n-1]; made(le) {
			if err := json.Unmarshal(le.Data, &base); err != nil {
				return base, fmt.Errorf("vm %q: read the recorded change point: %w", r.server.Name, err)
			}
			return base, s.releaseSnapshots(ctx, r, snaps)
		} else {
			id = le.ID
		}
	}
	if id == 0 {
		if id, err = r.intend(ctx, s, kindKeptBase, snapshotIntent{SourceID: r.server.SourceID, VMID: r.vm.ID, Name: snapshotName(r.run.ReplicationRunID)}); err != nil {
			return base, fmt.Errorf("vm %q: record the change point's intent: %w", r.server.Name, err)
		}
	}
	base, err = r.src.(source.ChangeTracker).Keep(ctx, r.cp)
	if errors.Is(err, source.ErrNotFound) {
		// Kept before a restart, whose answer was not recorded, and the
		// source cannot say it again (vSphere): the change ids are lost,
		// and the next run reads the disks whole, sending only what
		// differs.
		r.event(ctx, store.LevelWarn, "vm %q: the change point of this run was lost (%v); the next run reads the disks whole", r.server.Name, err)
		base, err = source.Base{}, nil
	}
	if err != nil {
		return base, fmt.Errorf("vm %q: keep the change point of snapshot %q: %w", r.server.Name, r.cp.Name, err)
	}
	if err := r.e.Store.RecordCreated(ctx, id, cmp.Or(base.Checkpoint.ID, base.Checkpoint.Name, r.cp.Name), mustJSON(base)); err != nil {
		return base, fmt.Errorf("vm %q: record the change point: %w", r.server.Name, err)
	}
	return base, s.releaseSnapshots(ctx, r, snaps)
}

// releaseSnapshots records the checkpoint consumed by Keep.
func (keepStep) releaseSnapshots(ctx context.Context, r *run, snaps []store.LedgerEntry) error {
	for _, le := range snaps {
		if unreleased(le) {
			if err := r.e.Store.RecordReleased(ctx, le.ID); err != nil {
				return fmt.Errorf("vm %q: record the snapshot kept: %w", r.server.Name, err)
			}
		}
	}
	r.cp = source.Checkpoint{}
	return nil
}

// recordOldBase records the base of the run before, to release once the
// new set is committed (which forgets it).
func (s keepStep) recordOldBase(ctx context.Context, r *run, base source.Base) error {
	if r.prev == nil || len(r.prev.Base) == 0 {
		return nil
	}
	var old source.Base
	if err := json.Unmarshal(r.prev.Base, &old); err != nil || old.Checkpoint.ID == "" || old.Checkpoint == base.Checkpoint {
		return nil // holds nothing on the source (vSphere), or is the same
	}
	es, err := r.entries(ctx, s, kindOldBase)
	if err != nil || len(es) > 0 {
		return err
	}
	_, err = r.intend(ctx, s, kindOldBase, oldBase{SourceID: r.server.SourceID, Base: old})
	if err != nil {
		return fmt.Errorf("vm %q: record the change point to release: %w", r.server.Name, err)
	}
	return nil
}

// commit makes the run's verified replicas and base the job's.
func (keepStep) commit(ctx context.Context, r *run, base source.Base) error {
	set := store.ReplicaSet{JobID: r.job.ReplicationJobID, RunID: r.run.ReplicationRunID}
	if base.Checkpoint.ID != "" || len(base.ChangeIDs) > 0 {
		set.Base = mustJSON(base)
	}
	if r.prev != nil {
		set.VerifiedAt = r.prev.VerifiedAt
	}
	full := false
	if cur, err := r.e.Store.GetRun(ctx, r.run.ReplicationRunID); err == nil && cur.Replication != nil {
		if v := cur.Replication.Verification; v != nil && v.Full {
			set.VerifiedAt, full = v.At, true
		}
	}
	for _, p := range r.plans {
		head := r.heads[p.Disk]
		if head == "" {
			return fmt.Errorf("vm %q disk %d: no verified replica to keep", r.server.Name, p.Disk+1)
		}
		set.Disks = append(set.Disks, store.ReplicaDisk{Disk: p.Disk, Key: p.Key, SnapshotID: head, Seq: p.Seq,
			ChangeID: base.ChangeIDs[p.Key], Capacity: p.Capacity, VolumeGiB: p.VolumeGiB, Encrypted: p.Encrypted, KMSKeyID: p.KMSKeyID})
	}
	all, err := r.e.Store.LedgerForRun(ctx, r.run.ReplicationRunID)
	if err != nil {
		return fmt.Errorf("vm %q: read the run's ledger: %w", r.server.Name, err)
	}
	var made []store.ReplicaSnapshot
	for _, le := range all {
		var in replicaIntent
		var data replicaData
		if le.Kind != kindReplica || !unreleased(le) || json.Unmarshal(le.Intent, &in) != nil || json.Unmarshal(le.Data, &data) != nil || !data.Done {
			continue
		}
		made = append(made, store.ReplicaSnapshot{SnapshotID: data.SnapshotID, RunID: r.run.ReplicationRunID, DiskKey: in.Key, Seq: in.Seq, CreatedAt: time.Now().UTC()})
	}
	if err := r.e.Store.CommitReplicaSet(ctx, set, made); err != nil {
		return fmt.Errorf("vm %q: keep the replicas for the next run: %w", r.server.Name, err)
	}
	if full && r.job.VerifyRequested {
		if _, err := r.e.Store.UpdateJob(ctx, r.job.ReplicationJobID, func(j *store.ReplicationJob) error {
			j.VerifyRequested = false
			return nil
		}); err != nil {
			return fmt.Errorf("vm %q: record the full verification done: %w", r.server.Name, err)
		}
	}
	r.prev = &set
	return nil
}

// loadHeads reads each disk's verified replica from the ledger.
func (r *run) loadHeads(ctx context.Context) error {
	if len(r.heads) == len(r.vm.Disks) {
		return nil
	}
	es, err := r.entries(ctx, verifyStep{}, kindVerification)
	if err != nil {
		return err
	}
	r.heads = map[int]string{}
	for _, le := range es {
		var v diskVerification
		if err := json.Unmarshal(le.Intent, &v); err != nil {
			return fmt.Errorf("vm %q: read the recorded verification: %w", r.server.Name, err)
		}
		r.heads[v.Disk] = v.Head
	}
	return nil
}

// releaseBase releases the base an old-base or source-base entry records.
func releaseBase(ctx context.Context, src source.Source, le store.LedgerEntry) error {
	var base source.Base
	if le.Kind == kindOldBase {
		var in oldBase
		if err := json.Unmarshal(le.Intent, &in); err != nil {
			return fmt.Errorf("read the recorded change point: %w", err)
		}
		base = in.Base
	} else if len(le.Data) > 0 {
		if err := json.Unmarshal(le.Data, &base); err != nil {
			return fmt.Errorf("read the recorded change point: %w", err)
		}
	}
	if base.Checkpoint.ID == "" {
		return nil
	}
	return src.Release(ctx, base.Checkpoint)
}

// undo removes the checkpoint it took over, or a base it kept but never
// committed (the job's base stays the one before), or finishes releasing
// the base before.
func (keepStep) undo(ctx context.Context, u *undoer, le store.LedgerEntry) error {
	switch le.Kind {
	case kindVMSnapshot:
		return undoCheckpoint(ctx, u, le)
	case kindKeptBase, kindOldBase:
		var in struct {
			SourceID string `json:"sourceId"`
		}
		if err := json.Unmarshal(le.Intent, &in); err != nil {
			return fmt.Errorf("read intent: %w", err)
		}
		src, err := u.source(ctx, in.SourceID)
		if err != nil {
			return err
		}
		return releaseBase(ctx, src, le)
	}
	return fmt.Errorf("unknown kind %q", le.Kind)
}
