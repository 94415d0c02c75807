//go:build linux

package aws

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rehost/rehost/pkg/disk"
)

// The staging benchmark measures every uploader as a process of its own
// (CPU and peak RSS from wait4, children included), so the endpoint serving
// it and the harness feeding a pipe are never counted. The Go uploaders run
// in this test binary, re-executed with childEnv holding a childSpec.
const childEnv = "REHOST_BENCH_CHILD"

// benchPart and benchConc are every uploader's part size and parts in
// flight: the product's defaults (Config).
const benchPart, benchConc = 16 << 20, 4

// childSpec is one upload for a child to perform.
type childSpec struct {
	Tool   string   `json:"tool"`
	Source string   `json:"source"` // "file" (Path) or "pipe" (stdin)
	Path   string   `json:"path"`
	Size   int64    `json:"size"`
	Key    string   `json:"key"`
	Ep     endpoint `json:"endpoint"`
	TmpDir string   `json:"tmpDir"`
	// CPUProfile, when set, is where the child writes a CPU profile of the
	// upload (what go test -cpuprofile records).
	CPUProfile string `json:"cpuProfile,omitempty"`
	// Runs, for rehost-runs and rehost-runs-apart, cuts the file into that
	// many disks staged as separate runs, runsAtOnce at a time.
	Runs int `json:"runs,omitempty"`
}

// endpoint is an S3 endpoint on loopback and how to reach it.
type endpoint struct {
	Name            string `json:"name"`
	URL             string `json:"url"`
	Region          string `json:"region"`
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
	CAFile          string `json:"caFile"`
	Bucket          string `json:"bucket"`
}

// childResult is what a child prints on stdout: the stored object's size
// (the objects' total, and their keys, when it staged several).
type childResult struct {
	Object int64    `json:"object"`
	Keys   []string `json:"keys,omitempty"`
}

func TestMain(m *testing.M) {
	if os.Getenv(floorSinkEnv) != "" {
		os.Exit(runFloorSink())
	}
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(benchChild(spec))
	}
	os.Exit(m.Run())
}

func benchChild(raw string) int {
	var spec childSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "bench child: %s: %v\n", childEnv, err)
		return 2
	}
	if spec.CPUProfile != "" {
		f, err := os.Create(spec.CPUProfile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench child: %v\n", err)
			return 2
		}
		pprof.StartCPUProfile(f)
		defer f.Close()
	}
	res := childResult{}
	var err error
	if spec.Runs > 0 {
		res, err = childRuns(context.Background(), spec)
	} else {
		res.Object, err = childUpload(context.Background(), spec)
	}
	pprof.StopCPUProfile()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench child %s from %s: %v\n", spec.Tool, spec.Source, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// httpClient trusts the endpoint's certificate, as the SDK's own client
// does with AWS_CA_BUNDLE.
func (e endpoint) httpClient() (*awshttp.BuildableClient, error) {
	pem, err := os.ReadFile(e.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", e.CAFile)
	}
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}), nil
}

func (e endpoint) s3Client() (*s3.Client, error) {
	hc, err := e.httpClient()
	if err != nil {
		return nil, err
	}
	return s3.New(s3.Options{Region: e.Region, BaseEndpoint: sdk.String(e.URL), UsePathStyle: true, HTTPClient: hc,
		Credentials: credentials.NewStaticCredentialsProvider(e.AccessKeyID, e.SecretAccessKey, "")}), nil
}

// input opens the workload: the file, or stdin for a pipe (only a reader,
// so no uploader takes it for a file it could seek).
func (spec childSpec) input() (io.Reader, error) {
	if spec.Source == "pipe" {
		return struct{ io.Reader }{os.Stdin}, nil
	}
	return os.Open(spec.Path)
}

func childUpload(ctx context.Context, spec childSpec) (int64, error) {
	switch spec.Tool {
	case "rehost", "rehost-vmdk":
		return childRehost(ctx, spec)
	case "sdk-manager":
		in, err := spec.input()
		if err != nil {
			return 0, err
		}
		return sdkManagerUpload(ctx, spec, in)
	case "qemu-img+sdk-manager":
		vmdk := filepath.Join(spec.TmpDir, "qemu.vmdk")
		defer os.Remove(vmdk)
		out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", spec.Path, vmdk).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("qemu-img convert: %w: %s", err, out)
		}
		f, err := os.Open(vmdk)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		return sdkManagerUpload(ctx, spec, f)
	case "transfermanager":
		in, err := spec.input()
		if err != nil {
			return 0, err
		}
		client, err := spec.Ep.s3Client()
		if err != nil {
			return 0, err
		}
		tm := transfermanager.New(client, func(o *transfermanager.Options) {
			o.PartSizeBytes, o.Concurrency, o.ChecksumAlgorithm = benchPart, benchConc, tmtypes.ChecksumAlgorithmCrc32c
		})
		_, err = tm.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: sdk.String(spec.Ep.Bucket), Key: sdk.String(spec.Key),
			Body: in, ServerSideEncryption: tmtypes.ServerSideEncryptionAes256})
		return headSize(ctx, client, spec, err)
	}
	return 0, fmt.Errorf("unknown tool %q", spec.Tool)
}

func sdkManagerUpload(ctx context.Context, spec childSpec, body io.Reader) (int64, error) {
	client, err := spec.Ep.s3Client()
	if err != nil {
		return 0, err
	}
	up := manager.NewUploader(client, func(u *manager.Uploader) { u.PartSize, u.Concurrency = benchPart, benchConc })
	_, err = up.Upload(ctx, &s3.PutObjectInput{Bucket: sdk.String(spec.Ep.Bucket), Key: sdk.String(spec.Key), Body: body,
		ServerSideEncryption: types.ServerSideEncryptionAes256, ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
	return headSize(ctx, client, spec, err)
}

// headSize is the stored object's size, as the peers do not return it.
func headSize(ctx context.Context, client *s3.Client, spec childSpec, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	h, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: sdk.String(spec.Ep.Bucket), Key: sdk.String(spec.Key)})
	if err != nil {
		return 0, err
	}
	return sdk.ToInt64(h.ContentLength), nil
}

// writerTo is a Body that writes itself into the part buffers, as a disk
// encoder does.
type writerTo func(io.Writer) (int64, error)

func (w writerTo) Read([]byte) (int, error)             { return 0, fmt.Errorf("writerTo: use WriteTo") }
func (w writerTo) WriteTo(dst io.Writer) (int64, error) { return w(dst) }

// childRehost stages as the stage step does: the disk encoded (raw or
// streamOptimized VMDK) straight into Stage with its size hint, a Tracker
// whose new parts a ticker marshals once a second (the step persists them),
// and the whole upload marshalled before completion.
func childRehost(ctx context.Context, spec childSpec) (int64, error) {
	tg, err := spec.target(ctx)
	if err != nil {
		return 0, err
	}
	format := disk.Raw
	if spec.Tool == "rehost-vmdk" {
		format = disk.VMDK
	}
	var body io.Reader
	switch spec.Source {
	case "file":
		img, closer, err := disk.OpenFile(spec.Path)
		if err != nil {
			return 0, err
		}
		defer closer.Close()
		body = disk.NewEncoder(img, format, disk.EncodeOptions{})
	case "pipe":
		disk.WidenPipe(os.Stdin)
		body = struct{ io.Reader }{os.Stdin}
		if format == disk.VMDK {
			// Stdin itself, not a bufio.Reader over it: the writer reads
			// it with readv straight into its grain buffers.
			body = writerTo(func(w io.Writer) (int64, error) { return disk.WriteStreamOptimizedFrom(w, os.Stdin, spec.Size) })
		}
	}
	var track Tracker
	stop := make(chan struct{})
	ticked := make(chan struct{})
	persist := func(from int) int {
		parts, next := track.Parts(from)
		for _, p := range parts {
			json.Marshal(p)
		}
		return next
	}
	go func() {
		defer close(ticked)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		from := 0
		for {
			select {
			case <-t.C:
				from = persist(from)
			case <-stop:
				return
			}
		}
	}()
	obj, err := tg.Stage(ctx, StageInput{Key: spec.Key, Body: body, SizeHint: disk.MaxImageSize(format, spec.Size), Format: format,
		Tracker: &track, BeforeComplete: func(u Upload) error { _, err := json.Marshal(u); return err }})
	close(stop)
	<-ticked
	return obj.Size, err
}

// target is rehost's target for the endpoint, with the product's defaults.
func (spec childSpec) target(ctx context.Context) (*Target, error) {
	hc, err := spec.Ep.httpClient()
	if err != nil {
		return nil, err
	}
	return New(ctx, Config{Region: spec.Ep.Region, AccessKeyID: spec.Ep.AccessKeyID, SecretAccessKey: spec.Ep.SecretAccessKey,
		Endpoints: Endpoints{S3: spec.Ep.URL}, S3PathStyle: true, HTTPClient: &http.Client{Transport: hc.GetTransport()},
		Bucket: spec.Ep.Bucket, Concurrency: benchConc, PartSize: benchPart})
}

// runsAtOnce is how many of rehost-runs' stages are in flight together (a
// connector running four replication runs).
const runsAtOnce = 4

// childRuns stages the file as spec.Runs disks of equal size (the last
// takes the rest), runsAtOnce at a time, as the daemon's runs do: raw,
// each read from its part of the file straight into the part buffers.
// rehost-runs draws every stage's buffers from the target's one pool, as
// the connector does; rehost-runs-apart gives each stage a pool of its own
// (fresh buffers for every run, the connector before the shared pool).
func childRuns(ctx context.Context, spec childSpec) (childResult, error) {
	var res childResult
	tg, err := spec.target(ctx)
	if err != nil {
		return res, err
	}
	f, err := os.Open(spec.Path)
	if err != nil {
		return res, err
	}
	defer f.Close()
	each := spec.Size / int64(spec.Runs)
	keys := make([]string, spec.Runs)
	sizes := make([]int64, spec.Runs)
	errs := make([]error, spec.Runs)
	sem := make(chan struct{}, runsAtOnce)
	var wg sync.WaitGroup
	for i := range spec.Runs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			run := tg
			if spec.Tool == "rehost-runs-apart" {
				own := *tg
				own.bufs = NewBuffers(0)
				run = &own
			}
			size := each
			if i == spec.Runs-1 {
				size = spec.Size - each*int64(i)
			}
			keys[i] = fmt.Sprintf("%s/run-%d", spec.Key, i)
			obj, err := run.Stage(ctx, StageInput{Key: keys[i], Body: io.NewSectionReader(f, each*int64(i), size), SizeHint: size, Format: disk.Raw})
			sizes[i], errs[i] = obj.Size, err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	for _, n := range sizes {
		res.Object += n
	}
	res.Keys = keys
	return res, nil
}
