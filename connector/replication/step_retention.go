package replication

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// StepRetention takes the run's AMI over from the wait-import step into
// the job's keeping (from here on only retention removes it), then keeps
// the job's newest AMIs and deletes the older ones.
const StepRetention = "retention"

// kindAMIDeletion is an AMI being deleted, with its snapshots, recorded
// before the deregistration: a crash between deregistering the image and
// deleting its snapshots leaves the ids here for the next attempt.
const kindAMIDeletion = "ami-deletion"

type retentionStep struct{}

func (retentionStep) info() Info {
	return Info{
		Name: StepRetention, Title: "Apply AMI retention", Weight: 1, Metric: "retention",
		Advice:  "Deleting an old AMI failed; the run's own AMI is kept. Check the connector's EC2 permissions (ec2:DeregisterImage, ec2:DeleteSnapshot); the next run or start retries it.",
		Effects: "takes the `ami` over from wait-import into the job's keeping; deletes the job's AMIs beyond N, each recorded first with its snapshots (`ami-deletion`)",
	}
}

// do never fails the run once the AMI is the job's: failing for an old AMI
// would discard the new one. What it could not delete stays recorded, for
// the janitor or the next run.
func (s retentionStep) do(ctx context.Context, r *run) error {
	// The AMI is made, named and recorded: a cancel or shutdown arriving
	// now does not take it from the job.
	keep := context.WithoutCancel(ctx)
	amis, err := r.handOver(keep, waitImportStep{}, s, kindAMI)
	if err != nil {
		return err
	}
	for _, le := range amis {
		if unreleased(le) {
			if err := r.e.Store.RecordReleased(keep, le.ID); err != nil {
				return fmt.Errorf("vm %q: hand AMI %s to the job: %w", r.server.Name, le.ResourceID, err)
			}
		}
	}
	if err := s.retain(ctx, r); err != nil {
		r.event(context.WithoutCancel(ctx), store.LevelWarn, "retention of job %s failed (retried later): %v", r.job.ReplicationJobID, err)
	}
	if err := s.pruneReplicas(ctx, r); err != nil {
		r.event(context.WithoutCancel(ctx), store.LevelWarn, "pruning the replica chains of job %s failed (retried later): %v", r.job.ReplicationJobID, err)
	}
	return nil
}

// pruneReplicas deletes the job's replica snapshots beyond its AMI
// retention: it keeps those of the runs whose AMIs it keeps, and the heads
// of its chains (the next run's parents). EBS keeps the blocks a later
// snapshot of a chain needs, so deleting an older one loses nothing the
// newer ones hold.
func (s retentionStep) pruneReplicas(ctx context.Context, r *run) error {
	keep := r.job.NumberOfRecentAmisToKeep
	if keep <= 0 {
		return nil // every AMI is kept, and so is every replica
	}
	hist, err := r.e.Store.ReplicaSnapshots(ctx, r.job.ReplicationJobID)
	if err != nil || len(hist) == 0 {
		return err
	}
	heads := map[string]bool{}
	if set, err := r.e.Store.GetReplicaSet(ctx, r.job.ReplicationJobID); err == nil {
		for _, d := range set.Disks {
			heads[d.SnapshotID] = true
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	imgs, err := r.target.FindImages(ctx, map[string]string{TagJob: r.job.ReplicationJobID})
	if err != nil {
		return err
	}
	kept := map[string]bool{r.run.ReplicationRunID: true}
	for _, img := range imgs {
		kept[img.Tags[TagRun]] = true
	}
	for _, h := range hist {
		if heads[h.SnapshotID] || kept[h.RunID] {
			continue
		}
		if err := r.e.DeleteImage(ctx, r.target, r.run.ReplicationRunID, awstarget.Image{SnapshotIDs: []string{h.SnapshotID}}); err != nil {
			return err
		}
		if err := r.e.Store.ForgetReplicaSnapshot(ctx, h.SnapshotID); err != nil {
			return err
		}
	}
	return nil
}

func (s retentionStep) retain(ctx context.Context, r *run) error {
	// Deletions a restart cut short are finished first.
	pending, err := r.entries(ctx, s, kindAMIDeletion)
	if err != nil {
		return err
	}
	for _, le := range pending {
		if unreleased(le) {
			if err := r.e.finishDeletion(ctx, r.target, le); err != nil {
				return err
			}
		}
	}
	keep := r.job.NumberOfRecentAmisToKeep
	if keep <= 0 {
		return nil // SMS: 0 keeps every AMI
	}
	imgs, err := r.target.FindImages(ctx, map[string]string{TagJob: r.job.ReplicationJobID})
	if err != nil {
		return err
	}
	slices.SortFunc(imgs, func(a, b awstarget.Image) int {
		return cmp.Or(b.CreationDate.Compare(a.CreationDate), cmp.Compare(b.ID, a.ID))
	})
	var removed []string
	defer func() {
		if len(removed) > 0 {
			r.event(context.WithoutCancel(ctx), store.LevelInfo, "retention: kept the %d most recent AMIs, deleted %v", keep, removed)
		}
	}()
	for _, img := range imgs[min(keep, len(imgs)):] {
		if err := r.e.DeleteImage(ctx, r.target, r.run.ReplicationRunID, img); err != nil {
			return err
		}
		removed = append(removed, img.ID)
	}
	return nil
}

// undo finishes a deletion; an AMI taken into the job's keeping is the
// job's, and stays.
func (retentionStep) undo(ctx context.Context, u *undoer, le store.LedgerEntry) error {
	if le.Kind == kindAMI {
		return nil
	}
	return u.e.finishDeletion(ctx, u.target, le)
}

// DeleteImage deletes an AMI and its snapshots, recording them first in the
// ledger of run runID (as a retention deletion), so that a crash at any
// point leaves their ids for the next start to finish the job. The image's
// own run is the natural owner; any run of the same job will do.
func (e *Engine) DeleteImage(ctx context.Context, t Target, runID string, img awstarget.Image) error {
	id, err := e.Store.RecordIntent(ctx, runID, StepRetention, kindAMIDeletion, mustJSON(img))
	if err != nil {
		return fmt.Errorf("delete AMI %s: record it: %w", img.ID, err)
	}
	le, err := e.Store.GetLedgerEntry(ctx, id)
	if err != nil {
		return fmt.Errorf("delete AMI %s: %w", img.ID, err)
	}
	if err := e.finishDeletion(ctx, t, le); err != nil {
		return err
	}
	e.logger().Info("deleted AMI", "ami", img.ID, "snapshots", img.SnapshotIDs, "run", runID)
	return nil
}

func (e *Engine) finishDeletion(ctx context.Context, t Target, le store.LedgerEntry) error {
	var img awstarget.Image
	if err := json.Unmarshal(le.Intent, &img); err != nil {
		return fmt.Errorf("read the recorded AMI deletion: %w", err)
	}
	snaps, err := e.sparing(ctx, img.SnapshotIDs)
	if err != nil {
		return err
	}
	if err := t.DeleteImage(ctx, img.ID, snaps); err != nil {
		return err
	}
	return e.Store.RecordReleased(ctx, le.ID)
}

// sparing is snapshot ids without the heads of any live job's replica chains:
// an AMI registered on replicas as they are shares its snapshots with
// them, and deleting that AMI (retention, an undo) must leave the next
// run's parents.
func (e *Engine) sparing(ctx context.Context, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return ids, nil
	}
	hist, err := e.Store.ReplicaSnapshots(ctx, "")
	if err != nil {
		return nil, err
	}
	jobs := map[string]bool{}
	for _, h := range hist {
		if slices.Contains(ids, h.SnapshotID) {
			jobs[h.JobID] = true
		}
	}
	heads := map[string]bool{}
	for job := range jobs {
		if j, err := e.Store.GetJob(ctx, job); err == nil && (j.State == store.JobDeleting || j.State == store.JobDeleted) {
			continue // a job being deleted keeps nothing
		}
		set, err := e.Store.GetReplicaSet(ctx, job)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, d := range set.Disks {
			heads[d.SnapshotID] = true
		}
	}
	var out []string
	for _, id := range ids {
		if !heads[id] {
			out = append(out, id)
		}
	}
	return out, nil
}

// DeleteJobImages deletes every AMI of a job with its snapshots (a job
// deleted with its AMIs), each recorded first as retention does, under the
// run that made it (or the job's newest run), so a crash part-way leaves the
// rest for the janitor.
func (e *Engine) DeleteJobImages(ctx context.Context, jobID string) (deleted []string, err error) {
	t, err := e.Target(ctx)
	if err != nil {
		return nil, fmt.Errorf("delete the AMIs of job %s: %w", jobID, err)
	}
	imgs, err := t.FindImages(ctx, map[string]string{TagJob: jobID})
	if err != nil {
		return nil, fmt.Errorf("delete the AMIs of job %s: %w", jobID, err)
	}
	if len(imgs) == 0 {
		return nil, nil
	}
	runs, err := e.Store.ListRuns(ctx, jobID, 0)
	if err != nil {
		return nil, fmt.Errorf("delete the AMIs of job %s: %w", jobID, err)
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("delete the AMIs of job %s: the job has no run to record the deletion under", jobID)
	}
	ofJob := map[string]bool{}
	for _, r := range runs {
		ofJob[r.ReplicationRunID] = true
	}
	for _, img := range imgs {
		owner := img.Tags[TagRun]
		if !ofJob[owner] {
			owner = runs[0].ReplicationRunID
		}
		if err := e.DeleteImage(ctx, t, owner, img); err != nil {
			return deleted, fmt.Errorf("delete the AMIs of job %s: %w", jobID, err)
		}
		deleted = append(deleted, img.ID)
	}
	return deleted, nil
}
