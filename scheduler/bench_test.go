package scheduler

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

type noopRunner struct{ called chan time.Time }

func (r noopRunner) Run(ctx context.Context, run store.ReplicationRun) error {
	r.called <- time.Now()
	return nil
}

// BenchmarkScheduler10k measures the scheduler with 10,000 daily jobs whose
// seeds are spread over the day (one due every 8.64 s):
//   - load: the first start, which computes and stores every job's next
//     time (one transaction per job);
//   - reload: a restart, which only reads the 10k jobs;
//   - heap-B/10k-jobs: heap the loaded scheduler holds;
//   - dispatch: from a job falling due (RunDue at its time) to Runner.Run
//     being called with the ACTIVE run, with a no-op runner;
//   - idle-tick: a pass when nothing is due.
func BenchmarkScheduler10k(b *testing.B) {
	const jobs = 10000
	ctx := context.Background()
	st, err := store.OpenSQLite(filepath.Join(b.TempDir(), "rehost.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	base := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	clock := NewFakeClock(base.Add(-time.Hour))
	st.SetClock(clock.Now)
	src, err := st.CreateSource(ctx, store.Source{Kind: store.SourceVSphere, Name: "vc"})
	if err != nil {
		b.Fatal(err)
	}
	spacing := 24 * time.Hour / jobs
	setup := time.Now()
	for i := 0; i < jobs; i++ {
		srv, err := st.UpsertServer(ctx, store.Server{SourceID: src.ID, VMID: fmt.Sprintf("vm-%05d", i), Name: fmt.Sprintf("vm-%05d", i)})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, Frequency: 24,
			SeedReplicationTime: base.Add(time.Duration(i) * spacing)}); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("stored 10k servers and jobs in %v", time.Since(setup))
	runner := noopRunner{called: make(chan time.Time, 1)}
	opts := Options{Clock: clock, MaxConcurrent: 2, ResyncInterval: 48 * time.Hour}

	var s *Scheduler
	b.Run("load", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if s != nil {
				s.Stop()
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			s = New(st, runner, opts)
			if err := s.RunDue(ctx); err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc)-float64(before.HeapAlloc), "heap-B/10k-jobs")
			if n := len(s.due); n != jobs {
				b.Fatalf("%d jobs scheduled, want %d", n, jobs)
			}
		}
	})
	defer s.Stop()

	// A restart: every job already has its next time stored.
	b.Run("reload", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			r := New(st, runner, opts)
			if err := r.RunDue(ctx); err != nil {
				b.Fatal(err)
			}
			if n := len(r.due); n != jobs {
				b.Fatalf("%d jobs scheduled, want %d", n, jobs)
			}
			r.Stop()
		}
	})

	next := 0 // the benchmark function reruns with growing b.N; slots must keep moving forward
	b.Run("dispatch", func(b *testing.B) {
		var total time.Duration
		for n := 0; n < b.N; n++ {
			i := next
			next++
			k := i % jobs
			due := base.Add(time.Duration(i/jobs)*24*time.Hour + time.Duration(k)*spacing)
			clock.Set(due)
			start := time.Now()
			if err := s.RunDue(ctx); err != nil {
				b.Fatal(err)
			}
			called := <-runner.called
			total += called.Sub(start)
			b.StopTimer()
			s.Wait()
			b.StartTimer()
		}
		b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs-due-to-Run")
	})

	b.Run("idle-tick", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := s.RunDue(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
