package demo

import (
	"context"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/store"
	"github.com/rehost/rehost/scheduler"
)

// TestImportSlotQueue: three runs at once against the emulator, whose VM
// Import quota rehost's slot count matches.
//   - Image: one ImportImage slot. While the first run's import is held,
//     the other two show through GetReplicationRuns that they wait for a
//     VM Import slot (stage details, and where each stands: next in line,
//     one run ahead); all three complete, slots granted in the order the
//     runs began waiting, and the emulator never saw a second task at once
//     nor refused one.
//   - Snapshot: imports of snapshots, one ImportSnapshot task per disk
//     (web-01 has two disks), two snapshot slots: runs wait rather than
//     start a third task, the emulator refuses none, all complete.
func TestImportSlotQueue(t *testing.T) {
	t.Run("Image", func(t *testing.T) {
		e := newEnvWith(t, envOptions{Quotas: map[string]float64{"Concurrent import image tasks": 1},
			Scheduler: scheduler.Options{MaxConcurrent: 3, ImportLimitPerRegion: 1}})
		order, granted := e.slotQueue(t, 2)
		if !slices.Equal(order, granted) {
			t.Errorf("runs waited in the order %v but were granted slots in the order %v", order, granted)
		}
		if peak, refused := e.peers.AWS.ImportImageLoad(); peak != 1 || refused != 0 {
			t.Errorf("the emulator saw %d import image tasks at once and refused %d; want 1 and 0", peak, refused)
		}
	})
	t.Run("Snapshot", func(t *testing.T) {
		e := newEnvWith(t, envOptions{Quotas: map[string]float64{"Concurrent import snapshot tasks": 2},
			Scheduler: scheduler.Options{MaxConcurrent: 3, SnapshotImportLimitPerRegion: 2}, ImportMode: "snapshot"})
		e.slotQueue(t, 1)
		if peak, refused := e.peers.AWS.ImportSnapshotLoad(); peak != 2 || refused != 0 {
			t.Errorf("the emulator saw %d import snapshot tasks at once and refused %d; want 2 and 0", peak, refused)
		}
		if peak, _ := e.peers.AWS.ImportImageLoad(); peak != 0 {
			t.Errorf("%d import image tasks in snapshot mode", peak)
		}
	})
}

// slotQueue replicates the three demo VMs at once, holding the first
// import task the emulator converts until at least wantWaiting runs show
// they wait for VM Import slots; it checks that they complete, and returns
// the runs in the order they stood in the queue and in the order they left
// it.
func (e *env) slotQueue(t *testing.T, wantWaiting int) (order, granted []string) {
	t.Helper()
	gate := make(chan struct{})
	var once, closeGate sync.Once
	open := func() { closeGate.Do(func() { close(gate) }) }
	t.Cleanup(open)
	e.peers.AWS.InjectImportFault(func(string, int) error {
		first := false
		once.Do(func() { first = true })
		if first {
			<-gate
		}
		return nil
	})
	var jobs []string
	for _, vm := range []string{"web-01", "app-01", "db-01"} {
		jobs = append(jobs, e.job(t, vm, 1).ReplicationJobID)
	}
	local := &api.Local{D: e.d}
	latest := func() []api.ReplicationRun {
		var out []api.ReplicationRun
		for _, j := range jobs {
			got, err := local.GetReplicationRuns(context.Background(), &api.GetReplicationRunsInput{ReplicationJobID: j, MaxResults: 1})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, got.ReplicationRunList...)
		}
		return out
	}
	waits := func(r api.ReplicationRun) bool {
		return r.Rehost != nil && r.Rehost.Progress != nil && r.Rehost.Progress.SlotWait != nil
	}

	deadline := time.Now().Add(2 * time.Minute)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("no %d runs waited for a VM Import slot at once: %+v", wantWaiting, latest())
		}
		var waiting []api.ReplicationRun
		for _, r := range latest() {
			if waits(r) {
				waiting = append(waiting, r)
			}
		}
		if len(waiting) < wantWaiting {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		slices.SortFunc(waiting, func(a, b api.ReplicationRun) int {
			return a.Rehost.Progress.SlotWait.Ahead - b.Rehost.Progress.SlotWait.Ahead
		})
		for k, r := range waiting {
			w := r.Rehost.Progress.SlotWait
			if w.Ahead != k || w.Region != e.peers.AWS.Region() || w.Since.IsZero() || w.Slots < 1 {
				t.Errorf("run %s, waiting %d. in the queue, says %+v", r.ReplicationRunID, k+1, *w)
			}
			if r.StageDetails == nil || r.StageDetails.StageProgress != "waiting for an import slot" {
				t.Errorf("run %s waits for a slot, its stage details say %+v", r.ReplicationRunID, r.StageDetails)
			}
			order = append(order, r.ReplicationRunID)
		}
		t.Logf("waiting for a VM Import slot: %v (%s, %d slots asked by the first)", order, waiting[0].Rehost.Progress.SlotWait.Kind, waiting[0].Rehost.Progress.SlotWait.Slots)
		break
	}
	open()

	left := map[string]bool{}
	for {
		if time.Now().After(deadline) {
			t.Fatalf("the runs did not end within 2 minutes: %+v", latest())
		}
		ended := 0
		for _, r := range latest() {
			if slices.Contains(order, r.ReplicationRunID) && !waits(r) && !left[r.ReplicationRunID] {
				left[r.ReplicationRunID] = true
				granted = append(granted, r.ReplicationRunID)
			}
			switch store.RunState(r.State) {
			case store.RunCompleted:
				ended++
			case store.RunFailed:
				t.Fatalf("run %s failed: %s", r.ReplicationRunID, r.StatusMessage)
			}
		}
		if ended == len(jobs) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, j := range jobs {
		evs, err := e.d.Store.Events(context.Background(), store.EventFilter{JobID: j})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if strings.Contains(ev.Message, "for a VM Import slot") {
				t.Logf("%s", ev.Message)
			}
		}
	}
	e.assertClean(t, e.amis(t, jobs)...)
	return order, granted
}

// amis are the AMIs of the jobs' newest runs.
func (e *env) amis(t *testing.T, jobs []string) []string {
	t.Helper()
	var out []string
	for _, j := range jobs {
		runs, err := e.d.Store.ListRuns(context.Background(), j, 1)
		if err != nil || len(runs) == 0 {
			t.Fatalf("runs of job %s: %v", j, err)
		}
		out = append(out, runs[0].AmiID)
	}
	return out
}

// A VM of three disks imported as snapshots under a snapshot limit (and
// the emulator's quota) of 1 completes: its disks are admitted one at a
// time as the slot frees up, rather than the run failing because its three
// tasks are more than the limit. The AMI holds the three disks byte for
// byte; the emulator saw one ImportSnapshot task at a time, three in all,
// and refused none.
func TestSnapshotImportBeyondTheLimit(t *testing.T) {
	vm := vspheresim.VMSpec{Name: "vm-3", Firmware: "efi", PowerOn: true, ToolsRunning: true,
		Disks: []vspheresim.DiskSpec{
			{CapacityBytes: 48 << 20, Seed: vspheresim.GuestDisk(guestdisk.Options{Size: 48 << 20, Firmware: guestdisk.EFI, DataBytes: 2 << 20, Seed: 7})},
			{CapacityBytes: 8 << 20, Seed: func(w io.WriterAt) error { return vspheresim.PseudoRandom(w, 8, 3<<20, 1<<20) }},
			{CapacityBytes: 4 << 20, Seed: func(w io.WriterAt) error { return vspheresim.PseudoRandom(w, 9, 1<<20, 1<<20) }},
		}}
	e := newEnvWith(t, envOptions{VMs: []vspheresim.VMSpec{vm}, Quotas: map[string]float64{"Concurrent import snapshot tasks": 1},
		Scheduler: scheduler.Options{SnapshotImportLimitPerRegion: 1}, ImportMode: "snapshot"})
	j := e.job(t, "vm-3", 1)
	r := e.wait(t, j.ReplicationJobID, "")
	if r.State != store.RunCompleted {
		t.Fatalf("run: %s: %s", r.State, r.StatusMessage)
	}
	checks, err := e.peers.Verify("vm-3", r.AmiID)
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 3 {
		t.Fatalf("the AMI holds %d disks, want 3", len(checks))
	}
	for i, c := range checks {
		if !c.Equal {
			t.Errorf("disk %d differs: %+v", i, c)
		}
	}
	if peak, refused := e.peers.AWS.ImportSnapshotLoad(); peak != 1 || refused != 0 {
		t.Errorf("the emulator saw %d import snapshot tasks at once and refused %d; want 1 and 0", peak, refused)
	}
	var snaps, images int
	for _, tk := range e.peers.AWS.ImportTasks() {
		switch tk.Kind {
		case "snapshot":
			snaps++
		default:
			images++
		}
	}
	if snaps != 3 || images != 0 {
		t.Errorf("the emulator was asked for %d ImportSnapshot and %d ImportImage tasks, want 3 and 0", snaps, images)
	}
	e.assertClean(t, r.AmiID)
}
