package replication

import (
	"context"
	"fmt"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
)

// StepReleaseSnapshot removes the VM checkpoint as soon as the disks are
// staged, so the VM does not run on a snapshot during the import. It takes
// the checkpoint over from the snapshot step; until it has removed it, its
// undo does.
const StepReleaseSnapshot = "release-snapshot"

type releaseSnapshotStep struct{}

func (releaseSnapshotStep) info() Info {
	return Info{
		Name: StepReleaseSnapshot, Title: "Remove the VM snapshot", Weight: 3, Metric: "release_snapshot", Modes: fullOnly,
		Advice:  "The connector could not remove the VM's snapshot: test the source; the snapshot is named rehost-<run id>, and the next start removes it if it is still there.",
		Effects: "takes the `vm-snapshot` over from snapshot and removes it",
	}
}

func (s releaseSnapshotStep) do(ctx context.Context, r *run) error {
	es, err := r.handOver(ctx, snapshotStep{}, s, kindVMSnapshot)
	if err != nil {
		return err
	}
	for _, le := range es {
		if !unreleased(le) {
			continue
		}
		if err := removeCheckpoint(ctx, r.src, le); err != nil {
			return fmt.Errorf("vm %q: %w", r.server.Name, err)
		}
		if err := r.e.Store.RecordReleased(ctx, le.ID); err != nil {
			return fmt.Errorf("vm %q: record snapshot removal: %w", r.server.Name, err)
		}
	}
	r.cp = source.Checkpoint{}
	return nil
}

func (releaseSnapshotStep) undo(ctx context.Context, u *undoer, le store.LedgerEntry) error {
	return undoCheckpoint(ctx, u, le)
}
