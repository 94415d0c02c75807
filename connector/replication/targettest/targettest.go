// Package targettest is the conformance suite of replication.Target: every
// implementation — the AWS target on the emulator, the in-memory memtarget —
// runs it, so the run can rely on the contract whichever serves it.
package targettest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/pkg/disk"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// Env is one implementation under test.
type Env struct {
	Target replication.Target
	// Disk is an image the target's importer accepts (a real guest disk
	// where the importer looks inside), staged as raw.
	Disk []byte
	// PartSize is the multipart part size the target uses.
	PartSize int
}

// Run runs every test of the suite; newEnv gives a fresh, empty target.
func Run(t *testing.T, newEnv func(t *testing.T) Env) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Env)
	}{
		{"StageTracksAndRecovers", testStageTracksAndRecovers},
		{"ResumeAfterCut", testResumeAfterCut},
		{"AbortAndDelete", testAbortAndDelete},
		{"ImportLifecycle", testImportLifecycle},
		{"CancelActiveImport", testCancelActiveImport},
		{"ImportOfMissingObjectFails", testImportOfMissingObject},
		{"ReplicaLineage", testReplicaLineage},
		{"ReplicaRefusals", testReplicaRefusals},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newEnv(t)) })
	}
}

var ctx = context.Background()

func testStageTracksAndRecovers(t *testing.T, e Env) {
	key := awstarget.StagingKey("job-t", "run-1", 0, disk.Raw)
	var track awstarget.Tracker
	var before []awstarget.Upload
	obj, err := e.Target.Stage(ctx, awstarget.StageInput{Key: key, Body: bytes.NewReader(e.Disk), Format: disk.Raw,
		SizeHint: int64(len(e.Disk)), Tracker: &track,
		BeforeComplete: func(u awstarget.Upload) error { before = append(before, u); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if obj.Key != key || obj.Size != int64(len(e.Disk)) || obj.Format != disk.Raw || obj.Bucket == "" {
		t.Errorf("object %+v", obj)
	}
	if track.Bytes() != obj.Size {
		t.Errorf("tracker counted %d bytes of %d", track.Bytes(), obj.Size)
	}
	if len(before) != 1 {
		t.Fatalf("BeforeComplete called %d times, want once", len(before))
	}
	up := before[0]
	var sum int64
	for i, p := range up.Parts {
		if p.Number != int32(i+1) || p.Checksum == "" {
			t.Errorf("part %d recorded as %+v", i+1, p)
		}
		sum += p.Size
	}
	if sum != obj.Size || up.UploadID == "" || up.Key != key {
		t.Errorf("upload before completion %+v covers %d bytes of %d", up, sum, obj.Size)
	}
	got, ok, err := e.Target.Recover(ctx, up, disk.Raw)
	if err != nil || !ok || got.Key != key || got.Size != obj.Size {
		t.Errorf("recover a completed upload: %+v, %v, %v", got, ok, err)
	}
	other := up
	other.UploadID, other.Key = "no-such-upload", key+".other"
	if _, ok, err := e.Target.Recover(ctx, other, disk.Raw); ok || err != nil {
		t.Errorf("recover of an upload that never was: %v, %v", ok, err)
	}
}

// cutReader yields n bytes of b, then fails as a dropped stream does.
type cutReader struct {
	r io.Reader
	n int
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	p = p[:min(len(p), c.n)]
	k, err := c.r.Read(p)
	c.n -= k
	return k, err
}

func testResumeAfterCut(t *testing.T, e Env) {
	key := awstarget.StagingKey("job-t", "run-2", 0, disk.Raw)
	var track awstarget.Tracker
	cut := 3*e.PartSize + 1
	_, err := e.Target.Stage(ctx, awstarget.StageInput{Key: key, Body: &cutReader{bytes.NewReader(e.Disk), cut},
		Format: disk.Raw, SizeHint: int64(len(e.Disk)), Tracker: &track, KeepOnFailure: true})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("stage of a cut stream: %v, want the stream's error", err)
	}
	up, _ := track.Upload()
	if len(up.Parts) < 3 || up.UploadID == "" {
		t.Fatalf("tracker after the cut holds %d parts", len(up.Parts))
	}
	if _, ok, err := e.Target.Recover(ctx, up, disk.Raw); ok || err != nil {
		t.Fatalf("recover of an open upload: %v, %v", ok, err)
	}
	obj, err := e.Target.Stage(ctx, awstarget.StageInput{Key: key, Body: bytes.NewReader(e.Disk), Format: disk.Raw,
		SizeHint: int64(len(e.Disk)), Resume: &up, KeepOnFailure: true})
	if err != nil {
		t.Fatal(err)
	}
	if obj.Reused < 3 || obj.Size != int64(len(e.Disk)) {
		t.Errorf("resumed stage reused %d parts, size %d; want at least 3 and %d", obj.Reused, obj.Size, len(e.Disk))
	}
	if n, err := e.Target.AbortUploads(ctx, awstarget.RunPrefix("job-t", "run-2")); n != 0 || err != nil {
		t.Errorf("after the resumed stage completed, %d uploads were left (%v)", n, err)
	}
}

func testAbortAndDelete(t *testing.T, e Env) {
	prefix := awstarget.RunPrefix("job-t", "run-3")
	for i := range 2 {
		key := awstarget.StagingKey("job-t", "run-3", i, disk.Raw)
		body := io.Reader(bytes.NewReader(e.Disk))
		if i == 1 {
			body = &cutReader{body, e.PartSize + 1}
		}
		e.Target.Stage(ctx, awstarget.StageInput{Key: key, Body: body, Format: disk.Raw, KeepOnFailure: true})
	}
	if n, err := e.Target.AbortUploads(ctx, prefix); n != 1 || err != nil {
		t.Errorf("abort uploads: %d, %v; want the cut one", n, err)
	}
	if n, err := e.Target.DeleteStaged(ctx, prefix); n != 1 || err != nil {
		t.Errorf("delete staged: %d, %v; want the completed one", n, err)
	}
	if n, err := e.Target.DeleteStaged(ctx, prefix); n != 0 || err != nil {
		t.Errorf("delete staged again: %d, %v", n, err)
	}
	if n, err := e.Target.AbortUploads(ctx, prefix); n != 0 || err != nil {
		t.Errorf("abort uploads again: %d, %v", n, err)
	}
}

func stageDisks(t *testing.T, e Env, run string, n int) []awstarget.Object {
	t.Helper()
	var out []awstarget.Object
	for i := range n {
		obj, err := e.Target.Stage(ctx, awstarget.StageInput{Key: awstarget.StagingKey("job-t", run, i, disk.Raw),
			Body: bytes.NewReader(e.Disk), Format: disk.Raw, SizeHint: int64(len(e.Disk))})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, obj)
	}
	return out
}

func testImportLifecycle(t *testing.T, e Env) {
	disks := stageDisks(t, e, "run-4", 2)
	tags := map[string]string{replication.TagJob: "job-t", replication.TagRun: "run-4"}
	in := awstarget.ImportInput{Disks: disks, ClientToken: "rehost-run-4", BootMode: "legacy-bios", Platform: "Linux",
		LicenseType: "BYOL", Description: "suite", Tags: tags}
	imp, err := e.Target.StartImport(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.Target.StartImport(ctx, in)
	if err != nil || !slices.Equal(again.TaskIDs, imp.TaskIDs) {
		t.Fatalf("second start with the same client token: %+v, %v; want %v", again.TaskIDs, err, imp.TaskIDs)
	}
	found, err := e.Target.FindImports(ctx, awstarget.FindImportsInput{TagKey: replication.TagRun, TagValue: "run-4"})
	if err != nil || len(found) != 1 || !slices.Equal(found[0].TaskIDs, imp.TaskIDs) {
		t.Fatalf("find imports by tag: %+v, %v", found, err)
	}
	var last awstarget.ImportStatus
	res, err := e.Target.Wait(ctx, found[0], func(s awstarget.ImportStatus) { last = s })
	if err != nil {
		t.Fatal(err)
	}
	if res.ImageID == "" || len(res.SnapshotIDs) != 2 || last.Status != "completed" || last.Progress != 100 {
		t.Fatalf("import result %+v, last status %+v", res, last)
	}
	if err := e.Target.Finalize(ctx, res.ImageID, "suite-image", tags); err != nil {
		t.Fatal(err)
	}
	if err := e.Target.Finalize(ctx, res.ImageID, "suite-image", tags); err != nil {
		t.Fatalf("finalize twice: %v", err)
	}
	imgs, err := e.Target.FindImages(ctx, map[string]string{replication.TagJob: "job-t"})
	if err != nil || len(imgs) != 1 || imgs[0].ID != res.ImageID || !sameSet(imgs[0].SnapshotIDs, res.SnapshotIDs) {
		t.Fatalf("find images by tag: %+v, %v", imgs, err)
	}
	if any, err := e.Target.FindImages(ctx, map[string]string{replication.TagRun: ""}); err != nil || len(any) != 1 {
		t.Fatalf("find images by tag key: %+v, %v", any, err)
	}
	snaps, err := e.Target.FindSnapshots(ctx, map[string]string{replication.TagRun: "run-4"})
	if err != nil || len(snaps) != 2 {
		t.Fatalf("find snapshots by tag: %+v, %v", snaps, err)
	}
	remains, err := e.Target.CancelImport(ctx, imp)
	if err != nil || remains.ImageID != res.ImageID || !sameSet(remains.SnapshotIDs, res.SnapshotIDs) {
		t.Fatalf("cancel of a completed import: %+v, %v; want what it made", remains, err)
	}
	// Deregistered, then killed: the second call, with the recorded
	// snapshots, finishes the deletion.
	if err := e.Target.DeleteImage(ctx, res.ImageID, nil); err != nil {
		t.Fatal(err)
	}
	if imgs, _ := e.Target.FindImages(ctx, map[string]string{replication.TagJob: "job-t"}); len(imgs) != 0 {
		t.Fatalf("image still listed after deregistration: %+v", imgs)
	}
	if err := e.Target.DeleteImage(ctx, res.ImageID, res.SnapshotIDs); err != nil {
		t.Fatalf("finish the deletion: %v", err)
	}
	if snaps, _ := e.Target.FindSnapshots(ctx, map[string]string{replication.TagRun: "run-4"}); len(snaps) != 0 {
		t.Fatalf("snapshots left: %+v", snaps)
	}
	if err := e.Target.DeleteImage(ctx, res.ImageID, res.SnapshotIDs); err != nil {
		t.Fatalf("delete again: %v", err)
	}
}

func testCancelActiveImport(t *testing.T, e Env) {
	disks := stageDisks(t, e, "run-5", 1)
	imp, err := e.Target.StartImport(ctx, awstarget.ImportInput{Disks: disks, ClientToken: "rehost-run-5",
		Tags: map[string]string{replication.TagRun: "run-5"}})
	if err != nil {
		t.Fatal(err)
	}
	remains, err := e.Target.CancelImport(ctx, imp)
	if err != nil || remains.ImageID != "" || len(remains.SnapshotIDs) != 0 {
		t.Fatalf("cancel of an active import: %+v, %v", remains, err)
	}
	_, err = e.Target.Wait(ctx, imp, nil)
	var ie *awstarget.ImportError
	if !errors.As(err, &ie) {
		t.Fatalf("wait after cancel: %v, want an *ImportError", err)
	}
	if _, err := e.Target.CancelImport(ctx, imp); err != nil {
		t.Fatalf("cancel twice: %v", err)
	}
}

func testImportOfMissingObject(t *testing.T, e Env) {
	missing := awstarget.Object{Bucket: "staging", Key: awstarget.StagingKey("job-t", "run-6", 0, disk.Raw), Size: 1 << 20, Format: disk.Raw}
	imp, err := e.Target.StartImport(ctx, awstarget.ImportInput{Disks: []awstarget.Object{missing}, ClientToken: "rehost-run-6"})
	if err == nil {
		_, err = e.Target.Wait(ctx, imp, nil)
	}
	if err == nil {
		t.Fatal("an import of an object that does not exist succeeded")
	}
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}
