package replication

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// nextRun completes the harness's run as the scheduler would and starts the
// job's next one.
func (h *harness) nextRun(ami string) {
	h.t.Helper()
	ctx := context.Background()
	if _, err := h.st.UpdateRun(ctx, h.run.ReplicationRunID, func(r *store.ReplicationRun) error {
		r.State, r.AmiID = store.RunCompleted, ami
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	runs, err := h.st.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: h.job.ReplicationJobID, Type: store.RunOnDemand,
		State: store.RunActive, ScheduledStartTime: time.Now()})
	if err != nil {
		h.t.Fatal(err)
	}
	h.run = runs[0]
	h.importsBefore = len(h.w.target.ImportStates())
}

// A kill after an upload was completed but before the run recorded its
// object: the resumed run keeps the object instead of exporting and sending
// the disk again.
func TestKilledAfterCompleteKeepsTheObject(t *testing.T) {
	h := newHarness(t)
	h.killAfter("Stage")
	mark := len(h.w.ops)
	ami, err := h.e.Run(context.Background(), h.current())
	if err != nil {
		t.Fatal(err)
	}
	h.checkCompleted(ami)
	// Disk 1 (6 parts of 4 bytes) is kept; disk 2 (3 parts) is sent.
	count := func(op string) (n int) {
		for _, o := range h.w.ops[mark:] {
			if o == op {
				n++
			}
		}
		return n
	}
	if sent, opened := count("Part/after"), count("Open/before"); sent != 3 || opened != 1 {
		t.Errorf("after the restart %d parts were sent and %d disks opened, want 3 and 1 (disk 2 only)", sent, opened)
	}
	if h.w.aborted != 1 {
		t.Errorf("%d export leases aborted at restart, want the one the killed run held", h.w.aborted)
	}
	evs, _ := h.st.Events(context.Background(), store.EventFilter{RunID: h.run.ReplicationRunID})
	var kept bool
	for _, ev := range evs {
		kept = kept || strings.Contains(ev.Message, "kept disk 1")
	}
	if !kept {
		t.Errorf("no event says disk 1 was kept: %v", evs)
	}
}

// Retention killed at every point of deleting an older AMI — between the
// deregistration and the snapshots' deletion included — leaves no snapshot
// behind once the run resumes.
func TestRetentionKilledAnywhereLeavesNothing(t *testing.T) {
	// The points of an undisturbed retention that deletes one AMI.
	trace := func(t *testing.T) (*harness, []string) {
		h := newHarness(t)
		h.job.NumberOfRecentAmisToKeep = 1
		if _, err := h.st.UpdateJob(context.Background(), h.job.ReplicationJobID, func(j *store.ReplicationJob) error {
			j.NumberOfRecentAmisToKeep = 1
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		first, err := h.e.Run(context.Background(), h.current())
		if err != nil {
			t.Fatal(err)
		}
		h.nextRun(first)
		return h, nil
	}
	h, _ := trace(t)
	var ops []string
	inRetention := false
	h.e.Hook = func(_, step string) { inRetention = step == StepRetention }
	h.w.hook = func(op, phase string) error {
		if inRetention {
			ops = append(ops, op+"/"+phase)
		}
		return nil
	}
	ami, err := h.e.Run(context.Background(), h.current())
	if err != nil {
		t.Fatal(err)
	}
	h.checkCompleted(ami)
	if !slicesContains(ops, "DeleteImage/deregistered") {
		t.Fatalf("retention never deleted an image: %v", ops)
	}
	for k, point := range ops {
		t.Run(point, func(t *testing.T) {
			h, _ := trace(t)
			inRetention, n := false, 0
			h.e.Hook = func(_, step string) { inRetention = step == StepRetention }
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			h.w.hook = func(op, phase string) error {
				if !inRetention {
					return nil
				}
				if n++; n == k+1 {
					h.kill()
					cancel(errShutdown)
					return errKilled
				}
				return nil
			}
			h.e.Run(ctx, h.current())
			h.restart()
			h.e.Hook = nil
			ami, err := h.e.Run(context.Background(), h.current())
			if err != nil {
				t.Fatalf("resumed run: %v", err)
			}
			h.checkCompleted(ami)
		})
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Deleting a job's AMIs outside a run (job delete) is recorded the same
// way: killed between deregistering and deleting the snapshots, the
// janitor's Undo finishes it.
func TestDeleteImageKilledIsFinishedByTheJanitor(t *testing.T) {
	h := newHarness(t)
	ami, err := h.e.Run(context.Background(), h.current())
	if err != nil {
		t.Fatal(err)
	}
	h.nextRun(ami) // the first run is COMPLETED
	first := h.w.target.Images()[0]
	owner := first.Tags[TagRun]
	h.w.hook = func(op, phase string) error {
		if op == "DeleteImage" && phase == "deregistered" {
			h.kill()
			return errKilled
		}
		return nil
	}
	img := awstarget.Image{ID: first.ID, SnapshotIDs: first.Snapshots}
	if err := h.e.DeleteImage(context.Background(), h.w.target, owner, img); err == nil {
		t.Fatal("killed deletion succeeded")
	}
	h.restart()
	if n := len(h.w.target.Snapshots()); n != 2 {
		t.Fatalf("precondition: %d snapshots after the kill, want the image's 2", n)
	}
	_, undo, err := h.e.Recoverable(context.Background())
	if err != nil || len(undo) != 1 || undo[0] != owner {
		t.Fatalf("Recoverable undo = %v, %v; want [%s]", undo, err, owner)
	}
	if err := h.e.Undo(context.Background(), owner); err != nil {
		t.Fatal(err)
	}
	if left := h.w.leftovers(); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// A source whose progress call blocks (a vCenter that takes seconds to
// answer HttpNfcLeaseProgress) does not hold the upload: the run completes
// while the call is still blocked.
func TestSlowLeaseProgressDoesNotHoldTheUpload(t *testing.T) {
	h := newHarness(t)
	h.e.ProgressEvery = time.Millisecond
	release := make(chan struct{})
	defer close(release)
	var calls, blocked atomic.Int32
	h.w.progress = func(int) {
		calls.Add(1)
		blocked.Add(1)
		<-release
	}
	// Each part waits a little, so the ticker fires during the upload.
	h.w.hook = func(op, phase string) error {
		if op == "Part" {
			time.Sleep(3 * time.Millisecond)
		}
		return nil
	}
	ami, err := h.e.Run(context.Background(), h.current())
	if err != nil {
		t.Fatal(err)
	}
	h.checkCompleted(ami)
	if calls.Load() == 0 {
		t.Fatal("the source never heard of the export's progress")
	}
	if blocked.Load() != calls.Load() {
		t.Fatal("a progress call returned: the test did not hold it")
	}
	// One call in flight per disk at most: the ticker does not pile them up.
	if calls.Load() > 2 {
		t.Errorf("%d progress calls in flight at once, want at most one per disk", calls.Load())
	}
	// Progress is stored as numbers.
	p := h.current().Progress
	if p.Step != stageCompleted || len(p.Disks) != 2 {
		t.Fatalf("progress %+v", p)
	}
	for i, d := range p.Disks {
		if want := int64(len(h.w.data[h.vm.ID][i])); d.BytesDone != want || d.BytesTotal != want {
			t.Errorf("disk %d progress %+v, want %d of %d bytes", i, d, want, want)
		}
	}
}

// Sweep removes AMIs and snapshots tagged with a finished run of this
// connector that nothing owns, and leaves the rest alone.
func TestSweepRemovesOrphans(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	kept, err := h.e.Run(ctx, h.current())
	if err != nil {
		t.Fatal(err)
	}
	h.nextRun(kept)
	// An AMI of a run that then failed (its undo cut off before the AMI was
	// recorded), and the snapshots of a deregistered one.
	failedRun := h.run.ReplicationRunID
	orphan := h.importTagged(t, failedRun, "rehost/x/y/orphan")
	dereg := h.importTagged(t, failedRun, "rehost/x/y/dereg")
	if err := h.w.target.DeleteImage(ctx, dereg.ImageID, nil); err != nil {
		t.Fatal(err)
	}
	// Another connector's AMI (a run this store does not know).
	foreign := h.importTagged(t, "sms-run-elsewhere", "rehost/x/y/foreign")
	if _, err := h.st.UpdateRun(ctx, failedRun, func(r *store.ReplicationRun) error { r.State = store.RunFailed; return nil }); err != nil {
		t.Fatal(err)
	}
	removed, err := h.e.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]string{orphan.ImageID}, dereg.SnapshotIDs...)
	if strings.Join(removed, ",") != strings.Join(want, ",") {
		t.Errorf("sweep removed %v, want %v", removed, want)
	}
	left := h.w.leftovers(kept, foreign.ImageID)
	if len(left) != 0 {
		t.Errorf("left after the sweep: %v", left)
	}
	if removed, err := h.e.Sweep(ctx); err != nil || len(removed) != 0 {
		t.Errorf("second sweep removed %v, %v", removed, err)
	}
}

// importTagged makes an AMI tagged with runID directly at the target.
func (h *harness) importTagged(t *testing.T, runID, key string) awstarget.Result {
	t.Helper()
	ctx := context.Background()
	obj, err := h.w.target.Stage(ctx, awstarget.StageInput{Key: key, Body: strings.NewReader("bytes")})
	if err != nil {
		t.Fatal(err)
	}
	imp, err := h.w.target.StartImport(ctx, awstarget.ImportInput{Disks: []awstarget.Object{obj}, ClientToken: key})
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.w.target.Wait(ctx, imp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.w.target.Finalize(ctx, res.ImageID, "", map[string]string{TagRun: runID, TagJob: h.job.ReplicationJobID}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.w.target.DeleteStaged(ctx, key); err != nil {
		t.Fatal(err)
	}
	return res
}

// A run's progress records when each step began and ended, and the step a
// failed run failed in.
func TestStepTimesAndFailedStep(t *testing.T) {
	h := newHarness(t)
	ami, err := h.e.Run(context.Background(), h.current())
	if err != nil {
		t.Fatal(err)
	}
	h.checkCompleted(ami)
	p := h.current().Progress
	full := StepsOf(ModeFull)
	if len(p.Steps) != len(full) {
		t.Fatalf("steps recorded %+v, want all %d", p.Steps, len(full))
	}
	for i, s := range p.Steps {
		if s.Step != full[i].Name || s.Started.IsZero() || s.Ended.Before(s.Started) {
			t.Errorf("step %d recorded as %+v", i, s)
		}
	}

	h = newHarness(t)
	h.w.hook = func(op, phase string) error {
		if op == "Finalize" {
			return errors.New("fake: Finalize refused")
		}
		return nil
	}
	if _, err := h.e.Run(context.Background(), h.current()); err == nil {
		t.Fatal("run did not fail")
	}
	if p := h.current().Progress; p.FailedStep != StepFinalize || p.Step != stageCleanup {
		t.Errorf("failed run's progress %+v, want failed step %q", p, StepFinalize)
	}
}
