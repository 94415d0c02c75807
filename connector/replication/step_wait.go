package replication

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// StepWaitImport waits for VM Import and records the AMI it made. It takes
// the import task over from the import step and releases it when the task
// ends; until the retention step takes the AMI into the job's keeping, its
// undo deletes it.
const StepWaitImport = "wait-import"

// kindAMI is the run's AMI with its snapshots (the aws.Result), recorded
// the moment it exists: until the run hands it to the job, undo deletes it
// by these ids, whatever is left of it.
const kindAMI = "ami"

type waitImportStep struct{}

func (waitImportStep) info() Info {
	return Info{
		Name: StepWaitImport, Title: "VM Import", Weight: 35, Metric: "import",
		Advice:  "VM Import refused the image: the message is AWS's own. Check that the VM's operating system and boot mode are ones VM Import supports (rehost preflight) and that its boot disk comes first; after fixing the VM, start the job again.",
		Effects: "takes the `import-task` over from import and releases it when the task ends; the AMI and its snapshots (`ami`), deleted by their recorded ids on undo",
	}
}

// progress is VM Import's own percent.
func (waitImportStep) progress(p store.RunProgress) (done, total int64) {
	return int64(p.ImportPercent), 100
}

func (s waitImportStep) do(ctx context.Context, r *run) error {
	amis, err := r.entries(ctx, s, kindAMI)
	if err != nil {
		return err
	}
	for _, le := range amis {
		if made(le) {
			return json.Unmarshal(le.Data, &r.result)
		}
	}
	tasks, err := r.handOver(ctx, importStep{}, s, kindImportTask)
	if err != nil {
		return err
	}
	// A resumed run whose task was started before the restart takes its
	// slot here.
	if err := r.takeSlot(ctx, r.imp.Tasks()); err != nil {
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
	for _, le := range tasks {
		if unreleased(le) {
			if err := r.e.Store.RecordReleased(ctx, le.ID); err != nil {
				return fmt.Errorf("vm %q: record the end of the import task: %w", r.server.Name, err)
			}
		}
	}
	r.result = res
	return nil
}

// undo cancels a task it took over, or deletes the AMI it recorded.
func (waitImportStep) undo(ctx context.Context, u *undoer, le store.LedgerEntry) error {
	if le.Kind == kindImportTask {
		return cancelImport(ctx, u, le)
	}
	return deleteRunImage(ctx, u, le)
}

// deleteRunImage deletes the image and its snapshots by the ids an ami
// entry records: the intent already holds them, so an entry whose creation
// was never confirmed still names them, and a crash between deregistering
// and deleting the snapshots finds them again.
func deleteRunImage(ctx context.Context, u *undoer, le store.LedgerEntry) error {
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
	snaps, err := u.e.sparing(ctx, res.SnapshotIDs)
	if err != nil {
		return err
	}
	return u.target.DeleteImage(ctx, res.ImageID, snaps)
}
