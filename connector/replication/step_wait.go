package replication

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// StepWaitImport waits for VM Import and records the AMI it made.
const StepWaitImport = "wait-import"

// kindAMI is the run's AMI with its snapshots (the aws.Result), recorded
// the moment it exists: until the run hands it to the job, undo deletes it
// by these ids, whatever is left of it.
const kindAMI = "ami"

type waitImportStep struct{}

func (waitImportStep) name() string { return StepWaitImport }

func (s waitImportStep) do(ctx context.Context, r *run) error {
	amis, err := r.entries(ctx, s, kindAMI)
	if err != nil {
		return err
	}
	for _, le := range amis {
		if le.State == store.LedgerCreated || le.State == store.LedgerReleased {
			return json.Unmarshal(le.Data, &r.result)
		}
	}
	// A resumed run whose task was started before the restart takes its
	// slot here.
	if err := r.takeSlot(ctx, StepWaitImport); err != nil {
		return err
	}
	defer r.freeSlot()
	res, err := r.target.Wait(ctx, r.imp, func(st awstarget.ImportStatus) {
		r.importProgress(ctx, st.Progress, st.StatusMessage)
	})
	if err != nil {
		return fmt.Errorf("vm %q: VM Import: %w", r.server.Name, err)
	}
	id, err := r.intend(ctx, s, kindAMI, res)
	if err == nil {
		err = r.e.Store.RecordCreated(ctx, id, res.ImageID, mustJSON(res))
	}
	if err != nil {
		return fmt.Errorf("vm %q: record image %s: %w", r.server.Name, res.ImageID, err)
	}
	// The import task is done: nothing of it is left to cancel.
	if es, err := r.entries(ctx, importStep{}, kindImportTask); err == nil {
		for _, le := range es {
			if unreleased(le) {
				_ = r.e.Store.RecordReleased(ctx, le.ID)
			}
		}
	}
	r.result = res
	return nil
}

// undo deletes the image and its snapshots by the recorded ids: the intent
// already holds them, so an entry whose creation was never confirmed still
// names them, and a crash between deregistering and deleting the snapshots
// finds them again.
func (waitImportStep) undo(ctx context.Context, u *undoer, le store.LedgerEntry) error {
	var res awstarget.Result
	for _, b := range [][]byte{le.Data, le.Intent} {
		if res.ImageID == "" && len(b) > 0 {
			_ = json.Unmarshal(b, &res)
		}
	}
	if res.ImageID == "" {
		res.ImageID = le.ResourceID
	}
	if res.ImageID == "" && len(res.SnapshotIDs) == 0 {
		return nil
	}
	return u.target.DeleteImage(ctx, res.ImageID, res.SnapshotIDs)
}
