package aws

import (
	"context"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rehost/rehost/internal/lab/s3peer"
)

// genStream yields n pseudo-random bytes from seed without holding them,
// hashing what it yields. Only an io.Reader: its length is not known.
type genStream struct {
	rng  *rand.ChaCha8
	left int64
	h    hash.Hash
	// zeroRun makes every other 1 MiB block zero (mostly-empty disks).
	zeroEvery bool
	off       int64
}

func newGen(seed uint64, n int64) *genStream {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return &genStream{rng: rand.NewChaCha8(s), left: n, h: sha256.New()}
}

func (g *genStream) Read(p []byte) (int, error) {
	if g.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	if g.zeroEvery && (g.off>>20)%4 != 0 {
		end := min(int64(len(p)), (g.off>>20+1)<<20-g.off)
		p = p[:end]
		clear(p)
	} else {
		if g.zeroEvery {
			p = p[:min(int64(len(p)), (g.off>>20+1)<<20-g.off)]
		}
		g.rng.Read(p)
	}
	if g.h != nil {
		g.h.Write(p)
	}
	g.left -= int64(len(p))
	g.off += int64(len(p))
	return len(p), nil
}

func (g *genStream) sum() [32]byte { var s [32]byte; copy(s[:], g.h.Sum(nil)); return s }

type peerEnv struct {
	srv *s3peer.Server
	t   *Target
}

func newPeerTarget(tb testing.TB, useTLS bool, cfg Config) peerEnv {
	tb.Helper()
	srv := s3peer.Start(tb, s3peer.Options{TLS: useTLS})
	ctx := context.Background()
	if cfg.Bucket == "" {
		cfg.Bucket = "staging"
	}
	if _, err := srv.S3Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: sdk.String(cfg.Bucket)}); err != nil {
		tb.Fatalf("create bucket: %v", err)
	}
	cfg.Region = srv.Region
	cfg.AccessKeyID, cfg.SecretAccessKey = srv.AccessKeyID, srv.SecretAccessKey
	cfg.Endpoints.S3 = srv.URL
	cfg.S3PathStyle = true
	cfg.HTTPClient = srv.HTTPClient()
	if cfg.RetryBaseDelay == 0 {
		cfg.RetryBaseDelay = 10 * time.Millisecond
	}
	tg, err := New(ctx, cfg)
	if err != nil {
		tb.Fatalf("new target: %v", err)
	}
	return peerEnv{srv: srv, t: tg}
}

// downloadSum is the SHA-256 and length of an object as GetObject returns it.
func downloadSum(tb testing.TB, srv *s3peer.Server, bucket, key string) ([32]byte, int64) {
	tb.Helper()
	out, err := srv.S3Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: sdk.String(bucket), Key: sdk.String(key)})
	if err != nil {
		tb.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, out.Body)
	if err != nil {
		tb.Fatalf("download %s: %v", key, err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s, n
}

func TestStageUnknownLengthOverTLSWithFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("300 MiB transfer")
	}
	env := newPeerTarget(t, true, Config{Concurrency: 4, PartSize: 8 << 20})
	env.srv.Front.Inject("UploadPart", 3, s3peer.Fail500)
	env.srv.Front.Inject("UploadPart", 9, s3peer.DropAfter(2<<20))
	const size = 300 << 20
	src := newGen(1, size)
	var track Tracker
	key := StagingKey("job-1", "run-1", 0, "vmdk")
	obj, err := env.t.Stage(context.Background(), StageInput{
		Key: key, Body: src, SizeHint: -1, Format: "vmdk", Tracker: &track,
	})
	if err != nil {
		t.Fatalf("stage: %v", err)
	}
	if obj.Size != size || track.Bytes() != size || obj.Format != "vmdk" {
		t.Fatalf("object size %d, tracked %d, format %q; want %d", obj.Size, track.Bytes(), obj.Format, size)
	}
	wantParts := (size + minGrowingPartSize - 1) / minGrowingPartSize
	if up, _ := track.Upload(); obj.Parts != wantParts || len(up.Parts) != wantParts || up.UploadID == "" {
		t.Fatalf("parts %d, tracked %d; want %d", obj.Parts, len(up.Parts), wantParts)
	}
	if n := env.srv.Front.Count("UploadPart"); n != wantParts+2 {
		t.Fatalf("front saw %d UploadPart requests, want %d (parts + the two faulted)", n, wantParts+2)
	}
	got, n := downloadSum(t, env.srv, "staging", key)
	if n != size || got != src.sum() {
		t.Fatalf("downloaded %d bytes that differ from the %d-byte source", n, int64(size))
	}
	for _, r := range env.srv.Front.Requests() {
		switch r.Op {
		case "CreateMultipartUpload":
			if r.Header.Get("X-Amz-Server-Side-Encryption") != "AES256" {
				t.Errorf("CreateMultipartUpload without SSE: %v", r.Header)
			}
		case "UploadPart":
			if r.Header.Get("X-Amz-Trailer") != "x-amz-checksum-crc32c" && r.Header.Get("X-Amz-Checksum-Crc32c") == "" {
				t.Errorf("UploadPart %s carries no CRC32C: %v", r.PartNumber, r.Header)
			}
		}
	}
	if !strings.HasPrefix(key, "rehost/job-1/run-1/") {
		t.Fatalf("staging key %q", key)
	}
}

func TestStageResumeSkipsStoredParts(t *testing.T) {
	env := newPeerTarget(t, true, Config{Concurrency: 2, PartSize: 8 << 20})
	const size = 100<<20 + 12345
	key := StagingKey("job", "run", 1, "raw")
	ctx, cancel := context.WithCancel(context.Background())
	var track Tracker
	go cancelAfterParts(&track, 5, cancel)
	_, err := env.t.Stage(ctx, StageInput{
		Key: key, Body: newGen(7, size), SizeHint: -1, KeepOnFailure: true, Tracker: &track,
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first stage: want cancellation, got %v", err)
	}
	resume, _ := track.Upload()
	if len(resume.Parts) < 5 || resume.UploadID == "" {
		t.Fatalf("saved upload has %d parts", len(resume.Parts))
	}
	st, err := env.t.ListStaged(context.Background(), "rehost/job/")
	if err != nil || len(st.Uploads) != 1 || st.Uploads[0].UploadID != resume.UploadID {
		t.Fatalf("pending uploads after a kept cancellation: %+v, %v", st.Uploads, err)
	}
	before := env.srv.Front.Count("UploadPart")

	src := newGen(7, size)
	obj, err := env.t.Stage(context.Background(), StageInput{Key: key, Body: src, SizeHint: -1, Resume: &resume})
	if err != nil {
		t.Fatalf("resumed stage: %v", err)
	}
	total := int((size + (8<<20 - 1)) / (8 << 20))
	sent := env.srv.Front.Count("UploadPart") - before
	// A part retried under load counts twice at the front, so sent may be
	// above the parts left, never below.
	if obj.Reused != len(resume.Parts) || sent < total-len(resume.Parts) {
		t.Fatalf("resume reused %d and sent %d parts; recorded %d of %d", obj.Reused, sent, len(resume.Parts), total)
	}
	got, n := downloadSum(t, env.srv, "staging", key)
	if n != size || got != src.sum() {
		t.Fatal("resumed object differs from the source")
	}

	// A source that changed under a recorded part: that part is sent again
	// and the object holds the new bytes.
	ctx2, cancel2 := context.WithCancel(context.Background())
	var track2 Tracker
	go cancelAfterParts(&track2, 2, cancel2)
	key2 := StagingKey("job", "run", 2, "raw")
	env.t.Stage(ctx2, StageInput{Key: key2, Body: newGen(8, 40<<20), KeepOnFailure: true, Tracker: &track2})
	resume2, _ := track2.Upload()
	before = env.srv.Front.Count("UploadPart")
	src2 := newGen(9, 40<<20) // different content
	obj2, err := env.t.Stage(context.Background(), StageInput{Key: key2, Body: src2, Resume: &resume2})
	if err != nil {
		t.Fatalf("resume with changed content: %v", err)
	}
	if obj2.Reused != 0 || env.srv.Front.Count("UploadPart")-before < 5 {
		t.Fatalf("changed content: reused %d, sent %d", obj2.Reused, env.srv.Front.Count("UploadPart")-before)
	}
	if got, _ := downloadSum(t, env.srv, "staging", key2); got != src2.sum() {
		t.Fatal("object after a changed-content resume differs from the new source")
	}

	// Cleanup helpers see both objects and remove them.
	st, err = env.t.ListStaged(context.Background(), "rehost/job/run/")
	if err != nil || len(st.Objects) != 2 || len(st.Uploads) != 0 {
		t.Fatalf("list staged: %+v, %v", st, err)
	}
	if n, err := env.t.DeleteStaged(context.Background(), "rehost/job/"); err != nil || n != 2 {
		t.Fatalf("delete staged: %d, %v", n, err)
	}
	if st, _ = env.t.ListStaged(context.Background(), "rehost/"); len(st.Objects) != 0 {
		t.Fatalf("objects left: %+v", st.Objects)
	}
}

func TestStageAbortsOnFailureAndCancel(t *testing.T) {
	env := newPeerTarget(t, false, Config{Concurrency: 2, RetryAttempts: 2})
	// The first abort fails as a server error: it is sent again.
	env.srv.Front.Inject("AbortMultipartUpload", 1, s3peer.Fail500)
	// A permanent source error aborts the upload.
	_, err := env.t.Stage(context.Background(), StageInput{Key: "rehost/j/r/disk-0.raw",
		Body: io.MultiReader(newGen(1, 20<<20), errReader{errors.New("nfc lease lost")})})
	if err == nil || !strings.Contains(err.Error(), "nfc lease lost") {
		t.Fatalf("want the source error, got %v", err)
	}
	// Every attempt of a part failing exhausts the retries and aborts.
	var failing atomic.Bool
	failing.Store(true)
	base := env.srv.Front.Count("UploadPart")
	for i := 1; i <= 20; i++ {
		env.srv.Front.Inject("UploadPart", base+i, func(w http.ResponseWriter, r *http.Request) {
			if failing.Load() {
				s3peer.Fail500(w, r)
				return
			}
			env.srv.Front.Forward(w, r)
		})
	}
	_, err = env.t.Stage(context.Background(), StageInput{Key: "rehost/j/r/disk-1.raw", Body: newGen(2, 20<<20)})
	if err == nil || !strings.Contains(err.Error(), "InternalError") {
		t.Fatalf("want InternalError after retries, got %v", err)
	}
	failing.Store(false)
	// Cancellation aborts too.
	ctx, cancel := context.WithCancel(context.Background())
	var track Tracker
	go cancelAfterParts(&track, 1, cancel)
	_, err = env.t.Stage(ctx, StageInput{Key: "rehost/j/r/disk-2.raw", Body: newGen(3, 60<<20), Tracker: &track})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want cancellation, got %v", err)
	}
	st, err := env.t.ListStaged(context.Background(), "rehost/")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Uploads) != 0 || len(st.Objects) != 0 {
		t.Fatalf("left behind: %+v", st)
	}
	// Each of the three uploads was aborted. Counting requests would not
	// say so: an abort that races a part still being written on the server
	// can fail (versitygw answers 500, and S3 documents that an abort may
	// need repeating), and the target's policy sends it again.
	aborted := map[string]bool{}
	var aborts []string
	for _, r := range env.srv.Front.Requests() {
		if r.Op == "AbortMultipartUpload" {
			if !r.Faulted {
				aborted[r.Key+" "+r.Query.Get("uploadId")] = true
			}
			aborts = append(aborts, r.Key)
		}
	}
	if len(aborted) != 3 || len(aborts) < 4 || aborts[0] != aborts[1] {
		t.Fatalf("aborts %v: want the first sent twice (it failed once), and each of the 3 uploads aborted", aborts)
	}
	// AbortUploads finds uploads nobody recorded.
	env.t.Stage(context.Background(), StageInput{Key: "rehost/j/r/disk-3.raw", Body: io.MultiReader(newGen(1, 9<<20), errReader{errors.New("x")}), KeepOnFailure: true})
	if n, err := env.t.AbortUploads(context.Background(), "rehost/j/"); err != nil || n != 1 {
		t.Fatalf("abort uploads: %d, %v", n, err)
	}
}

func TestStageSmallAndEmptyStreams(t *testing.T) {
	env := newPeerTarget(t, false, Config{})
	for _, size := range []int64{0, 1, 5 << 20} {
		src := newGen(uint64(size), size)
		obj, err := env.t.Stage(context.Background(), StageInput{Key: "k", Body: src, SizeHint: size})
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		got, n := downloadSum(t, env.srv, "staging", "k")
		if n != size || got != src.sum() || obj.Size != size {
			t.Fatalf("size %d: downloaded %d bytes, content differs", size, n)
		}
	}
}

func TestPartSizing(t *testing.T) {
	g := Upload{PartSize: minGrowingPartSize, Growing: true}
	var total int64
	for n := int32(1); n <= MaxParts; n++ {
		s := g.sizeOf(n)
		if s < MinPartSize || s > MaxPartSize {
			t.Fatalf("part %d size %d out of range", n, s)
		}
		total += s
	}
	if total < MaxObjectSize {
		t.Fatalf("10,000 growing parts cover %d bytes, less than 5 TiB", total)
	}
	if g.sizeOf(1000) != 8<<20 || g.sizeOf(1001) != 16<<20 {
		t.Fatalf("growth schedule: %d %d", g.sizeOf(1000), g.sizeOf(1001))
	}
	for _, hint := range []int64{1, 100 << 30, MaxObjectSize} {
		ps := hintedPartSize(hint, 16<<20)
		if ps < 16<<20 || ps > MaxPartSize || ps*MaxParts < hint || ps%(1<<20) != 0 {
			t.Fatalf("hint %d: part size %d", hint, ps)
		}
	}
	if k := StagingKey("j/x", "..", 3, ".vhdx"); k != "rehost/j_x/_/disk-3.vhdx" {
		t.Fatalf("staging key %q", k)
	}
}

// cancelAfterParts cancels a stage once its tracker holds n parts, as a
// process killed mid-upload would stop it.
func cancelAfterParts(k *Tracker, n int, cancel func()) {
	for {
		if up, _ := k.Upload(); len(up.Parts) >= n {
			cancel()
			return
		}
		time.Sleep(time.Millisecond)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestStageMemoryBounded checks that heap use stays near
// (Concurrency+1) × part size, whatever the stream length.
func TestStageMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("transfers 400 MiB")
	}
	const part = 8 << 20
	env := newPeerTarget(t, false, Config{Concurrency: 2, PartSize: part})
	// Collect garbage promptly so the peak reflects what staging keeps live,
	// not how far the collector lags behind under load.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	peak := func(size int64) uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapInuse
		var max atomic.Uint64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			var m runtime.MemStats
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				runtime.ReadMemStats(&m)
				if m.HeapInuse > base && m.HeapInuse-base > max.Load() {
					max.Store(m.HeapInuse - base)
				}
			}
		}()
		if _, err := env.t.Stage(context.Background(), StageInput{Key: "mem", Body: newGen(5, size), SizeHint: -1}); err != nil {
			t.Fatalf("stage %d: %v", size, err)
		}
		close(stop)
		<-done
		return max.Load()
	}
	small, large := peak(100<<20), peak(300<<20)
	bound := uint64(3*part + 24<<20)
	t.Logf("peak heap above baseline: %d MiB for 100 MiB, %d MiB for 300 MiB; (concurrency+1)×part = %d MiB",
		small>>20, large>>20, 3*part>>20)
	if large > bound || small > bound {
		t.Fatalf("peak heap %d / %d bytes exceeds %d", small, large, bound)
	}
}

// A crash between completing an upload and recording the object: the
// recorded upload (all its parts) finds the object, nothing is re-sent.
func TestRecoverCompletedUpload(t *testing.T) {
	env := newPeerTarget(t, true, Config{Concurrency: 2, PartSize: 5 << 20})
	ctx := context.Background()
	const size = 23<<20 + 5
	key := StagingKey("job", "run-rec", 0, "raw")
	var track Tracker
	obj, err := env.t.Stage(ctx, StageInput{Key: key, Body: newGen(4, size), SizeHint: size, Format: "raw", Tracker: &track})
	if err != nil {
		t.Fatal(err)
	}
	up, _ := track.Upload()
	before := env.srv.Front.Count("UploadPart")
	got, ok, err := env.t.Recover(ctx, up, "raw")
	if err != nil || !ok || got.Size != size || got.Key != key || got.Format != "raw" {
		t.Fatalf("recover: %+v, %v, %v (staged %+v)", got, ok, err, obj)
	}
	if env.srv.Front.Count("UploadPart") != before {
		t.Fatal("recover sent parts")
	}

	// An upload still open is not recovered: Stage resumes it.
	ctx2, cancel := context.WithCancel(ctx)
	var open Tracker
	go cancelAfterParts(&open, 1, cancel)
	key2 := StagingKey("job", "run-rec", 1, "raw")
	env.t.Stage(ctx2, StageInput{Key: key2, Body: newGen(5, size), SizeHint: size, KeepOnFailure: true, Tracker: &open})
	up2, _ := open.Upload()
	if _, ok, err := env.t.Recover(ctx, up2, "raw"); ok || err != nil {
		t.Fatalf("recover of an open upload: %v, %v", ok, err)
	}
	env.t.AbortUploads(ctx, RunPrefix("job", "run-rec"))

	// A different object at the key (same size, other bytes) is not taken.
	if _, err := env.t.Stage(ctx, StageInput{Key: key, Body: newGen(6, size), SizeHint: size}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := env.t.Recover(ctx, up, "raw"); ok || err != nil {
		t.Fatalf("recover over a different object: %v, %v", ok, err)
	}
	// Nothing at the key: not recovered either.
	env.t.DeleteStaged(ctx, key)
	if _, ok, err := env.t.Recover(ctx, up, "raw"); ok || err != nil {
		t.Fatalf("recover with no object: %v, %v", ok, err)
	}
}
