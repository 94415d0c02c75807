package daemon

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

// startingStore makes the listed runs ACTIVE right after ListRuns returns,
// as the scheduler starting them at that moment would.
type startingStore struct {
	store.Store
	start []string
}

func (s *startingStore) ListRuns(ctx context.Context, jobID string, limit int) ([]store.ReplicationRun, error) {
	runs, err := s.Store.ListRuns(ctx, jobID, limit)
	for _, id := range s.start {
		if _, uerr := s.Store.UpdateRun(ctx, id, func(r *store.ReplicationRun) error {
			r.State, r.StartedAt = store.RunActive, time.Now()
			return nil
		}); uerr != nil {
			return nil, uerr
		}
	}
	s.start = nil
	return runs, err
}

// TestDeleteJobRefusesRunStartingMeanwhile: a pending run the scheduler
// starts while the job is being deleted must not be marked DELETED under
// the running replication (its AMI would outlive the job unnoticed).
func TestDeleteJobRefusesRunStartingMeanwhile(t *testing.T) {
	ctx := context.Background()
	d, err := Open(ctx, t.TempDir(), Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	src, err := d.Store.CreateSource(ctx, store.Source{Kind: store.SourceVSphere, Name: "vc"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := d.Store.UpsertServer(ctx, store.Server{SourceID: src.ID, VMID: "vm-1", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	job, err := d.Store.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, SeedReplicationTime: time.Now(), Frequency: 12, LicenseType: store.LicenseAWS})
	if err != nil {
		t.Fatal(err)
	}
	runs, err := d.Store.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, Type: store.RunOnDemand, ScheduledStartTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	run := runs[0]
	d.Store = &startingStore{Store: d.Store, start: []string{run.ReplicationRunID}}

	err = d.DeleteJob(ctx, job.ReplicationJobID, false)
	if err == nil || !strings.Contains(err.Error(), "started meanwhile") {
		t.Errorf("DeleteJob = %v, want a refusal naming the run that started", err)
	}
	got, err := d.Store.GetRun(ctx, run.ReplicationRunID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.RunActive {
		t.Errorf("the running run was marked %s", got.State)
	}
	j, err := d.Store.GetJob(ctx, job.ReplicationJobID)
	if err != nil {
		t.Fatal(err)
	}
	if j.State == store.JobDeleted {
		t.Errorf("the job was deleted while its run replicates")
	}
}
