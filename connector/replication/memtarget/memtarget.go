// Package memtarget is an in-memory replication.Target: a staging bucket,
// VM Import and EC2 images and snapshots kept in maps. It is a working
// implementation, not a mock: uploads hold their parts and resume from
// them, an import reads the staged objects (a missing one fails it), images
// hold the bytes of their disks, client tokens are idempotent, and tags are
// searched. It passes the same conformance suite (targettest) as the AWS
// target on the emulator, and carries a hook for fault injection.
package memtarget

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/smithy-go"

	"github.com/rehost/rehost/pkg/disk"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// Bucket is the staging bucket's name.
const Bucket = "staging"

// Target is the in-memory target. Its zero value is not usable: call New.
type Target struct {
	// Hook, when set, is called before ("before") and after ("after") every
	// call takes effect, and after each part ("Part", "after"); an error it
	// returns fails the call there. Set it before use.
	Hook func(ctx context.Context, op, phase string) error
	// NoEBSDirect, when set, is what CheckEBSDirect answers: a region
	// without EBS direct.
	NoEBSDirect error
	// ImportMode is how staged disks are imported when the input names no
	// mode, as the AWS target's configured mode: ModeImportSnapshot makes
	// them one ImportSnapshot task per disk, imported by ImportAdmitted.
	// Set it before use.
	ImportMode awstarget.ImportMode

	partSize int

	mu        sync.Mutex
	clock     time.Time
	next      int
	uploads   map[string]*upload // upload id →
	objects   map[string][]byte  // key →
	imports   map[string]*imp    // task id →
	tokens    map[string]string  // client token → task id
	images    map[string]*Image
	snapshots map[string]*Snapshot
}

type upload struct {
	key   string
	parts map[int32][]byte
}

type imp struct {
	id    string
	token string
	// An ImportSnapshot task's disk, the client token of its import
	// (token is the disk's own) and the name of the AMI it is for.
	disk       int
	base, name string
	state      string // active, completed, deleted
	msg        string
	input      awstarget.ImportInput
	result     awstarget.Result
}

// Image is an AMI the target made.
type Image struct {
	ID        string
	Name      string
	Tags      map[string]string
	Snapshots []string
	Created   time.Time
}

// Snapshot is an EBS snapshot with the bytes of one disk: an imported
// one's Content, or a replica's blocks (see Bytes).
type Snapshot struct {
	ID      string
	Content []byte
	Tags    map[string]string
	ebs     *replica
}

// New returns an empty target whose multipart parts hold partSize bytes.
func New(partSize int) *Target {
	return &Target{partSize: max(partSize, 1), clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		uploads: map[string]*upload{}, objects: map[string][]byte{}, imports: map[string]*imp{},
		tokens: map[string]string{}, images: map[string]*Image{}, snapshots: map[string]*Snapshot{}}
}

func (t *Target) at(ctx context.Context, op, phase string) error {
	if phase == "before" {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
	}
	if t.Hook != nil {
		return t.Hook(ctx, op, phase)
	}
	return nil
}

// id is a new resource id; t.mu held.
func (t *Target) id(prefix string) string {
	t.next++
	return fmt.Sprintf("%s-%08d", prefix, t.next)
}

func apiErr(code, format string, args ...any) error {
	return &smithy.GenericAPIError{Code: code, Message: fmt.Sprintf(format, args...)}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) string {
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], crc32.Checksum(b, castagnoli))
	return base64.StdEncoding.EncodeToString(c[:])
}

// Stage stores in.Body as a multipart upload of fixed parts, resuming
// in.Resume's upload when it still exists: its parts whose bytes match are
// kept. The upload is kept on failure (as the run asks).
func (t *Target) Stage(ctx context.Context, in awstarget.StageInput) (awstarget.Object, error) {
	if err := t.at(ctx, "Stage", "before"); err != nil {
		return awstarget.Object{}, err
	}
	if in.Key == "" || in.Body == nil {
		return awstarget.Object{}, errors.New("stage: a key and a body are required")
	}
	tr := in.Tracker
	if tr == nil {
		tr = new(awstarget.Tracker)
	}
	t.mu.Lock()
	var id string
	if r := in.Resume; r != nil {
		if u, ok := t.uploads[r.UploadID]; ok && u.key == in.Key {
			id = r.UploadID
		}
	}
	if id == "" {
		id = t.id("upload")
		t.uploads[id] = &upload{key: in.Key, parts: map[int32][]byte{}}
	}
	u := t.uploads[id]
	t.mu.Unlock()
	up := awstarget.Upload{Bucket: Bucket, Key: in.Key, UploadID: id, PartSize: int64(t.partSize)}
	tr.Start(up)

	reused := 0
	var size int64
	buf := make([]byte, t.partSize)
	n := int32(0)
	for {
		k, err := fill(in.Body, buf)
		if k > 0 {
			n++
			part := bytes.Clone(buf[:k])
			t.mu.Lock()
			old, ok := u.parts[n]
			t.mu.Unlock()
			if ok && bytes.Equal(old, part) {
				reused++
			} else {
				// A part sent waits on the limiter, as S3's stager's does.
				if in.Limiter != nil {
					if err := in.Limiter.WaitN(ctx, k); err != nil {
						return awstarget.Object{}, err
					}
				}
				t.mu.Lock()
				u.parts[n] = part
				t.mu.Unlock()
			}
			size += int64(k)
			tr.Add(awstarget.Part{Number: n, Size: int64(k), ETag: fmt.Sprintf("%q", checksum(part)), Checksum: checksum(part)})
			// A part is a round trip: where a stream breaks or a process
			// dies mid-upload.
			if err := t.at(ctx, "Part", "after"); err != nil {
				return awstarget.Object{}, err
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return awstarget.Object{}, fmt.Errorf("stage s3://%s/%s: read source at byte %d: %w", Bucket, in.Key, size, err)
		}
	}
	if in.BeforeComplete != nil {
		up, _ := tr.Upload()
		if err := in.BeforeComplete(up); err != nil {
			return awstarget.Object{}, fmt.Errorf("stage s3://%s/%s: before completing the upload: %w", Bucket, in.Key, err)
		}
	}
	if err := t.at(ctx, "Complete", "before"); err != nil {
		return awstarget.Object{}, err
	}
	t.mu.Lock()
	var obj []byte
	for i := int32(1); i <= n; i++ {
		obj = append(obj, u.parts[i]...)
	}
	t.objects[in.Key] = obj
	delete(t.uploads, id)
	t.mu.Unlock()
	o := awstarget.Object{Bucket: Bucket, Key: in.Key, Size: size, Format: in.Format, Parts: int(n), Reused: reused}
	return o, t.at(ctx, "Stage", "after")
}

// fill reads into p until it is full or the stream ends cleanly (io.EOF,
// with whatever was read before it); any other error of the stream — a
// truncated download's io.ErrUnexpectedEOF included — is passed on.
func fill(r io.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := r.Read(p[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Recover finds the object of an upload completed but not recorded.
func (t *Target) Recover(ctx context.Context, up awstarget.Upload, f disk.Format) (awstarget.Object, bool, error) {
	if err := t.at(ctx, "Recover", "before"); err != nil {
		return awstarget.Object{}, false, err
	}
	obj, ok := t.recover(up, f)
	return obj, ok, t.at(ctx, "Recover", "after")
}

func (t *Target) recover(up awstarget.Upload, f disk.Format) (awstarget.Object, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, open := t.uploads[up.UploadID]; open || up.UploadID == "" || len(up.Parts) == 0 {
		return awstarget.Object{}, false
	}
	obj, ok := t.objects[up.Key]
	if !ok {
		return awstarget.Object{}, false
	}
	var off int64
	for _, p := range up.Parts {
		if off+p.Size > int64(len(obj)) || checksum(obj[off:off+p.Size]) != p.Checksum {
			return awstarget.Object{}, false
		}
		off += p.Size
	}
	if off != int64(len(obj)) {
		return awstarget.Object{}, false
	}
	return awstarget.Object{Bucket: Bucket, Key: up.Key, Size: off, Format: f, Parts: len(up.Parts), Reused: len(up.Parts)}, true
}

// AbortUploads aborts the uploads under prefix.
func (t *Target) AbortUploads(ctx context.Context, prefix string) (int, error) {
	if err := t.at(ctx, "AbortUploads", "before"); err != nil {
		return 0, err
	}
	t.mu.Lock()
	n := 0
	for id, u := range t.uploads {
		if strings.HasPrefix(u.key, prefix) {
			delete(t.uploads, id)
			n++
		}
	}
	t.mu.Unlock()
	return n, t.at(ctx, "AbortUploads", "after")
}

// DeleteStaged deletes the objects under prefix.
func (t *Target) DeleteStaged(ctx context.Context, prefix string) (int, error) {
	if err := t.at(ctx, "DeleteStaged", "before"); err != nil {
		return 0, err
	}
	t.mu.Lock()
	n := 0
	for k := range t.objects {
		if strings.HasPrefix(k, prefix) {
			delete(t.objects, k)
			n++
		}
	}
	t.mu.Unlock()
	return n, t.at(ctx, "DeleteStaged", "after")
}

// Tasks are those of the one task StartImport starts for in, of its mode,
// or in ImportMode ModeImportSnapshot one ImportSnapshot task per disk.
func (t *Target) Tasks(in awstarget.ImportInput) awstarget.ImportTasks {
	mode := cmp.Or(in.Mode, t.ImportMode, awstarget.ModeImportImage)
	if mode == awstarget.ModeImportSnapshot {
		return awstarget.ImportTasks{Snapshot: len(in.Disks)}
	}
	return awstarget.Import{Mode: mode, TaskIDs: []string{""}}.Tasks()
}

// StartImport starts an image import of the staged disks, idempotent by
// client token. Objects that do not exist fail the start, as VM Import
// refuses them.
func (t *Target) StartImport(ctx context.Context, in awstarget.ImportInput) (awstarget.Import, error) {
	if err := t.at(ctx, "StartImport", "before"); err != nil {
		return awstarget.Import{}, err
	}
	if in.ClientToken == "" || len(in.Disks)+len(in.Snapshots) == 0 {
		return awstarget.Import{}, apiErr("InvalidParameter", "a client token and disks are required")
	}
	if cmp.Or(in.Mode, t.ImportMode) == awstarget.ModeImportSnapshot {
		return awstarget.Import{}, apiErr("InvalidParameter", "memtarget imports disks as snapshots only through ImportAdmitted")
	}
	t.mu.Lock()
	id, ok := t.tokens[in.ClientToken]
	if !ok {
		for _, s := range in.Snapshots {
			if sn := t.snapshots[s]; sn == nil || sn.ebs == nil || sn.ebs.state != "completed" {
				t.mu.Unlock()
				return awstarget.Import{}, apiErr("InvalidParameter", "ClientError: the snapshot %s does not exist or is not completed", s)
			}
		}
		for _, d := range in.Disks {
			if _, ok := t.objects[d.Key]; !ok || d.Bucket != Bucket {
				t.mu.Unlock()
				return awstarget.Import{}, apiErr("InvalidParameter", "ClientError: the object s3://%s/%s does not exist", d.Bucket, d.Key)
			}
		}
		id = t.id("import-ami")
		t.tokens[in.ClientToken] = id
		in.Disks, in.Snapshots = slices.Clone(in.Disks), slices.Clone(in.Snapshots)
		in.Tags = maps.Clone(in.Tags)
		t.imports[id] = &imp{id: id, token: in.ClientToken, state: "active", input: in}
	}
	im := t.imports[id]
	t.mu.Unlock()
	ref := awstarget.Import{Mode: cmp.Or(im.input.Mode, awstarget.ModeImportImage), TaskIDs: []string{im.id}, ClientToken: im.token,
		Description: im.input.Description, Platform: im.input.Platform, BootMode: im.input.BootMode, Tags: im.input.Tags}
	return ref, t.at(ctx, "StartImport", "after")
}

func (t *Target) lookup(ref awstarget.Import) (*imp, error) {
	if len(ref.TaskIDs) != 1 {
		return nil, apiErr("InvalidConversionTaskId", "import %v: one image task expected", ref.TaskIDs)
	}
	im, ok := t.imports[ref.TaskIDs[0]]
	if !ok {
		return nil, apiErr("InvalidConversionTaskId", "The import task %s does not exist", ref.TaskIDs[0])
	}
	return im, nil
}

// Wait completes an active import: its image holds the staged objects'
// bytes as they are now (a deleted object fails it).
func (t *Target) Wait(ctx context.Context, ref awstarget.Import, progress func(awstarget.ImportStatus)) (awstarget.Result, error) {
	if err := t.at(ctx, "Wait", "before"); err != nil {
		return awstarget.Result{}, err
	}
	t.mu.Lock()
	im, err := t.lookup(ref)
	if err == nil && im.state == "active" {
		t.complete(im)
	}
	t.mu.Unlock()
	if err != nil {
		return awstarget.Result{}, err
	}
	if im.state != "completed" {
		return awstarget.Result{}, &awstarget.ImportError{TaskID: im.id, Status: im.state, StatusMessage: im.msg}
	}
	if progress != nil {
		progress(awstarget.ImportStatus{Status: "completed", Progress: 100})
	}
	return im.result, t.at(ctx, "Wait", "after")
}

// complete converts the import's objects, or its snapshots (into new ones,
// or as they are for ModeRegister); t.mu held.
func (t *Target) complete(im *imp) {
	var snaps []string
	for _, id := range im.input.Snapshots {
		src := t.snapshots[id]
		if src == nil {
			im.state, im.msg = "deleted", fmt.Sprintf("ClientError: the snapshot %s does not exist", id)
			return
		}
		if im.input.Mode == awstarget.ModeRegister {
			snaps = append(snaps, id)
			continue
		}
		// A converted copy, sharing the replica's blocks (VM Import changes
		// no byte here).
		r := *src.ebs
		r.token, r.parent, r.written = "", "", nil
		r.blocks, r.sums, r.writers = maps.Clone(r.blocks), maps.Clone(r.sums), maps.Clone(r.writers)
		c := &Snapshot{ID: t.id("snap"), Tags: map[string]string{}, ebs: &r}
		t.snapshots[c.ID] = c
		snaps = append(snaps, c.ID)
	}
	for _, d := range im.input.Disks {
		obj, ok := t.objects[d.Key]
		if !ok {
			im.state, im.msg = "deleted", fmt.Sprintf("ClientError: Unable to read the disk s3://%s/%s", d.Bucket, d.Key)
			for _, s := range snaps {
				delete(t.snapshots, s)
			}
			return
		}
		s := &Snapshot{ID: t.id("snap"), Content: bytes.Clone(obj), Tags: map[string]string{}}
		t.snapshots[s.ID] = s
		snaps = append(snaps, s.ID)
	}
	t.clock = t.clock.Add(time.Second)
	img := &Image{ID: t.id("ami"), Name: "import-" + im.id, Tags: map[string]string{}, Snapshots: snaps, Created: t.clock}
	t.images[img.ID] = img
	im.state, im.result = "completed", awstarget.Result{ImageID: img.ID, SnapshotIDs: slices.Clone(snaps)}
}

// CancelImport cancels an active import; a completed one hands back what it
// made. An import of snapshots may name several tasks, or none, and hands
// back the snapshots of those completed and the image registered under its
// name, if any.
func (t *Target) CancelImport(ctx context.Context, ref awstarget.Import) (awstarget.Result, error) {
	if err := t.at(ctx, "CancelImport", "before"); err != nil {
		return awstarget.Result{}, err
	}
	t.mu.Lock()
	var res awstarget.Result
	var err error
	if ref.Mode == awstarget.ModeImportSnapshot {
		res, err = t.cancelSnapshotsLocked(ref)
	} else {
		var im *imp
		if im, err = t.lookup(ref); err == nil {
			switch im.state {
			case "active":
				im.state, im.msg = "deleted", "User cancelled"
			case "completed":
				res = im.result
				if im.input.Mode == awstarget.ModeRegister {
					// The snapshots were the caller's before.
					res.SnapshotIDs = nil
				}
			}
		}
	}
	t.mu.Unlock()
	if err != nil {
		return res, err
	}
	return res, t.at(ctx, "CancelImport", "after")
}

// FindImports lists imports by client token or tag.
func (t *Target) FindImports(ctx context.Context, in awstarget.FindImportsInput) ([]awstarget.Import, error) {
	if err := t.at(ctx, "FindImports", "before"); err != nil {
		return nil, err
	}
	out := t.findImports(in)
	return out, t.at(ctx, "FindImports", "after")
}

func (t *Target) findImports(in awstarget.FindImportsInput) []awstarget.Import {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []awstarget.Import
	for _, id := range slices.Sorted(maps.Keys(t.imports)) {
		im := t.imports[id]
		if im.input.Mode == awstarget.ModeImportSnapshot {
			continue
		}
		if in.ClientToken != "" && im.token != in.ClientToken {
			continue
		}
		if v, ok := im.input.Tags[in.TagKey]; in.TagKey != "" && (!ok || v != in.TagValue) {
			continue
		}
		out = append(out, awstarget.Import{Mode: awstarget.ModeImportImage, TaskIDs: []string{im.id}, ClientToken: im.token, Tags: im.input.Tags})
	}
	return append(out, t.findSnapshotImportsLocked(in)...)
}

// Finalize names and tags an image and its snapshots.
func (t *Target) Finalize(ctx context.Context, imageID, name string, tags map[string]string) error {
	if err := t.at(ctx, "Finalize", "before"); err != nil {
		return err
	}
	t.mu.Lock()
	img, ok := t.images[imageID]
	if ok {
		img.Name = cmp.Or(name, img.Name)
		maps.Copy(img.Tags, tags)
		for _, s := range img.Snapshots {
			if sn := t.snapshots[s]; sn != nil {
				maps.Copy(sn.Tags, tags)
			}
		}
	}
	t.mu.Unlock()
	if !ok {
		return apiErr("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", imageID)
	}
	return t.at(ctx, "Finalize", "after")
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || (v != "" && got != v) {
			return false
		}
	}
	return true
}

// FindImages lists images carrying the tags (empty value: any).
func (t *Target) FindImages(ctx context.Context, tags map[string]string) ([]awstarget.Image, error) {
	if err := t.at(ctx, "FindImages", "before"); err != nil {
		return nil, err
	}
	out := t.findImages(tags)
	return out, t.at(ctx, "FindImages", "after")
}

func (t *Target) findImages(tags map[string]string) []awstarget.Image {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []awstarget.Image
	for _, id := range slices.Sorted(maps.Keys(t.images)) {
		img := t.images[id]
		if matches(img.Tags, tags) {
			out = append(out, awstarget.Image{ID: img.ID, Name: img.Name, State: "available", CreationDate: img.Created,
				SnapshotIDs: slices.Clone(img.Snapshots), Tags: maps.Clone(img.Tags)})
		}
	}
	return out
}

// FindSnapshots lists snapshots carrying the tags (empty value: any).
func (t *Target) FindSnapshots(ctx context.Context, tags map[string]string) ([]awstarget.Snapshot, error) {
	if err := t.at(ctx, "FindSnapshots", "before"); err != nil {
		return nil, err
	}
	out := t.findSnapshots(tags)
	return out, t.at(ctx, "FindSnapshots", "after")
}

func (t *Target) findSnapshots(tags map[string]string) []awstarget.Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []awstarget.Snapshot
	for _, id := range slices.Sorted(maps.Keys(t.snapshots)) {
		if s := t.snapshots[id]; matches(s.Tags, tags) {
			state := "completed"
			if s.ebs != nil {
				state = s.ebs.state
			}
			out = append(out, awstarget.Snapshot{ID: s.ID, State: state, Tags: maps.Clone(s.Tags)})
		}
	}
	return out
}

// DeleteImage deregisters an image and deletes the snapshots given.
func (t *Target) DeleteImage(ctx context.Context, imageID string, snapshotIDs []string) error {
	if err := t.at(ctx, "DeleteImage", "before"); err != nil {
		return err
	}
	t.mu.Lock()
	delete(t.images, imageID)
	t.mu.Unlock()
	// Between the deregistration and the snapshots: where a crash once
	// left snapshots behind.
	if err := t.at(ctx, "DeleteImage", "deregistered"); err != nil {
		return err
	}
	t.mu.Lock()
	for _, s := range snapshotIDs {
		delete(t.snapshots, s)
	}
	t.mu.Unlock()
	return t.at(ctx, "DeleteImage", "after")
}

// Inspection, for tests.

// Objects lists the staged keys.
func (t *Target) Objects() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Sorted(maps.Keys(t.objects))
}

// Uploads lists the keys of open multipart uploads.
func (t *Target) Uploads() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, u := range t.uploads {
		out = append(out, u.key)
	}
	slices.Sort(out)
	return out
}

// ActiveImports lists the tasks still running.
func (t *Target) ActiveImports() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for id, im := range t.imports {
		if im.state == "active" {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// ImportStates maps every task to its state (active, completed, deleted).
func (t *Target) ImportStates() map[string]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]string{}
	for id, im := range t.imports {
		out[id] = im.state
	}
	return out
}

// Images returns copies of the images.
func (t *Target) Images() []Image {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Image
	for _, id := range slices.Sorted(maps.Keys(t.images)) {
		img := *t.images[id]
		img.Tags, img.Snapshots = maps.Clone(img.Tags), slices.Clone(img.Snapshots)
		out = append(out, img)
	}
	return out
}

// Snapshots returns copies of the snapshots.
func (t *Target) Snapshots() []Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Snapshot
	for _, id := range slices.Sorted(maps.Keys(t.snapshots)) {
		s := *t.snapshots[id]
		s.Tags = maps.Clone(s.Tags)
		if r := s.ebs; r != nil {
			c := *r
			c.blocks, c.sums, c.writers = maps.Clone(r.blocks), maps.Clone(r.sums), maps.Clone(r.writers)
			s.ebs = &c
		}
		out = append(out, s)
	}
	return out
}
