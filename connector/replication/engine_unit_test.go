package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/replication/memtarget"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// errShutdown is the cause the connector stopping cancels a run with.
var errShutdown = errors.New("connector stopping")

type harness struct {
	t   *testing.T
	st  store.Store
	w   *world
	e   *Engine
	job store.ReplicationJob
	run store.ReplicationRun
	vm  source.VM
	// importsBefore counts the imports of the job's earlier runs.
	importsBefore int
	// changeIDsLost: a kill fell between the source keeping the change
	// point and the run recording it, on a source that cannot say it again
	// (vSphere): the job's replicas are kept without change ids.
	changeIDsLost bool
}

// newHarness makes a store holding one vSphere source, a two-disk server, its
// job and an ACTIVE run (as the scheduler leaves it before calling Run), and
// an engine over fakes of the source and the target.
func newHarness(t *testing.T) *harness {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "rehost.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w := newWorld()
	vm := source.VM{ID: "vm-42", Name: "web 01", GuestOS: "ubuntu64Guest", Firmware: source.FirmwareBIOS,
		Disks: []source.Disk{{Key: "2000", Label: "Hard disk 1", CapacityBytes: 23}, {Key: "2001", Label: "Hard disk 2", CapacityBytes: 9}}}
	w.vms[vm.ID] = vm
	w.data[vm.ID] = [][]byte{[]byte("boot disk: 23 bytes ok."), []byte("data disk")}

	src, err := st.CreateSource(ctx, store.Source{Kind: store.SourceVSphere, Name: "vc", Endpoint: "https://vc.example/sdk"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := st.UpsertServer(ctx, store.Server{SourceID: src.ID, VMID: vm.ID, Name: vm.Name, DiskCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	job, err := st.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, SeedReplicationTime: time.Now(),
		Frequency: 12, LicenseType: store.LicenseAWS, NumberOfRecentAmisToKeep: 2})
	if err != nil {
		t.Fatal(err)
	}
	runs, err := st.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, Type: store.RunOnDemand,
		State: store.RunActive, ScheduledStartTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	run := runs[0]
	e := &Engine{
		Store: st,
		Source: func(ctx context.Context, id string) (source.Source, error) {
			if id != src.ID {
				return nil, fmt.Errorf("source %s: %w", id, store.ErrNotFound)
			}
			return fakeSource{w}, nil
		},
		Target:         func(context.Context) (Target, error) { return w.target, nil },
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		CleanupTimeout: 10 * time.Second,
		StepAttempts:   3,
		RetryDelay:     time.Millisecond,
	}
	return &harness{t: t, st: st, w: w, e: e, job: job, run: run, vm: vm}
}

// current reads the run back, as the scheduler hands it to Run after a
// restart.
func (h *harness) current() store.ReplicationRun {
	h.t.Helper()
	r, err := h.st.GetRun(context.Background(), h.run.ReplicationRunID)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// restart brings the "process" back: calls work again. Export leases the
// killed process held are still open: the restarted run must abort them.
func (h *harness) restart() {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	h.w.dead, h.w.hook = false, nil
	h.e.Hook = nil
}

// kill makes every later call fail, as if the process had died.
func (h *harness) kill() {
	h.w.mu.Lock()
	h.w.dead = true
	h.w.mu.Unlock()
}

// killAfter runs the current run until the target's op has returned,
// kills the process there (the run's context is cancelled as a shutdown
// would), checks that the run failed, and brings the process back.
func (h *harness) killAfter(op string) {
	h.t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	h.w.hook = func(o, phase string) error {
		if o == op && phase == "after" {
			h.kill()
			cancel(errShutdown)
			return errKilled
		}
		return nil
	}
	if _, err := h.e.Run(ctx, h.current()); err == nil {
		h.t.Fatalf("the run killed after %s did not fail", op)
	}
	h.restart()
}

func (h *harness) unreleased() []string {
	h.t.Helper()
	les, err := h.st.LedgerForRun(context.Background(), h.run.ReplicationRunID)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, le := range les {
		if le.State == store.LedgerIntent || le.State == store.LedgerCreated {
			out = append(out, fmt.Sprintf("%s %s (%s)", le.Kind, le.ResourceID, le.State))
		}
	}
	return out
}

// checkCompleted proves the run made exactly one image holding the VM's
// disks, named and tagged, recorded on the run, and left nothing else.
func (h *harness) checkCompleted(ami string) {
	h.t.Helper()
	if ami == "" {
		h.t.Fatal("no image id returned")
	}
	if left := h.w.leftovers(ami); len(left) > 0 {
		h.t.Errorf("left behind: %v", left)
	}
	var im *memtarget.Image
	for _, x := range h.w.target.Images() {
		if x.ID == ami {
			im = &x
		}
	}
	if im == nil {
		h.t.Fatalf("image %s does not exist", ami)
	}
	if n := len(h.w.target.ImportStates()) - h.importsBefore; n != 1 {
		h.t.Errorf("%d imports were started, want 1", n)
	}
	content := map[string][]byte{}
	for _, s := range h.w.target.Snapshots() {
		content[s.ID] = s.Content
	}
	for i, want := range h.w.data[h.vm.ID] {
		var got []byte
		if i < len(im.Snapshots) {
			got = content[im.Snapshots[i]]
		}
		if !bytes.Equal(got, want) {
			h.t.Errorf("image disk %d holds %q, want %q", i, got, want)
		}
	}
	if want := "rehost-web-01-" + h.run.ReplicationRunID; im.Name != want {
		h.t.Errorf("image name %q, want %q", im.Name, want)
	}
	if im.Tags[TagRun] != h.run.ReplicationRunID || im.Tags[TagJob] != h.job.ReplicationJobID {
		h.t.Errorf("image tags %v lack the run and job", im.Tags)
	}
	if got := h.current().AmiID; got != ami {
		h.t.Errorf("run records image %q, want %q", got, ami)
	}
	if u := h.unreleased(); len(u) > 0 {
		h.t.Errorf("ledger still holds %v", u)
	}
}

// checkUndone proves nothing of the run is left, in the fakes or the ledger.
func (h *harness) checkUndone() {
	h.t.Helper()
	if left := h.w.leftovers(); len(left) > 0 {
		h.t.Errorf("left behind: %v", left)
	}
	if u := h.unreleased(); len(u) > 0 {
		h.t.Errorf("ledger still holds %v", u)
	}
}

// points counts the fault points (op/phase) of an undisturbed run.
func points(t *testing.T) []string {
	h := newHarness(t)
	ami, err := h.e.Run(context.Background(), h.current())
	if err != nil {
		t.Fatalf("undisturbed run: %v", err)
	}
	h.checkCompleted(ami)
	return append([]string(nil), h.w.ops...)
}

func TestRunCompletes(t *testing.T) {
	h := newHarness(t)
	ami, err := h.e.Run(context.Background(), h.current())
	if err != nil {
		t.Fatal(err)
	}
	h.checkCompleted(ami)
	// The checkpoint is asked for with the run's tags, for sources whose
	// platform tags what it makes.
	if tg := h.w.checkpointTags; tg[TagJob] != h.job.ReplicationJobID || tg[TagRun] != h.run.ReplicationRunID {
		t.Errorf("checkpoint tags %v, want the job and the run", tg)
	}
	ops := points(t)
	for _, want := range []string{"Checkpoint/before", "Export/before", "Stage/after", "Release/after", "StartImport/after", "Wait/after", "Finalize/after", "DeleteStaged/after", "FindImages/after"} {
		if !slices.Contains(ops, want) {
			t.Errorf("an undisturbed run never reached %s: %v", want, ops)
		}
	}
}

// TestResumeAfterCrash kills the process at every call the run makes to the
// source or the target (just before it, and just after it took effect but
// before the run could record it), restarts, and checks the resumed run ends
// with one image and nothing left over.
func TestResumeAfterCrash(t *testing.T) {
	ops := points(t)
	for k := range ops {
		t.Run(fmt.Sprintf("%02d-%s", k+1, strings.ReplaceAll(ops[k], "/", "-")), func(t *testing.T) {
			h := newHarness(t)
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			n := 0
			h.w.hook = func(op, phase string) error {
				n++
				if n != k+1 {
					return nil
				}
				if got := op + "/" + phase; got != ops[k] {
					t.Errorf("fault point %d is %s, want %s: the run is not deterministic", k+1, got, ops[k])
				}
				h.kill()
				cancel(errShutdown)
				return errKilled
			}
			// Retention's failure never fails the run: killed there, it
			// may report success (and is then only re-run idempotently).
			if _, err := h.e.Run(ctx, h.current()); err == nil && !strings.HasPrefix(ops[k], "FindImages/") {
				t.Fatalf("run killed at %s did not fail", ops[k])
			}
			h.restart()
			ami, err := h.e.Run(context.Background(), h.current())
			if err != nil {
				t.Fatalf("resumed run after a kill at %s: %v", ops[k], err)
			}
			h.checkCompleted(ami)
		})
	}
}

// TestResumeAfterStopAtStep stops the connector at the start of each step.
func TestResumeAfterStopAtStep(t *testing.T) {
	for _, in := range StepsOf(ModeFull) {
		name := in.Name
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			h.e.Hook = func(_, step string) {
				if step == name {
					cancel(errShutdown)
				}
			}
			// Stopped at retention, the run has handed its AMI over and
			// may complete: retention of older AMIs never fails it.
			if _, err := h.e.Run(ctx, h.current()); err == nil && name != StepRetention {
				t.Fatalf("run stopped at %s did not return an error", name)
			}
			// Nothing exists yet when the run stops before its snapshot.
			if name != StepPreflight && name != StepSnapshot && name != StepRetention {
				if u := h.unreleased(); len(u) == 0 {
					t.Errorf("stopped at %s, the run's resources were released: it was undone, not left to resume", name)
				}
			}
			h.restart()
			ami, err := h.e.Run(context.Background(), h.current())
			if err != nil {
				t.Fatalf("resumed run: %v", err)
			}
			h.checkCompleted(ami)
		})
	}
}

// TestUndoAfterFailure fails each kind of call once, permanently, and checks
// the run fails naming it and undoes everything.
func TestUndoAfterFailure(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range points(t) {
		op := p[:strings.IndexByte(p, '/')]
		if seen[op] {
			continue
		}
		seen[op] = true
		t.Run(op, func(t *testing.T) {
			h := newHarness(t)
			failed := false
			h.w.hook = func(o, phase string) error {
				if o == op && !failed {
					failed = true
					return fmt.Errorf("fake: %s refused", op)
				}
				return nil
			}
			ami, err := h.e.Run(context.Background(), h.current())
			if op == "FindImages" {
				// Retention of older images never fails the run.
				if err != nil {
					t.Fatalf("a failed retention failed the run: %v", err)
				}
				h.checkCompleted(ami)
				return
			}
			if err == nil {
				t.Fatalf("run with %s refused succeeded", op)
			}
			if !strings.Contains(err.Error(), op+" refused") || !strings.Contains(err.Error(), `vm "web 01"`) {
				t.Errorf("error %q does not name the vm and the cause", err)
			}
			if h.w.calls["Stage"] > 2 {
				t.Errorf("a permanent failure was retried: Stage called %d times", h.w.calls["Stage"])
			}
			h.checkUndone()
		})
	}
}

func TestTransientFailureIsRetried(t *testing.T) {
	h := newHarness(t)
	parts := 0
	h.w.hook = func(op, phase string) error {
		if op == "Part" {
			parts++
			if parts == 3 {
				// The export stream breaks after two parts are stored.
				return fmt.Errorf("read disk stream: %w", io.ErrUnexpectedEOF)
			}
		}
		return nil
	}
	ami, err := h.e.Run(context.Background(), h.current())
	if err != nil {
		t.Fatal(err)
	}
	h.checkCompleted(ami)
	if got := h.w.calls["Stage"]; got != 3 {
		t.Errorf("Stage called %d times, want 3 (disk 1 twice, disk 2 once)", got)
	}
	evs, err := h.st.Events(context.Background(), store.EventFilter{RunID: h.run.ReplicationRunID})
	if err != nil {
		t.Fatal(err)
	}
	var retried, reused bool
	for _, ev := range evs {
		retried = retried || strings.Contains(ev.Message, "retrying")
		reused = reused || strings.Contains(ev.Message, "(3 parts kept from before a restart)")
	}
	if !retried || !reused {
		t.Errorf("events do not show the retry resuming the upload from its 3 recorded parts: %v", evs)
	}
}

// TestUndoFindsUnrecordedImport: the process dies after VM Import started the
// task but before the run recorded it; the run is then given up (marked
// failed) and the janitor's Undo must find the task by its tag.
func TestUndoFindsUnrecordedImport(t *testing.T) {
	h := newHarness(t)
	h.killAfter("StartImport")
	les, err := h.st.LedgerForRun(context.Background(), h.run.ReplicationRunID)
	if err != nil {
		t.Fatal(err)
	}
	var intent bool
	for _, le := range les {
		intent = intent || le.Kind == kindImportTask && le.State == store.LedgerIntent
	}
	if !intent || len(h.w.target.ImportStates()) != 1 {
		t.Fatalf("precondition: want an import intent and one started import; ledger %v, imports %v", les, h.w.target.ImportStates())
	}
	if _, err := h.st.UpdateRun(context.Background(), h.run.ReplicationRunID, func(r *store.ReplicationRun) error {
		r.State = store.RunFailed
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_, undo, err := h.e.Recoverable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(undo) != 1 || undo[0] != h.run.ReplicationRunID {
		t.Fatalf("Recoverable undo = %v, want [%s]", undo, h.run.ReplicationRunID)
	}
	if err := h.e.Undo(context.Background(), h.run.ReplicationRunID); err != nil {
		t.Fatal(err)
	}
	if h.w.calls["FindImports"] != 1 {
		t.Errorf("FindImports called %d times, want 1", h.w.calls["FindImports"])
	}
	for id, state := range h.w.target.ImportStates() {
		if state != "deleted" {
			t.Errorf("import %s is %s, want cancelled (deleted)", id, state)
		}
	}
	h.checkUndone()
}

// TestCancelUndoes cancels the run (the user's ErrCancelled) at each step.
func TestCancelUndoes(t *testing.T) {
	for _, in := range StepsOf(ModeFull) {
		name := in.Name
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			h.e.Hook = func(_, step string) {
				if step == name {
					cancel(ErrCancelled)
				}
			}
			ami, err := h.e.Run(ctx, h.current())
			if name == StepRetention {
				// The image was handed over to the job before: the run is
				// complete, and only retention of older images is skipped.
				if err != nil {
					t.Fatalf("run cancelled at retention failed: %v", err)
				}
				h.checkCompleted(ami)
				return
			}
			if err == nil {
				t.Fatalf("run cancelled at %s did not fail", name)
			}
			if !errors.Is(err, ErrCancelled) || !strings.Contains(err.Error(), "cancelled by the user") {
				t.Errorf("error %q does not say the user cancelled the run", err)
			}
			h.checkUndone()
		})
	}
}

// TestFailedRunIsNotResumed: a run failed, and the process was killed while
// it was being undone (or the scheduler, stopping, left the failed run
// ACTIVE). The restart hands it to Run again, which must finish undoing it
// and report the original failure, not resume it over a half-undone ledger.
func TestFailedRunIsNotResumed(t *testing.T) {
	for _, killDuringUndo := range []bool{true, false} {
		t.Run(fmt.Sprintf("killed-during-undo=%v", killDuringUndo), func(t *testing.T) {
			h := newHarness(t)
			finalized := false
			h.w.hook = func(op, phase string) error {
				switch {
				case op == "Finalize" && !finalized:
					finalized = true
					return errors.New("fake: Finalize refused")
				case op == "DeleteImage" && killDuringUndo:
					h.kill()
					return errKilled
				}
				return nil
			}
			if _, err := h.e.Run(context.Background(), h.current()); err == nil {
				t.Fatal("run did not fail")
			}
			// The run is still ACTIVE: nobody recorded its failure.
			h.restart()
			ami, err := h.e.Run(context.Background(), h.current())
			if err == nil {
				t.Fatalf("the failed run was resumed and made image %s", ami)
			}
			if !strings.Contains(err.Error(), "Finalize refused") {
				t.Errorf("error %q does not carry the original failure", err)
			}
			h.checkUndone()
		})
	}
}

// raceStore runs between after the first of the two reads Recoverable
// makes, as a run starting concurrently would.
type raceStore struct {
	store.Store
	between func()
	done    bool
}

func (s *raceStore) fire() {
	if !s.done {
		s.done = true
		s.between()
	}
}

func (s *raceStore) RunsInState(ctx context.Context, states ...store.RunState) ([]store.ReplicationRun, error) {
	defer s.fire()
	return s.Store.RunsInState(ctx, states...)
}

func (s *raceStore) UnreleasedLedger(ctx context.Context) ([]store.LedgerEntry, error) {
	defer s.fire()
	return s.Store.UnreleasedLedger(ctx)
}

// TestRecoverableIgnoresRunStartingMeanwhile: the janitor must never take a
// run that starts while it looks for leftovers for a finished one.
func TestRecoverableIgnoresRunStartingMeanwhile(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	// The harness's run is the one starting: make it PENDING first.
	if _, err := h.st.UpdateRun(ctx, h.run.ReplicationRunID, func(r *store.ReplicationRun) error {
		r.State = store.RunPending
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rs := &raceStore{Store: h.st, between: func() {
		if _, err := h.st.UpdateRun(ctx, h.run.ReplicationRunID, func(r *store.ReplicationRun) error {
			r.State = store.RunActive
			return nil
		}); err != nil {
			t.Error(err)
		}
		if _, err := h.st.RecordIntent(ctx, h.run.ReplicationRunID, StepSnapshot, kindVMSnapshot, []byte(`{}`)); err != nil {
			t.Error(err)
		}
	}}
	e := *h.e
	e.Store = rs
	_, undo, err := e.Recoverable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(undo) != 0 {
		t.Fatalf("Recoverable would undo %v, a run that was starting", undo)
	}
	// Once settled, the run is found active, to resume.
	resume, undo, err := h.e.Recoverable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(resume) != 1 || resume[0].ReplicationRunID != h.run.ReplicationRunID || len(undo) != 0 {
		t.Fatalf("Recoverable = %v, %v; want the run to resume", resume, undo)
	}
}

// TestImportSlotHeldFromStart: the per-region slot must be held when the
// VM Import task is started, not only while it is waited for, and given back
// when the run ends, also after a restart between the two.
func TestImportSlotHeldFromStart(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash-after-start=%v", crash), func(t *testing.T) {
			h := newHarness(t)
			slot := make(chan struct{}, 1)
			h.e.ImportSlot = func(ctx context.Context, _ string, _ awstarget.ImportTasks) (func(), error) {
				select {
				case slot <- struct{}{}:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return func() { <-slot }, nil
			}
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			var heldAtStart, heldAtWait int
			h.w.hook = func(op, phase string) error {
				switch {
				case op == "StartImport" && phase == "before":
					heldAtStart = len(slot)
				case op == "Wait" && phase == "before":
					heldAtWait = len(slot)
				case crash && op == "StartImport" && phase == "after":
					crash = false
					h.kill()
					cancel(errShutdown)
					return errKilled
				}
				return nil
			}
			_, err := h.e.Run(ctx, h.current())
			if heldAtStart != 1 {
				t.Errorf("VM Import was started without holding an import slot")
			}
			if len(slot) != 0 {
				t.Fatalf("the slot is still held after Run returned (err %v)", err)
			}
			if err != nil && strings.Contains(err.Error(), "killed") {
				hook := h.w.hook
				h.restart()
				h.w.hook = hook
				ami, err := h.e.Run(context.Background(), h.current())
				if err != nil {
					t.Fatal(err)
				}
				h.checkCompleted(ami)
			} else if err != nil {
				t.Fatal(err)
			}
			if heldAtWait != 1 {
				t.Errorf("the import was waited for without holding an import slot")
			}
			if len(slot) != 0 {
				t.Errorf("the slot is still held after the run completed")
			}
		})
	}
}

// TestCancelledRunKilledDuringUndo: the user cancelled the run and the
// process died while it was being undone. The restart must finish the undo
// (not complete the cancelled run) and still say the user cancelled it.
func TestCancelledRunKilledDuringUndo(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	h.e.Hook = func(_, step string) {
		if step == StepWaitImport {
			cancel(ErrCancelled)
		}
	}
	h.w.hook = func(op, phase string) error {
		if op == "CancelImport" {
			h.kill()
			return errKilled
		}
		return nil
	}
	if _, err := h.e.Run(ctx, h.current()); err == nil {
		t.Fatal("cancelled run did not fail")
	}
	h.restart()
	ami, err := h.e.Run(context.Background(), h.current())
	if err == nil {
		t.Fatalf("the cancelled run was resumed and made image %s", ami)
	}
	if !strings.Contains(err.Error(), "cancelled by the user") {
		t.Errorf("error %q does not say the user cancelled the run", err)
	}
	h.checkUndone()
}
