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
		Effects: "takes the `import-task` over from import and releases it when the task ends; in snapshot mode starts each disk's ImportSnapshot task (`import-disk`, client token `rehost-<run>-d<disk>`) once a snapshot slot is admitted, cancelled on undo; the AMI and its snapshots (`ami`), deleted by their recorded ids on undo",
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
	var res awstarget.Result
	if r.imp.Mode == awstarget.ModeImportSnapshot && len(r.imp.TaskIDs) == 0 {
		disks, err := s.admit(ctx, r)
		if err != nil {
			return err
		}
		tasks = append(tasks, disks...)
		res = r.result
	} else {
		// A resumed run whose task was started before the restart takes
		// its slot here.
		if err := r.takeSlot(ctx, r.imp.Tasks()); err != nil {
			return err
		}
		defer r.freeSlot()
		res, err = r.target.Wait(ctx, r.imp, func(st awstarget.ImportStatus) {
			r.importProgress(ctx, st.Progress, st.StatusMessage)
		})
		if err != nil {
			return fmt.Errorf("vm %q: VM Import: %w", r.server.Name, err)
		}
	}
	id, err := r.intend(ctx, s, kindAMI, res)
	if err == nil {
		err = r.e.Store.RecordCreated(ctx, id, res.ImageID, mustJSON(res))
	}
	if err != nil {
		return fmt.Errorf("vm %q: record image %s: %w", r.server.Name, res.ImageID, err)
	}
	// The import's tasks are done: nothing of them is left to cancel.
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

// kindImportDisk is one disk's ImportSnapshot task of an admitted import:
// its intent the disk and its client token (a diskIntent), then the task
// id, its data the aws.Import of that one task.
const kindImportDisk = "import-disk"

type diskIntent struct {
	Disk        int    `json:"disk"`
	ClientToken string `json:"clientToken"`
}

// admit imports the staged disks one ImportSnapshot task per disk, each
// started once the scheduler admits one snapshot slot for it, and leaves
// the AMI in r.result. Each disk's task is recorded (its client token
// before the start, its id after), so a resumed run passes the tasks it
// started to ImportAdmitted, which takes slots back only for those still
// running and starts a disk recorded without an id again under the same
// token (EC2 answers with the task already started). It returns the
// disks' entries, for do to release once the AMI is recorded.
func (s waitImportStep) admit(ctx context.Context, r *run) ([]store.LedgerEntry, error) {
	in, err := r.importInput(ctx)
	if err != nil {
		return nil, err
	}
	in.Name = r.imp.Name
	les, err := r.entries(ctx, s, kindImportDisk)
	if err != nil {
		return nil, err
	}
	known := make([]string, len(in.Disks))
	entry := map[int]int64{} // disk → its entry
	for _, le := range les {
		var di diskIntent
		if err := json.Unmarshal(le.Intent, &di); err != nil || di.Disk < 0 || di.Disk >= len(in.Disks) {
			return nil, fmt.Errorf("vm %q: the ledger's import-disk entry %d names no disk of the run's %d", r.server.Name, le.ID, len(in.Disks))
		}
		entry[di.Disk] = le.ID
		if made(le) {
			known[di.Disk] = le.ResourceID
		}
	}
	adm := awstarget.Admission{
		Slot: func(ctx context.Context) (func(), error) {
			return r.waitSlot(ctx, awstarget.ImportTasks{Snapshot: 1})
		},
		Intend: func(ctx context.Context, disk int, token string) error {
			if _, ok := entry[disk]; ok {
				return nil
			}
			id, err := r.intend(ctx, s, kindImportDisk, diskIntent{Disk: disk, ClientToken: token})
			if err != nil {
				return err
			}
			entry[disk] = id
			les = append(les, store.LedgerEntry{ID: id, State: store.LedgerIntent})
			return nil
		},
		Started: func(ctx context.Context, disk int, taskID string) error {
			// Named as the AMI is: an undo after the AMI was registered
			// but before it was recorded deregisters it before deleting
			// the disk's snapshot, which it uses.
			one := awstarget.Import{Mode: awstarget.ModeImportSnapshot, TaskIDs: []string{taskID}, ClientToken: in.ClientToken, Name: in.Name, Tags: in.Tags}
			if err := r.e.Store.RecordCreated(ctx, entry[disk], taskID, mustJSON(one)); err != nil {
				return err
			}
			r.event(ctx, store.LevelInfo, "started VM Import %s of vm %q's disk %d", taskID, r.server.Name, disk)
			return nil
		},
	}
	imp, res, err := r.target.ImportAdmitted(ctx, in, known, adm, func(st awstarget.ImportStatus) {
		r.importProgress(ctx, st.Progress, st.StatusMessage)
	})
	if err != nil {
		return nil, fmt.Errorf("vm %q: VM Import: %w", r.server.Name, err)
	}
	r.imp, r.result = imp, res
	return les, nil
}

// undo cancels a task it took over or started, or deletes the AMI it
// recorded.
func (waitImportStep) undo(ctx context.Context, u *undoer, le store.LedgerEntry) error {
	switch le.Kind {
	case kindImportTask, kindImportDisk:
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
