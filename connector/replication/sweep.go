package replication

import (
	"context"
	"errors"
	"fmt"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// Sweep removes the AMIs and EBS snapshots tagged with a run of this
// connector that nothing owns any more — what a crash left behind where no
// ledger entry could tell (or a user deregistered an AMI and left its
// snapshots). It leaves alone what carries a run this store does not know
// (another connector in the same account), what a live run or a pending
// cleanup may still own, every AMI a completed run handed to its job, and
// every snapshot of a registered AMI. The daemon runs it at start and daily.
func (e *Engine) Sweep(ctx context.Context) (removed []string, err error) {
	t, err := e.Target(ctx)
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	imgs, err := t.FindImages(ctx, map[string]string{TagRun: ""})
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	snaps, err := t.FindSnapshots(ctx, map[string]string{TagRun: ""})
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	// Read after the listings: a cleanup that starts meanwhile is seen.
	pending, err := e.Store.UnreleasedLedger(ctx)
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	busy := map[string]bool{}
	for _, le := range pending {
		busy[le.RunID] = true
	}
	// Replica snapshots a job keeps are in no AMI by design (VM Import
	// converts copies of them).
	replicas, err := e.Store.ReplicaSnapshots(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	kept := map[string]bool{}
	for _, h := range replicas {
		kept[h.SnapshotID] = true
	}
	runs := map[string]*store.ReplicationRun{}
	// settled returns the run if it is ours, ended, and has nothing left to
	// clean up; nil otherwise.
	settled := func(id string) *store.ReplicationRun {
		if r, ok := runs[id]; ok {
			return r
		}
		runs[id] = nil
		if id == "" || busy[id] {
			return nil
		}
		r, err := e.Store.GetRun(ctx, id)
		if err != nil || r.State.Live() {
			return nil
		}
		runs[id] = &r
		return &r
	}
	inImage := map[string]bool{}
	var errs []error
	for _, img := range imgs {
		for _, s := range img.SnapshotIDs {
			inImage[s] = true
		}
	}
	for _, img := range imgs {
		r := settled(img.Tags[TagRun])
		if r == nil || r.AmiID == img.ID {
			continue
		}
		e.logger().Warn("sweep: deleting an AMI no run owns", "ami", img.ID, "run", r.ReplicationRunID, "runState", r.State)
		if err := e.DeleteImage(ctx, t, r.ReplicationRunID, img); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, img.ID)
	}
	for _, s := range snaps {
		r := settled(s.Tags[TagRun])
		if r == nil || inImage[s.ID] || kept[s.ID] {
			continue
		}
		e.logger().Warn("sweep: deleting an EBS snapshot no AMI owns", "snapshot", s.ID, "run", r.ReplicationRunID, "runState", r.State)
		if err := e.DeleteImage(ctx, t, r.ReplicationRunID, awstarget.Image{SnapshotIDs: []string{s.ID}}); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, s.ID)
	}
	return removed, errors.Join(errs...)
}
