package replication

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
)

// world is what the fakes share: the hypervisor's and the cloud's state, and
// the fault injection of a test. Every fake call passes through at(op,
// phase) before and after it takes effect.
type world struct {
	mu sync.Mutex

	// Hypervisor.
	vms   map[string]source.VM
	data  map[string][][]byte // vm id → disk contents
	snaps map[string]source.Checkpoint
	// leases counts exports open (an NFC lease each).
	leases  int
	nextSnp int

	// Cloud.
	uploads map[string]*fakeUpload // upload id → upload
	objects map[string][]byte      // key → content
	imports map[string]*fakeImport // client token → import
	images  map[string]*fakeImage  // image id → image
	nextID  int
	calls   map[string]int

	// dead makes every call fail, as if the process had been killed; the
	// crash hook sets it and the test clears it to "restart".
	dead bool
	// hook is called with each op and phase ("before", "after") and may
	// return an error the op then fails with.
	hook func(op, phase string) error
	ops  []string // trace: "op/phase" of every call made while alive
}

type fakeUpload struct {
	key   string
	parts [][]byte
}

type fakeImport struct {
	id     string
	token  string
	state  string // active, completed, cancelled
	disks  []Staged
	tags   map[string]string
	image  string
	starts int
}

type fakeImage struct {
	name      string
	tags      map[string]string
	snapshots []string
	content   [][]byte
}

var errKilled = errors.New("fake: the process was killed")

func newWorld() *world {
	return &world{
		vms: map[string]source.VM{}, data: map[string][][]byte{}, snaps: map[string]source.Checkpoint{},
		uploads: map[string]*fakeUpload{}, objects: map[string][]byte{}, imports: map[string]*fakeImport{},
		images: map[string]*fakeImage{}, calls: map[string]int{},
	}
}

// at runs the fault hook; w.mu is not held.
func (w *world) at(ctx context.Context, op, phase string) error {
	w.mu.Lock()
	dead, hook := w.dead, w.hook
	if !dead {
		w.ops = append(w.ops, op+"/"+phase)
		if phase == "before" {
			w.calls[op]++
		}
	}
	w.mu.Unlock()
	if dead {
		return errKilled
	}
	if phase == "before" && ctx != nil {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
	}
	if hook != nil {
		return hook(op, phase)
	}
	return nil
}

func (w *world) id(prefix string) string {
	w.nextID++
	return fmt.Sprintf("%s-%04d", prefix, w.nextID)
}

// leftovers lists what a finished run must not leave behind, apart from the
// images in keep.
func (w *world) leftovers(keep ...string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for n := range w.snaps {
		out = append(out, "vm snapshot "+n)
	}
	if w.leases != 0 {
		out = append(out, fmt.Sprintf("%d export leases", w.leases))
	}
	for id, u := range w.uploads {
		out = append(out, "multipart upload "+id+" of "+u.key)
	}
	for k := range w.objects {
		out = append(out, "s3 object "+k)
	}
	for _, im := range w.imports {
		if im.state == "active" {
			out = append(out, "active import "+im.id)
		}
	}
	kept := map[string]bool{}
	for _, k := range keep {
		kept[k] = true
	}
	for id := range w.images {
		if !kept[id] {
			out = append(out, "image "+id)
		}
	}
	sort.Strings(out)
	return out
}

// fakeSource is a hypervisor holding VMs with disk contents.
type fakeSource struct{ w *world }

func (s fakeSource) Inventory(ctx context.Context) ([]source.VM, error) {
	if err := s.w.at(ctx, "Inventory", "before"); err != nil {
		return nil, err
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	var out []source.VM
	for _, vm := range s.w.vms {
		out = append(out, vm)
	}
	return out, nil
}

func (s fakeSource) VM(ctx context.Context, id string) (source.VM, error) {
	if err := s.w.at(ctx, "VM", "before"); err != nil {
		return source.VM{}, err
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	vm, ok := s.w.vms[id]
	if !ok {
		return source.VM{}, fmt.Errorf("vm %s: %w", id, source.ErrNotFound)
	}
	return vm, nil
}

func (s fakeSource) Checkpoint(ctx context.Context, vmID, name string) (source.Checkpoint, error) {
	if err := s.w.at(ctx, "Checkpoint", "before"); err != nil {
		return source.Checkpoint{}, err
	}
	s.w.mu.Lock()
	if _, ok := s.w.vms[vmID]; !ok {
		s.w.mu.Unlock()
		return source.Checkpoint{}, fmt.Errorf("vm %s: %w", vmID, source.ErrNotFound)
	}
	cp, ok := s.w.snaps[name]
	if !ok {
		s.w.nextSnp++
		cp = source.Checkpoint{VMID: vmID, ID: fmt.Sprintf("snapshot-%d", s.w.nextSnp), Name: name}
		s.w.snaps[name] = cp
	}
	s.w.mu.Unlock()
	return cp, s.w.at(ctx, "Checkpoint", "after")
}

func (s fakeSource) Checkpoints(ctx context.Context, vmID, prefix string) ([]source.Checkpoint, error) {
	if err := s.w.at(ctx, "Checkpoints", "before"); err != nil {
		return nil, err
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	var out []source.Checkpoint
	for n, cp := range s.w.snaps {
		if cp.VMID == vmID && strings.HasPrefix(n, prefix) {
			out = append(out, cp)
		}
	}
	return out, nil
}

func (s fakeSource) Release(ctx context.Context, cp source.Checkpoint) error {
	if err := s.w.at(ctx, "Release", "before"); err != nil {
		return err
	}
	s.w.mu.Lock()
	if cur, ok := s.w.snaps[cp.Name]; ok && cur.ID == cp.ID {
		delete(s.w.snaps, cp.Name)
	}
	s.w.mu.Unlock()
	return s.w.at(ctx, "Release", "after")
}

func (s fakeSource) Export(ctx context.Context, cp source.Checkpoint) (source.Export, error) {
	if err := s.w.at(ctx, "Export", "before"); err != nil {
		return nil, err
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	cur, ok := s.w.snaps[cp.Name]
	if !ok || cur.ID != cp.ID {
		return nil, fmt.Errorf("export: snapshot %s of vm %s: %w", cp.ID, cp.VMID, source.ErrNotFound)
	}
	vm := s.w.vms[cp.VMID]
	var ds []source.ExportDisk
	for i, d := range vm.Disks {
		ds = append(ds, source.ExportDisk{Disk: d, Format: disk.Raw, StreamSize: int64(len(s.w.data[vm.ID][i]))})
	}
	s.w.leases++
	return &fakeExport{w: s.w, disks: ds, data: s.w.data[vm.ID]}, nil
}

func (s fakeSource) Close() error { return nil }

type fakeExport struct {
	w      *world
	disks  []source.ExportDisk
	data   [][]byte
	closed bool
}

func (e *fakeExport) Disks() []source.ExportDisk { return e.disks }
func (e *fakeExport) ID() string                 { return "" }

func (e *fakeExport) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	if err := e.w.at(ctx, "Open", "before"); err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(e.data[i])), nil
}

func (e *fakeExport) Progress(int) {}

// Close ends the lease; a killed process never gets to, and the fake lets
// the lease time out as vCenter does (the test resets leases on restart).
func (e *fakeExport) Close(error) error {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	if !e.closed && !e.w.dead {
		e.closed = true
		e.w.leases--
	}
	return nil
}

// fakeTarget is S3 + VM Import + EC2 images over the world's state.
type fakeTarget struct {
	w *world
	// partSize is how many bytes each multipart part holds.
	partSize int
}

const fakeBucket = "staging"

// fakeUploadState is the opaque upload state the fake checkpoints.
type fakeUploadState struct {
	UploadID string `json:"uploadId"`
	Key      string `json:"key"`
	Parts    int    `json:"parts"`
}

func (t fakeTarget) Stage(ctx context.Context, in StageRequest) (Staged, error) {
	if err := t.w.at(ctx, "Stage", "before"); err != nil {
		return Staged{}, err
	}
	var prev fakeUploadState
	if len(in.Resume) > 0 {
		if err := json.Unmarshal(in.Resume, &prev); err != nil {
			return Staged{}, fmt.Errorf("read the recorded upload: %w", err)
		}
	}
	t.w.mu.Lock()
	id := prev.UploadID
	up, ok := t.w.uploads[id]
	if !ok || up.key != in.Key {
		id = t.w.id("upload")
		up = &fakeUpload{key: in.Key}
		t.w.uploads[id] = up
	}
	t.w.mu.Unlock()

	reused, n := 0, 0
	var sent int64
	buf := make([]byte, t.partSize)
	for {
		k, err := io.ReadFull(in.Body, buf)
		if k > 0 {
			part := append([]byte(nil), buf[:k]...)
			t.w.mu.Lock()
			if n < len(up.parts) && bytes.Equal(up.parts[n], part) {
				reused++
			} else {
				up.parts = append(up.parts[:n], part)
			}
			t.w.mu.Unlock()
			n++
			sent += int64(k)
			if in.Progress != nil {
				in.Progress(sent)
			}
			if in.Checkpoint != nil {
				in.Checkpoint(mustJSON(fakeUploadState{UploadID: id, Key: in.Key, Parts: n}))
			}
			// A part is a round trip: the place a stream breaks or a
			// process dies mid-upload.
			if err := t.w.at(ctx, "Part", "after"); err != nil {
				return Staged{}, err // the upload is kept for a resume
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return Staged{}, fmt.Errorf("read the disk stream: %w", err)
		}
	}
	if err := t.w.at(ctx, "Complete", "before"); err != nil {
		return Staged{}, err
	}
	t.w.mu.Lock()
	t.w.objects[in.Key] = bytes.Join(up.parts[:n], nil)
	delete(t.w.uploads, id)
	t.w.mu.Unlock()
	s := Staged{Bucket: fakeBucket, Key: in.Key, Size: sent, Format: in.Format, Reused: reused}
	return s, t.w.at(ctx, "Stage", "after")
}

func (t fakeTarget) AbortUploads(ctx context.Context, prefix string) (int, error) {
	if err := t.w.at(ctx, "AbortUploads", "before"); err != nil {
		return 0, err
	}
	t.w.mu.Lock()
	n := 0
	for id, u := range t.w.uploads {
		if strings.HasPrefix(u.key, prefix) {
			delete(t.w.uploads, id)
			n++
		}
	}
	t.w.mu.Unlock()
	return n, t.w.at(ctx, "AbortUploads", "after")
}

func (t fakeTarget) DeleteStaged(ctx context.Context, prefix string) (int, error) {
	if err := t.w.at(ctx, "DeleteStaged", "before"); err != nil {
		return 0, err
	}
	t.w.mu.Lock()
	n := 0
	for k := range t.w.objects {
		if strings.HasPrefix(k, prefix) {
			delete(t.w.objects, k)
			n++
		}
	}
	t.w.mu.Unlock()
	return n, t.w.at(ctx, "DeleteStaged", "after")
}

// fakeRef is the import reference the fake hands out.
type fakeRef struct {
	TaskID string `json:"taskId"`
	Token  string `json:"token"`
}

func (t fakeTarget) StartImport(ctx context.Context, in ImportRequest) (json.RawMessage, error) {
	if err := t.w.at(ctx, "StartImport", "before"); err != nil {
		return nil, err
	}
	if in.ClientToken == "" {
		return nil, errors.New("start import: no client token")
	}
	t.w.mu.Lock()
	imp, ok := t.w.imports[in.ClientToken]
	if !ok {
		// VM Import reads the objects when the task starts.
		for _, d := range in.Disks {
			if _, ok := t.w.objects[d.Key]; !ok || d.Bucket != fakeBucket {
				t.w.mu.Unlock()
				return nil, fmt.Errorf("start import: ClientError: the object s3://%s/%s does not exist", d.Bucket, d.Key)
			}
		}
		imp = &fakeImport{id: t.w.id("import-ami"), token: in.ClientToken, state: "active",
			disks: append([]Staged(nil), in.Disks...), tags: in.Tags}
		t.w.imports[in.ClientToken] = imp
	}
	imp.starts++
	ref := mustJSON(fakeRef{TaskID: imp.id, Token: imp.token})
	t.w.mu.Unlock()
	return ref, t.w.at(ctx, "StartImport", "after")
}

func (t fakeTarget) lookup(ref json.RawMessage) (*fakeImport, error) {
	var r fakeRef
	if err := json.Unmarshal(ref, &r); err != nil {
		return nil, fmt.Errorf("read the recorded import: %w", err)
	}
	imp, ok := t.w.imports[r.Token]
	if !ok || imp.id != r.TaskID {
		return nil, fmt.Errorf("import task %s: InvalidConversionTaskId", r.TaskID)
	}
	return imp, nil
}

func (t fakeTarget) WaitImport(ctx context.Context, ref json.RawMessage, progress func(int, string)) (ImportResult, error) {
	if err := t.w.at(ctx, "WaitImport", "before"); err != nil {
		return ImportResult{}, err
	}
	t.w.mu.Lock()
	imp, err := t.lookup(ref)
	if err != nil {
		t.w.mu.Unlock()
		return ImportResult{}, err
	}
	switch imp.state {
	case "cancelled":
		t.w.mu.Unlock()
		return ImportResult{}, fmt.Errorf("import %s was cancelled", imp.id)
	case "active":
		// The import converts the objects it was given into an image.
		var content [][]byte
		for _, d := range imp.disks {
			content = append(content, t.w.objects[d.Key])
		}
		id := t.w.id("ami")
		t.w.images[id] = &fakeImage{content: content, snapshots: []string{t.w.id("snap")}, tags: map[string]string{}}
		imp.image, imp.state = id, "completed"
	}
	res := ImportResult{ImageID: imp.image, SnapshotIDs: t.w.images[imp.image].snapshotsOrNil()}
	t.w.mu.Unlock()
	if progress != nil {
		progress(100, "completed")
	}
	return res, t.w.at(ctx, "WaitImport", "after")
}

func (im *fakeImage) snapshotsOrNil() []string {
	if im == nil {
		return nil
	}
	return im.snapshots
}

func (t fakeTarget) CancelImport(ctx context.Context, ref json.RawMessage) (ImportResult, error) {
	if err := t.w.at(ctx, "CancelImport", "before"); err != nil {
		return ImportResult{}, err
	}
	t.w.mu.Lock()
	imp, err := t.lookup(ref)
	var res ImportResult
	if err == nil {
		switch imp.state {
		case "active":
			imp.state = "cancelled"
		case "completed":
			res.ImageID = imp.image
		}
	}
	t.w.mu.Unlock()
	if err != nil {
		return res, err
	}
	return res, t.w.at(ctx, "CancelImport", "after")
}

func (t fakeTarget) FindImports(ctx context.Context, tagKey, tagValue string) ([]json.RawMessage, error) {
	if err := t.w.at(ctx, "FindImports", "before"); err != nil {
		return nil, err
	}
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	var out []json.RawMessage
	for _, imp := range t.w.imports {
		if imp.tags[tagKey] == tagValue {
			out = append(out, mustJSON(fakeRef{TaskID: imp.id, Token: imp.token}))
		}
	}
	return out, nil
}

func (t fakeTarget) Finalize(ctx context.Context, imageID, name string, tags map[string]string) error {
	if err := t.w.at(ctx, "Finalize", "before"); err != nil {
		return err
	}
	t.w.mu.Lock()
	im, ok := t.w.images[imageID]
	if ok {
		im.name = name
		for k, v := range tags {
			im.tags[k] = v
		}
	}
	t.w.mu.Unlock()
	if !ok {
		return fmt.Errorf("image %s: InvalidAMIID.NotFound", imageID)
	}
	return t.w.at(ctx, "Finalize", "after")
}

func (t fakeTarget) DeleteImage(ctx context.Context, imageID string) error {
	if err := t.w.at(ctx, "DeleteImage", "before"); err != nil {
		return err
	}
	t.w.mu.Lock()
	delete(t.w.images, imageID)
	t.w.mu.Unlock()
	return t.w.at(ctx, "DeleteImage", "after")
}

func (t fakeTarget) Retain(ctx context.Context, tagKey, tagValue string, keep int) ([]string, error) {
	if err := t.w.at(ctx, "Retain", "before"); err != nil {
		return nil, err
	}
	t.w.mu.Lock()
	var ids []string
	for id, im := range t.w.images {
		if im.tags[tagKey] == tagValue {
			ids = append(ids, id)
		}
	}
	// Ids grow with time: the newest sort last.
	sort.Strings(ids)
	var removed []string
	for len(ids) > keep {
		delete(t.w.images, ids[0])
		removed = append(removed, ids[0])
		ids = ids[1:]
	}
	t.w.mu.Unlock()
	return removed, t.w.at(ctx, "Retain", "after")
}
