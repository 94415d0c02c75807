//go:build linux

package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
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
)

// Sizes of BenchmarkIncremental's data disk: 20 GiB, of which allocated
// holds data (32 stretches of 64 MiB across it), and a delta rewriting 1 %
// of its blocks.
const (
	benchDisk      = 20 << 30
	benchAllocated = 2 << 30
	benchStretch   = 64 << 20
)

// cpuSeconds is the user and system CPU time of process pid so far, from
// /proc (clock ticks of 1/100 s).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, err1 := strconv.ParseFloat(f[11], 64)
	s, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return (u + s) / 100, nil
}

func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// BenchmarkIncremental measures `rehost serve` (a process of its own; the
// peers run in the benchmark's process) replicating a VM whose data disk is
// 20 GiB with 2 GiB allocated: the incremental seed, a delta after 1 % of
// the disk's blocks were rewritten, and a full run (S3 and VM Import) of
// the same VM. It reports, per run, the bytes sent to AWS, the wall time
// and the CPU seconds of the connector process. Run by scripts/bench;
// docs/benchmarks.md has the figures.
func BenchmarkIncremental(b *testing.B) {
	for b.Loop() {
		benchIncremental(b)
	}
}

func benchIncremental(b *testing.B) {
	bin := buildRehost(b)
	ctx := context.Background()
	dir := b.TempDir()
	data := func(w io.WriterAt) error {
		for k := range int64(benchAllocated / benchStretch) {
			off := k * (benchDisk / (benchAllocated / benchStretch))
			if err := vspheresim.PseudoRandom(w, uint64(k), off, benchStretch); err != nil {
				return err
			}
		}
		return nil
	}
	vms := []vspheresim.VMSpec{{Name: "big", Firmware: "bios", PowerOn: true, ToolsRunning: true, Disks: []vspheresim.DiskSpec{
		{CapacityBytes: 32 << 20, Seed: vspheresim.GuestDisk(guestdisk.Options{Size: 32 << 20, Firmware: guestdisk.BIOS, Seed: 3})},
		{CapacityBytes: benchDisk, Seed: data},
	}}}
	peers, err := StartPeers(ctx, PeerOptions{Dir: filepath.Join(dir, "peers"), VMs: vms, ImportDuration: time.Second})
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
	if _, err := d.Register(ctx, settings, awstarget.SetupOptions{CreateRole: true}); err != nil {
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
	j, err := d.Store.CreateJob(ctx, store.ReplicationJob{ServerID: servers[0].ServerID, Mode: store.ModeIncremental,
		SeedReplicationTime: time.Now().Add(24 * time.Hour), Frequency: 24, LicenseType: store.LicenseAWS})
	if err != nil {
		b.Fatal(err)
	}
	d.Close()

	logf, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve", "--state-dir", stateDir, "--listen", "127.0.0.1:0", "--resync", "200ms", "--on-demand-per-24h", "-1")
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

	type result struct {
		name, key  string
		sent, read int64
		wall, cpu  float64
	}
	var results []result
	run := func(key, name string) store.ReplicationRun {
		cpu0, _ := cpuSeconds(cmd.Process.Pid)
		t0 := time.Now()
		made, err := st.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: j.ReplicationJobID, Type: store.RunOnDemand, State: store.RunPending, ScheduledStartTime: time.Now()})
		if err != nil {
			b.Fatal(err)
		}
		r := made[0]
		for {
			if r, err = st.GetRun(ctx, r.ReplicationRunID); err != nil {
				b.Fatal(err)
			}
			if r.State == store.RunCompleted || r.State == store.RunFailed {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if r.State != store.RunCompleted {
			log, _ := os.ReadFile(logf.Name())
			b.Fatalf("%s: %s: %s\n%s", name, r.State, r.StatusMessage, tail(log, 30))
		}
		cpu1, _ := cpuSeconds(cmd.Process.Pid)
		res := result{name: name, key: key, wall: time.Since(t0).Seconds(), cpu: cpu1 - cpu0}
		if rep := r.Replication; rep != nil && rep.FullBecause == "" {
			res.sent, res.read = rep.BytesSent, rep.BytesRead
		} else {
			for _, dp := range r.Progress.Disks {
				res.sent += dp.BytesDone
			}
			res.read = res.sent
		}
		results = append(results, res)
		return r
	}
	run("seed", "incremental seed")
	// 1 % of the data disk's blocks rewritten at random.
	rng := rand.New(rand.NewPCG(9, 9))
	blocks := int64(benchDisk / awstarget.BlockSize)
	buf := make([]byte, awstarget.BlockSize)
	for range blocks / 100 {
		for k := range buf {
			buf[k] = byte(rng.Uint32())
		}
		if err := peers.Sim.WriteDisk("big", 1, rng.Int64N(blocks)*awstarget.BlockSize, buf); err != nil {
			b.Fatal(err)
		}
	}
	run("delta", "incremental delta (1 % of blocks)")
	if _, err := st.UpdateJob(ctx, j.ReplicationJobID, func(x *store.ReplicationJob) error {
		x.Mode = store.ModeFull
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	run("full", "full (S3 and VM Import)")
	b.Logf("load average %s; boot disk 32 MiB, data disk 20 GiB with 2 GiB allocated", loadAverage())
	b.Logf("%-36s %12s %12s %9s %9s", "run", "sent", "read", "wall s", "cpu s")
	for _, r := range results {
		b.Logf("%-36s %12d %12d %9.1f %9.1f", r.name, r.sent, r.read, r.wall, r.cpu)
		b.ReportMetric(float64(r.sent)/(1<<20), r.key+"-MiB-sent")
		b.ReportMetric(r.cpu, r.key+"-cpu-s")
		b.ReportMetric(r.wall, r.key+"-wall-s")
	}
}
