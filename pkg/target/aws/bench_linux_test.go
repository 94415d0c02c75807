//go:build linux

package aws

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rehost/rehost/internal/lab/s3peer"
)

// BenchmarkStage stages streams of unknown length into versitygw over TLS on
// loopback with rehost's Stage, the SDK's manager.Uploader and
// transfermanager, and rclone (when .tools/bin/rclone exists; see
// scripts/bench-staging), all with 16 MiB parts, 4 concurrent parts and
// CRC32C. Per run it reports MiB/s, CPU seconds of the uploading process
// (for rclone: rclone plus the generator feeding it) and peak RSS. The
// "generate-only" rows measure the data generator alone; "rehost-resumable"
// records parts for resume (a Tracker set, as the run sets it), which adds a SHA-256 per part. -short scales the
// data down 8×.
func BenchmarkStage(b *testing.B) {
	const part, conc = 16 << 20, 4
	srv := s3peer.Start(b, s3peer.Options{TLS: true, NoFront: true})
	ctx := context.Background()
	client := srv.S3Client()
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: sdk.String("bench")}); err != nil {
		b.Fatal(err)
	}
	tg, err := New(ctx, Config{Region: srv.Region, AccessKeyID: srv.AccessKeyID, SecretAccessKey: srv.SecretAccessKey,
		Endpoints: Endpoints{S3: srv.URL}, S3PathStyle: true, HTTPClient: srv.HTTPClient(), Bucket: "bench",
		Concurrency: conc, PartSize: part})
	if err != nil {
		b.Fatal(err)
	}
	up := manager.NewUploader(client, func(u *manager.Uploader) { u.PartSize, u.Concurrency = part, conc })
	tm := transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes, o.Concurrency, o.ChecksumAlgorithm = part, conc, tmtypes.ChecksumAlgorithmCrc32c
	})
	rclone := filepath.Join(repoRoot(b), ".tools", "bin", "rclone")

	type uploader struct {
		name string
		run  func(key string, r io.Reader) error
	}
	uploaders := []uploader{
		{"generate-only", func(_ string, r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }},
		{"rehost", func(key string, r io.Reader) error {
			_, err := tg.Stage(ctx, StageInput{Key: key, Body: r, SizeHint: -1})
			return err
		}},
		{"rehost-resumable", func(key string, r io.Reader) error {
			_, err := tg.Stage(ctx, StageInput{Key: key, Body: r, SizeHint: -1, Tracker: new(Tracker)})
			return err
		}},
		{"sdk-manager", func(key string, r io.Reader) error {
			_, err := up.Upload(ctx, &s3.PutObjectInput{Bucket: sdk.String("bench"), Key: sdk.String(key), Body: r,
				ServerSideEncryption: types.ServerSideEncryptionAes256, ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
			return err
		}},
		{"transfermanager", func(key string, r io.Reader) error {
			_, err := tm.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: sdk.String("bench"), Key: sdk.String(key), Body: r,
				ServerSideEncryption: tmtypes.ServerSideEncryptionAes256})
			return err
		}},
		{"rclone", func(key string, r io.Reader) error {
			if _, err := os.Stat(rclone); err != nil {
				return errSkip
			}
			cmd := exec.Command(rclone, "rcat", "--s3-chunk-size", "16M", "--s3-upload-concurrency", "4",
				"--ca-cert", srv.CertFile, "x:bench/"+key)
			cmd.Env = append(os.Environ(), "RCLONE_CONFIG="+filepath.Join(b.TempDir(), "none.conf"),
				"RCLONE_CONFIG_X_TYPE=s3", "RCLONE_CONFIG_X_PROVIDER=Other", "RCLONE_CONFIG_X_ENV_AUTH=false",
				"RCLONE_CONFIG_X_ACCESS_KEY_ID="+srv.AccessKeyID, "RCLONE_CONFIG_X_SECRET_ACCESS_KEY="+srv.SecretAccessKey,
				"RCLONE_CONFIG_X_ENDPOINT="+srv.URL, "RCLONE_CONFIG_X_REGION="+srv.Region,
				"RCLONE_CONFIG_X_FORCE_PATH_STYLE=true", "RCLONE_CONFIG_X_SERVER_SIDE_ENCRYPTION=AES256")
			cmd.Stdin = r
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("rclone rcat: %w: %s", err, out.String())
			}
			childRSS = cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
			return nil
		}},
	}
	scale := int64(1)
	if testing.Short() {
		scale = 8
	}
	datasets := []struct {
		name string
		size int64
		zero bool
	}{{"random-2GiB", 2 << 30 / scale, false}, {"mostly-zero-4GiB", 4 << 30 / scale, true}}

	for _, ds := range datasets {
		for _, u := range uploaders {
			b.Run(ds.name+"/"+u.name, func(b *testing.B) {
				b.SetBytes(ds.size)
				var cpu, secs float64
				var peak int64
				for i := 0; i < b.N; i++ {
					key := fmt.Sprintf("%s/%s/%d", ds.name, u.name, i)
					g := newGen(uint64(i+1), ds.size)
					g.zeroEvery, g.h = ds.zero, nil
					runtime.GC()
					debug.FreeOSMemory()
					resetPeakRSS()
					childRSS = 0
					self0, child0 := cpuTime(syscall.RUSAGE_SELF), cpuTime(syscall.RUSAGE_CHILDREN)
					start := time.Now()
					err := u.run(key, g)
					if err == errSkip {
						b.Skip("rclone not installed (run scripts/bench-staging)")
					}
					if err != nil {
						b.Fatalf("%s: %v", u.name, err)
					}
					secs += time.Since(start).Seconds()
					cpu += cpuTime(syscall.RUSAGE_SELF) - self0 + cpuTime(syscall.RUSAGE_CHILDREN) - child0
					peak = max(peak, peakRSS(), childRSS)
					if u.name != "generate-only" {
						h, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: sdk.String("bench"), Key: sdk.String(key)})
						if err != nil || sdk.ToInt64(h.ContentLength) != ds.size {
							b.Fatalf("%s: object %s not stored whole: %v", u.name, key, err)
						}
						client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: sdk.String("bench"), Key: sdk.String(key)})
					}
				}
				b.ReportMetric(float64(ds.size*int64(b.N))/(1<<20)/secs, "MiB/s")
				b.ReportMetric(cpu/float64(b.N), "cpu-s/op")
				b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
			})
		}
	}
}

var (
	errSkip  = fmt.Errorf("skip")
	childRSS int64
)

func cpuTime(who int) float64 {
	var ru syscall.Rusage
	syscall.Getrusage(who, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// resetPeakRSS restarts the kernel's high-water mark of this process's RSS
// (Linux ≥ 4.0), so each run's peak is its own.
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS is VmHWM of this process, in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}

func repoRoot(tb testing.TB) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		tb.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}
