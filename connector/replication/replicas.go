package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// DeleteJobReplicas deletes what an incremental job keeps between runs (a
// job being deleted): its replica snapshots but those an AMI of the job
// still uses (an AMI registered on its replicas as they are), and the
// source's base checkpoint. Each snapshot is recorded first in the ledger
// of the job's newest run, as retention records its deletions, so a crash
// part-way leaves the rest for the janitor. The job must be DELETING.
func (e *Engine) DeleteJobReplicas(ctx context.Context, jobID string) error {
	hist, err := e.Store.ReplicaSnapshots(ctx, jobID)
	if err != nil {
		return fmt.Errorf("delete the replicas of job %s: %w", jobID, err)
	}
	set, err := e.Store.GetReplicaSet(ctx, jobID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete the replicas of job %s: %w", jobID, err)
	}
	hasSet := err == nil
	if len(hist) == 0 && !hasSet {
		return nil
	}
	t, err := e.Target(ctx)
	if err != nil {
		return fmt.Errorf("delete the replicas of job %s: %w", jobID, err)
	}
	imgs, err := t.FindImages(ctx, map[string]string{TagJob: jobID})
	if err != nil {
		return fmt.Errorf("delete the replicas of job %s: %w", jobID, err)
	}
	used := map[string]bool{}
	for _, img := range imgs {
		for _, s := range img.SnapshotIDs {
			used[s] = true
		}
	}
	runs, err := e.Store.ListRuns(ctx, jobID, 1)
	if err != nil || len(runs) == 0 {
		return fmt.Errorf("delete the replicas of job %s: no run to record the deletion under (%v)", jobID, err)
	}
	owner := runs[0].ReplicationRunID
	var pending []int64
	for _, h := range hist {
		if used[h.SnapshotID] {
			continue
		}
		id, err := e.Store.RecordIntent(ctx, owner, StepRetention, kindAMIDeletion, mustJSON(awstarget.Image{SnapshotIDs: []string{h.SnapshotID}}))
		if err != nil {
			return fmt.Errorf("delete the replicas of job %s: record replica %s: %w", jobID, h.SnapshotID, err)
		}
		pending = append(pending, id)
	}
	if hasSet && len(set.Base) > 0 {
		if err := e.releaseJobBase(ctx, jobID, set.Base); err != nil {
			return fmt.Errorf("delete the replicas of job %s: %w", jobID, err)
		}
	}
	if err := e.Store.DeleteReplicaSet(ctx, jobID); err != nil {
		return err
	}
	for _, id := range pending {
		le, err := e.Store.GetLedgerEntry(ctx, id)
		if err == nil {
			err = e.finishDeletion(ctx, t, le)
		}
		if err != nil {
			return fmt.Errorf("delete the replicas of job %s: %w", jobID, err)
		}
	}
	return nil
}

// releaseJobBase releases the source's base checkpoint a job kept.
func (e *Engine) releaseJobBase(ctx context.Context, jobID string, raw json.RawMessage) error {
	var base source.Base
	if err := json.Unmarshal(raw, &base); err != nil || base.Checkpoint.ID == "" {
		return nil
	}
	job, err := e.Store.GetJob(ctx, jobID)
	if err != nil {
		return err
	}
	srv, err := e.Store.GetServer(ctx, job.ServerID)
	if err != nil {
		return err
	}
	src, err := e.Source(ctx, srv.SourceID)
	if err != nil {
		return fmt.Errorf("connect to the source to release its change point: %w", err)
	}
	defer src.Close()
	if err := src.Release(ctx, base.Checkpoint); err != nil {
		return fmt.Errorf("release the change point %q: %w", base.Checkpoint.Name, err)
	}
	return nil
}
