package storetest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

func testOneLiveRun(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, job := fixture(t, s)
	id := job.ReplicationJobID
	r := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: id, ScheduledStartTime: t0})).must(t)[0]
	if !strings.HasPrefix(r.ReplicationRunID, "sms-run-") || len(r.ReplicationRunID) != 8+17 {
		t.Errorf("run id %q", r.ReplicationRunID)
	}
	if r.State != store.RunPending || r.Type != store.RunAutomatic {
		t.Errorf("defaults: %s %s", r.State, r.Type)
	}
	_, err := s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: id, Type: store.RunOnDemand, State: store.RunActive})
	wantErr(t, err, store.ErrConflict, r.ReplicationRunID)
	// Non-live runs are always allowed.
	ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: id, State: store.RunMissed, ScheduledStartTime: t0.Add(-12 * time.Hour)})).must(t)
	// Two live runs in one batch fail as a whole.
	src := newSource(t, s, "vc2")
	job2 := newJob(t, s, newServer(t, s, src, "vm-2").ServerID)
	_, err = s.CreateRuns(ctx,
		store.ReplicationRun{ReplicationJobID: job2.ReplicationJobID, State: store.RunMissed},
		store.ReplicationRun{ReplicationJobID: job2.ReplicationJobID},
		store.ReplicationRun{ReplicationJobID: job2.ReplicationJobID, State: store.RunActive})
	wantErr(t, err, store.ErrConflict)
	if l := ok(s.ListRuns(ctx, job2.ReplicationJobID, 0)).must(t); len(l) != 0 {
		t.Errorf("failed batch left %d runs", len(l))
	}
	_, err = s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: "sms-job-missing"})
	wantErr(t, err, store.ErrNotFound, "sms-job-missing")
	_, err = s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: id, State: "RUNNING"})
	wantErr(t, err, store.ErrInvalid, "RUNNING")

	// PENDING → ACTIVE is the same slot; finishing frees it.
	ok(s.UpdateRun(ctx, r.ReplicationRunID, func(r *store.ReplicationRun) error {
		r.State = store.RunActive
		r.StartedAt = t0.Add(time.Minute)
		return nil
	})).must(t)
	ok(s.UpdateRun(ctx, r.ReplicationRunID, func(r *store.ReplicationRun) error {
		r.State = store.RunCompleted
		r.CompletedTime = t0.Add(time.Hour)
		r.AmiID = "ami-1"
		return nil
	})).must(t)
	r2 := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: id, Type: store.RunOnDemand})).must(t)[0]
	// Reviving the finished run would make a second live one.
	_, err = s.UpdateRun(ctx, r.ReplicationRunID, func(r *store.ReplicationRun) error { r.State = store.RunPending; return nil })
	wantErr(t, err, store.ErrConflict, r2.ReplicationRunID)
	got := ok(s.GetRun(ctx, r.ReplicationRunID)).must(t)
	if got.State != store.RunCompleted || got.AmiID != "ami-1" || !got.StartedAt.Equal(t0.Add(time.Minute)) || !got.CompletedTime.Equal(t0.Add(time.Hour)) {
		t.Errorf("stored run = %+v", got)
	}

	// Concurrent starters for one job: exactly one wins.
	ok(s.UpdateRun(ctx, r2.ReplicationRunID, func(r *store.ReplicationRun) error { r.State = store.RunFailed; return nil })).must(t)
	oneWins(t, "CreateRuns", func() error {
		_, err := s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: id, Type: store.RunOnDemand})
		return err
	})
}

func testScheduleRuns(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, job := fixture(t, s)
	id := job.ReplicationJobID
	next := t0.Add(36 * time.Hour)
	j, runs, err := s.ScheduleRuns(ctx, id, func(j *store.ReplicationJob) ([]store.ReplicationRun, error) {
		j.State = store.JobActive
		j.NextReplicationRunStartTime = next
		return []store.ReplicationRun{
			{State: store.RunMissed, ScheduledStartTime: t0},
			{State: store.RunMissed, ScheduledStartTime: t0.Add(12 * time.Hour)},
			{ScheduledStartTime: t0.Add(24 * time.Hour)},
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if j.State != store.JobActive || len(runs) != 3 || runs[2].State != store.RunPending || runs[0].ReplicationJobID != id {
		t.Fatalf("scheduled job %+v runs %+v", j, runs)
	}
	// A second live run rolls back the job change too.
	_, _, err = s.ScheduleRuns(ctx, id, func(j *store.ReplicationJob) ([]store.ReplicationRun, error) {
		j.NextReplicationRunStartTime = next.Add(time.Hour)
		return []store.ReplicationRun{{Type: store.RunOnDemand}}, nil
	})
	wantErr(t, err, store.ErrConflict, runs[2].ReplicationRunID)
	if got := ok(s.GetJob(ctx, id)).must(t); !got.NextReplicationRunStartTime.Equal(next) {
		t.Errorf("rolled-back schedule changed next start to %v", got.NextReplicationRunStartTime)
	}
	_, _, err = s.ScheduleRuns(ctx, id, func(j *store.ReplicationJob) ([]store.ReplicationRun, error) {
		return []store.ReplicationRun{{ReplicationJobID: "sms-job-other", State: store.RunMissed}}, nil
	})
	wantErr(t, err, store.ErrInvalid)
	if n := len(ok(s.ListRuns(ctx, id, 0)).must(t)); n != 3 {
		t.Errorf("runs = %d, want 3", n)
	}
}

func testRunListing(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, job := fixture(t, s)
	id := job.ReplicationJobID
	var want []string
	for i := 0; i < 5; i++ {
		r := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: id, State: store.RunCompleted,
			Type: store.RunOnDemand, ScheduledStartTime: t0.Add(time.Duration(i) * time.Hour)})).must(t)[0]
		want = append([]string{r.ReplicationRunID}, want...)
	}
	pending := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: id, ScheduledStartTime: t0.Add(-time.Hour)})).must(t)[0]
	got := ok(s.ListRuns(ctx, id, 3)).must(t)
	if len(got) != 3 {
		t.Fatalf("limit 3 gave %d", len(got))
	}
	for i := range got {
		if got[i].ReplicationRunID != want[i] {
			t.Errorf("run %d = %s, want %s (newest first)", i, got[i].ReplicationRunID, want[i])
		}
	}
	if all := ok(s.ListRuns(ctx, id, 0)).must(t); len(all) != 6 || all[5].ReplicationRunID != pending.ReplicationRunID {
		t.Errorf("all runs: %d, last %v", len(all), all)
	}
	in := ok(s.RunsInState(ctx, store.RunPending, store.RunActive)).must(t)
	if len(in) != 1 || in[0].ReplicationRunID != pending.ReplicationRunID {
		t.Errorf("live runs = %+v", in)
	}
	if in := ok(s.RunsInState(ctx, store.RunCompleted)).must(t); len(in) != 5 || !in[0].ScheduledStartTime.Equal(t0) {
		t.Errorf("completed runs = %d, first at %v", len(in), in[0].ScheduledStartTime)
	}
	if n := ok(s.CountRuns(ctx, id, store.RunOnDemand, t0.Add(2*time.Hour))).must(t); n != 3 {
		t.Errorf("on-demand runs since +2h = %d, want 3", n)
	}
	if n := ok(s.CountRuns(ctx, id, store.RunAutomatic, t0.Add(-2*time.Hour))).must(t); n != 1 {
		t.Errorf("automatic runs = %d, want 1", n)
	}
}

func testUpdateRunAndJob(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, job := fixture(t, s)
	r := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, State: store.RunActive})).must(t)[0]
	run, j, err := s.UpdateRunAndJob(ctx, r.ReplicationRunID, func(r *store.ReplicationRun, j *store.ReplicationJob) error {
		r.State, r.AmiID = store.RunCompleted, "ami-9"
		j.LatestAmiID, j.ConsecutiveFailures, j.State = r.AmiID, 0, store.JobActive
		r.ReplicationJobID = "tampered"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if run.ReplicationJobID != job.ReplicationJobID || run.State != store.RunCompleted || j.LatestAmiID != "ami-9" {
		t.Errorf("returned %+v %+v", run, j)
	}
	if got := ok(s.GetJob(ctx, job.ReplicationJobID)).must(t); got.LatestAmiID != "ami-9" || got.State != store.JobActive {
		t.Errorf("stored job %+v", got)
	}
	if got := ok(s.GetRun(ctx, r.ReplicationRunID)).must(t); got.AmiID != "ami-9" || got.State != store.RunCompleted {
		t.Errorf("stored run %+v", got)
	}
	// An invalid job change rolls back the run change as well.
	_, _, err = s.UpdateRunAndJob(ctx, r.ReplicationRunID, func(r *store.ReplicationRun, j *store.ReplicationJob) error {
		r.StatusMessage = "should not stick"
		j.Frequency = 99
		return nil
	})
	wantErr(t, err, store.ErrInvalid, "frequency 99")
	if got := ok(s.GetRun(ctx, r.ReplicationRunID)).must(t); got.StatusMessage != "" {
		t.Errorf("rolled-back run change stuck: %q", got.StatusMessage)
	}
}

func testRunProgress(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, job := fixture(t, s)
	r := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, State: store.RunActive})).must(t)[0]
	if got := ok(s.GetRun(ctx, r.ReplicationRunID)).must(t); got.Progress.Step != "" || got.Progress.Disks != nil {
		t.Errorf("new run has progress %+v", got.Progress)
	}
	want := store.RunProgress{Step: "stage", ImportPercent: 0, Disks: []store.DiskProgress{
		{Disk: 0, BytesDone: 1 << 40, BytesTotal: 2 << 40}, {Disk: 1, BytesDone: 0, BytesTotal: 512}}}
	ok(s.UpdateRun(ctx, r.ReplicationRunID, func(x *store.ReplicationRun) error { x.Progress = want; return nil })).must(t)
	got := ok(s.GetRun(ctx, r.ReplicationRunID)).must(t).Progress
	if got.Step != want.Step || len(got.Disks) != 2 || got.Disks[0] != want.Disks[0] || got.Disks[1] != want.Disks[1] {
		t.Errorf("progress read back %+v, want %+v", got, want)
	}
	ok(s.UpdateRun(ctx, r.ReplicationRunID, func(x *store.ReplicationRun) error {
		x.Progress = store.RunProgress{Step: "wait-import", ImportPercent: 42}
		return nil
	})).must(t)
	if got := ok(s.RunsInState(ctx, store.RunActive)).must(t); len(got) != 1 || got[0].Progress.ImportPercent != 42 || got[0].Progress.Disks != nil {
		t.Errorf("progress in a listing %+v", got)
	}
}

// testServersWithRuns: the servers of the jobs with runs in the states
// asked for, each once however many runs it has, sorted.
func testServersWithRuns(t *testing.T, s store.Store) {
	ctx := context.Background()
	src := newSource(t, s, "vc")
	var ids []string
	jobs := map[string]string{}
	for _, vm := range []string{"vm-c", "vm-a", "vm-b", "vm-idle"} {
		srv := newServer(t, s, src, vm)
		jobs[vm] = newJob(t, s, srv.ServerID).ReplicationJobID
		ids = append(ids, srv.ServerID)
	}
	serverOf := map[string]string{"vm-c": ids[0], "vm-a": ids[1], "vm-b": ids[2]}
	ok(s.CreateRuns(ctx,
		store.ReplicationRun{ReplicationJobID: jobs["vm-a"], State: store.RunCompleted, ScheduledStartTime: t0},
		store.ReplicationRun{ReplicationJobID: jobs["vm-a"], State: store.RunCompleted, ScheduledStartTime: t0.Add(time.Hour)},
		store.ReplicationRun{ReplicationJobID: jobs["vm-a"], State: store.RunActive, ScheduledStartTime: t0.Add(2 * time.Hour)},
		store.ReplicationRun{ReplicationJobID: jobs["vm-b"], State: store.RunPending, ScheduledStartTime: t0},
		store.ReplicationRun{ReplicationJobID: jobs["vm-c"], State: store.RunCompleted, ScheduledStartTime: t0},
	)).must(t)
	sorted := func(vms ...string) []string {
		var out []string
		for _, vm := range vms {
			out = append(out, serverOf[vm])
		}
		slices.Sort(out)
		return out
	}
	for _, c := range []struct {
		states []store.RunState
		want   []string
	}{
		{[]store.RunState{store.RunActive}, sorted("vm-a")},
		{[]store.RunState{store.RunPending, store.RunActive}, sorted("vm-a", "vm-b")},
		{[]store.RunState{store.RunCompleted}, sorted("vm-a", "vm-c")},
		{[]store.RunState{store.RunFailed}, nil},
		{nil, nil},
	} {
		if got := ok(s.ServersWithRunsIn(ctx, c.states...)).must(t); !slices.Equal(got, c.want) {
			t.Errorf("servers with runs in %v = %v, want %v", c.states, got, c.want)
		}
	}
}
