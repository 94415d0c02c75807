package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// buildRehost builds the rehost binary once per test binary.
func buildRehost(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rehost")
	cmd := exec.Command("go", "build", "-o", bin, "./connector/cmd/rehost")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build rehost: %v\n%s", err, out)
	}
	return bin
}

// TestCrashAnywhereLeavesNothingBehind kills `rehost serve` with SIGKILL at
// random points of many runs, restarts it each time, and proves at the end
// that every run ended COMPLETED or FAILED with a reason, that the peers hold
// no VM snapshot, NFC lease, multipart upload, staged object, import task,
// orphan EBS snapshot or unclaimed AMI, that no run made two AMIs, and that
// retention holds.
func TestCrashAnywhereLeavesNothingBehind(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses POSIX signals")
	}
	bin := buildRehost(t)
	ctx := context.Background()
	dir := t.TempDir()
	peers, err := StartPeers(ctx, PeerOptions{Dir: filepath.Join(dir, "peers"), ImportDuration: 1500 * time.Millisecond, LeaseTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(peers.Close)

	const keep = 2
	stateDir := filepath.Join(dir, "state")
	d, err := daemon.Open(ctx, stateDir, daemon.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	settings, err := peers.AWSSettings()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := d.Register(ctx, settings, awstarget.SetupOptions{CreateRole: true})
	if err != nil {
		t.Fatal(err)
	}
	src, err := d.AddSource(ctx, peers.SourceInput())
	if err != nil {
		t.Fatal(err)
	}
	servers, err := d.ImportCatalog(ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	var jobs []string
	for _, s := range servers {
		j, err := d.CreateJob(ctx, store.ReplicationJob{ServerID: s.ServerID, SeedReplicationTime: time.Now(), Frequency: 24,
			LicenseType: store.LicenseAWS, NumberOfRecentAmisToKeep: keep})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j.ReplicationJobID)
	}
	d.Close()

	logPath := filepath.Join(dir, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	starts := 0
	start := func() *exec.Cmd {
		starts++
		cmd := exec.Command(bin, "serve", "--state-dir", stateDir, "--listen", "127.0.0.1:0", "--resync", "500ms", "--log-format", "text",
			"--max-concurrent-runs", "2", "--on-demand-per-24h", "-1")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Signals sent before the Go runtime installs its handlers would
		// kill the process the default way: wait until it serves.
		for deadline := time.Now().Add(30 * time.Second); ; {
			b, _ := os.ReadFile(logPath)
			if bytes.Count(b, []byte("rehost connector serving")) >= starts {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("serve did not start; log:\n%s", tail(b, 40))
			}
			time.Sleep(20 * time.Millisecond)
		}
		return cmd
	}
	// More runs: between kills, each job without a live run gets an
	// on-demand run, so the kills land in many different runs and steps.
	addRuns := func() {
		st, err := store.OpenSQLite(filepath.Join(stateDir, "rehost.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		for _, j := range jobs {
			_, err := st.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: j, Type: store.RunOnDemand, State: store.RunPending, ScheduledStartTime: time.Now()})
			if err != nil && !isConflict(err) {
				t.Fatal(err)
			}
		}
	}

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("kill schedule seed %d", seed)
	const rounds = 10
	for i := range rounds {
		cmd := start()
		delay := time.Duration(200+rng.IntN(5000)) * time.Millisecond
		time.Sleep(delay)
		fmt.Fprintf(logf, "=== test: SIGKILL after %v (round %d)\n", delay, i+1)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		if i%3 == 2 {
			addRuns()
		}
	}

	// The last start runs everything to its end, then stops politely.
	cmd := start()
	st, err := store.OpenSQLite(filepath.Join(stateDir, "rehost.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(4 * time.Minute)
	for {
		live, err := st.RunsInState(ctx, store.RunPending, store.RunActive)
		if err != nil {
			t.Fatal(err)
		}
		if len(live) == 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			log, _ := os.ReadFile(logPath)
			t.Fatalf("%d runs still live after the final start; log:\n%s", len(live), tail(log, 60))
		}
		time.Sleep(200 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		log, _ := os.ReadFile(logPath)
		t.Errorf("serve exited with %v after SIGTERM; log:\n%s", err, tail(log, 30))
	}

	claimed := map[string]bool{}
	completed, failed := 0, 0
	for _, j := range jobs {
		runs, err := st.ListRuns(ctx, j, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			switch r.State {
			case store.RunCompleted:
				completed++
				if r.AmiID == "" {
					t.Errorf("run %s completed without an AMI id", r.ReplicationRunID)
				}
				claimed[r.AmiID] = true
			case store.RunFailed:
				failed++
				if r.StatusMessage == "" {
					t.Errorf("run %s failed without a reason", r.ReplicationRunID)
				}
				t.Logf("run %s failed: %s", r.ReplicationRunID, r.StatusMessage)
			case store.RunMissed:
			default:
				t.Errorf("run %s ended %s", r.ReplicationRunID, r.State)
			}
		}
	}
	t.Logf("%d runs completed, %d failed, over %d kills", completed, failed, rounds)
	if completed == 0 {
		t.Fatal("no run completed")
	}
	left, err := st.UnreleasedLedger(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, le := range left {
		t.Errorf("ledger still holds %s %s of run %s (%s)", le.Kind, le.ResourceID, le.RunID, le.State)
	}

	// Retention removed the AMIs of older runs: only kept ones are claimed.
	present := map[string]bool{}
	perJob := map[string]int{}
	for _, im := range peers.AWS.Images() {
		if im.State == "deregistered" {
			continue
		}
		present[im.ID] = true
		for _, tg := range im.Tags {
			if tg.Key == "rehost:job" {
				perJob[tg.Value]++
			}
		}
	}
	for j, n := range perJob {
		if n > keep {
			t.Errorf("job %s has %d AMIs, retention keeps %d", j, n, keep)
		}
	}
	for id := range claimed {
		if !present[id] {
			delete(claimed, id) // deleted by retention
		}
	}
	// A lease whose holder was killed expires, as on vCenter.
	time.Sleep(3 * time.Second)
	l, err := peers.Leftovers(ctx, rep.Bucket, claimed)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Empty() {
		log, _ := os.ReadFile(logPath)
		t.Errorf("left behind: %s\nlog tail:\n%s", l, tail(log, 80))
	}
}

func isConflict(err error) bool { return err != nil && errors.Is(err, store.ErrConflict) }

func tail(b []byte, lines int) string {
	n := 0
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			n++
			if n > lines {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}
