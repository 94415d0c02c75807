//go:build linux

package daemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
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

// simFoldersEnv spreads the child's VMs over this many folders
// (vspheresim.Options.PlainFolders).
const simFoldersEnv = "REHOST_CATALOG_SIM_FOLDERS"

type simInfo struct {
	URL, User, Password, Thumbprint string
	pid                             int
	cmd                             io.Writer
	replies                         *bufio.Reader
}

// do sends the child a command and returns its answer after "ok".
func (s simInfo) do(cmd string) (string, error) {
	if _, err := fmt.Fprintln(s.cmd, cmd); err != nil {
		return "", err
	}
	line, err := s.replies.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSpace(line)
	if rest, ok := strings.CutPrefix(line, "ok"); ok {
		return strings.TrimSpace(rest), nil
	}
	return "", errors.New(line)
}

// rename renames the folder at path in the child's vCenter.
func (s simInfo) rename(path, name string) error {
	_, err := s.do("rename " + path + " " + name)
	return err
}

// updated is when the child's front passed on the first answer with
// updates since the last call.
func (s simInfo) updated() (time.Time, error) {
	out, err := s.do("updated")
	if err != nil {
		return time.Time{}, err
	}
	ns, err := strconv.ParseInt(out, 10, 64)
	if err != nil || ns <= 0 {
		return time.Time{}, fmt.Errorf("no update was passed on (%q)", out)
	}
	return time.Unix(0, ns), nil
}

// replayed are the requests the child's replay front answered from its
// recording and passed on to the simulator since the last call.
func (s simInfo) replayed() (hits, misses int, err error) {
	out, err := s.do("counts")
	if err != nil {
		return 0, 0, err
	}
	_, err = fmt.Sscan(out, &hits, &misses)
	return hits, misses, err
}

func TestMain(m *testing.M) {
	if n := os.Getenv(simChildEnv); n != "" {
		os.Exit(serveSim(n))
	}
	os.Exit(m.Run())
}

// simReplayEnv, set, puts a replay front before the child's simulator:
// the connector is given the front's address.
const simReplayEnv = "REHOST_CATALOG_SIM_REPLAY"

// serveSim serves a simulated vCenter of n VMs, prints how to reach it as
// one JSON line and serves until stdin closes, doing what stdin says:
// "rename <path> <new name>" (a folder), "counts" (of the replay front),
// each answered "ok…" or the error.
func serveSim(n string) int {
	count, err := strconv.Atoi(n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vm count:", err)
		return 2
	}
	folders, _ := strconv.Atoi(os.Getenv(simFoldersEnv))
	ctx := context.Background()
	sim, err := vspheresim.Start(ctx, vspheresim.Options{PlainVMs: count, PlainFolders: folders})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer sim.Close()
	info := simInfo{URL: sim.URL(), User: sim.User(), Password: sim.Password(), Thumbprint: sim.Thumbprint()}
	var front *replay
	if mode := os.Getenv(simReplayEnv); mode != "" {
		if front, err = newReplay(sim.URL()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		front.pass = mode == "pass"
		defer front.srv.Close()
		info.URL, info.Thumbprint = front.url(), front.thumbprint()
	}
	json.NewEncoder(os.Stdout).Encode(info)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 3 && f[0] == "rename":
			if err := sim.RenameFolder(ctx, f[1], f[2]); err != nil {
				fmt.Println(strings.ReplaceAll(err.Error(), "\n", " "))
				continue
			}
			fmt.Println("ok")
		case len(f) == 1 && f[0] == "updated" && front != nil:
			fmt.Println("ok", front.firstUpdate().UnixNano())
		case len(f) == 1 && f[0] == "counts" && front != nil:
			hits, misses := front.counts()
			fmt.Println("ok", hits, misses)
		default:
			fmt.Printf("unknown command %q\n", in.Text())
		}
	}
	return 0
}

// startSimProcess starts a simulated vCenter of n VMs (in folders of
// their own if folders > 0) in a child process, behind a front: "replay"
// (answers replayed), "pass" (the updates' times taken) or "" (none).
func startSimProcess(tb testing.TB, n, folders int, front string) simInfo {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), simChildEnv+"="+strconv.Itoa(n), simFoldersEnv+"="+strconv.Itoa(folders), simReplayEnv+"="+front)
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
	replies := bufio.NewReader(stdout)
	line, err := replies.ReadString('\n')
	if err != nil {
		tb.Fatalf("simulated vcenter of %d vms did not start: %v", n, err)
	}
	var info simInfo
	if err := json.Unmarshal([]byte(line), &info); err != nil {
		tb.Fatalf("simulated vcenter: %q: %v", line, err)
	}
	info.pid, info.cmd, info.replies = cmd.Process.Pid, stdin, replies
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

// replay is an HTTPS front of a vCenter that answers each request it has
// answered before (the same path and body) with the answer recorded then,
// and passes any other on, recording it: a second import against it
// costs the vCenter nothing, so its time is the connector's own. The
// connector's requests are the same each import (a fresh client, the
// same answers: the same session cookie, view and continuation tokens),
// which hits and misses count.
//
// With pass set it records nothing, only when it passed on the first
// answer of WaitForUpdatesEx with updates in it since firstUpdate was last
// called: when the connector was told of a change.
type replay struct {
	to       *url.URL
	hc       *http.Client
	pass     bool
	mu       sync.Mutex
	answers  map[string]recorded
	hits     int
	misses   int
	updated  time.Time
	srv      *httptest.Server
	upstream string
}

// firstUpdate is when the first answer with updates was passed on since
// the last call (zero if none).
func (r *replay) firstUpdate() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.updated
	r.updated = time.Time{}
	return t
}

type recorded struct {
	status int
	header http.Header
	body   []byte
}

func newReplay(upstream string) (*replay, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	r := &replay{to: u, answers: map[string]recorded{}, upstream: upstream,
		hc: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	r.srv = httptest.NewTLSServer(r)
	return r, nil
}

// url is upstream's URL with the front's address.
func (r *replay) url() string {
	u := *r.to
	u.Host = r.srv.Listener.Addr().String()
	return u.String()
}

// thumbprint is the SHA-256 fingerprint of the front's certificate.
func (r *replay) thumbprint() string {
	sum := sha256.Sum256(r.srv.Certificate().Raw)
	return hex.EncodeToString(sum[:])
}

func (r *replay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !r.pass && bytes.Contains(body, []byte("<Logout")) {
		// The recorded session is every import's: it stays logged in,
		// so a request the recording lacks passes on with its cookie.
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><LogoutResponse xmlns="urn:vim25"></LogoutResponse></soapenv:Body></soapenv:Envelope>`)
		return
	}
	key := req.URL.Path + "\x00" + string(body)
	r.mu.Lock()
	a, ok := r.answers[key]
	if ok {
		r.hits++
	} else {
		r.misses++
		if len(r.answers) > 0 && !r.pass {
			fmt.Fprintf(os.Stderr, "replay: not recorded: %.300s\n", body)
		}
	}
	r.mu.Unlock()
	if !ok {
		out, err := http.NewRequestWithContext(req.Context(), req.Method, r.to.Scheme+"://"+r.to.Host+req.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		out.Header = req.Header.Clone()
		res, err := r.hc.Do(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		a = recorded{res.StatusCode, res.Header.Clone(), b}
		if !r.pass {
			r.mu.Lock()
			r.answers[key] = a
			r.mu.Unlock()
		}
	}
	for k, v := range a.header {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(a.status)
	w.Write(a.body)
	if r.pass && bytes.Contains(body, []byte("WaitForUpdatesEx")) && bytes.Contains(a.body, []byte("objectSet>")) {
		r.mu.Lock()
		if r.updated.IsZero() {
			r.updated = time.Now()
		}
		r.mu.Unlock()
	}
}

// counts are the requests answered from the recording and passed on
// since the last call.
func (r *replay) counts() (hits, misses int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	hits, misses, r.hits, r.misses = r.hits, r.misses, 0, 0
	return hits, misses
}

// BenchmarkCatalog10k imports a catalog of 10,000 VMs from a simulated
// vCenter (in another process) into a fresh state directory: the
// inventory, the catalog writes and each server's preflight. It reports
// seconds per import, the connector's CPU seconds per import (the
// simulator's, also reported, are its own process's), the process's peak
// RSS and the peak Go heap seen. On 2 cores the simulator's CPU (more
// than twice the connector's) bounds the time: BenchmarkCatalog10kReplayed
// is the connector's own.
func BenchmarkCatalog10k(b *testing.B) {
	benchImport(b, startSimProcess(b, 10000, 0, ""), false)
}

// BenchmarkCatalog10kReplayed is BenchmarkCatalog10k against the
// simulator's recorded answers (replay, in the child process): one import
// records them before the timer starts, each timed one is answered from
// the recording, so the time is the connector's with a vCenter that
// answers at once. It also reports the requests per import and those the
// recording did not have (passed on to the simulator; 0 when every
// answer was replayed).
func BenchmarkCatalog10kReplayed(b *testing.B) {
	benchImport(b, startSimProcess(b, 10000, 0, "replay"), true)
}

func benchImport(b *testing.B, info simInfo, replayed bool) {
	const n = 10000
	ctx := context.Background()
	// open is a daemon of a fresh state with the vCenter added.
	open := func() (*Daemon, string) {
		d, err := Open(ctx, b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		src, err := d.AddSource(ctx, SourceInput{Kind: store.SourceVSphere, Name: "vc", URL: info.URL,
			User: info.User, Password: info.Password, Thumbprint: info.Thumbprint})
		if err != nil {
			b.Fatal(err)
		}
		return d, src.ID
	}
	if replayed {
		d, id := open()
		if _, err := d.ImportCatalog(ctx, id); err != nil { // records the answers
			b.Fatal(err)
		}
		d.Close()
		if _, _, err := info.replayed(); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	var peakHeap uint64
	var cpu, simCPU time.Duration
	var hits, misses int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		d, id := open()
		b.StartTimer()
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
		cpu0, sim0 := cpuTime(), procCPU(info.pid)
		servers, err := d.ImportCatalog(ctx, id)
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
		if replayed {
			h, m, err := info.replayed()
			if err != nil {
				b.Fatal(err)
			}
			hits, misses = hits+h, misses+m
		}
		b.StartTimer()
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/import")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "client-CPU-s/import")
	b.ReportMetric(simCPU.Seconds()/float64(b.N), "sim-CPU-s/import")
	b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MiB")
	if replayed {
		b.ReportMetric(float64(hits+misses)/float64(b.N), "requests/import")
		b.ReportMetric(float64(misses)/float64(b.N), "not-replayed/import")
	}
}

// BenchmarkCatalogWatch10k measures how long a folder rename in a
// simulated vCenter of 10,000 VMs (in another process, spread over 10
// folders) takes to show in the catalog of a daemon watching it: from the
// Rename_Task's end to every server of the folder's VMs having its new
// path (seen by listing the catalog every 50 ms). Each iteration renames a
// folder of 1,000 VMs; then the datacenter is renamed, which moves all
// 10,000. It reports seconds per folder rename (mean and slowest), and of
// them the seconds from vCenter's answer with the update (taken by a
// front in the child process) to the catalog, the simulator's CPU seconds
// per rename (govmomi's property collector collects the whole filter for
// every change it sees, tasks' included), the datacenter rename's seconds
// and the process's peak RSS.
func BenchmarkCatalogWatch10k(b *testing.B) {
	const n, folders = 10000, 10
	info := startSimProcess(b, n, folders, "pass")
	ctx, cancel := context.WithCancel(context.Background())
	d, err := Open(ctx, b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	src, err := d.AddSource(ctx, SourceInput{Kind: store.SourceVSphere, Name: "vc", URL: info.URL,
		User: info.User, Password: info.Password, Thumbprint: info.Thumbprint})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := d.ImportCatalog(ctx, src.ID); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.keepCatalogs(ctx)
	}()
	b.Cleanup(func() {
		cancel()
		<-done
		d.Close()
	})
	// shown waits until want servers have paths under prefix; it returns
	// how long since start, and since vCenter told the watch.
	shown := func(prefix string, want int, limit time.Duration) (time.Duration, time.Duration) {
		start := time.Now()
		for {
			servers, err := d.Store.ListServers(ctx, store.ServerFilter{SourceID: src.ID})
			if err != nil {
				b.Fatal(err)
			}
			got := 0
			for _, s := range servers {
				if strings.HasPrefix(s.Path, prefix) {
					got++
				}
			}
			if got == want {
				now := time.Now()
				told, err := info.updated()
				if err != nil {
					b.Fatal(err)
				}
				return now.Sub(start), now.Sub(told)
			}
			if time.Since(start) > limit {
				b.Fatalf("%d of %d servers under %s after %v", got, want, prefix, limit)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The watch has listed the inventory once it shows a rename.
	if err := info.rename("/DC0/vm/plain-000", "warm-000"); err != nil {
		b.Fatal(err)
	}
	shown("/DC0/vm/warm-000/", n/folders, 10*time.Minute)
	b.ResetTimer()
	var total, slowest, connector time.Duration
	var simCPU time.Duration
	for i := 0; i < b.N; i++ {
		info.updated() // none since the last
		from, to := fmt.Sprintf("plain-%03d", 1+i%(folders-1)), fmt.Sprintf("renamed-%03d", i)
		if i >= folders-1 {
			from = fmt.Sprintf("renamed-%03d", i-(folders-1))
		}
		sim0 := procCPU(info.pid)
		if err := info.rename("/DC0/vm/"+from, to); err != nil {
			b.Fatal(err)
		}
		took, own := shown("/DC0/vm/"+to+"/", n/folders, 5*time.Minute)
		simCPU += procCPU(info.pid) - sim0
		total += took
		connector += own
		slowest = max(slowest, took)
	}
	b.StopTimer()
	info.updated()
	if err := info.rename("/DC0", "DC9"); err != nil {
		b.Fatal(err)
	}
	dc, dcOwn := shown("/DC9/vm/", n, 10*time.Minute)
	b.ReportMetric(total.Seconds()/float64(b.N), "s/folder-rename")
	b.ReportMetric(slowest.Seconds(), "slowest-s/folder-rename")
	b.ReportMetric(connector.Seconds()/float64(b.N), "s-from-update/folder-rename")
	b.ReportMetric(simCPU.Seconds()/float64(b.N), "sim-CPU-s/folder-rename")
	b.ReportMetric(dc.Seconds(), "s/datacenter-rename")
	b.ReportMetric(dcOwn.Seconds(), "s-from-update/datacenter-rename")
	b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MiB")
}
