//go:build linux

package demo

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
	"github.com/rehost/rehost/testdata"
)

// peakRSS is VmHWM of process pid, in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for l := range strings.Lines(string(b)) {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kib, err := strconv.ParseInt(f[1], 10, 64)
			return kib << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

func benchEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: not a positive number", name, v)
	}
	return n
}

var slotWaitRE = regexp.MustCompile(`waited ([0-9a-zµ.]+) for a VM Import slot`)

// BenchmarkFiftyRuns measures one `rehost serve` (a process of its own;
// the peers run in the benchmark's process) replicating 50 VMs of the
// simulated vCenter at once, each from VM snapshot to AMI, with 50
// concurrent runs and 20 VM Import slots — the emulator refusing a 21st
// concurrent ImportImage as AWS does. It reports the total MiB/s read from
// the source, the daemon's peak RSS, p50/p99 of a run's start to its AMI,
// the most import tasks the emulator saw at once, the longest wait for a
// slot and how often a later waiter got a slot first; and fails unless
// every run COMPLETED and the peers hold nothing left behind.
// REHOST_SCALE_RUNS (default 50) and REHOST_SCALE_DISK_MIB (default 32)
// size it; -short makes it 10 runs. Run by scripts/bench;
// docs/benchmarks.md has the figures.
func BenchmarkFiftyRuns(b *testing.B) {
	runs, mib := 50, 32
	if testing.Short() {
		runs, mib = 10, 32
	}
	runs = benchEnvInt(b, "REHOST_SCALE_RUNS", runs)
	mib = benchEnvInt(b, "REHOST_SCALE_DISK_MIB", mib)
	for b.Loop() {
		benchFiftyRuns(b, runs, mib)
	}
}

func benchFiftyRuns(b *testing.B, n, mib int) {
	const slots = 20
	bin := buildRehost(b)
	ctx := context.Background()
	dir := b.TempDir()
	size := int64(mib) << 20
	var vms []vspheresim.VMSpec
	for i := range n {
		vms = append(vms, vspheresim.VMSpec{Name: fmt.Sprintf("vm-%02d", i+1), GuestID: "ubuntu64Guest", PowerOn: true, ToolsRunning: true,
			Disks: []vspheresim.DiskSpec{{CapacityBytes: size,
				Seed: vspheresim.GuestDisk(guestdisk.Options{Size: size, OSRelease: testdata.OSRelease("ubuntu-22.04"), DataBytes: size / 2, Seed: 7})}}})
	}
	peers, err := StartPeers(ctx, PeerOptions{Dir: filepath.Join(dir, "peers"), VMs: vms, ImportDuration: 2 * time.Second,
		Quotas: map[string]float64{"Concurrent import image tasks": slots}})
	if err != nil {
		b.Fatal(err)
	}
	defer peers.Close()
	stateDir := filepath.Join(dir, "state")
	d, err := daemon.Open(ctx, stateDir, daemon.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	settings, _ := peers.AWSSettings()
	rep, err := d.Register(ctx, settings, awstarget.SetupOptions{CreateRole: true})
	if err != nil {
		b.Fatal(err)
	}
	src, err := d.AddSource(ctx, peers.SourceInput())
	if err != nil {
		b.Fatal(err)
	}
	servers, err := d.ImportCatalog(ctx, src.ID)
	if err != nil {
		b.Fatal(err)
	}
	var jobs []string
	for _, s := range servers {
		j, err := d.Store.CreateJob(ctx, store.ReplicationJob{ServerID: s.ServerID, Mode: store.ModeFull,
			SeedReplicationTime: time.Now().Add(24 * time.Hour), Frequency: 24, LicenseType: store.LicenseAWS})
		if err != nil {
			b.Fatal(err)
		}
		jobs = append(jobs, j.ReplicationJobID)
	}
	d.Close()

	logf, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve", "--state-dir", stateDir, "--listen", "127.0.0.1:0", "--resync", "200ms", "--on-demand-per-24h", "-1",
		"--max-concurrent-runs", strconv.Itoa(n), "--import-limit", strconv.Itoa(slots))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	st, err := store.OpenSQLite(filepath.Join(stateDir, "rehost.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()

	load0 := loadAverage()
	var want []store.ReplicationRun
	for _, j := range jobs {
		want = append(want, store.ReplicationRun{ReplicationJobID: j, Type: store.RunOnDemand, State: store.RunPending, ScheduledStartTime: time.Now()})
	}
	t0 := time.Now()
	made, err := st.CreateRuns(ctx, want...)
	if err != nil {
		b.Fatal(err)
	}
	done := map[string]store.ReplicationRun{}
	for deadline := time.Now().Add(2 * time.Hour); len(done) < len(made); time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d runs finished in 2 h", len(done), len(made))
		}
		for _, r := range made {
			if _, ok := done[r.ReplicationRunID]; ok {
				continue
			}
			got, err := st.GetRun(ctx, r.ReplicationRunID)
			if err != nil {
				b.Fatal(err)
			}
			switch got.State {
			case store.RunCompleted:
				done[r.ReplicationRunID] = got
			case store.RunFailed, store.RunMissed, store.RunDeleted:
				log, _ := os.ReadFile(logf.Name())
				b.Fatalf("run %s %s: %s\n%s", got.ReplicationRunID, got.State, got.StatusMessage, tail(log, 30))
			}
		}
	}
	wall := time.Since(t0)
	hwm, err := peakRSS(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	cpu, err := cpuSeconds(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}

	var read int64
	var toAMI []time.Duration
	claimed := map[string]bool{}
	for _, r := range done {
		for _, dp := range r.Progress.Disks {
			read += dp.BytesDone
		}
		toAMI = append(toAMI, r.CompletedTime.Sub(r.StartedAt))
		claimed[r.AmiID] = true
	}
	slices.Sort(toAMI)
	pct := func(p float64) time.Duration { return toAMI[min(len(toAMI)-1, int(p*float64(len(toAMI))))] }

	// Slot grants: each waiter's event says when it got its slot and how
	// long it waited; a waiter granted after one that began waiting later
	// (beyond the events' timing noise) would be overtaken.
	evs, err := st.Events(ctx, store.EventFilter{Limit: 100000})
	if err != nil {
		b.Fatal(err)
	}
	type grant struct{ asked, got time.Time }
	var grants []grant
	var longest time.Duration
	for _, e := range evs {
		m := slotWaitRE.FindStringSubmatch(e.Message)
		if m == nil {
			continue
		}
		w, err := time.ParseDuration(m[1])
		if err != nil {
			b.Fatalf("event %q: %v", e.Message, err)
		}
		longest = max(longest, w)
		grants = append(grants, grant{asked: e.Time.Add(-w), got: e.Time})
	}
	const noise = 100 * time.Millisecond
	overtaken := 0
	for _, a := range grants {
		for _, c := range grants {
			if c.asked.After(a.asked.Add(noise)) && c.got.Add(noise).Before(a.got) {
				overtaken++
				break
			}
		}
	}
	peak, refused := peers.AWS.ImportImageLoad()
	l, err := peers.Leftovers(ctx, rep.Bucket, claimed)
	if err != nil {
		b.Fatal(err)
	}

	mibs := float64(read) / (1 << 20) / wall.Seconds()
	b.Logf("load average before %s, after %s (2 cores shared with other agents' builds and tests)", load0, loadAverage())
	b.Logf("%d runs × %d MiB disk, %d import slots: all COMPLETED in %.1f s; %.1f MiB/s read from the source in total", n, mib, slots, wall.Seconds(), mibs)
	b.Logf("daemon peak RSS (VmHWM) %.0f MiB, CPU %.1f s (user + system, since it started)", float64(hwm)/(1<<20), cpu)
	b.Logf("run start → AMI: p50 %.1f s, p99 %.1f s, slowest %.1f s (%.2f × p50)", pct(0.5).Seconds(), pct(0.99).Seconds(), toAMI[len(toAMI)-1].Seconds(),
		toAMI[len(toAMI)-1].Seconds()/pct(0.5).Seconds())
	b.Logf("import tasks at once at the emulator: peak %d (quota %d), refused %d; %d runs waited for a slot, longest %.1f s, overtaken %d",
		peak, slots, refused, len(grants), longest.Seconds(), overtaken)
	b.Logf("peers: %s", l)
	b.ReportMetric(mibs, "MiB/s")
	b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(cpu, "daemon-cpu-s")
	b.ReportMetric(pct(0.5).Seconds(), "p50-s")
	b.ReportMetric(pct(0.99).Seconds(), "p99-s")
	b.ReportMetric(float64(peak), "peak-imports")
	b.ReportMetric(longest.Seconds(), "longest-slot-wait-s")
	if peak > slots || refused > 0 {
		b.Errorf("the connector ran %d import tasks at once (%d refused) against %d slots", peak, refused, slots)
	}
	if hwm > 2<<30 {
		b.Errorf("daemon peak RSS %d bytes is above 2 GiB", hwm)
	}
	if overtaken > 0 {
		b.Errorf("%d runs were overtaken by a later waiter for an import slot", overtaken)
	}
	if !l.Empty() {
		b.Errorf("left behind at the peers: %s", l)
	}
}
