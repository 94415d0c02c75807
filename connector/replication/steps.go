package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
)

// snapshotIntent is what the ledger holds of a VM checkpoint.
type snapshotIntent struct {
	SourceID string `json:"sourceId"`
	VMID     string `json:"vmId"`
	Name     string `json:"name"`
}

// snapshot takes (or finds) the run's VM checkpoint.
func (r *run) snapshot(ctx context.Context) error {
	es, err := r.entries(ctx, store.KindVMSnapshot)
	if err != nil {
		return err
	}
	if len(es) > 0 {
		le := es[len(es)-1]
		switch le.State {
		case store.LedgerReleased:
			return nil // staged and released before a restart
		case store.LedgerCreated:
			if err := json.Unmarshal(le.Data, &r.cp); err != nil {
				return fmt.Errorf("vm %q: read the recorded snapshot: %w", r.server.Name, err)
			}
			return nil
		}
	}
	name := snapshotName(r.run.ReplicationRunID)
	id := int64(0)
	if len(es) > 0 && es[len(es)-1].State == store.LedgerIntent {
		id = es[len(es)-1].ID
	} else {
		id, err = r.e.Store.RecordIntent(ctx, r.run.ReplicationRunID, StepSnapshot, store.KindVMSnapshot,
			mustJSON(snapshotIntent{SourceID: r.server.SourceID, VMID: r.vm.ID, Name: name}))
		if err != nil {
			return fmt.Errorf("vm %q: record snapshot intent: %w", r.server.Name, err)
		}
	}
	// Checkpoint is idempotent by name, so an intent left by a crash finds
	// the snapshot it may have made.
	cp, err := r.src.Checkpoint(ctx, r.vm.ID, name)
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

// uploadIntent is what the ledger holds of a disk being staged.
type uploadIntent struct {
	Disk int    `json:"disk"`
	Key  string `json:"key"`
}

// stage exports every disk not yet staged and streams it to S3. Disks staged
// before a restart are kept; a disk whose upload was cut off resumes from its
// recorded parts.
func (r *run) stage(ctx context.Context) error {
	objs, err := r.entries(ctx, store.KindS3Object)
	if err != nil {
		return err
	}
	done := map[int]Staged{}
	for _, le := range objs {
		if le.State != store.LedgerCreated && le.State != store.LedgerReleased {
			continue
		}
		var s struct {
			Staged
			Disk int `json:"disk"`
		}
		if err := json.Unmarshal(le.Data, &s); err != nil {
			return fmt.Errorf("vm %q: read the recorded staged disk: %w", r.server.Name, err)
		}
		done[s.Disk] = s.Staged
	}
	if len(done) == len(r.vm.Disks) {
		r.staged = collect(done, len(r.vm.Disks))
		return nil
	}
	if r.cp.ID == "" {
		return fmt.Errorf("vm %q: %d of %d disks staged but the snapshot was released — the run cannot resume; it will be undone and retried at the next run", r.server.Name, len(done), len(r.vm.Disks))
	}

	exp, err := r.src.Export(ctx, r.cp)
	if err != nil {
		return fmt.Errorf("vm %q: open the export of snapshot %q: %w", r.server.Name, r.cp.Name, err)
	}
	err = r.stageDisks(ctx, exp, done)
	if cerr := exp.Close(err); cerr != nil && err == nil {
		err = fmt.Errorf("vm %q: complete the export: %w", r.server.Name, cerr)
	}
	if err != nil {
		return err
	}
	r.staged = collect(done, len(r.vm.Disks))
	return nil
}

func collect(done map[int]Staged, n int) []Staged {
	out := make([]Staged, n)
	for i := range n {
		out[i] = done[i]
	}
	return out
}

func (r *run) stageDisks(ctx context.Context, exp source.Export, done map[int]Staged) error {
	disks := exp.Disks()
	if len(disks) != len(r.vm.Disks) {
		return fmt.Errorf("vm %q: the export holds %d disks but the vm has %d — was a disk added or removed during the run? the next run picks up the change", r.server.Name, len(disks), len(r.vm.Disks))
	}
	var total, before int64
	for i, d := range disks {
		total += d.CapacityBytes
		if _, ok := done[i]; ok {
			before += d.CapacityBytes
		}
	}
	uploads, err := r.entries(ctx, store.KindMultipartUpload)
	if err != nil {
		return err
	}
	for i, d := range disks {
		if _, ok := done[i]; ok {
			continue
		}
		s, err := r.stageDisk(ctx, exp, i, d, uploads, before, total)
		if err != nil {
			return err
		}
		done[i] = s
		before += d.CapacityBytes
	}
	return nil
}

func (r *run) stageDisk(ctx context.Context, exp source.Export, i int, d source.ExportDisk, uploads []store.LedgerEntry, before, total int64) (Staged, error) {
	what := fmt.Sprintf("stage disk %d of %d of vm %q", i+1, len(r.vm.Disks), r.server.Name)
	key := stagingPrefix(r.job.ReplicationJobID, r.run.ReplicationRunID) + fmt.Sprintf("disk-%d.%s", i, extension(d.Format))

	// Reuse the upload entry of an earlier attempt, with its parts.
	var le *store.LedgerEntry
	for j := range uploads {
		var in uploadIntent
		if json.Unmarshal(uploads[j].Intent, &in) == nil && in.Disk == i && (uploads[j].State == store.LedgerIntent || uploads[j].State == store.LedgerCreated) {
			le = &uploads[j]
		}
	}
	var id int64
	var resume json.RawMessage
	if le != nil {
		id, resume = le.ID, le.Data
	} else {
		var err error
		id, err = r.e.Store.RecordIntent(ctx, r.run.ReplicationRunID, StepStage, store.KindMultipartUpload, mustJSON(uploadIntent{Disk: i, Key: key}))
		if err != nil {
			return Staged{}, fmt.Errorf("%s: record upload intent: %w", what, err)
		}
	}

	body, err := exp.Open(ctx, i)
	if err != nil {
		return Staged{}, fmt.Errorf("%s: open the disk stream: %w", what, err)
	}
	defer body.Close()

	created := le != nil && le.State == store.LedgerCreated
	var recErr error
	s, err := r.e.Target.Stage(ctx, StageRequest{
		Key:      key,
		Body:     body,
		SizeHint: d.CapacityBytes + d.CapacityBytes/8 + 1<<20, // a VMDK stream never exceeds its capacity by more
		Format:   d.Format,
		Resume:   resume,
		Progress: func(n int64) {
			pct := 0
			if total > 0 {
				pct = int(min(100, (before+min(n, d.CapacityBytes))*100/total))
			}
			exp.Progress(pct)
			r.progress(ctx, StepStage, fmt.Sprintf("disk %d of %d: %s sent (%d%%)", i+1, len(r.vm.Disks), humanBytes(n), pct), false)
		},
		Checkpoint: func(state json.RawMessage) {
			var err error
			if !created {
				err = r.e.Store.RecordCreated(ctx, id, key, state)
				created = err == nil
			} else {
				err = r.e.Store.UpdateData(ctx, id, state)
			}
			if err != nil && recErr == nil {
				recErr = err
			}
		},
	})
	if err != nil {
		return Staged{}, fmt.Errorf("%s: %w", what, err)
	}
	if recErr != nil {
		r.log.Warn("upload progress not recorded; a resume re-sends more", "disk", i, "err", recErr)
	}
	// The object replaces the upload in the ledger: first record the object,
	// then release the upload, so a crash between the two leaves both and
	// undo deletes the object either way.
	oid, err := r.e.Store.RecordIntent(ctx, r.run.ReplicationRunID, StepStage, store.KindS3Object, mustJSON(uploadIntent{Disk: i, Key: key}))
	if err == nil {
		err = r.e.Store.RecordCreated(ctx, oid, s.Key, mustJSON(struct {
			Staged
			Disk int `json:"disk"`
		}{s, i}))
	}
	if err == nil {
		err = r.e.Store.RecordReleased(ctx, id)
	}
	if err != nil {
		return Staged{}, fmt.Errorf("%s: record the staged object: %w", what, err)
	}
	msg := fmt.Sprintf("staged disk %d of %d of vm %q: %s as s3://%s/%s", i+1, len(r.vm.Disks), r.server.Name, humanBytes(s.Size), s.Bucket, s.Key)
	if s.Reused > 0 {
		msg += fmt.Sprintf(" (%d parts kept from before a restart)", s.Reused)
	}
	r.event(ctx, store.LevelInfo, "%s", msg)
	return s, nil
}

func extension(f disk.Format) string {
	if f == "" {
		return "img"
	}
	return string(f)
}

// releaseSnapshot removes the VM checkpoint as soon as the disks are staged,
// so the VM does not run on a snapshot during the import.
func (r *run) releaseSnapshot(ctx context.Context) error {
	es, err := r.entries(ctx, store.KindVMSnapshot)
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

// importIntent is what the ledger holds of an import.
type importIntent struct {
	ClientToken string `json:"clientToken"`
}

func (r *run) clientToken() string { return "rehost-" + r.run.ReplicationRunID }

// startImport starts (or, after a restart, finds by its client token) the
// VM Import of the staged disks.
func (r *run) startImport(ctx context.Context) error {
	es, err := r.entries(ctx, store.KindImportTask)
	if err != nil {
		return err
	}
	var id int64
	if len(es) > 0 {
		le := es[len(es)-1]
		if le.State == store.LedgerCreated || le.State == store.LedgerReleased {
			r.ref = le.Data
			return nil
		}
		id = le.ID
	} else {
		id, err = r.e.Store.RecordIntent(ctx, r.run.ReplicationRunID, StepImport, store.KindImportTask, mustJSON(importIntent{r.clientToken()}))
		if err != nil {
			return fmt.Errorf("vm %q: record import intent: %w", r.server.Name, err)
		}
	}
	// The slot is taken before the task exists: VM Import refuses tasks
	// beyond the region's limit, it does not queue them.
	if err := r.takeSlot(ctx, StepImport); err != nil {
		return err
	}
	role := r.job.RoleName
	if role == "" {
		role = "vmimport"
	}
	ref, err := r.e.Target.StartImport(ctx, ImportRequest{
		Disks:       r.staged,
		LicenseType: r.job.LicenseType,
		BootMode:    bootMode(r.vm.Firmware),
		Platform:    platform(r.vm.GuestOS),
		Encrypted:   r.job.Encrypted || r.run.Encrypted,
		KMSKeyID:    firstNonEmpty(r.run.KmsKeyID, r.job.KmsKeyID),
		RoleName:    role,
		ClientToken: r.clientToken(),
		Description: fmt.Sprintf("rehost %s run %s of vm %s", r.job.ReplicationJobID, r.run.ReplicationRunID, r.server.Name),
		Tags:        r.tags(),
	})
	if err != nil {
		return fmt.Errorf("vm %q: start VM Import: %w", r.server.Name, err)
	}
	if err := r.e.Store.RecordCreated(ctx, id, importTaskID(ref), ref); err != nil {
		return fmt.Errorf("vm %q: record import task: %w", r.server.Name, err)
	}
	r.ref = ref
	r.event(ctx, store.LevelInfo, "started VM Import %s for vm %q", importTaskID(ref), r.server.Name)
	return nil
}

// importTaskID pulls a task id out of an import reference for the ledger's
// resource column; the reference stays opaque otherwise.
func importTaskID(ref json.RawMessage) string {
	var v struct {
		TaskID  string   `json:"taskId"`
		TaskIDs []string `json:"taskIds"`
	}
	_ = json.Unmarshal(ref, &v)
	if v.TaskID != "" {
		return v.TaskID
	}
	if len(v.TaskIDs) > 0 {
		return v.TaskIDs[0]
	}
	return string(ref)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// waitImport waits for the import, holding an import slot, and records the
// image (and its snapshots) in the ledger the moment it exists.
func (r *run) waitImport(ctx context.Context) error {
	amis, err := r.entries(ctx, store.KindAMI)
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
	res, err := r.e.Target.WaitImport(ctx, r.ref, func(pct int, status string) {
		text := fmt.Sprintf("%d%%", pct)
		if status != "" {
			text += " " + status
		}
		r.progress(ctx, StepWaitImport, text, false)
	})
	if err != nil {
		return fmt.Errorf("vm %q: %w", r.server.Name, err)
	}
	id, err := r.e.Store.RecordIntent(ctx, r.run.ReplicationRunID, StepWaitImport, store.KindAMI, mustJSON(res))
	if err == nil {
		err = r.e.Store.RecordCreated(ctx, id, res.ImageID, mustJSON(res))
	}
	if err != nil {
		return fmt.Errorf("vm %q: record image %s: %w", r.server.Name, res.ImageID, err)
	}
	// The import task is done: nothing of it is left to cancel.
	if es, err := r.entries(ctx, store.KindImportTask); err == nil {
		for _, le := range es {
			if le.State != store.LedgerReleased {
				_ = r.e.Store.RecordReleased(ctx, le.ID)
			}
		}
	}
	r.result = res
	return nil
}

// takeSlot waits for an import slot unless the run holds one.
func (r *run) takeSlot(ctx context.Context, stage string) error {
	if r.e.ImportSlot == nil || r.releaseSlot != nil {
		return nil
	}
	r.progress(ctx, stage, "waiting for an import slot", true)
	release, err := r.e.ImportSlot(ctx)
	if err != nil {
		return fmt.Errorf("vm %q: wait for a VM Import slot: %w", r.server.Name, err)
	}
	r.releaseSlot = release
	return nil
}

func (r *run) freeSlot() {
	if r.releaseSlot != nil {
		r.releaseSlot()
		r.releaseSlot = nil
	}
}

func (r *run) amiName() string {
	return fmt.Sprintf("rehost-%s-%s", sanitizeName(r.server.Name), r.run.ReplicationRunID)
}

// sanitizeName keeps the characters an AMI name allows.
func sanitizeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '(' || c == ')' || c == '/'
		if !ok {
			b[i] = '-'
		}
	}
	return string(b)
}

func (r *run) finalize(ctx context.Context) error {
	tags := r.tags()
	tags["Name"] = r.amiName()
	if err := r.e.Target.Finalize(ctx, r.result.ImageID, r.amiName(), tags); err != nil {
		return fmt.Errorf("vm %q: tag image %s: %w", r.server.Name, r.result.ImageID, err)
	}
	_, err := r.e.Store.UpdateRun(ctx, r.run.ReplicationRunID, func(x *store.ReplicationRun) error {
		x.AmiID = r.result.ImageID
		return nil
	})
	if err != nil {
		return fmt.Errorf("vm %q: record image %s: %w", r.server.Name, r.result.ImageID, err)
	}
	return nil
}

// unstage deletes the staged objects (the lifecycle rule is only a backstop)
// and hands the AMI over to the job: from here on, only retention removes it.
func (r *run) unstage(ctx context.Context) error {
	prefix := stagingPrefix(r.job.ReplicationJobID, r.run.ReplicationRunID)
	// Uploads a retried stage abandoned before its first part was recorded.
	if _, err := r.e.Target.AbortUploads(ctx, prefix); err != nil {
		return fmt.Errorf("vm %q: abort leftover uploads under %s: %w", r.server.Name, prefix, err)
	}
	if _, err := r.e.Target.DeleteStaged(ctx, prefix); err != nil {
		return fmt.Errorf("vm %q: delete staged objects under %s: %w", r.server.Name, prefix, err)
	}
	all, err := r.e.Store.LedgerForRun(ctx, r.run.ReplicationRunID)
	if err != nil {
		return fmt.Errorf("vm %q: read the run's ledger: %w", r.server.Name, err)
	}
	for _, le := range all {
		if le.State == store.LedgerIntent || le.State == store.LedgerCreated {
			if err := r.e.Store.RecordReleased(ctx, le.ID); err != nil {
				return fmt.Errorf("vm %q: record cleanup: %w", r.server.Name, err)
			}
		}
	}
	return nil
}

func (r *run) retention(ctx context.Context) error {
	keep := r.job.NumberOfRecentAmisToKeep
	if keep <= 0 {
		return nil // SMS: 0 keeps every AMI
	}
	removed, err := r.e.Target.Retain(ctx, TagJob, r.job.ReplicationJobID, keep)
	if err != nil {
		// The AMI is made; failing the run for an old AMI would discard it.
		r.event(ctx, store.LevelWarn, "retention of job %s failed (retried after the next run): %v", r.job.ReplicationJobID, err)
		return nil
	}
	if len(removed) > 0 {
		r.event(ctx, store.LevelInfo, "retention: kept the %d most recent AMIs, deleted %v", keep, removed)
	}
	return nil
}

// Undo removes whatever the run made that is not released, newest first,
// then sweeps by name and prefix for resources whose creation was cut off
// before their id was recorded. It is idempotent; an error leaves the
// remaining entries for the next call.
func (e *Engine) Undo(ctx context.Context, runID string) error {
	timeout := e.CleanupTimeout
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	rr, err := e.Store.GetRun(ctx, runID)
	if err != nil {
		return fmt.Errorf("undo run %s: %w", runID, err)
	}
	entries, err := e.Store.LedgerForRun(ctx, runID)
	if err != nil {
		return fmt.Errorf("undo run %s: read ledger: %w", runID, err)
	}
	log := e.logger().With("run", runID, "job", rr.ReplicationJobID)
	var errs []error
	sources := map[string]source.Source{}
	defer func() {
		for _, s := range sources {
			s.Close()
		}
	}()
	openSource := func(id string) (source.Source, error) {
		if s, ok := sources[id]; ok {
			return s, nil
		}
		s, err := e.Source(ctx, id)
		if err != nil {
			return nil, err
		}
		sources[id] = s
		return s, nil
	}
	// Every upload and object of the run lives under its staging prefix:
	// one sweep of it undoes them all, whichever entries name them.
	prefix := stagingPrefix(rr.ReplicationJobID, runID)
	swept := false
	sweep := func(deleteObjects bool) error {
		if swept {
			return nil
		}
		if _, err := e.Target.AbortUploads(ctx, prefix); err != nil {
			return fmt.Errorf("abort uploads under %s: %w", prefix, err)
		}
		if deleteObjects {
			if _, err := e.Target.DeleteStaged(ctx, prefix); err != nil {
				return fmt.Errorf("delete objects under %s: %w", prefix, err)
			}
		}
		swept = true
		return nil
	}
	for i := len(entries) - 1; i >= 0; i-- {
		le := entries[i]
		if le.State != store.LedgerIntent && le.State != store.LedgerCreated {
			continue
		}
		var err error
		if le.Kind == store.KindMultipartUpload || le.Kind == store.KindS3Object {
			err = sweep(true)
		} else {
			err = e.undoEntry(ctx, rr, le, openSource)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", le.Kind, firstNonEmpty(le.ResourceID, "(id not recorded)"), err))
			continue
		}
		if err := e.Store.RecordReleased(ctx, le.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("undone", "kind", le.Kind, "resource", le.ResourceID)
	}
	// The prefix may hold an upload or object whose entry was already
	// released (a crash between completing an upload and recording its
	// object), so it is swept even when no entry asked for it.
	if err := sweep(rr.State != store.RunCompleted); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (e *Engine) undoEntry(ctx context.Context, rr store.ReplicationRun, le store.LedgerEntry, openSource func(string) (source.Source, error)) error {
	switch le.Kind {
	case store.KindVMSnapshot:
		var in snapshotIntent
		if err := json.Unmarshal(le.Intent, &in); err != nil {
			return fmt.Errorf("read intent: %w", err)
		}
		src, err := openSource(in.SourceID)
		if err != nil {
			return fmt.Errorf("connect to the source: %w", err)
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
		// By name, for a snapshot whose creation was cut off before its id
		// was recorded (or a duplicate).
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
	case store.KindImportTask:
		ref := le.Data
		if le.State == store.LedgerIntent {
			// The task may exist without its id recorded: asking again with
			// the run's client token returns it rather than making a new one.
			return e.undoUnrecordedImport(ctx, rr)
		}
		res, err := e.Target.CancelImport(ctx, ref)
		if err != nil {
			return err
		}
		if res.ImageID != "" {
			return e.Target.DeleteImage(ctx, res.ImageID)
		}
		return nil
	case store.KindAMI, store.KindEBSSnapshot:
		// The intent already holds the import's result, so an entry whose
		// creation was never confirmed still names its image.
		var res ImportResult
		for _, b := range []json.RawMessage{le.Data, le.Intent} {
			if res.ImageID == "" && len(b) > 0 {
				_ = json.Unmarshal(b, &res)
			}
		}
		if res.ImageID == "" {
			res.ImageID = le.ResourceID
		}
		if res.ImageID == "" {
			return nil
		}
		return e.Target.DeleteImage(ctx, res.ImageID)
	}
	return fmt.Errorf("unknown ledger kind %q", le.Kind)
}

// undoUnrecordedImport handles an import intent without a recorded task: the
// start may have reached AWS before the crash, so the run's imports are
// looked up by tag, cancelled, and any image they made is deleted.
func (e *Engine) undoUnrecordedImport(ctx context.Context, rr store.ReplicationRun) error {
	refs, err := e.Target.FindImports(ctx, TagRun, rr.ReplicationRunID)
	if err != nil {
		return fmt.Errorf("look for imports of run %s: %w", rr.ReplicationRunID, err)
	}
	for _, ref := range refs {
		res, err := e.Target.CancelImport(ctx, ref)
		if err != nil {
			return err
		}
		if res.ImageID != "" {
			if err := e.Target.DeleteImage(ctx, res.ImageID); err != nil {
				return err
			}
		}
	}
	return nil
}

// Recoverable lists the runs a restart must deal with: runs left ACTIVE by a
// crash (to resume) and finished runs whose ledger still holds unreleased
// resources (to undo).
func (e *Engine) Recoverable(ctx context.Context) (resume []store.ReplicationRun, undo []string, err error) {
	// The ledger is read before the active runs: a run that starts in
	// between and records an intent must not be taken for a finished one
	// (the janitor would undo it under its feet). A finished run never
	// becomes active again, so this order cannot miss one.
	left, err := e.Store.UnreleasedLedger(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list unreleased resources: %w", err)
	}
	active, err := e.Store.RunsInState(ctx, store.RunActive)
	if err != nil {
		return nil, nil, fmt.Errorf("list active runs: %w", err)
	}
	isActive := map[string]bool{}
	for _, r := range active {
		isActive[r.ReplicationRunID] = true
	}
	seen := map[string]bool{}
	for _, le := range left {
		if !isActive[le.RunID] && !seen[le.RunID] {
			seen[le.RunID] = true
			undo = append(undo, le.RunID)
		}
	}
	return active, undo, nil
}
