package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

func testJobValidation(t *testing.T, s store.Store) {
	ctx := context.Background()
	src := newSource(t, s, "vc")
	srv := newServer(t, s, src, "vm-1")
	for _, f := range []int{0, -1, 25, 48} {
		_, err := s.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, SeedReplicationTime: t0, Frequency: f})
		wantErr(t, err, store.ErrInvalid, fmt.Sprintf("frequency %d", f), "1 to 24")
		if err := store.ValidateFrequency(f); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ValidateFrequency(%d) = %v", f, err)
		}
	}
	for _, f := range []int{1, 12, 24} {
		if err := store.ValidateFrequency(f); err != nil {
			t.Errorf("ValidateFrequency(%d) = %v", f, err)
		}
	}
	_, err := s.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, Frequency: 1})
	wantErr(t, err, store.ErrInvalid, "seed")
	_, err = s.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, SeedReplicationTime: t0, Frequency: 1, LicenseType: "GPL"})
	wantErr(t, err, store.ErrInvalid, "GPL")
	_, err = s.CreateJob(ctx, store.ReplicationJob{ServerID: "s-nope", SeedReplicationTime: t0, Frequency: 1})
	wantErr(t, err, store.ErrNotFound, "s-nope")

	// Run-once needs no frequency; defaults are filled in.
	j := ok(s.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, SeedReplicationTime: t0, RunOnce: true})).must(t)
	if !strings.HasPrefix(j.ReplicationJobID, "sms-job-") || len(j.ReplicationJobID) != 8+17 {
		t.Errorf("job id %q", j.ReplicationJobID)
	}
	if j.State != store.JobPending || j.LicenseType != store.LicenseAWS {
		t.Errorf("defaults: state %s license %s", j.State, j.LicenseType)
	}
	_, err = s.UpdateJob(ctx, j.ReplicationJobID, func(j *store.ReplicationJob) error { j.Frequency = 30; return nil })
	wantErr(t, err, store.ErrInvalid, "frequency 30")
	_, err = s.UpdateJob(ctx, j.ReplicationJobID, func(j *store.ReplicationJob) error { j.State = "RUNNING"; return nil })
	wantErr(t, err, store.ErrInvalid, "RUNNING")
	if got := ok(s.GetJob(ctx, j.ReplicationJobID)).must(t); got.Frequency != 0 || got.State != store.JobPending {
		t.Errorf("rejected update was stored: %+v", got)
	}
}

func testOneJobPerServer(t *testing.T, s store.Store) {
	ctx := context.Background()
	srv, job := fixture(t, s)
	_, err := s.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, SeedReplicationTime: t0, Frequency: 1})
	wantErr(t, err, store.ErrConflict, job.ReplicationJobID, srv.ServerID)

	ok(s.UpdateJob(ctx, job.ReplicationJobID, func(j *store.ReplicationJob) error { j.State = store.JobDeleted; return nil })).must(t)
	second := newJob(t, s, srv.ServerID) // deleted jobs do not count
	// Undeleting the old job would make two live jobs.
	_, err = s.UpdateJob(ctx, job.ReplicationJobID, func(j *store.ReplicationJob) error { j.State = store.JobActive; return nil })
	wantErr(t, err, store.ErrConflict, second.ReplicationJobID)

	// Concurrent creators: exactly one wins.
	src := newSource(t, s, "vc-race")
	raced := newServer(t, s, src, "vm-race")
	oneWins(t, "CreateJob", func() error {
		_, err := s.CreateJob(ctx, store.ReplicationJob{ServerID: raced.ServerID, SeedReplicationTime: t0, Frequency: 6})
		return err
	})
}

func testJobUpdateAndList(t *testing.T, s store.Store) {
	ctx := context.Background()
	srv, job := fixture(t, s)
	next := t0.Add(12 * time.Hour)
	upd := ok(s.UpdateJob(ctx, job.ReplicationJobID, func(j *store.ReplicationJob) error {
		j.State = store.JobActive
		j.NextReplicationRunStartTime = next
		j.LatestAmiID = "ami-0123"
		j.ConsecutiveFailures = 2
		j.ServerID = "s-tampered"
		return nil
	})).must(t)
	got := ok(s.GetJob(ctx, job.ReplicationJobID)).must(t)
	if got.ServerID != srv.ServerID || got.State != store.JobActive || !got.NextReplicationRunStartTime.Equal(next) ||
		got.LatestAmiID != "ami-0123" || got.ConsecutiveFailures != 2 || !got.SeedReplicationTime.Equal(t0) ||
		got.Frequency != 12 || got.NumberOfRecentAmisToKeep != 3 {
		t.Errorf("stored job = %+v", got)
	}
	if !got.UpdatedAt.Equal(upd.UpdatedAt) || !got.CreatedAt.Equal(job.CreatedAt) {
		t.Errorf("timestamps: got %v/%v want %v/%v", got.CreatedAt, got.UpdatedAt, job.CreatedAt, upd.UpdatedAt)
	}
	boom := errors.New("boom")
	_, err := s.UpdateJob(ctx, job.ReplicationJobID, func(*store.ReplicationJob) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("update error = %v, want boom", err)
	}
	_, err = s.UpdateJob(ctx, "sms-job-missing", func(*store.ReplicationJob) error { return nil })
	wantErr(t, err, store.ErrNotFound, "sms-job-missing")

	src := newSource(t, s, "vc2")
	other := newJob(t, s, newServer(t, s, src, "vm-2").ServerID)
	if l := ok(s.ListJobs(ctx, store.JobFilter{})).must(t); len(l) != 2 {
		t.Errorf("all jobs = %d", len(l))
	}
	l := ok(s.ListJobs(ctx, store.JobFilter{States: []store.JobState{store.JobPending}})).must(t)
	if len(l) != 1 || l[0].ReplicationJobID != other.ReplicationJobID {
		t.Errorf("pending jobs = %+v", l)
	}
	l = ok(s.ListJobs(ctx, store.JobFilter{ServerID: srv.ServerID, States: []store.JobState{store.JobActive, store.JobFailed}})).must(t)
	if len(l) != 1 || l[0].ReplicationJobID != job.ReplicationJobID {
		t.Errorf("active jobs of server = %+v", l)
	}
}
