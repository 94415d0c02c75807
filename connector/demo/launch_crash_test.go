package demo

import (
	"bytes"
	"context"
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

	"github.com/rehost/rehost/connector/app"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/pkg/store"
)

// TestLaunchCrashLeavesNothingBehind launches and terminates an
// application — cutover and test launches — with `rehost app launch` and
// `rehost app terminate` beside `rehost serve`, killing either process with
// SIGKILL at random moments (between recording a launch and creating its
// stack, while the stack is being made and the boot checks signal, between
// recording a termination and deleting the stack), restarting serve each
// time. At the end every launch is terminated, the emulator holds no stack
// that is not deleted and no instance that is not terminated, and no launch
// made two stacks. REHOST_CRASH_SEED sets the schedule,
// REHOST_LAUNCH_KILLS the number of kills.
func TestLaunchCrashLeavesNothingBehind(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses POSIX signals")
	}
	seed := envInt(t, "REHOST_CRASH_SEED", uint64(time.Now().UnixNano()))
	rounds := int(envInt(t, "REHOST_LAUNCH_KILLS", 8))
	t.Logf("kill schedule: REHOST_CRASH_SEED=%d REHOST_LAUNCH_KILLS=%d", seed, rounds)
	bin := buildRehost(t)
	ctx := context.Background()
	dir := t.TempDir()
	// Slow stack calls, so that kills land while a client waits for them.
	slow := map[string]time.Duration{"CreateStack": 300 * time.Millisecond, "DeleteStack": 300 * time.Millisecond, "UpdateStack": 300 * time.Millisecond}
	peers, err := StartPeers(ctx, PeerOptions{Dir: filepath.Join(dir, "peers"), InstanceBootTime: time.Second, Delays: slow})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(peers.Close)

	stateDir := filepath.Join(dir, "state")
	d, err := daemon.Open(ctx, stateDir, daemon.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	_, servers := onboard(ctx, t, d, peers)
	// The servers' AMIs: their boot disks as a replication leaves them.
	byName := map[string]store.Server{}
	for _, s := range servers {
		byName[s.Name] = s
		capacity, err := peers.Sim.DiskCapacity(s.Name, 0)
		if err != nil {
			t.Fatal(err)
		}
		raw := make([]byte, capacity)
		if _, err := peers.Sim.ReadDisk(s.Name, 0, 0, raw); err != nil {
			t.Fatal(err)
		}
		ami, err := peers.AWS.SeedImage(s.Name+"-seed", raw, 0)
		if err != nil {
			t.Fatal(err)
		}
		j, err := d.Store.CreateJob(ctx, store.ReplicationJob{ServerID: s.ServerID, SeedReplicationTime: time.Now().Add(24 * time.Hour), Frequency: 24})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Store.UpdateJob(ctx, j.ReplicationJobID, func(j *store.ReplicationJob) error { j.LatestAmiID = ami; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	a, err := d.Store.CreateApp(ctx, store.App{Name: "shop", Groups: []store.ServerGroup{
		{Name: "data", ServerIDs: []string{byName["db-01"].ServerID}},
		{Name: "front", ServerIDs: []string{byName["app-01"].ServerID, byName["web-01"].ServerID}}}})
	if err != nil {
		t.Fatal(err)
	}
	lc, err := app.Configure(a, &store.LaunchConfig{Test: &store.TestLaunchConfig{NameSuffix: "-test"}}, map[string]store.Server{
		byName["db-01"].ServerID: byName["db-01"], byName["app-01"].ServerID: byName["app-01"], byName["web-01"].ServerID: byName["web-01"]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Store.UpdateApp(ctx, a.AppID, func(x *store.App) error { x.Launch = lc; return nil }); err != nil {
		t.Fatal(err)
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
		cmd := exec.Command(bin, "serve", "--state-dir", stateDir, "--listen", "127.0.0.1:0", "--resync", "300ms", "--log-format", "text")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
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
	cli := func(args ...string) *exec.Cmd {
		cmd := exec.Command(bin, append(args, "--state-dir", stateDir)...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	kill := func(cmd *exec.Cmd, what string, after time.Duration) {
		fmt.Fprintf(logf, "=== test: SIGKILL of %s after %v\n", what, after)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	st, err := store.OpenSQLite(filepath.Join(stateDir, "rehost.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// next is what a user would do now with a launch of kind: launch it
	// when there is none, terminate it once it settled, wait while it is
	// in progress.
	next := func(kind store.LaunchKind) []string {
		args := []string{"app", "launch", "shop"}
		ls, err := st.ListLaunches(ctx, a.AppID)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if l.Kind != kind || l.State == store.LaunchTerminated {
				continue
			}
			if l.State.InProgress() {
				return nil
			}
			args[1] = "terminate"
		}
		if kind == store.LaunchTest {
			args = append(args, "--test")
		}
		return args
	}
	rng := rand.New(rand.NewPCG(seed, 11))
	for i := range rounds {
		serve := start()
		kind := []store.LaunchKind{store.LaunchCutover, store.LaunchTest}[rng.IntN(2)]
		if op := next(kind); op != nil {
			c := cli(op...)
			delay := time.Duration(50+rng.IntN(1500)) * time.Millisecond
			time.Sleep(delay)
			if rng.IntN(2) == 0 {
				kill(c, "rehost "+fmt.Sprint(op), delay) // the CLI, mid-call or after
			} else {
				c.Wait()
			}
		}
		delay := time.Duration(rng.IntN(3000)) * time.Millisecond
		time.Sleep(delay)
		kill(serve, fmt.Sprintf("serve (round %d)", i+1), delay)
	}

	// The last start finishes what was recorded; then the user terminates
	// both launches.
	serve := start()
	settle := func() {
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
			live, err := st.LiveLaunches(ctx)
			if err != nil {
				t.Fatal(err)
			}
			busy := false
			for _, l := range live {
				busy = busy || l.State.InProgress()
			}
			if !busy {
				return
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(logPath)
				t.Fatalf("launches still in progress: %+v\nlog:\n%s", live, tail(b, 60))
			}
		}
	}
	settle()
	for _, args := range [][]string{{"app", "terminate", "shop"}, {"app", "terminate", "shop", "--test"}} {
		out, err := exec.Command(bin, append(args, "--state-dir", stateDir)...).CombinedOutput()
		if err != nil && !bytes.Contains(out, []byte("to terminate")) {
			t.Errorf("rehost %v: %v\n%s", args, err, out)
		}
	}
	settle()
	serve.Process.Signal(syscall.SIGTERM)
	if err := serve.Wait(); err != nil {
		t.Errorf("serve exited with %v after SIGTERM", err)
	}

	launches, err := st.ListLaunches(ctx, a.AppID)
	if err != nil {
		t.Fatal(err)
	}
	perLaunch := map[string]int{}
	for _, s := range peers.AWS.Stacks() {
		for _, tg := range s.Tags {
			if tg.Key == app.TagLaunch {
				perLaunch[tg.Value]++
			}
		}
	}
	made := 0
	for _, l := range launches {
		if l.State != store.LaunchTerminated {
			t.Errorf("launch %s (%s) ended %s: %s", l.LaunchID, l.Kind, l.State, l.StatusMessage)
		}
		if perLaunch[l.LaunchID] > 1 {
			t.Errorf("launch %s made %d stacks", l.LaunchID, perLaunch[l.LaunchID])
		}
		made += perLaunch[l.LaunchID]
	}
	t.Logf("%d launches, %d stacks made, over %d kills (seed %d)", len(launches), made, rounds, seed)
	if b, _ := os.ReadFile(logPath); t.Failed() {
		t.Logf("log:\n%s", tail(b, 80))
	}
	if made == 0 {
		t.Error("no launch made a stack")
	}
	time.Sleep(500 * time.Millisecond) // instances shutting down finish
	states, err := peers.States(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l := states.Leftovers("", nil); len(l.Stacks) > 0 || len(l.Instances) > 0 {
		t.Errorf("left behind: stacks %v, instances %v", l.Stacks, l.Instances)
	}
}
