package demo

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/fleet"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/internal/lab/pgpeer/pgtest"
	"github.com/rehost/rehost/internal/lab/proxy"
	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/store"
	"github.com/rehost/rehost/testdata"
)

// fleetVMs are n small Linux VMs (one 32 MiB disk, the same guest built
// once).
func fleetVMs(n int) []vspheresim.VMSpec {
	const mib = 1 << 20
	var vms []vspheresim.VMSpec
	for i := range n {
		vms = append(vms, vspheresim.VMSpec{Name: fmt.Sprintf("vm-%02d", i+1), GuestID: "ubuntu64Guest", PowerOn: true, ToolsRunning: true,
			Disks: []vspheresim.DiskSpec{{CapacityBytes: 32 * mib,
				Seed: vspheresim.GuestDisk(guestdisk.Options{Size: 32 * mib, OSRelease: testdata.OSRelease("ubuntu-22.04"), DataBytes: mib, Seed: 7})}}})
	}
	return vms
}

// member is one `rehost serve` of the fleet, a process of its own.
type member struct {
	id, dir, logPath string
	cmd              *exec.Cmd
	addr             string
}

func (m *member) log() []byte { b, _ := os.ReadFile(m.logPath); return b }

var servingAt = regexp.MustCompile(`serving https://([0-9.:]+)/`)

// startMember starts `rehost serve` for dir and waits until it serves.
func startMember(t *testing.T, bin, id, dir string, extra ...string) *member {
	t.Helper()
	m := &member{id: id, dir: dir, logPath: filepath.Join(filepath.Dir(dir), id+".log")}
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	args := append([]string{"serve", "--state-dir", dir, "--listen", "127.0.0.1:0", "--connector-id", id, "--lease-ttl", fleetTTL.String(),
		"--resync", "500ms", "--max-concurrent-runs", "4", "--log-format", "text"}, extra...)
	m.cmd = exec.Command(bin, args...)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if m.cmd.ProcessState == nil {
			m.cmd.Process.Signal(syscall.SIGKILL)
			m.cmd.Wait()
		}
	})
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if s := servingAt.FindSubmatch(m.log()); s != nil {
			m.addr = string(s[1])
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start; log:\n%s", id, tail(m.log(), 40))
		}
	}
}

// fleetTTL is the members' lease TTL; they heartbeat, renew and claim
// every third of it.
const fleetTTL = 3 * time.Second

// TestFleetKillAndCut runs three `rehost serve` on one PostgreSQL with the
// lab's peers and 30 jobs. c-2 reaches the store through a proxy the test
// cuts, first for a third of the lease TTL (its runs pause and go on, still
// its own), then until c-2's leases have expired and been taken over, then
// restores:
// its stale writes are refused by their fencing tokens, it rejoins. c-3 is
// then killed with SIGKILL mid-run: its runs are taken over within the
// lease TTL and a tick. In the end every run COMPLETED exactly once, with
// one AMI each holding its VM's disk byte for byte, the ledger holds
// nothing unreleased and the peers hold nothing a run should have removed.
func TestFleetKillAndCut(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses POSIX signals")
	}
	db := pgtest.NewDB(t)
	bin := buildRehost(t)
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv(daemon.EnvStorePassword, db.Password)
	peers, err := StartPeers(ctx, PeerOptions{Dir: filepath.Join(dir, "peers"), VMs: fleetVMs(30), ImportDuration: 1500 * time.Millisecond,
		LeaseTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(peers.Close)

	// c-1 sets the fleet up: registration, the source, 30 jobs, a key.
	sc := daemon.StoreConfig{URL: db.URL, CAFile: db.CAFile}
	dirs := map[string]string{"c-1": filepath.Join(dir, "c-1", "state"), "c-2": filepath.Join(dir, "c-2", "state"), "c-3": filepath.Join(dir, "c-3", "state")}
	for _, d := range dirs {
		os.MkdirAll(filepath.Dir(d), 0o700)
	}
	d, err := daemon.Open(ctx, dirs["c-1"], daemon.Options{Store: &sc, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := daemon.WriteStoreConfig(dirs["c-1"], sc); err != nil {
		t.Fatal(err)
	}
	bucket, servers := onboard(ctx, t, d, peers)
	var jobs []string
	for _, s := range servers {
		j, err := d.CreateJob(ctx, store.ReplicationJob{ServerID: s.ServerID, SeedReplicationTime: time.Now(), Frequency: 24,
			LicenseType: store.LicenseAWS, NumberOfRecentAmisToKeep: 2})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j.ReplicationJobID)
	}
	key, err := d.CreateAccessKey(ctx, "fleet join", false)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	cert, err := api.LoadOrCreateCertificate(dirs["c-1"])
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenPostgres(ctx, store.PostgresConfig{URL: db.URL, Password: db.Password, CAFile: db.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	members := map[string]*member{"c-1": startMember(t, bin, "c-1", dirs["c-1"])}
	// On failure, what every member logged of the runs that went wrong.
	defer func() {
		if !t.Failed() {
			return
		}
		failed, _ := st.RunsInState(ctx, store.RunFailed)
		for _, r := range failed {
			t.Logf("run %s FAILED: %s", r.ReplicationRunID, r.StatusMessage)
			for id, m := range members {
				for _, line := range bytes.Split(m.log(), []byte("\n")) {
					if bytes.Contains(line, []byte(r.ReplicationRunID)) {
						t.Logf("%s: %s", id, line)
					}
				}
			}
		}
	}()
	// c-2 and c-3 join with `rehost fleet join`: the key sealed for them.
	for _, id := range []string{"c-2", "c-3"} {
		cmd := exec.Command(bin, "fleet", "join", "--from", "https://"+members["c-1"].addr, "--fingerprint", api.Fingerprint(cert.Certificate[0]),
			"--state-dir", dirs[id])
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+key.ID, "AWS_SECRET_ACCESS_KEY="+key.Secret, "AWS_REGION="+peers.AWS.Region(),
			"REHOST_LOGIN_FILE="+filepath.Join(dir, "none.json"), "REHOST_ENDPOINT=", "REHOST_STATE_DIR=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("fleet join %s: %v\n%s", id, err, out)
		}
	}
	// c-2 reaches the store through a proxy the test cuts.
	u, _ := url.Parse(db.URL)
	cut, err := proxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer cut.Close()
	viaProxy := strings.Replace(db.URL, u.Host, cut.Addr, 1)
	members["c-2"] = startMember(t, bin, "c-2", dirs["c-2"], "--store", viaProxy, "--store-ca-file", db.CAFile)
	members["c-3"] = startMember(t, bin, "c-3", dirs["c-3"])

	// A short cut (a sixth of the TTL): c-2's runs pause at their next
	// write and go on, keeping their leases.
	short := waitHolding(t, st, "c-2", 90*time.Second)
	before := leaseTokens(t, st, short)
	cut.Cut()
	time.Sleep(fleetTTL / 6)
	cut.Restore()
	time.Sleep(fleetTTL / 2)
	for id, tok := range leaseTokens(t, st, short) {
		if r, _ := st.GetRun(ctx, id); r.State.Live() && tok != before[id] {
			t.Errorf("run %s changed hands over a cut shorter than its lease: %s → %s", id, before[id], tok)
		}
	}
	if t.Failed() {
		// How c-2's renewals fared around the cut.
		for _, line := range bytes.Split(members["c-2"].log(), []byte("\n")) {
			if bytes.Contains(line, []byte("renew")) || bytes.Contains(line, []byte("lease")) {
				t.Logf("c-2: %s", line)
			}
		}
	}

	// Cut c-2 off once it is mid-run, until what it held is taken over.
	held2 := waitHolding(t, st, "c-2", 90*time.Second)
	cut.Cut()
	cutAt := time.Now()
	t.Logf("c-2 cut off from the store holding %v", held2)
	for deadline := time.Now().Add(60 * time.Second); !allMoved(t, st, held2, "c-2"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("c-2's runs were not taken over; c-1's log:\n%s", tail(members["c-1"].log(), 40))
		}
	}
	movedAfter := time.Since(cutAt)
	cut.Restore()

	// Kill c-3 with SIGKILL once it is mid-run.
	held3 := waitHolding(t, st, "c-3", 90*time.Second)
	if err := members["c-3"].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killAt := time.Now()
	members["c-3"].cmd.Wait()
	t.Logf("c-3 killed holding %v", held3)

	// Every job's run completes.
	for deadline := time.Now().Add(6 * time.Minute); ; time.Sleep(250 * time.Millisecond) {
		live, err := st.RunsInState(ctx, store.RunPending, store.RunActive)
		if err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, j := range jobs {
			if runs, _ := st.ListRuns(ctx, j, 0); len(runs) > 0 && runs[0].State == store.RunCompleted {
				done++
			}
		}
		if len(live) == 0 && done == len(jobs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d jobs completed, %d runs live after 6 minutes; c-1's log:\n%s", done, len(jobs), len(live), tail(members["c-1"].log(), 60))
		}
	}
	takeover := claimDelay(t, st, held3, "c-3", killAt)
	takeover2 := claimDelay(t, st, held2, "c-2", cutAt)
	tick := fleetTTL / 3
	t.Logf("c-2's runs taken over %v after the cut (all moved after %v); c-3's %v after the kill (lease TTL %v, tick %v)",
		takeover2, movedAfter.Round(time.Millisecond), takeover, fleetTTL, tick)
	// The design bound is the lease TTL and a tick after the last renewal;
	// the figure above is the measure. The check is twice that, so a
	// loaded machine (seen: 5.2 s at a load average of 20) does not fail
	// it, while a takeover that waits for anything but the lease's expiry
	// (the next heartbeat, a restart) still does.
	if takeover > 2*(fleetTTL+tick) {
		t.Errorf("c-3's runs were taken over %v after the kill, want about the lease TTL %v and a tick %v (at most %v)", takeover, fleetTTL, tick, 2*(fleetTTL+tick))
	}

	// c-2: its writes after the cut were refused, and it is back.
	log2 := members["c-2"].log()
	if n := bytes.Count(log2, []byte("this write was refused")); n == 0 {
		t.Errorf("c-2 held %v through the cut, yet none of its writes was refused; its log:\n%s", held2, tail(log2, 60))
	} else {
		t.Logf("c-2: %d log lines of refused writes", n)
	}
	if !bytes.Contains(log2, []byte("the store is unreachable")) || !bytes.Contains(log2, []byte("the store is reachable again")) {
		t.Errorf("c-2 did not log the outage; its log:\n%s", tail(log2, 40))
	}
	status, err := fleet.StatusOf(ctx, st, fleetTTL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range status.Members {
		if m.Healthy != (m.ID != "c-3") {
			t.Errorf("member %s healthy = %v", m.ID, m.Healthy)
		}
	}
	for _, id := range []string{"c-1", "c-2"} {
		members[id].cmd.Process.Signal(syscall.SIGTERM)
		if err := members[id].cmd.Wait(); err != nil {
			t.Errorf("%s exited with %v after SIGTERM; log:\n%s", id, err, tail(members[id].log(), 30))
		}
	}

	// Exactly one completed run per job, with an AMI of its own.
	claimed := map[string]bool{}
	name := map[string]string{}
	for _, s := range servers {
		name[s.ServerID] = s.Name
	}
	ran := map[string]int{}
	for _, j := range jobs {
		runs, err := st.ListRuns(ctx, j, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 1 || runs[0].State != store.RunCompleted || runs[0].AmiID == "" {
			t.Errorf("job %s: runs %+v, want one COMPLETED with an AMI", j, runs)
			continue
		}
		r := runs[0]
		if claimed[r.AmiID] {
			t.Errorf("AMI %s claimed by two runs", r.AmiID)
		}
		claimed[r.AmiID] = true
		evs, _ := st.Events(ctx, store.EventFilter{RunID: r.ReplicationRunID})
		for _, e := range evs {
			if _, holder, ok := strings.Cut(e.Message, "run claimed by connector "); ok {
				ran[strings.Fields(holder)[0]]++
			}
		}
		job, _ := st.GetJob(ctx, j)
		checks, err := peers.Verify(name[job.ServerID], r.AmiID)
		if err != nil {
			t.Errorf("verify AMI %s of run %s: %v", r.AmiID, r.ReplicationRunID, err)
		}
		for _, c := range checks {
			if !c.Equal {
				t.Errorf("AMI %s of run %s: disk %d differs from its source", r.AmiID, r.ReplicationRunID, c.Disk)
			}
		}
	}
	t.Logf("claims per member (a taken-over run counts for each holder): %v", ran)
	for _, id := range []string{"c-1", "c-2", "c-3"} {
		if ran[id] == 0 {
			t.Errorf("%s ran nothing", id)
		}
	}
	left, err := st.UnreleasedLedger(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, le := range left {
		t.Errorf("ledger still holds %s %s of run %s (%s)", le.Kind, le.ResourceID, le.RunID, le.State)
	}
	time.Sleep(3 * time.Second) // NFC leases of the killed member expire
	l, err := peers.Leftovers(ctx, bucket, claimed)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Empty() {
		t.Errorf("left behind: %s", l)
	}
}

// waitHolding waits until id holds a lease on a run past its snapshot, and
// returns the runs it holds.
func waitHolding(t *testing.T, st *store.Postgres, id string, within time.Duration) []string {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		leases, err := st.Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var held []string
		mid := false
		for _, l := range leases {
			if l.Holder != id || !l.Expires.After(time.Now()) {
				continue
			}
			if r, err := st.GetRun(ctx, l.RunID); err == nil && r.State == store.RunActive {
				held = append(held, l.RunID)
				mid = mid || r.Progress.Step == "stage" || r.Progress.Step == "wait-import"
			}
		}
		if mid {
			return held
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never held a run mid-way", id)
		}
	}
}

// leaseTokens returns the holder and token of each run's lease.
func leaseTokens(t *testing.T, st *store.Postgres, runs []string) map[string]string {
	leases, err := st.Leases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range leases {
		for _, r := range runs {
			if l.RunID == r {
				out[r] = fmt.Sprintf("%s/%d", l.Holder, l.Token)
			}
		}
	}
	return out
}

// allMoved reports whether every run of runs is held by another member
// than id, or finished.
func allMoved(t *testing.T, st *store.Postgres, runs []string, id string) bool {
	ctx := context.Background()
	leases, err := st.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	holder := map[string]string{}
	for _, l := range leases {
		holder[l.RunID] = l.Holder
	}
	for _, r := range runs {
		run, err := st.GetRun(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if run.State.Live() && (holder[r] == id || holder[r] == "") {
			return false
		}
	}
	return true
}

// claimDelay is how long after since the last of runs (once id's) was
// claimed by another member, from the claims' events.
func claimDelay(t *testing.T, st *store.Postgres, runs []string, id string, since time.Time) time.Duration {
	var worst time.Duration
	for _, r := range runs {
		evs, err := st.Events(context.Background(), store.EventFilter{RunID: r})
		if err != nil {
			t.Fatal(err)
		}
		var first time.Duration
		for _, e := range evs {
			if e.Time.After(since) && strings.Contains(e.Message, "run claimed by connector ") && !strings.Contains(e.Message, "connector "+id+" ") {
				if d := e.Time.Sub(since); first == 0 || d < first {
					first = d
				}
			}
		}
		if first == 0 {
			// Finished by id before its lease ran out: nothing to take over.
			if run, _ := st.GetRun(context.Background(), r); run.State.Live() {
				t.Errorf("run %s of %s was never claimed by another member", r, id)
			}
			continue
		}
		worst = max(worst, first)
	}
	return worst
}
