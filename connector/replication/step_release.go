package replication

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
)

// StepReleaseSnapshot removes the VM checkpoint as soon as the disks are
// staged, so the VM does not run on a snapshot during the import.
const StepReleaseSnapshot = "release-snapshot"

type releaseSnapshotStep struct{ noEffects }

func (releaseSnapshotStep) name() string { return StepReleaseSnapshot }

func (releaseSnapshotStep) do(ctx context.Context, r *run) error {
	es, err := r.entries(ctx, snapshotStep{}, kindVMSnapshot)
	if err != nil {
		return err
	}
	for _, le := range es {
		if le.State != store.LedgerCreated {
			continue
		}
		var cp source.Checkpoint
		if err := json.Unmarshal(le.Data, &cp); err != nil {
			return fmt.Errorf("vm %q: read the recorded snapshot: %w", r.server.Name, err)
		}
		if err := r.src.Release(ctx, cp); err != nil {
			return fmt.Errorf("vm %q: remove snapshot %q: %w", r.server.Name, cp.Name, err)
		}
		if err := r.e.Store.RecordReleased(ctx, le.ID); err != nil {
			return fmt.Errorf("vm %q: record snapshot removal: %w", r.server.Name, err)
		}
	}
	r.cp = source.Checkpoint{}
	return nil
}
