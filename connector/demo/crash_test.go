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
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/internal/lab/pgpeer/pgtest"
	"github.com/rehost/rehost/pkg/store"
)

var (
	rehostOnce sync.Once
	rehostBin  string
	rehostErr  error
)

// buildRehost builds the product binary once per test binary: every crash
// test kills the same one.
func buildRehost(t testing.TB) string {
	t.Helper()
	rehostOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rehost-bin-")
		if err != nil {
			rehostErr = err
			return
		}
		rehostBin = filepath.Join(dir, "rehost")
		cmd := exec.Command("go", "build", "-o", rehostBin, "./connector/cmd/rehost")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			rehostErr = fmt.Errorf("build rehost: %v\n%s", err, out)
		}
	})
	if rehostErr != nil {
		t.Fatal(rehostErr)
	}
	return rehostBin
}

// TestMain removes the binary buildRehost made, and stops the PostgreSQL
// the fleet's test started.
func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if rehostBin != "" {
		os.RemoveAll(filepath.Dir(rehostBin))
	}
	os.Exit(code)
}

// envInt reads a positive integer from the environment, or def.
func envInt(t *testing.T, name string, def uint64) uint64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: not a number", name, v)
	}
	return n
}

// TestCrashAnywhereLeavesNothingBehind kills `rehost serve` with SIGKILL at
// random points of many runs — and `rehost job delete --delete-amis` once,
// mid-way — restarts it each time, and proves at the end that every run
// ended COMPLETED (no fault but the kills is injected, so a FAILED run is a
// bug), that every AMI left holds its source disks byte for byte, that the
// peers hold no VM snapshot, NFC lease, multipart upload, staged object,
// import task, orphan EBS snapshot or unclaimed AMI, that no run made two
// AMIs, and that retention holds. REHOST_CRASH_SEED sets the kill schedule
// (the seed is logged) and REHOST_CRASH_KILLS the number of kills.
func TestCrashAnywhereLeavesNothingBehind(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses POSIX signals")
	}
	seed := envInt(t, "REHOST_CRASH_SEED", uint64(time.Now().UnixNano()))
	rounds := int(envInt(t, "REHOST_CRASH_KILLS", 30))
	t.Logf("kill schedule: REHOST_CRASH_SEED=%d REHOST_CRASH_KILLS=%d", seed, rounds)
	bin := buildRehost(t)
	ctx := context.Background()
	dir := t.TempDir()
	// The calls that delete an AMI are slow, so that kills land in
	// retention and job deletion too (between deregistering an image and
	// deleting its snapshots, where a crash once orphaned snapshots).
	slow := map[string]time.Duration{"DeregisterImage": 400 * time.Millisecond, "DeleteSnapshot": 400 * time.Millisecond}
	peers, err := StartPeers(ctx, PeerOptions{Dir: filepath.Join(dir, "peers"), ImportDuration: 1500 * time.Millisecond,
		LeaseTimeout: 2 * time.Second, Delays: slow})
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
	bucket, servers := onboard(ctx, t, d, peers)
	var jobs []string
	incremental := map[string]bool{}
	for i, s := range servers {
		// Every other job is incremental (EBS direct replicas, CBT), the
		// one deleted mid-way full.
		mode := store.ModeFull
		if i%2 == 0 && i < len(servers)-1 {
			mode = store.ModeIncremental
		}
		j, err := d.CreateJob(ctx, store.ReplicationJob{ServerID: s.ServerID, SeedReplicationTime: time.Now(), Frequency: 24,
			LicenseType: store.LicenseAWS, NumberOfRecentAmisToKeep: keep, Mode: mode})
		incremental[j.ReplicationJobID] = mode == store.ModeIncremental
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

	rng := rand.New(rand.NewPCG(seed, 7))
	// Job deletion, killed mid-way once the job has AMIs: its deletions are
	// recorded, and the janitor of the next start finishes them.
	deleted := jobs[len(jobs)-1]
	deleteKilled := false
	killDelete := func() {
		cmd := exec.Command(bin, "job", "delete", "--state-dir", stateDir, "--delete-amis", deleted)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(300+rng.IntN(1500)) * time.Millisecond
		time.Sleep(delay)
		fmt.Fprintf(logf, "=== test: SIGKILL of job delete after %v\n", delay)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		deleteKilled = true
	}
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
		if !deleteKilled && i >= rounds*2/3 && jobHasAMIs(t, peers, deleted) {
			killDelete()
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
	if deleteKilled {
		// The user runs the deletion again; what the killed one recorded
		// the janitor has finished already.
		out, err := exec.Command(bin, "job", "delete", "--state-dir", stateDir, "--delete-amis", deleted).CombinedOutput()
		if err != nil && !bytes.Contains(out, []byte("already deleted")) {
			t.Errorf("job delete after the kill: %v\n%s", err, out)
		}
		if jobHasAMIs(t, peers, deleted) {
			t.Errorf("job %s, deleted with its AMIs, still has AMIs", deleted)
		}
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
				// Only kills were injected: a run they make fail is a bug.
				t.Errorf("run %s failed: %s", r.ReplicationRunID, r.StatusMessage)
			case store.RunMissed, store.RunDeleted:
			default:
				t.Errorf("run %s ended %s", r.ReplicationRunID, r.State)
			}
		}
	}
	t.Logf("%d runs completed, %d failed, over %d kills (seed %d)", completed, failed, rounds, seed)
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
			delete(claimed, id) // deleted by retention or with its job
		}
	}
	// Every AMI left holds its source VM's disks, read back from the
	// emulated EBS snapshots.
	name := map[string]string{}
	for _, s := range servers {
		name[s.ServerID] = s.Name
	}
	verified := 0
	for _, j := range jobs {
		job, err := st.GetJob(ctx, j)
		if err != nil {
			t.Fatal(err)
		}
		runs, _ := st.ListRuns(ctx, j, 0)
		for _, r := range runs {
			if !claimed[r.AmiID] {
				continue
			}
			checks, err := peers.Verify(name[job.ServerID], r.AmiID)
			if err != nil {
				t.Errorf("verify AMI %s of run %s: %v", r.AmiID, r.ReplicationRunID, err)
				continue
			}
			for _, c := range checks {
				if !c.Equal {
					t.Errorf("AMI %s of run %s: disk %d differs from the source (%s vs %s)", r.AmiID, r.ReplicationRunID, c.Disk, c.SourceHash, c.TargetHash)
				}
			}
			verified++
		}
	}
	t.Logf("%d AMIs verified byte for byte against their source disks", verified)
	if verified == 0 {
		t.Error("no AMI left to verify")
	}
	// Every incremental job's replicas hold its disks; the replicas it
	// keeps are claimed, and none is left pending.
	replicas := 0
	for _, j := range jobs {
		if !incremental[j] {
			continue
		}
		job, _ := st.GetJob(ctx, j)
		set, err := st.GetReplicaSet(ctx, j)
		if err != nil {
			t.Errorf("incremental job %s keeps no replicas: %v", j, err)
			continue
		}
		for _, dk := range set.Disks {
			c, err := peers.compare(name[job.ServerID], dk.Disk, dk.SnapshotID)
			if err != nil || !c.Equal {
				t.Errorf("job %s disk %d: replica %s differs from the source (%v)", j, dk.Disk, dk.SnapshotID, err)
			}
			replicas++
		}
	}
	hist, err := st.ReplicaSnapshots(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hist {
		claimed[h.SnapshotID] = true
	}
	t.Logf("%d replicas of incremental jobs verified byte for byte, %d kept in all", replicas, len(hist))
	// A lease whose holder was killed expires, as on vCenter.
	time.Sleep(3 * time.Second)
	l, err := peers.Leftovers(ctx, bucket, claimed)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Empty() {
		log, _ := os.ReadFile(logPath)
		t.Errorf("left behind: %s\nlog tail:\n%s", l, tail(log, 80))
	}
}

// jobHasAMIs reports whether the emulated account holds an AMI of job.
func jobHasAMIs(t *testing.T, peers *Peers, job string) bool {
	for _, im := range peers.AWS.Images() {
		if im.State == "deregistered" {
			continue
		}
		for _, tg := range im.Tags {
			if tg.Key == "rehost:job" && tg.Value == job {
				return true
			}
		}
	}
	return false
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
