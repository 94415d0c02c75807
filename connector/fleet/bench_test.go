package fleet_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/fleet"
	"github.com/rehost/rehost/internal/lab/pgpeer/pgtest"
	"github.com/rehost/rehost/pkg/store"
	"github.com/rehost/rehost/scheduler"
)

type noRunner struct{}

func (noRunner) Run(context.Context, store.ReplicationRun) error { return nil }

// BenchmarkFleet10k measures a fleet of three members, each with its own
// connection pool, on one PostgreSQL holding 10,000 daily jobs all due:
//   - dispatch: the leader's scheduler pass that plans every due run (one
//     transaction per job: the job's next start and its PENDING run);
//   - claim: the three members claiming all 10,000 runs at once, 50 per
//     claim, each run exactly once (claims/s is runs leased per second).
//
// Between iterations the runs are completed and the jobs made due again
// with plain SQL.
func BenchmarkFleet10k(b *testing.B) {
	const jobs, members, batch = 10000, 3, 50
	ctx := context.Background()
	db := pgtest.NewDB(b)
	open := func() *store.Postgres {
		st, err := store.OpenPostgres(ctx, store.PostgresConfig{URL: db.URL, Password: db.Password, CAFile: db.CAFile, MaxConns: 8})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		return st
	}
	setup := open()
	src, err := setup.CreateSource(ctx, store.Source{Kind: store.SourceVSphere, Name: "vc"})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	due := time.Now().Add(-time.Minute)
	for i := range jobs {
		srv, err := setup.UpsertServer(ctx, store.Server{SourceID: src.ID, VMID: fmt.Sprintf("vm-%05d", i), Name: fmt.Sprintf("vm-%05d", i)})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := setup.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, Frequency: 24, State: store.JobActive,
			SeedReplicationTime: due.Add(-24 * time.Hour), NextReplicationRunStartTime: due}); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("stored 10k servers and jobs in %v", time.Since(start).Round(time.Millisecond))
	var ms []*fleet.Member
	var sts []*store.Postgres
	for i := range members {
		st := open()
		m, err := fleet.Join(ctx, st, fleet.Config{ID: fmt.Sprintf("c-%d", i+1), Incarnation: fmt.Sprint(i), Capacity: jobs, TTL: time.Hour,
			Sources: func(context.Context) ([]string, error) { return []string{src.ID}, nil }})
		if err != nil {
			b.Fatal(err)
		}
		ms, sts = append(ms, m), append(sts, st)
	}
	if !ms[0].Leader() {
		b.Fatal("the first member does not lead")
	}
	for n := 0; n < b.N; n++ {
		// The leader plans; Passive, so it claims nothing itself.
		s := scheduler.New(sts[0], noRunner{}, scheduler.Options{Fleet: ms[0], Passive: true, ResyncInterval: time.Hour})
		t0 := time.Now()
		if err := s.RunDue(ctx); err != nil {
			b.Fatal(err)
		}
		dispatch := time.Since(t0)
		s.Stop()
		pending, err := setup.RunsInState(ctx, store.RunPending)
		if err != nil || len(pending) != jobs {
			b.Fatalf("%d runs planned (%v), want %d", len(pending), err, jobs)
		}
		var mu sync.Mutex
		seen := map[string]bool{}
		var wg sync.WaitGroup
		t1 := time.Now()
		for i := range members {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					got, err := ms[i].Claim(ctx, batch)
					if err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					for _, c := range got {
						if seen[c.Run.ReplicationRunID] {
							b.Errorf("run %s claimed twice", c.Run.ReplicationRunID)
						}
						seen[c.Run.ReplicationRunID] = true
					}
					all := len(seen) == jobs
					mu.Unlock()
					if all || len(got) == 0 && allClaimed(ctx, setup) {
						return
					}
				}
			}()
		}
		wg.Wait()
		claim := time.Since(t1)
		if len(seen) != jobs {
			b.Fatalf("%d of %d runs claimed", len(seen), jobs)
		}
		b.ReportMetric(dispatch.Seconds(), "dispatch-s")
		b.ReportMetric(claim.Seconds(), "claim-all-s")
		b.ReportMetric(float64(jobs)/claim.Seconds(), "claims/s")
		b.Logf("dispatch of 10k due jobs %v; 3 members claimed 10k runs in %v (%.0f/s)", dispatch.Round(time.Millisecond), claim.Round(time.Millisecond), float64(jobs)/claim.Seconds())
		// Ready for the next iteration: runs done, jobs due again.
		if _, err := setup.DB().ExecContext(ctx, `UPDATE replication_runs SET state = 'COMPLETED', lease_holder = '', lease_expires = 0 WHERE state = 'ACTIVE'`); err != nil {
			b.Fatal(err)
		}
		if _, err := setup.DB().ExecContext(ctx, `UPDATE replication_jobs SET next_replication_run_start_time = $1`, due.UnixNano()); err != nil {
			b.Fatal(err)
		}
	}
}

func allClaimed(ctx context.Context, st *store.Postgres) bool {
	p, err := st.RunsInState(ctx, store.RunPending)
	return err == nil && len(p) == 0
}
