package replication

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/rehost/rehost/connector/replication/memtarget"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// snapshotSlots is a region's pool of ImportSnapshot slots as the
// scheduler keeps it: waiters block until a slot frees, an ask beyond the
// limit fails. It records the most held at once and every ask.
type snapshotSlots struct {
	mu         sync.Mutex
	free       chan struct{}
	limit      int
	held, peak int
	asks       []awstarget.ImportTasks
}

func newSnapshotSlots(limit int) *snapshotSlots {
	s := &snapshotSlots{free: make(chan struct{}, limit), limit: limit}
	for range limit {
		s.free <- struct{}{}
	}
	return s
}

func (s *snapshotSlots) take(ctx context.Context, _ string, tasks awstarget.ImportTasks) (func(), error) {
	s.mu.Lock()
	s.asks = append(s.asks, tasks)
	s.mu.Unlock()
	if tasks.Image > 0 || tasks.Snapshot > s.limit {
		return nil, fmt.Errorf("%+v asked at once and the limit is %d snapshot slots", tasks, s.limit)
	}
	var got int
	for got < tasks.Snapshot {
		select {
		case <-s.free:
			got++
		case <-ctx.Done():
			for range got {
				s.free <- struct{}{}
			}
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	s.held += got
	s.peak = max(s.peak, s.held)
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.held -= got
			s.mu.Unlock()
			for range got {
				s.free <- struct{}{}
			}
		})
	}, nil
}

func (s *snapshotSlots) stats() (held, peak int, asks []awstarget.ImportTasks) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held, s.peak, append([]awstarget.ImportTasks(nil), s.asks...)
}

// newAdmitHarness is the harness with a VM of three disks, imported as
// snapshots (one ImportSnapshot task per disk) under a region limit of
// limit snapshot slots.
func newAdmitHarness(t *testing.T, limit int) (*harness, *snapshotSlots) {
	t.Helper()
	h := newHarness(t)
	h.vm.Disks = append(h.vm.Disks, source.Disk{Key: "2002", Label: "Hard disk 3", CapacityBytes: 17})
	h.w.vms[h.vm.ID] = h.vm
	h.w.data[h.vm.ID] = append(h.w.data[h.vm.ID], []byte("third disk: 17 b."))
	h.w.target.ImportMode = awstarget.ModeImportSnapshot
	slots := newSnapshotSlots(limit)
	h.e.ImportSlot = slots.take
	return h, slots
}

// snapshotTasks are the ImportSnapshot tasks the target was asked for.
func snapshotTasks(h *harness) map[string]string {
	out := map[string]string{}
	for id, st := range h.w.target.ImportStates() {
		if len(id) > len("import-snap") && id[:len("import-snap")] == "import-snap" {
			out[id] = st
		}
	}
	return out
}

// checkAdmitted proves the run made one image of the VM's three disks, in
// order and with their bytes, from exactly one ImportSnapshot task per
// disk, within the slot limit, and left nothing else.
func checkAdmitted(t *testing.T, h *harness, slots *snapshotSlots, ami string) {
	t.Helper()
	if left := h.w.leftovers(ami); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	var im *memtarget.Image
	for _, x := range h.w.target.Images() {
		if x.ID == ami {
			im = &x
		}
	}
	if im == nil {
		t.Fatalf("image %s does not exist", ami)
	}
	content := map[string][]byte{}
	for _, s := range h.w.target.Snapshots() {
		content[s.ID] = s.Content
	}
	want := h.w.data[h.vm.ID]
	if len(im.Snapshots) != len(want) {
		t.Fatalf("image holds %d disks, want %d", len(im.Snapshots), len(want))
	}
	for i := range want {
		if got := content[im.Snapshots[i]]; !bytes.Equal(got, want[i]) {
			t.Errorf("image disk %d holds %q, want %q", i, got, want[i])
		}
	}
	if tasks := snapshotTasks(h); len(tasks) != 3 {
		t.Errorf("%d ImportSnapshot tasks were started, want 3 (one per disk): %v", len(tasks), tasks)
	}
	if got := len(h.w.target.ImportStates()); got != 3 {
		t.Errorf("%d import tasks in all, want the 3 ImportSnapshot ones", got)
	}
	held, peak, asks := slots.stats()
	if held != 0 || peak > slots.limit {
		t.Errorf("slots held %d at the end, %d at most; want 0 and at most %d", held, peak, slots.limit)
	}
	for _, a := range asks {
		if a != (awstarget.ImportTasks{Snapshot: 1}) {
			t.Errorf("a slot ask of %+v, want one snapshot slot at a time", a)
		}
	}
	if got := h.current().AmiID; got != ami {
		t.Errorf("run records image %q, want %q", got, ami)
	}
	if u := h.unreleased(); len(u) > 0 {
		t.Errorf("ledger still holds %v", u)
	}
}

// killAt runs the current run until op/phase has happened the nth time,
// kills the process there and brings it back.
func (h *harness) killAt(op, phase string, nth int) {
	h.t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	n := 0
	h.w.hook = func(o, p string) error {
		if o == op && p == phase {
			if n++; n == nth {
				h.kill()
				cancel(errShutdown)
				return errKilled
			}
		}
		return nil
	}
	if _, err := h.e.Run(ctx, h.current()); err == nil {
		h.t.Fatalf("the run killed at %s/%s #%d did not fail", op, phase, nth)
	}
	h.restart()
}

// A VM of three disks under a limit of one snapshot slot completes, its
// disks admitted one at a time, rather than failing because its three
// tasks are more than the limit.
func TestAdmittedImportCompletesUnderTheLimit(t *testing.T) {
	h, slots := newAdmitHarness(t, 1)
	ami, err := h.e.Run(context.Background(), h.current())
	if err != nil {
		t.Fatal(err)
	}
	checkAdmitted(t, h, slots, ami)
	if _, peak, asks := slots.stats(); peak != 1 || len(asks) != 3 {
		t.Errorf("%d slots at most, %d asks; want 1 and 3 (one per disk)", peak, len(asks))
	}
}

// A run killed after its 2nd disk's task started (before the run recorded
// the task's id), or before its 3rd disk's start (the 2nd recorded, maybe
// still running), resumes: no disk gets a second task, and the run
// completes.
func TestAdmittedImportResumesAfterKill(t *testing.T) {
	for _, c := range []struct {
		name, op, phase string
		nth             int
		// want is what the ledger holds of the disks' tasks at the kill.
		want []string
	}{
		{"after-2nd-start", "ImportSnapshot", "after", 2, []string{"created", "intent"}},
		{"before-3rd-start", "ImportSnapshot", "before", 3, []string{"created", "created", "intent"}},
		{"after-register", "RegisterImage", "after", 1, []string{"created", "created", "created"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, slots := newAdmitHarness(t, 1)
			h.killAt(c.op, c.phase, c.nth)
			les, err := h.st.LedgerForRun(context.Background(), h.run.ReplicationRunID)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, le := range les {
				if le.Kind == kindImportDisk {
					got = append(got, string(le.State))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("at the kill the ledger holds the disks' tasks as %v, want %v", got, c.want)
			}
			ami, err := h.e.Run(context.Background(), h.current())
			if err != nil {
				t.Fatalf("resumed run: %v", err)
			}
			checkAdmitted(t, h, slots, ami)
		})
	}
}

// A run killed after its 2nd disk's task started, then given up, is undone:
// every task it started is cancelled and what they made is deleted, while
// another run's import, active at the time, is left alone.
func TestAdmittedImportUndoCancelsWhatStarted(t *testing.T) {
	for _, c := range []struct {
		name, op, phase string
		nth             int
	}{
		{"after-2nd-start", "ImportSnapshot", "after", 2},
		{"after-register", "RegisterImage", "after", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, _ := newAdmitHarness(t, 1)
			ctx := context.Background()
			// Another run's import of its own staged object.
			otherObj, err := h.w.target.Stage(ctx, awstarget.StageInput{Key: "other/disk0.vmdk", Body: bytes.NewReader([]byte("another run's disk"))})
			if err != nil {
				t.Fatal(err)
			}
			other, err := h.w.target.StartImport(ctx, awstarget.ImportInput{Mode: awstarget.ModeImportImage, ClientToken: "rehost-other-run",
				Disks: []awstarget.Object{otherObj}, Tags: map[string]string{TagRun: "other-run"}})
			if err != nil {
				t.Fatal(err)
			}
			h.killAt(c.op, c.phase, c.nth)
			if _, err := h.st.UpdateRun(ctx, h.run.ReplicationRunID, func(r *store.ReplicationRun) error {
				r.State = store.RunFailed
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if err := h.e.Undo(ctx, h.run.ReplicationRunID); err != nil {
				t.Fatal(err)
			}
			tasks := snapshotTasks(h)
			if len(tasks) == 0 {
				t.Fatal("no ImportSnapshot task was started")
			}
			for id, st := range tasks {
				if st == "active" {
					t.Errorf("task %s of the undone run is still active", id)
				}
			}
			if st := h.w.target.ImportStates()[other.TaskIDs[0]]; st != "active" {
				t.Errorf("another run's import is %s after the undo, want active", st)
			}
			// What is left is the other run's: its import and its object.
			var left []string
			for _, l := range h.w.leftovers() {
				if l != "active import "+other.TaskIDs[0] && l != "s3 object other/disk0.vmdk" {
					left = append(left, l)
				}
			}
			if len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
			if u := h.unreleased(); len(u) > 0 {
				t.Errorf("ledger still holds %v", u)
			}
		})
	}
}
