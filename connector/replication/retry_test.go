package replication_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/connector/replication/memtarget"
	"github.com/rehost/rehost/internal/lab/azuresim"
	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/retry"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/azure"
	"github.com/rehost/rehost/pkg/store"
)

// No call is retried by two layers, counted at a real peer: a run whose
// Azure read grant is always refused with 503 reaches the faked
// subscription exactly the source's RetryAttempts times, not that times the
// step's attempts (nor times the SDK's own retries, which are off); the
// run fails saying so and its snapshot is released. A stream that breaks
// between calls, which no call's policy saw, is the step's to retry: the
// run then completes.
func TestNoRetryAroundRetry(t *testing.T) {
	ctx := context.Background()
	sim, err := azuresim.Start(ctx, azuresim.Options{Dir: t.TempDir(), VMs: []azuresim.VMSpec{
		{Name: "db-01", Disks: []azuresim.DiskSpec{{SizeBytes: 4 << 20}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	content := bytes.Repeat([]byte("a disk read once per try "), 20000)
	if err := sim.WriteDisk("db-01", 0, 0, content); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "rehost.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	src, err := st.CreateSource(ctx, store.Source{Kind: store.SourceAzure, Name: "sub", Endpoint: sim.ARMURL})
	if err != nil {
		t.Fatal(err)
	}
	vmID := sim.VMID("db-01")
	srv, err := st.UpsertServer(ctx, store.Server{SourceID: src.ID, VMID: vmID, Name: "db-01", DiskCount: 1})
	if err != nil {
		t.Fatal(err)
	}
	job, err := st.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, SeedReplicationTime: time.Now(), Frequency: 12, LicenseType: store.LicenseAWS, NumberOfRecentAmisToKeep: 1})
	if err != nil {
		t.Fatal(err)
	}
	const attempts, stepAttempts = 3, 3
	target := memtarget.New(1 << 20)
	e := &replication.Engine{
		Store: st,
		Source: func(ctx context.Context, _ string) (source.Source, error) {
			return azure.New(ctx, azure.Config{
				SubscriptionID: sim.SubscriptionID, TenantID: sim.TenantID, ClientID: sim.ClientID, Secret: []byte(sim.ClientSecret),
				Endpoints: &azure.Endpoints{ResourceManager: sim.ARMURL, AuthorityHost: sim.AuthorityURL}, CAPEM: sim.CAPEM,
				PollInterval: 10 * time.Millisecond, RetryAttempts: attempts, RetryBaseDelay: time.Millisecond,
				Log: slog.New(slog.DiscardHandler),
			})
		},
		Target:         func(context.Context) (replication.Target, error) { return target, nil },
		Log:            slog.New(slog.DiscardHandler),
		CleanupTimeout: time.Minute,
		StepAttempts:   stepAttempts,
		RetryDelay:     time.Millisecond,
	}
	start := func() store.ReplicationRun {
		runs, err := st.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, Type: store.RunOnDemand, State: store.RunActive, ScheduledStartTime: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return runs[0]
	}

	const grant = "SnapshotsClient.BeginGrantAccess"
	sim.Inject(grant, "/", 100, azuresim.Fault{Status: http.StatusServiceUnavailable, Code: "ServerBusy"})
	failed := start()
	_, err = e.Run(ctx, failed)
	if n := sim.Requests(grant, "/"); n != attempts {
		t.Errorf("an always-refused grant was asked %d times, want %d (the source's attempts, once; %d would be the step retrying them)", n, attempts, attempts*stepAttempts)
	}
	if err == nil || !retry.Exhausted(err) || !strings.Contains(err.Error(), "grant read access") {
		t.Fatalf("run with the grant refused: %v", err)
	}
	if n := len(sim.Snapshots()); n != 0 || sim.OpenGrants() != 0 {
		t.Errorf("after the failed run: snapshots %v, %d grants open", sim.Snapshots(), sim.OpenGrants())
	}
	sim.ClearFaults()
	// The scheduler, not the engine, ends a run.
	if _, err := st.UpdateRun(ctx, failed.ReplicationRunID, func(r *store.ReplicationRun) error { r.State = store.RunFailed; return nil }); err != nil {
		t.Fatal(err)
	}

	// Two ranged reads answered 503 are the read's to retry; a stream that
	// breaks once past them (at the target, where no call's policy sees
	// it) is the step's: one more Stage, and the image holds the disk.
	sim.Inject(azuresim.OpBlobRead, "", 2, azuresim.Fault{Status: http.StatusServiceUnavailable, Code: "ServerBusy"})
	stages, broken := 0, false
	target.Hook = func(_ context.Context, op, phase string) error {
		switch {
		case op == "Stage" && phase == "before":
			stages++
		case op == "Part" && phase == "after" && !broken:
			broken = true
			return fmt.Errorf("read disk stream: %w", io.ErrUnexpectedEOF)
		}
		return nil
	}
	reads := sim.Requests(azuresim.OpBlobRead, "")
	ami, err := e.Run(ctx, start())
	if err != nil {
		t.Fatalf("run with two refused reads and a broken stream: %v", err)
	}
	if stages != 2 || sim.Requests(azuresim.OpBlobRead, "")-reads < 2+2 {
		t.Errorf("%d Stage calls, want 2 (the step retried the broken stream once); %d ranged reads", stages, sim.Requests(azuresim.OpBlobRead, "")-reads)
	}
	var snap []byte
	for _, im := range target.Images() {
		if im.ID == ami && len(im.Snapshots) == 1 {
			for _, s := range target.Snapshots() {
				if s.ID == im.Snapshots[0] {
					snap = s.Content
				}
			}
		}
	}
	img, err := disk.Open(bytes.NewReader(snap), int64(len(snap)))
	if err != nil {
		t.Fatalf("image %s: its disk does not open: %v", ami, err)
	}
	want := make([]byte, 4<<20)
	copy(want, content)
	got := make([]byte, img.Size())
	if _, err := img.ReadAt(got, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the image's disk differs from the Azure disk")
	}
}
