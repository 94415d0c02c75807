package replication

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// StepImport starts VM Import of the staged disks; the wait-import step
// takes the task over.
const StepImport = "import"

// kindImportTask is a VM Import task (or one per disk in snapshot mode);
// its data is the aws.Import.
const kindImportTask = "import-task"

type importStep struct{}

func (importStep) info() Info {
	return Info{
		Name: StepImport, Title: "Start VM Import", Weight: 2, Metric: "import_start",
		Advice:  "VM Import did not accept the task: the message is AWS's own. Check the vmimport role and the region's VM Import limits (rehost connector status), then start the job again.",
		Effects: "VM Import task (`import-task`), found again by client token `rehost-<run>` and tag `rehost:run`; in snapshot mode only the import's header (`import-task` without tasks, naming the AMI), the disks' tasks being wait-import's",
	}
}

// importIntent is what the ledger holds of an import.
type importIntent struct {
	ClientToken string `json:"clientToken"`
}

func (r *run) clientToken() string { return "rehost-" + r.run.ReplicationRunID }

// do starts (or, after a restart, finds by its client token) the VM Import
// of the staged disks.
func (s importStep) do(ctx context.Context, r *run) error {
	es, err := r.entries(ctx, s, kindImportTask)
	if err != nil {
		return err
	}
	var id int64
	if len(es) > 0 {
		le := es[len(es)-1]
		if made(le) {
			return json.Unmarshal(le.Data, &r.imp)
		}
		id = le.ID
	} else if id, err = r.intend(ctx, s, kindImportTask, importIntent{r.clientToken()}); err != nil {
		return fmt.Errorf("vm %q: record import intent: %w", r.server.Name, err)
	}
	in, err := r.importInput(ctx)
	if err != nil {
		return err
	}
	if r.admitted(in) {
		// Each disk's task starts in the wait-import step once a slot is
		// free for it: only the import's header is recorded here, and no
		// slot is taken, so a VM of more disks than the region's snapshot
		// quota queues its disks instead of failing.
		imp := admittedHeader(in)
		if err := r.e.Store.RecordCreated(ctx, id, imp.Name, mustJSON(imp)); err != nil {
			return fmt.Errorf("vm %q: record import: %w", r.server.Name, err)
		}
		r.imp = imp
		r.event(ctx, store.LevelInfo, "VM Import of vm %q's %d disks as snapshots: each disk's task starts once an import slot is free", r.server.Name, len(in.Disks))
		return nil
	}
	// The slots are taken before the tasks exist: VM Import refuses tasks
	// beyond the region's quota, it does not queue them.
	if err := r.takeSlot(ctx, r.target.Tasks(in)); err != nil {
		return err
	}
	imp, err := r.target.StartImport(ctx, in)
	if err != nil {
		return fmt.Errorf("vm %q: start VM Import: %w", r.server.Name, err)
	}
	if err := r.e.Store.RecordCreated(ctx, id, importID(imp), mustJSON(imp)); err != nil {
		return fmt.Errorf("vm %q: record import task: %w", r.server.Name, err)
	}
	r.imp = imp
	r.event(ctx, store.LevelInfo, "started VM Import %s for vm %q", strings.Join(imp.TaskIDs, ", "), r.server.Name)
	return nil
}

// importInput is what VM Import is asked to import: the staged disks, or
// for an incremental run the job's replicas.
func (r *run) importInput(ctx context.Context) (awstarget.ImportInput, error) {
	in := awstarget.ImportInput{
		Disks:       r.staged,
		LicenseType: r.job.LicenseType,
		BootMode:    bootMode(r.vm.Firmware),
		Platform:    platform(r.vm.GuestOS),
		Encrypted:   r.job.Encrypted || r.run.Encrypted,
		KMSKeyID:    cmp.Or(r.run.KmsKeyID, r.job.KmsKeyID),
		RoleName:    cmp.Or(r.job.RoleName, awstarget.ImportRoleName),
		ClientToken: r.clientToken(),
		Description: fmt.Sprintf("rehost %s run %s of vm %s", r.job.ReplicationJobID, r.run.ReplicationRunID, r.server.Name),
		Tags:        r.tags(),
	}
	if r.run.Progress.Mode == ModeIncremental {
		// The AMI is built from the replicas the keep step made the job's;
		// VM Import converts copies of them, so a converted snapshot is
		// never the parent of a replica.
		snaps, err := r.replicaSnapshots(ctx)
		if err != nil {
			return in, err
		}
		in.Snapshots, in.Disks, in.Mode = snaps, nil, awstarget.ModeImportImage
		if r.job.NoConversion {
			in.Mode = awstarget.ModeRegister
		}
	}
	return in, nil
}

// admitted reports whether in is imported disk by disk as slots are
// admitted (Target.ImportAdmitted): staged disks whose import takes
// ImportSnapshot tasks.
func (r *run) admitted(in awstarget.ImportInput) bool {
	return len(in.Disks) > 0 && len(in.Snapshots) == 0 && r.target.Tasks(in).Snapshot > 0
}

// admittedHeader is what the import-task entry of an admitted import
// records: no task (each disk's has an import-disk entry of its own), and
// the name of the AMI it registers, for an undo to find it by.
func admittedHeader(in awstarget.ImportInput) awstarget.Import {
	return awstarget.Import{Mode: awstarget.ModeImportSnapshot, ClientToken: in.ClientToken, Name: amiName(in)}
}

// amiName is the name ImportAdmitted registers in's AMI under (the target's
// default, set here so that the ledger names it too).
func amiName(in awstarget.ImportInput) string { return cmp.Or(in.Name, "rehost-"+in.ClientToken) }

// importID names an import in the ledger: its tasks, or for a registration
// (which starts no task) the name of the AMI it registers.
func importID(imp awstarget.Import) string {
	if len(imp.TaskIDs) == 0 {
		return imp.Name
	}
	return strings.Join(imp.TaskIDs, ",")
}

func (importStep) undo(ctx context.Context, u *undoer, le store.LedgerEntry) error {
	return cancelImport(ctx, u, le)
}

// cancelImport cancels the import an import-task entry records and deletes
// what it had made. An import whose start was cut off before it was
// recorded is found by the run's tag.
func cancelImport(ctx context.Context, u *undoer, le store.LedgerEntry) error {
	var imps []awstarget.Import
	if le.State == store.LedgerCreated {
		var imp awstarget.Import
		if err := json.Unmarshal(le.Data, &imp); err != nil {
			return fmt.Errorf("read the recorded import: %w", err)
		}
		imps = append(imps, imp)
	} else {
		found, err := runImports(ctx, u)
		if err != nil {
			return err
		}
		imps = found
	}
	for _, imp := range imps {
		// CancelImport hands back the same remains if called again after a
		// crash between it and the deletion: they need no record.
		res, err := u.target.CancelImport(ctx, imp)
		if err != nil {
			return err
		}
		if res.ImageID != "" || len(res.SnapshotIDs) > 0 {
			if err := u.target.DeleteImage(ctx, res.ImageID, res.SnapshotIDs); err != nil {
				return err
			}
		}
	}
	return nil
}

// runImports finds the imports of the undone run whose start was cut off
// before it was recorded: only tasks carrying both the run's client token
// and its tag, so that no task of another run (of this job or another
// connector) is ever cancelled, whatever else carries the tag.
func runImports(ctx context.Context, u *undoer) ([]awstarget.Import, error) {
	token := "rehost-" + u.rr.ReplicationRunID
	found, err := u.target.FindImports(ctx, awstarget.FindImportsInput{ClientToken: token, TagKey: TagRun, TagValue: u.rr.ReplicationRunID})
	if err != nil {
		return nil, fmt.Errorf("look for imports of run %s: %w", u.rr.ReplicationRunID, err)
	}
	var out []awstarget.Import
	for _, imp := range found {
		if imp.ClientToken == token && imp.Tags[TagRun] == u.rr.ReplicationRunID {
			out = append(out, imp)
		}
	}
	return out, nil
}

// replicaSnapshots are the replicas of the run's disks in disk order, as
// the keep step committed them.
func (r *run) replicaSnapshots(ctx context.Context) ([]string, error) {
	set, err := r.e.Store.GetReplicaSet(ctx, r.job.ReplicationJobID)
	if err != nil {
		return nil, fmt.Errorf("vm %q: read the replicas to build the AMI from: %w", r.server.Name, err)
	}
	if set.RunID != r.run.ReplicationRunID || len(set.Disks) != len(r.vm.Disks) {
		return nil, fmt.Errorf("vm %q: the job's replicas are those of run %s (%d disks), not this run's", r.server.Name, set.RunID, len(set.Disks))
	}
	out := make([]string, len(set.Disks))
	for i, d := range set.Disks {
		out[i] = d.SnapshotID
	}
	return out, nil
}

// slotWaitWorthSaying is the shortest wait for an import slot that the run's
// events record; a free slot is taken in microseconds.
const slotWaitWorthSaying = 10 * time.Millisecond

// takeSlot waits for the import slots of tasks unless the run holds them,
// and holds them until freeSlot.
func (r *run) takeSlot(ctx context.Context, tasks awstarget.ImportTasks) error {
	if r.e.ImportSlot == nil || r.releaseSlot != nil || tasks == (awstarget.ImportTasks{}) {
		return nil
	}
	release, err := r.waitSlot(ctx, tasks)
	if err != nil {
		return err
	}
	r.releaseSlot = release
	return nil
}

// waitSlot waits for the import slots of tasks and returns the function
// that frees them. While it waits, the run says so (Progress.SlotWaitSince),
// for the API and the console to show.
func (r *run) waitSlot(ctx context.Context, tasks awstarget.ImportTasks) (func(), error) {
	if r.e.ImportSlot == nil {
		return func() {}, nil
	}
	t0 := time.Now()
	r.updateRun(ctx, func(x *store.ReplicationRun) {
		x.StageProgress, x.Progress.SlotWaitSince = "waiting for an import slot", t0.UTC()
	})
	release, err := r.e.ImportSlot(ctx, r.run.ReplicationRunID, tasks)
	r.updateRun(context.WithoutCancel(ctx), func(x *store.ReplicationRun) {
		if x.Progress.SlotWaitSince.Equal(t0.UTC()) {
			x.StageProgress, x.Progress.SlotWaitSince = "", time.Time{}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("vm %q: wait for a VM Import slot: %w", r.server.Name, err)
	}
	// A run that queued says for how long: the region's VM Import limit,
	// not the run, was the bottleneck then.
	if waited := time.Since(t0); waited >= slotWaitWorthSaying {
		r.event(ctx, store.LevelInfo, "vm %q waited %s for a VM Import slot", r.server.Name, waited.Round(time.Millisecond))
	}
	return release, nil
}

func (r *run) freeSlot() {
	if r.releaseSlot != nil {
		r.releaseSlot()
		r.releaseSlot = nil
	}
}

func bootMode(firmware string) string {
	if firmware == source.FirmwareEFI {
		return "uefi"
	}
	return "legacy-bios"
}

func platform(guestOS string) string {
	if strings.Contains(strings.ToLower(guestOS), "windows") {
		return "Windows"
	}
	return "Linux"
}
