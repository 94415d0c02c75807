//go:build linux

package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/store"
)

// simChildEnv, set to a VM count, makes the test binary a simulated
// vCenter of that many plain VMs instead of running tests: the catalog
// benchmark runs the simulator in its own process, so the figures it
// reports (time, peak RSS) are the connector's alone.
const simChildEnv = "REHOST_CATALOG_SIM_VMS"

type simInfo struct {
	URL, User, Password, Thumbprint string
	pid                             int
}

func TestMain(m *testing.M) {
	if n := os.Getenv(simChildEnv); n != "" {
		os.Exit(serveSim(n))
	}
	os.Exit(m.Run())
}

// serveSim serves a simulated vCenter of n VMs, prints how to reach it as
// one JSON line and serves until stdin closes.
func serveSim(n string) int {
	count, err := strconv.Atoi(n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vm count:", err)
		return 2
	}
	sim, err := vspheresim.Start(context.Background(), vspheresim.Options{PlainVMs: count})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer sim.Close()
	json.NewEncoder(os.Stdout).Encode(simInfo{URL: sim.URL(), User: sim.User(), Password: sim.Password(), Thumbprint: sim.Thumbprint()})
	bufio.NewReader(os.Stdin).ReadString('\n')
	return 0
}

// startSimProcess starts a simulated vCenter of n VMs in a child process.
func startSimProcess(tb testing.TB, n int) simInfo {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), simChildEnv+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("simulated vcenter of %d vms did not start: %v", n, err)
	}
	var info simInfo
	if err := json.Unmarshal([]byte(line), &info); err != nil {
		tb.Fatalf("simulated vcenter: %q: %v", line, err)
	}
	info.pid = cmd.Process.Pid
	return info
}

// peakRSS is the process's peak resident set (VmHWM) in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// procCPU is the CPU time (user and system) process pid has used.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// After the command in parentheses: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCatalog10k imports a catalog of 10,000 VMs from a simulated
// vCenter (in another process) into a fresh state directory: the
// inventory, the catalog writes and each server's preflight. It reports
// seconds per import, the connector's CPU seconds per import (the
// simulator's, also reported, are its own process's), the process's peak
// RSS and the peak Go heap seen.
func BenchmarkCatalog10k(b *testing.B) {
	const n = 10000
	info := startSimProcess(b, n)
	ctx := context.Background()
	b.ResetTimer()
	var peakHeap uint64
	var cpu, simCPU time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		d, err := Open(ctx, b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		src, err := d.AddSource(ctx, SourceInput{Kind: store.SourceVSphere, Name: "vc", URL: info.URL,
			User: info.User, Password: info.Password, Thumbprint: info.Thumbprint})
		if err != nil {
			b.Fatal(err)
		}
		stop := make(chan struct{})
		sampled := make(chan uint64)
		go func() {
			var peak uint64
			var ms runtime.MemStats
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
				select {
				case <-stop:
					sampled <- peak
					return
				case <-t.C:
				}
			}
		}()
		b.StartTimer()
		cpu0, sim0 := cpuTime(), procCPU(info.pid)
		servers, err := d.ImportCatalog(ctx, src.ID)
		cpu += cpuTime() - cpu0
		simCPU += procCPU(info.pid) - sim0
		b.StopTimer()
		close(stop)
		peakHeap = max(peakHeap, <-sampled)
		if err != nil {
			b.Fatal(err)
		}
		if len(servers) != n {
			b.Fatalf("imported %d servers, want %d", len(servers), n)
		}
		d.Close()
		b.StartTimer()
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/import")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "client-CPU-s/import")
	b.ReportMetric(simCPU.Seconds()/float64(b.N), "sim-CPU-s/import")
	b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MiB")
}
