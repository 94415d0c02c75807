//go:build linux

package aws

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rehost/rehost/internal/lab/s3peer"
)

// BenchmarkStage is the staging benchmark of docs/benchmarks.md: rehost's
// staging as the stage step runs it (raw and streamOptimized VMDK) beside
// the SDK's manager.Uploader and transfermanager, s5cmd and rclone (pinned
// builds in .tools/bin; scripts/bench-staging installs them) and
// `qemu-img convert` followed by the SDK manager, uploading over TLS into a
// discard S3 endpoint (s3peer.Sink, which counts the bytes on the wire) and
// into versitygw. Workloads are random data, a sparse file (mostly holes)
// and a real file-system image (a tar of /usr cut to size), each read from
// the file and from a pipe; rehost-runs stages the random file as 16
// disks, 4 runs at a time, with the buffers of one pool (the connector's)
// or of a pool per run (rehost-runs-apart). Every upload is a process of its own; the
// tools alternate within one loop, repeated REHOST_BENCH_REPS times
// (default 3). -short scales the data down 8×. REHOST_BENCH_ENDPOINTS
// (default "discard,versitygw"), REHOST_BENCH_WORKLOADS and
// REHOST_BENCH_TOOLS (comma lists) narrow the matrix. With REHOST_BENCH_DOCS set to the repository root the
// results are written to docs/bench/staging.json and into the generated
// section of docs/benchmarks.md, with CPU profiles of rehost's hot path
// (kept in the directory REHOST_BENCH_PROFILES names, when set, for
// go tool pprof).
func BenchmarkStage(b *testing.B) {
	for i := 0; i < b.N; i++ {
		runStagingBench(b)
	}
}

// workload is one input file.
type workload struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	Allocated int64  `json:"allocated"` // bytes of data; the rest are holes (sparse) or data too
	path      string
}

// tool is one uploader.
type tool struct {
	name string
	// pipe is whether it can read a pipe; child whether it runs as a
	// re-executed test binary (childSpec) rather than its own binary.
	pipe, child bool
	fileOnly    bool
	// runs, for a child, makes it stage the file as that many disks
	// (childRuns).
	runs int
}

var benchTools = []tool{
	{name: "rehost", pipe: true, child: true},
	{name: "rehost-vmdk", pipe: true, child: true},
	{name: "sdk-manager", pipe: true, child: true},
	{name: "transfermanager", pipe: true, child: true},
	{name: "s5cmd", pipe: true},
	{name: "rclone", pipe: true},
	{name: "qemu-img+sdk-manager", child: true, fileOnly: true},
	// The random file as 16 disks, 4 runs at a time: the buffers of one
	// pool shared by every run, or a pool per run (fresh buffers each).
	{name: "rehost-runs", child: true, runs: 16},
	{name: "rehost-runs-apart", child: true, runs: 16},
}

// benchRun is one measured upload.
type benchRun struct {
	Endpoint string  `json:"endpoint"`
	Workload string  `json:"workload"`
	Source   string  `json:"source"`
	Tool     string  `json:"tool"`
	Rep      int     `json:"rep"`
	Seconds  float64 `json:"seconds"`
	CPU      float64 `json:"cpuSeconds"`
	MaxRSS   int64   `json:"maxRSSBytes"`
	Wire     int64   `json:"wireBytes"` // read by the discard endpoint; -1 for versitygw
	Object   int64   `json:"objectBytes"`
	Input    int64   `json:"inputBytes"`
	Load1    float64 `json:"load1AtStart"`
}

func runStagingBench(b *testing.B) {
	ctx := context.Background()
	reps := envInt(b, "REHOST_BENCH_REPS", 3)
	scale := int64(1)
	if testing.Short() {
		scale = 8
	}
	root := repoRoot(b)
	bin := filepath.Join(root, ".tools", "bin")
	dir := b.TempDir()
	work := []workload{
		{Name: "random", Size: 2 << 30 / scale},
		{Name: "sparse", Size: 4 << 30 / scale},
		{Name: "fs", Size: 1 << 30 / scale},
	}
	if v := os.Getenv("REHOST_BENCH_WORKLOADS"); v != "" {
		names := strings.Split(v, ",")
		work = slices.DeleteFunc(work, func(w workload) bool { return !slices.Contains(names, w.Name) })
		if len(work) == 0 {
			b.Fatalf("REHOST_BENCH_WORKLOADS=%q names none of random, sparse, fs", v)
		}
	}
	for i := range work {
		makeWorkload(b, &work[i], dir)
	}
	tools := selectTools(b, bin)
	eps := startEndpoints(b, dir)

	res := benchReport{Date: time.Now().UTC().Format(time.RFC3339), Machine: machine(), Reps: reps, Workloads: work,
		PartSize: benchPart, Concurrency: benchConc, LoadStart: loadavg()}
	for _, ep := range eps {
		res.Endpoints = append(res.Endpoints, ep.Name)
	}
	for rep := 1; rep <= reps; rep++ {
		for _, ep := range eps {
			for _, w := range work {
				for _, src := range []string{"file", "pipe"} {
					for _, t := range tools {
						if (src == "pipe" && !t.pipe) || (t.runs > 0 && w.Name != "random") {
							continue
						}
						r := measure(b, ctx, ep, w, src, t, rep, bin, dir, "")
						b.Logf("%s %s/%s %s #%d: %.0f MiB/s, %.2f CPU s/GiB, %d MiB RSS, wire %d MiB", r.Endpoint, r.Workload, r.Source, r.Tool, rep,
							mibps(r), cpuPerGiB(r), r.MaxRSS>>20, r.Wire>>20)
						res.Runs = append(res.Runs, r)
					}
				}
			}
		}
	}
	res.LoadEnd = loadavg()
	res.Rows = aggregate(res.Runs)
	res.Goals = goals(res.Rows, work)
	// Profiles of rehost's hot path, apart from the measured runs (the
	// profiler costs a little CPU of its own).
	if sink := eps[0]; sink.sink != nil && slices.ContainsFunc(tools, func(t tool) bool { return strings.HasPrefix(t.name, "rehost") }) {
		for _, p := range []struct{ title, tool, work string }{
			{"rehost, random, raw, from the file", "rehost", "random"},
			{"rehost, random, streamOptimized VMDK, from the file", "rehost-vmdk", "random"},
			{"rehost, real file-system data, streamOptimized VMDK, from the file", "rehost-vmdk", "fs"},
			{"", "sdk-manager", "random"}, // for the profile directory only
		} {
			i := slices.IndexFunc(work, func(w workload) bool { return w.Name == p.work })
			if i < 0 || (p.title == "" && os.Getenv("REHOST_BENCH_PROFILES") == "") {
				continue
			}
			w := work[i]
			prof := filepath.Join(cmp.Or(os.Getenv("REHOST_BENCH_PROFILES"), dir), "cpu-"+p.tool+"-"+p.work+".pprof")
			measure(b, ctx, sink, w, "file", tool{name: p.tool, child: true}, 0, bin, dir, prof)
			if p.title == "" {
				continue
			}
			res.Profiles = append(res.Profiles, benchProfile{Title: p.title, Top: pprofTop(b, prof)})
		}
	}
	table := res.markdown()
	b.Log("\n" + table)
	if r, ok := res.row("discard", "random", "file", "rehost"); ok {
		b.ReportMetric(r.CPUPerGiB, "rehost-random-cpu-s/GiB")
		b.ReportMetric(r.MiBps, "rehost-random-MiB/s")
	}
	if docs := os.Getenv("REHOST_BENCH_DOCS"); docs != "" {
		if err := res.write(docs, table); err != nil {
			b.Fatal(err)
		}
	}
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// selectTools is benchTools narrowed by REHOST_BENCH_TOOLS; s5cmd and
// rclone must be installed (scripts/bench-staging does it).
func selectTools(b *testing.B, bin string) []tool {
	var want []string
	if v := os.Getenv("REHOST_BENCH_TOOLS"); v != "" {
		want = strings.Split(v, ",")
	}
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		b.Fatalf("/usr/bin/time (GNU time) is not installed: run scripts/deps.sh")
	}
	var out []tool
	for _, t := range benchTools {
		if want != nil && !slices.Contains(want, t.name) {
			continue
		}
		if !t.child {
			if _, err := os.Stat(filepath.Join(bin, t.name)); err != nil {
				b.Fatalf("%s is not installed in %s: run scripts/bench-staging (it builds the pinned peers)", t.name, bin)
			}
		}
		if t.name == "qemu-img+sdk-manager" {
			if _, err := exec.LookPath("qemu-img"); err != nil {
				b.Fatalf("qemu-img is not installed: run scripts/deps.sh")
			}
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		b.Fatalf("REHOST_BENCH_TOOLS=%q names none of the tools", os.Getenv("REHOST_BENCH_TOOLS"))
	}
	return out
}

// benchEndpoint is an endpoint with what the harness needs to check it.
type benchEndpoint struct {
	endpoint
	sink   *s3peer.Sink
	client *s3.Client
}

func startEndpoints(b *testing.B, dir string) []benchEndpoint {
	names := []string{"discard", "versitygw"}
	if v := os.Getenv("REHOST_BENCH_ENDPOINTS"); v != "" {
		names = strings.Split(v, ",")
	}
	var out []benchEndpoint
	for _, n := range names {
		var ep benchEndpoint
		switch n {
		case "discard":
			s := s3peer.StartSink(b)
			ep = benchEndpoint{endpoint: endpoint{Name: n, URL: s.URL, Region: s.Region, AccessKeyID: s.AccessKeyID,
				SecretAccessKey: s.SecretAccessKey, CAFile: s.CertFile, Bucket: "bench"}, sink: s}
		case "versitygw":
			s := s3peer.Start(b, s3peer.Options{TLS: true, NoFront: true})
			ep = benchEndpoint{endpoint: endpoint{Name: n, URL: s.URL, Region: s.Region, AccessKeyID: s.AccessKeyID,
				SecretAccessKey: s.SecretAccessKey, CAFile: s.CertFile, Bucket: "bench"}}
		default:
			b.Fatalf("REHOST_BENCH_ENDPOINTS: unknown endpoint %q (want discard or versitygw)", n)
		}
		c, err := ep.s3Client()
		if err != nil {
			b.Fatal(err)
		}
		ep.client = c
		if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: sdk.String(ep.Bucket)}); err != nil {
			b.Fatalf("%s: create bucket: %v", n, err)
		}
		out = append(out, ep)
	}
	return out
}

// makeWorkload writes w's file: random bytes; a sparse file with 1.6 % of
// it in random data at random places; or the start of a tar of /usr (real
// file-system content: binaries, libraries, text, already-compressed
// files), sorted by name so reruns read the same bytes.
func makeWorkload(b *testing.B, w *workload, dir string) {
	w.path = filepath.Join(dir, w.Name+".img")
	f, err := os.Create(w.path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{byte(len(w.Name))})
	switch w.Name {
	case "random":
		_, err = io.CopyN(f, rng, w.Size)
		w.Allocated = w.Size
	case "sparse":
		err = f.Truncate(w.Size)
		pick := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 1<<20)
		for w.Allocated < w.Size*16/1000 && err == nil {
			n := int64(64<<10) << pick.IntN(5) // 64 KiB to 1 MiB
			off := pick.Int64N(w.Size/n) * n
			rng.Read(buf[:n])
			_, err = f.WriteAt(buf[:n], off)
			w.Allocated += n // overlaps are rare at this density; counted as written
		}
	case "fs":
		cmd := exec.Command("tar", "--sort=name", "--ignore-failed-read", "-cf", "-", "/usr")
		out, perr := cmd.StdoutPipe()
		if perr != nil {
			b.Fatal(perr)
		}
		cmd.Stderr = io.Discard
		if err = cmd.Start(); err == nil {
			var n int64
			n, err = io.CopyN(f, out, w.Size)
			cmd.Process.Kill()
			cmd.Wait()
			if err != nil {
				err = fmt.Errorf("a tar of /usr gave only %d bytes: %w", n, err)
			}
		}
		w.Allocated = w.Size
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		b.Fatalf("make the %s workload: %v", w.Name, err)
	}
}

// measure runs one upload in a process of its own and checks the object
// it stored; profile, when set, asks the child for a CPU profile.
func measure(b *testing.B, ctx context.Context, ep benchEndpoint, w workload, src string, t tool, rep int, bin, dir, profile string) benchRun {
	key := fmt.Sprintf("%s/%s/%s/%d", w.Name, src, t.name, rep)
	var cmd *exec.Cmd
	if t.child {
		spec, _ := json.Marshal(childSpec{Tool: t.name, Source: src, Path: w.path, Size: w.Size, Key: key, Ep: ep.endpoint, TmpDir: dir,
			CPUProfile: profile, Runs: t.runs})
		cmd = exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	} else {
		cmd = peerCommand(bin, t.name, ep, src, w.path, key, dir)
	}
	var in *os.File
	if src == "pipe" {
		f, err := os.Open(w.path)
		if err != nil {
			b.Fatal(err)
		}
		in = f
		// Not an *os.File, so exec copies it into a pipe.
		cmd.Stdin = struct{ io.Reader }{f}
	}
	// GNU time forks the tool from its own small process and reports the
	// tool's rusage (children included): a child forked from this large
	// test process would start with its peak RSS.
	stat := filepath.Join(dir, "time.out")
	cmd.Args = append([]string{"/usr/bin/time", "-f", "%U %S %M", "-o", stat, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = "/usr/bin/time"
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runtime.GC()
	r := benchRun{Endpoint: ep.Name, Workload: w.Name, Source: src, Tool: t.name, Rep: rep, Input: w.Size, Wire: -1, Load1: loadavg()[0]}
	var wire0 int64
	if ep.sink != nil {
		wire0 = ep.sink.WireBytes()
	}
	start := time.Now()
	err := cmd.Run()
	r.Seconds = time.Since(start).Seconds()
	if in != nil {
		in.Close()
	}
	if err != nil {
		b.Fatalf("%s %s from %s into %s: %v\n%s%s", t.name, w.Name, src, ep.Name, err, stdout.String(), stderr.String())
	}
	tb, err := os.ReadFile(stat)
	var user, sys float64
	var kib int64
	if _, serr := fmt.Sscanf(string(lastLine(tb)), "%f %f %d", &user, &sys, &kib); err != nil || serr != nil {
		b.Fatalf("%s: read /usr/bin/time's figures: %v %v: %q", t.name, err, serr, tb)
	}
	r.CPU, r.MaxRSS = user+sys, kib<<10
	if ep.sink != nil {
		r.Wire = ep.sink.WireBytes() - wire0
	}
	want, keys := w.Size, []string{key}
	if t.child {
		var cr childResult
		if err := json.Unmarshal(bytes.TrimSpace(lastLine(stdout.Bytes())), &cr); err != nil {
			b.Fatalf("%s: no result on stdout: %v: %q", t.name, err, stdout.String())
		}
		want = cr.Object
		if cr.Keys != nil {
			keys = cr.Keys
		}
	}
	for _, k := range keys {
		h, err := ep.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: sdk.String(ep.Bucket), Key: sdk.String(k)})
		if err != nil {
			b.Fatalf("%s %s from %s: the object %s is not in %s: %v", t.name, w.Name, src, k, ep.Name, err)
		}
		r.Object += sdk.ToInt64(h.ContentLength)
		if _, err := ep.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: sdk.String(ep.Bucket), Key: sdk.String(k)}); err != nil {
			b.Fatalf("delete %s: %v", k, err)
		}
	}
	if r.Object != want || (t.name != "rehost-vmdk" && t.name != "qemu-img+sdk-manager" && r.Object != w.Size) {
		b.Fatalf("%s %s from %s: %s holds %d bytes, want %d", t.name, w.Name, src, ep.Name, r.Object, want)
	}
	return r
}

func lastLine(b []byte) []byte {
	b = bytes.TrimRight(b, "\n")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

// peerCommand is the command line a user would script with s5cmd or
// rclone: the same part size and parts in flight, SSE-S3, the endpoint's
// certificate trusted.
func peerCommand(bin, name string, ep benchEndpoint, src, path, key, dir string) *exec.Cmd {
	var cmd *exec.Cmd
	switch name {
	case "s5cmd":
		args := []string{"--endpoint-url", ep.URL}
		if src == "file" {
			args = append(args, "cp", "-c", "4", "-p", "16", "--sse", "AES256", path, "s3://"+ep.Bucket+"/"+key)
		} else {
			args = append(args, "pipe", "-c", "4", "-p", "16", "--sse", "AES256", "s3://"+ep.Bucket+"/"+key)
		}
		cmd = exec.Command(filepath.Join(bin, "s5cmd"), args...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+ep.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+ep.SecretAccessKey,
			"AWS_REGION="+ep.Region, "AWS_CA_BUNDLE="+ep.CAFile)
	case "rclone":
		args := []string{"--s3-chunk-size", "16M", "--s3-upload-concurrency", "4", "--s3-no-check-bucket", "--ca-cert", ep.CAFile}
		if src == "file" {
			args = append(args, "copyto", path, "x:"+ep.Bucket+"/"+key)
		} else {
			args = append(args, "rcat", "x:"+ep.Bucket+"/"+key)
		}
		cmd = exec.Command(filepath.Join(bin, "rclone"), args...)
		cmd.Env = append(os.Environ(), "RCLONE_CONFIG="+filepath.Join(dir, "none.conf"),
			"RCLONE_CONFIG_X_TYPE=s3", "RCLONE_CONFIG_X_PROVIDER=Other", "RCLONE_CONFIG_X_ENV_AUTH=false",
			"RCLONE_CONFIG_X_ACCESS_KEY_ID="+ep.AccessKeyID, "RCLONE_CONFIG_X_SECRET_ACCESS_KEY="+ep.SecretAccessKey,
			"RCLONE_CONFIG_X_ENDPOINT="+ep.URL, "RCLONE_CONFIG_X_REGION="+ep.Region,
			"RCLONE_CONFIG_X_FORCE_PATH_STYLE=true", "RCLONE_CONFIG_X_SERVER_SIDE_ENCRYPTION=AES256")
	}
	return cmd
}

func loadavg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	for i, f := range strings.Fields(string(b))[:3] {
		l[i], _ = strconv.ParseFloat(f, 64)
	}
	return l
}

func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s, %s/%s", runtime.NumCPU(), model, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// pprofTop is `go tool pprof -top` of a profile, its header and first
// lines.
func pprofTop(b *testing.B, prof string) string {
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=22", prof).CombinedOutput()
	if err != nil {
		b.Fatalf("go tool pprof -top %s: %v\n%s", prof, err, out)
	}
	return strings.TrimSpace(string(out))
}

func repoRoot(tb testing.TB) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		tb.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}
