package replication

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dustin/go-humanize"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// StepStage exports every disk of the checkpoint and streams it to S3.
const StepStage = "stage"

// Kinds of the stage step.
const (
	// kindExportLease is the source's export (a vSphere NFC lease), so one
	// a crash left open is aborted, not left to time out.
	kindExportLease = "export-lease"
	// kindUpload is one disk's multipart upload; its data is the upload
	// with the parts stored so far, to resume it.
	kindUpload = "multipart-upload"
	// kindObject is one disk's staged object.
	kindObject = "s3-object"
	// kindStagingPrefix is the run's staging prefix, recorded before the
	// first upload: whatever a crash cut off before its own entry was
	// recorded (an upload just created, an object just completed) lies
	// under it, and its undo sweeps it.
	kindStagingPrefix = "staging-prefix"
)

type stageStep struct{}

func (stageStep) info() Info {
	return Info{
		Name: StepStage, Title: "Export and upload the disks", Weight: 50, Metric: "stage", Modes: fullOnly,
		Advice:  "Exporting or uploading a disk failed: check the source and AWS (rehost connector status, or the console's Health page: network, the staging bucket), then start the job again. Nothing is left behind: the connector removed what it had staged.",
		Effects: "the staging prefix (`staging-prefix`, swept on undo), the export's NFC lease (`export-lease`, aborted at restart), one multipart upload per disk (`multipart-upload`: the upload id, and each part stored once as a ledger part — about once a second the parts new since the last tick, all of them before completion), then the object (`s3-object`; a completed upload's object found by HEAD: size, composite CRC32C)",
	}
}

// progress is the bytes staged of every disk's total.
func (stageStep) progress(p store.RunProgress) (done, total int64) { return diskBytes(p) }

// diskBytes sums the disks' progress: a step whose work is the disks' bytes
// reports it so.
func diskBytes(p store.RunProgress) (done, total int64) {
	for _, d := range p.Disks {
		done, total = done+d.BytesDone, total+d.BytesTotal
	}
	return done, total
}

// uploadIntent is what the ledger holds of a disk being staged.
type uploadIntent struct {
	Disk int    `json:"disk"`
	Key  string `json:"key"`
}

// leaseIntent is what the ledger holds of an export.
type leaseIntent struct {
	SourceID   string            `json:"sourceId"`
	Checkpoint source.Checkpoint `json:"checkpoint"`
}

// stagedObject is the data of an s3-object entry.
type stagedObject struct {
	awstarget.Object
	Disk int `json:"disk"`
}

// formatOf is the format a staging key names (StagingKey ends in it).
func formatOf(key string) disk.Format {
	return disk.Format(strings.TrimPrefix(path.Ext(key), "."))
}

// stage exports every disk not yet staged and streams it to S3. Disks staged
// before a restart are kept; an upload completed but not recorded is found;
// one cut off resumes from its recorded parts.
func (s stageStep) do(ctx context.Context, r *run) error {
	all, err := r.e.Store.LedgerForRun(ctx, r.run.ReplicationRunID)
	if err != nil {
		return fmt.Errorf("vm %q: read the run's ledger: %w", r.server.Name, err)
	}
	done := map[int]awstarget.Object{}
	uploads := map[int]store.LedgerEntry{}
	var leases []store.LedgerEntry
	hasPrefix := false
	for _, le := range all {
		if le.Step != s.info().Name {
			continue
		}
		switch le.Kind {
		case kindStagingPrefix:
			hasPrefix = true
		case kindObject:
			if made(le) {
				var o stagedObject
				if err := json.Unmarshal(le.Data, &o); err != nil {
					return fmt.Errorf("vm %q: read the recorded staged disk: %w", r.server.Name, err)
				}
				done[o.Disk] = o.Object
			}
		case kindUpload:
			var in uploadIntent
			if unreleased(le) && json.Unmarshal(le.Intent, &in) == nil {
				uploads[in.Disk] = le
			}
		case kindExportLease:
			if unreleased(le) {
				leases = append(leases, le)
			}
		}
	}
	// An export a crash left open is aborted, not left to time out.
	for _, le := range leases {
		if err := s.abortLease(ctx, r.src, le); err != nil {
			return fmt.Errorf("vm %q: abort the export a restart left open: %w", r.server.Name, err)
		}
		if err := r.e.Store.RecordReleased(ctx, le.ID); err != nil {
			return fmt.Errorf("vm %q: record the export's end: %w", r.server.Name, err)
		}
	}
	for i, le := range uploads {
		if _, ok := done[i]; ok || le.State != store.LedgerCreated || len(le.Data) == 0 {
			continue
		}
		if err := r.recoverUpload(ctx, i, le, done); err != nil {
			return err
		}
	}
	if len(done) == len(r.vm.Disks) {
		r.staged = collect(done, len(r.vm.Disks))
		return nil
	}
	if !hasPrefix {
		if err := r.recordPrefix(ctx); err != nil {
			return err
		}
	}
	if r.cp.ID == "" {
		return fmt.Errorf("vm %q: %d of %d disks staged but the snapshot was released — the run cannot resume; it will be undone and retried at the next run", r.server.Name, len(done), len(r.vm.Disks))
	}

	lid, err := r.intend(ctx, s, kindExportLease, leaseIntent{SourceID: r.server.SourceID, Checkpoint: r.cp})
	if err != nil {
		return fmt.Errorf("vm %q: record export intent: %w", r.server.Name, err)
	}
	exp, err := r.src.Export(ctx, r.cp)
	if err != nil {
		// A failed Export holds nothing open (it aborts what it opened).
		_ = r.e.Store.RecordReleased(context.WithoutCancel(ctx), lid)
		return fmt.Errorf("vm %q: open the export of snapshot %q: %w", r.server.Name, r.cp.Name, err)
	}
	if exp.ID() != "" {
		err = r.e.Store.RecordCreated(ctx, lid, exp.ID(), nil)
	} else {
		err = r.e.Store.RecordReleased(ctx, lid)
	}
	if err == nil {
		err = r.stageDisks(ctx, exp, done, uploads)
	}
	if cerr := exp.Close(err); cerr != nil {
		if err == nil {
			err = fmt.Errorf("vm %q: complete the export: %w", r.server.Name, cerr)
		}
	} else if rerr := r.e.Store.RecordReleased(context.WithoutCancel(ctx), lid); rerr != nil && err == nil {
		err = fmt.Errorf("vm %q: record the export's end: %w", r.server.Name, rerr)
	}
	if err != nil {
		return err
	}
	r.staged = collect(done, len(r.vm.Disks))
	return nil
}

// recordPrefix records the run's staging prefix before anything is
// uploaded under it.
func (r *run) recordPrefix(ctx context.Context) error {
	prefix := awstarget.RunPrefix(r.job.ReplicationJobID, r.run.ReplicationRunID)
	id, err := r.intend(ctx, stageStep{}, kindStagingPrefix, prefix)
	if err == nil {
		err = r.e.Store.RecordCreated(ctx, id, prefix, nil)
	}
	if err != nil {
		return fmt.Errorf("vm %q: record the staging prefix %s: %w", r.server.Name, prefix, err)
	}
	return nil
}

func collect(done map[int]awstarget.Object, n int) []awstarget.Object {
	out := make([]awstarget.Object, n)
	for i := range n {
		out[i] = done[i]
	}
	return out
}

// recordedPart is a part as the ledger holds it: with the upload it
// belongs to, so the parts of an upload that was started over are told
// from the new one's.
type recordedPart struct {
	awstarget.Part
	Upload string `json:"upload"`
}

// recordedUpload reads what the ledger holds of a disk's upload: its entry
// (the upload without parts; an entry recorded by an older connector also
// holds parts) and its ledger parts.
func (r *run) recordedUpload(ctx context.Context, le store.LedgerEntry) (awstarget.Upload, error) {
	var up awstarget.Upload
	if err := json.Unmarshal(le.Data, &up); err != nil {
		return up, err
	}
	stored, err := r.e.Store.LedgerParts(ctx, le.ID)
	if err != nil {
		return up, err
	}
	byNumber := map[int32]awstarget.Part{}
	for _, p := range up.Parts {
		byNumber[p.Number] = p
	}
	for _, lp := range stored {
		var p recordedPart
		if err := json.Unmarshal(lp.Data, &p); err != nil {
			return up, fmt.Errorf("part %d: %w", lp.Number, err)
		}
		if p.Upload == up.UploadID {
			byNumber[p.Number] = p.Part
		}
	}
	up.Parts = slices.SortedFunc(maps.Values(byNumber), func(a, b awstarget.Part) int { return cmp.Compare(a.Number, b.Number) })
	return up, nil
}

// recoverUpload keeps the object of an upload that was completed before a
// crash let the run record it, instead of exporting and sending the disk
// again.
func (r *run) recoverUpload(ctx context.Context, i int, le store.LedgerEntry, done map[int]awstarget.Object) error {
	up, err := r.recordedUpload(ctx, le)
	if err != nil {
		return fmt.Errorf("vm %q: read the recorded upload of disk %d: %w", r.server.Name, i+1, err)
	}
	obj, ok, err := r.target.Recover(ctx, up, formatOf(up.Key))
	if err != nil {
		return fmt.Errorf("vm %q: look for the staged object of disk %d: %w", r.server.Name, i+1, err)
	}
	if !ok {
		return nil
	}
	if err := r.recordObject(ctx, i, obj, le.ID); err != nil {
		return err
	}
	done[i] = obj
	r.event(ctx, store.LevelInfo, "kept disk %d of vm %q, staged completely before a restart: s3://%s/%s", i+1, r.server.Name, obj.Bucket, obj.Key)
	return nil
}

// recordObject replaces a disk's upload by its object in the ledger: first
// the object, then the upload's release, so a crash between the two leaves
// both and undo deletes the object either way.
func (r *run) recordObject(ctx context.Context, i int, obj awstarget.Object, uploadID int64) error {
	oid, err := r.intend(ctx, stageStep{}, kindObject, uploadIntent{Disk: i, Key: obj.Key})
	if err == nil {
		err = r.e.Store.RecordCreated(ctx, oid, obj.Key, mustJSON(stagedObject{obj, i}))
	}
	if err == nil {
		err = r.e.Store.RecordReleased(ctx, uploadID)
	}
	if err != nil {
		return fmt.Errorf("vm %q: record the staged object of disk %d: %w", r.server.Name, i+1, err)
	}
	return nil
}

func (r *run) stageDisks(ctx context.Context, exp source.Export, done map[int]awstarget.Object, uploads map[int]store.LedgerEntry) error {
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
	for i, d := range disks {
		if _, ok := done[i]; ok {
			continue
		}
		le, resumed := uploads[i]
		obj, err := r.stageDisk(ctx, exp, i, d, le, resumed, func(n int64) int {
			return int(min(100, (before+min(n, d.CapacityBytes))*100/max(total, 1)))
		})
		if err != nil {
			return err
		}
		done[i] = obj
		before += d.CapacityBytes
	}
	return nil
}

// stageDisk streams disk i to S3. The upload's state is persisted and the
// progress reported by a ticker, never from the upload's own goroutines.
func (r *run) stageDisk(ctx context.Context, exp source.Export, i int, d source.ExportDisk, le store.LedgerEntry, resumed bool, overall func(int64) int) (awstarget.Object, error) {
	what := fmt.Sprintf("stage disk %d of %d of vm %q", i+1, len(r.vm.Disks), r.server.Name)
	key := awstarget.StagingKey(r.job.ReplicationJobID, r.run.ReplicationRunID, i, d.Format)
	id, created := le.ID, le.State == store.LedgerCreated
	var resume *awstarget.Upload
	if resumed && len(le.Data) > 0 {
		up, err := r.recordedUpload(ctx, le)
		if err != nil {
			return awstarget.Object{}, fmt.Errorf("%s: read the recorded upload: %w", what, err)
		}
		resume = &up
	}
	if !resumed {
		var err error
		if id, err = r.intend(ctx, stageStep{}, kindUpload, uploadIntent{Disk: i, Key: key}); err != nil {
			return awstarget.Object{}, fmt.Errorf("%s: record upload intent: %w", what, err)
		}
	}

	stream, err := exp.Open(ctx, i)
	if err != nil {
		return awstarget.Object{}, fmt.Errorf("%s: open the disk stream: %w", what, err)
	}
	defer stream.Close()
	body, read := countRead(stream)
	pacing := func() *disk.Pacing {
		if pc, ok := stream.(source.Paced); ok {
			p := pc.Pacing()
			return &p
		}
		return nil
	}

	total := d.StreamSize
	if total <= 0 {
		total = d.CapacityBytes
	}
	var track awstarget.Tracker
	recorded := ""
	if resume != nil {
		recorded = resume.UploadID
	}
	persisted := 0 // parts of the tracker recorded so far
	// persist records the upload for a resume: its id once (again if the
	// upload was started over), then the parts stored since the last call,
	// each once. The ticker calls it about once a second; Stage calls it
	// once more before completing the upload, so the record of a finished
	// upload is whole. Never concurrently: Stage's call comes after the
	// last part, and stop waits for the ticker before its final report.
	var mu sync.Mutex
	persist := func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		h := track.Header()
		if h.UploadID == "" {
			return nil
		}
		if !created || h.UploadID != recorded {
			if err := r.e.Store.RecordCreated(ctx, id, h.UploadID, mustJSON(h)); err != nil {
				return err
			}
			created, recorded = true, h.UploadID
		}
		parts, next := track.Parts(persisted)
		if len(parts) == 0 {
			return nil
		}
		lp := make([]store.LedgerPart, len(parts))
		for k, p := range parts {
			lp[k] = store.LedgerPart{Number: int64(p.Number), Data: mustJSON(recordedPart{p, h.UploadID})}
		}
		if err := r.e.Store.RecordParts(ctx, id, lp); err != nil {
			return err
		}
		persisted = next
		return nil
	}
	// The lease's progress is a call to vCenter: at most one at a time, in
	// a goroutine of its own, so a slow vCenter delays neither the bytes
	// nor the ticker.
	var leaseBusy atomic.Bool
	stop := r.ticker(ctx, func(ctx context.Context, final bool) {
		if err := persist(ctx); err != nil {
			r.log.Warn("upload progress not recorded; a resume re-sends more", "disk", i, "err", err)
		}
		done := track.Bytes()
		r.diskProgress(ctx, i, done, total, read(), pacing())
		if !final && leaseBusy.CompareAndSwap(false, true) {
			go func() {
				defer leaseBusy.Store(false)
				exp.Progress(overall(done))
			}()
		}
	})
	obj, err := r.target.Stage(ctx, awstarget.StageInput{
		Key:      key,
		Body:     body,
		SizeHint: disk.MaxImageSize(d.Format, d.CapacityBytes),
		Format:   d.Format,
		Resume:   resume,
		Tracker:  &track,
		Limiter:  r.e.Limiter,
		BeforeComplete: func(awstarget.Upload) error {
			return persist(ctx)
		},
		// The run owns the upload: it resumes it after a restart or aborts
		// it when it undoes itself.
		KeepOnFailure: true,
	})
	stop()
	if err != nil {
		return awstarget.Object{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := r.recordObject(ctx, i, obj, id); err != nil {
		return awstarget.Object{}, err
	}
	pace := pacing()
	r.diskProgress(ctx, i, obj.Size, obj.Size, read(), pace)
	msg := fmt.Sprintf("staged disk %d of %d of vm %q: %s as s3://%s/%s", i+1, len(r.vm.Disks), r.server.Name, humanize.IBytes(uint64(obj.Size)), obj.Bucket, obj.Key)
	if pace != nil && pace.Decisions > 0 {
		msg += "; " + pace.Summary()
	}
	if obj.Reused > 0 {
		msg += fmt.Sprintf(" (%d parts kept from before a restart)", obj.Reused)
	}
	r.event(ctx, store.LevelInfo, "%s", msg)
	return obj, nil
}

// abortLease aborts an export a crash left open, where the source can.
func (stageStep) abortLease(ctx context.Context, src source.Source, le store.LedgerEntry) error {
	if le.State != store.LedgerCreated || le.ResourceID == "" {
		return nil // never opened, or opened too late to be recorded: it times out
	}
	ab, ok := src.(source.ExportAborter)
	if !ok {
		return nil
	}
	var in leaseIntent
	if err := json.Unmarshal(le.Intent, &in); err != nil {
		return fmt.Errorf("read the recorded export: %w", err)
	}
	return ab.AbortExport(ctx, in.Checkpoint, le.ResourceID)
}

func (s stageStep) undo(ctx context.Context, u *undoer, le store.LedgerEntry) error {
	switch le.Kind {
	case kindExportLease:
		var in leaseIntent
		if err := json.Unmarshal(le.Intent, &in); err != nil {
			return fmt.Errorf("read the recorded export: %w", err)
		}
		if le.State != store.LedgerCreated {
			return nil
		}
		src, err := u.source(ctx, in.SourceID)
		if err != nil {
			return err
		}
		return s.abortLease(ctx, src, le)
	case kindUpload, kindObject, kindStagingPrefix:
		return u.sweep(ctx)
	}
	return fmt.Errorf("unknown kind %q", le.Kind)
}

// sweep aborts the uploads and deletes the objects under the run's staging
// prefix, once: every upload and object of the run lives there, whichever
// entries name them.
func (u *undoer) sweep(ctx context.Context) error {
	if u.swept {
		return nil
	}
	prefix := awstarget.RunPrefix(u.rr.ReplicationJobID, u.rr.ReplicationRunID)
	if _, err := u.target.AbortUploads(ctx, prefix); err != nil {
		return fmt.Errorf("abort uploads under %s: %w", prefix, err)
	}
	if _, err := u.target.DeleteStaged(ctx, prefix); err != nil {
		return fmt.Errorf("delete objects under %s: %w", prefix, err)
	}
	u.swept = true
	return nil
}
