package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
)

// StepSnapshot takes the run's point-in-time checkpoint of the VM.
const StepSnapshot = "snapshot"

// kindVMSnapshot is a VM checkpoint (vSphere snapshot, Hyper-V checkpoint,
// Azure disk snapshots), named after the run.
const kindVMSnapshot = "vm-snapshot"

type snapshotStep struct{}

func (snapshotStep) info() Info {
	return Info{
		Name: StepSnapshot, Title: "Snapshot the VM", Weight: 5, Metric: "snapshot",
		Advice:  "The connector could not snapshot the VM: test the source, check that the VM still exists and that no other task (a backup, another snapshot) holds it, then start the job again.",
		Effects: "VM snapshot `rehost-<run>` (`vm-snapshot`), found again by its name",
	}
}

// snapshotIntent is what the ledger holds of a VM checkpoint.
type snapshotIntent struct {
	SourceID string `json:"sourceId"`
	VMID     string `json:"vmId"`
	Name     string `json:"name"`
}

// snapshotName is the name of the run's VM checkpoint; leftovers are found by
// it.
func snapshotName(runID string) string { return "rehost-" + runID }

func (s snapshotStep) do(ctx context.Context, r *run) error {
	es, err := r.entries(ctx, s, kindVMSnapshot)
	if err != nil {
		return err
	}
	var id int64
	if len(es) > 0 {
		le := es[len(es)-1]
		switch le.State {
		case store.LedgerReleased, store.LedgerHandedOver:
			return nil // staged and released before a restart
		case store.LedgerCreated:
			if err := json.Unmarshal(le.Data, &r.cp); err != nil {
				return fmt.Errorf("vm %q: read the recorded snapshot: %w", r.server.Name, err)
			}
			return nil
		}
		id = le.ID
	}
	name := snapshotName(r.run.ReplicationRunID)
	if id == 0 {
		if id, err = r.intend(ctx, s, kindVMSnapshot, snapshotIntent{SourceID: r.server.SourceID, VMID: r.vm.ID, Name: name}); err != nil {
			return fmt.Errorf("vm %q: record snapshot intent: %w", r.server.Name, err)
		}
	}
	// Checkpoint is idempotent by name, so an intent left by a crash finds
	// the snapshot it may have made.
	// Where the platform tags what it makes (Azure snapshots), the
	// checkpoint carries the job and run, as every cloud resource does.
	cp, err := r.src.Checkpoint(source.WithTags(ctx, r.tags()), r.vm.ID, name)
	if err != nil {
		return fmt.Errorf("vm %q: take snapshot %q: %w", r.server.Name, name, err)
	}
	if err := r.e.Store.RecordCreated(ctx, id, cp.ID, mustJSON(cp)); err != nil {
		return fmt.Errorf("vm %q: record snapshot %s: %w", r.server.Name, cp.ID, err)
	}
	r.cp = cp
	consistency := "crash-consistent"
	if cp.Quiesced {
		consistency = "quiesced"
	}
	r.event(ctx, store.LevelInfo, "took %s snapshot %q of vm %q", consistency, name, r.server.Name)
	return nil
}

func (snapshotStep) undo(ctx context.Context, u *undoer, le store.LedgerEntry) error {
	return undoCheckpoint(ctx, u, le)
}

// undoCheckpoint removes a vm-snapshot entry's checkpoint, through the
// source the entry names.
func undoCheckpoint(ctx context.Context, u *undoer, le store.LedgerEntry) error {
	var in snapshotIntent
	if err := json.Unmarshal(le.Intent, &in); err != nil {
		return fmt.Errorf("read intent: %w", err)
	}
	src, err := u.source(ctx, in.SourceID)
	if err != nil {
		return err
	}
	return removeCheckpoint(ctx, src, le)
}

// removeCheckpoint removes the checkpoint a vm-snapshot entry records and,
// by name, one whose creation was cut off before its id was recorded (or a
// duplicate).
func removeCheckpoint(ctx context.Context, src source.Source, le store.LedgerEntry) error {
	var in snapshotIntent
	if err := json.Unmarshal(le.Intent, &in); err != nil {
		return fmt.Errorf("read intent: %w", err)
	}
	if le.State == store.LedgerCreated {
		var cp source.Checkpoint
		if err := json.Unmarshal(le.Data, &cp); err != nil {
			return fmt.Errorf("read the recorded snapshot: %w", err)
		}
		if err := src.Release(ctx, cp); err != nil {
			return fmt.Errorf("remove snapshot: %w", err)
		}
	}
	cps, err := src.Checkpoints(ctx, in.VMID, in.Name)
	if err != nil && !errors.Is(err, source.ErrNotFound) {
		return fmt.Errorf("look for snapshot %q: %w", in.Name, err)
	}
	for _, cp := range cps {
		if cp.Name != in.Name {
			continue
		}
		if err := src.Release(ctx, cp); err != nil {
			return fmt.Errorf("remove snapshot %q: %w", cp.Name, err)
		}
	}
	return nil
}
