package aws

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rehost/rehost/pkg/disk"
)

// S3 multipart limits.
const (
	MinPartSize   = 5 << 20
	MaxPartSize   = 5 << 30
	MaxParts      = 10000
	MaxObjectSize = 5 << 40
)

// growEvery is how many parts share one size when the stream length is
// unknown; the size doubles after each group.
const growEvery = 1000

// minGrowingPartSize makes 10,000 growing parts cover MaxObjectSize:
// 1000·s·(2^10−1) ≥ 5 TiB needs s ≥ 5.13 MiB.
const minGrowingPartSize = 8 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Part is one uploaded part.
type Part struct {
	Number int32  `json:"number"`
	Size   int64  `json:"size"`
	ETag   string `json:"etag"`
	// Checksum is the part's CRC32C, base64 as S3 reports it: computed once,
	// sent with the part for S3 to verify, and compared with the fresh
	// stream's on a resume (with the size, and the ETag S3 still holds).
	Checksum string `json:"checksum"`
}

// Upload is the persisted state of a multipart upload in progress: enough
// to resume it after a restart.
type Upload struct {
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
	UploadID string `json:"uploadId"`
	// PartSize is the size of part 1; with Growing, the size doubles every
	// 1000 parts (capped at 5 GiB), otherwise all parts but the last have it.
	PartSize int64  `json:"partSize"`
	Growing  bool   `json:"growing,omitempty"`
	Parts    []Part `json:"parts"`
}

// sizeOf is the size of part n (the last part may be shorter).
func (u *Upload) sizeOf(n int32) int64 {
	if !u.Growing {
		return u.PartSize
	}
	s := u.PartSize
	for g := (n - 1) / growEvery; g > 0 && s < MaxPartSize; g-- {
		s *= 2
	}
	return min(s, MaxPartSize)
}

// StageInput is one stream to stage.
type StageInput struct {
	Key string
	// Body is read once, sequentially, to EOF; its length need not be known.
	// A Body that is an io.WriterTo (a disk image encoder) writes straight
	// into the part buffers; any other is read into them (no copy between).
	Body io.Reader
	// SizeHint is the stream length or an upper bound of it (for a disk
	// image, disk.MaxImageSize of its capacity); -1 or 0 when unknown. With
	// a hint the part size is fixed at max(Config.PartSize, hint/10000);
	// without one parts grow (see Upload).
	SizeHint int64
	// Format is recorded in the returned Object for StartImport.
	Format disk.Format
	// Resume continues an earlier upload; Body must then yield the same
	// content from the start.
	Resume *Upload
	// Limiter, when set, caps the bytes sent: every read of a part's body
	// by the HTTP client first waits for at most 64 KiB of it (retried
	// parts count again; parts kept from a resumed upload are not sent).
	// One limiter shared by every Stage in flight caps them together.
	Limiter Limiter
	// Tracker, when set, is kept up to date with the bytes stored and the
	// upload's parts, for the caller to read whenever it likes (persist the
	// upload to resume it, report progress): the upload never waits on it.
	Tracker *Tracker
	// BeforeComplete, when set, is called once with every part of the
	// upload, just before it is completed: a caller that persists it there
	// finds the object after a crash between completing the upload and
	// learning so (see Recover). An error it returns fails Stage.
	BeforeComplete func(Upload) error
	// KeepOnFailure leaves the multipart upload in place when Stage fails
	// or is cancelled, so a later Stage can Resume it; the caller then owns
	// it (resume it or AbortUploads). Otherwise it is aborted.
	KeepOnFailure bool
}

// Tracker follows one Stage: its workers add to it, any goroutine reads it.
// The zero value is ready to use.
type Tracker struct {
	done atomic.Int64
	mu   sync.Mutex
	up   Upload
	gen  int // bumped by every part recorded
}

// Bytes is the number of bytes stored so far (resumed parts included).
func (k *Tracker) Bytes() int64 { return k.done.Load() }

// Upload returns the upload with the parts stored so far, in order, and a
// generation number that changes whenever a part is added (so a reader can
// skip persisting an unchanged state). It is empty until the upload exists.
func (k *Tracker) Upload() (Upload, int) {
	k.mu.Lock()
	u, gen := k.up, k.gen
	u.Parts = slices.Clone(k.up.Parts)
	k.mu.Unlock()
	slices.SortFunc(u.Parts, func(a, b Part) int { return cmp.Compare(a.Number, b.Number) })
	return u, gen
}

// Header is the upload without its parts (empty until the upload exists).
func (k *Tracker) Header() Upload {
	k.mu.Lock()
	defer k.mu.Unlock()
	u := k.up
	u.Parts = nil
	return u
}

// Parts returns the parts recorded after the first from (in the order they
// were stored, not by number) and the count to pass next time: a reader
// that persists parts as they come costs the same whatever their number.
func (k *Tracker) Parts(from int) ([]Part, int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if from >= len(k.up.Parts) {
		return nil, len(k.up.Parts)
	}
	return slices.Clone(k.up.Parts[from:]), len(k.up.Parts)
}

// Start resets the tracker to a new upload with no parts; the stager calls
// it (as does any other implementation of staging).
func (k *Tracker) Start(u Upload) {
	k.mu.Lock()
	k.up, k.gen = u, k.gen+1
	k.up.Parts = nil
	k.mu.Unlock()
	k.done.Store(0)
}

// Add records a stored part.
func (k *Tracker) Add(p Part) {
	k.mu.Lock()
	k.up.Parts = append(k.up.Parts, p)
	k.gen++
	k.mu.Unlock()
	k.done.Add(p.Size)
}

// Object is a staged object.
type Object struct {
	Bucket string      `json:"bucket"`
	Key    string      `json:"key"`
	Size   int64       `json:"size"`
	ETag   string      `json:"etag,omitempty"`
	Format disk.Format `json:"format,omitempty"`
	// Checksum is S3's composite CRC32C of the object ("<base64>-<parts>").
	Checksum string `json:"checksum,omitempty"`
	Parts    int    `json:"parts"`
	// Reused counts parts kept from a resumed upload without re-sending.
	Reused int `json:"reused,omitempty"`
}

// sse returns the server-side encryption settings for new objects.
func (t *Target) sse() (types.ServerSideEncryption, *string, *bool) {
	if t.cfg.KMSKeyID != "" {
		return types.ServerSideEncryptionAwsKms, sdk.String(t.cfg.KMSKeyID), sdk.Bool(true)
	}
	return types.ServerSideEncryptionAes256, nil, nil
}

// Stage streams in.Body into a multipart upload and completes it.
//
// Memory is bounded by Concurrency+1 part buffers (fewer when they do not
// fit in BufferBytes), drawn from the target's Buffers, which bounds all
// Stages together: a Stage waits for a buffer while the pool is spent. Each part carries a CRC32C
// checksum S3 verifies, is retried from its buffer on transient errors, and is
// added to in.Tracker once stored. On failure or cancellation the upload
// is aborted (under a fresh context) unless KeepOnFailure is set. Resuming
// re-reads the stream from the start; parts whose SHA-256 matches the record
// and which S3 still holds are not re-sent, others are uploaded again. A
// resumed upload S3 no longer knows (aborted or expired) starts over.
func (t *Target) Stage(ctx context.Context, in StageInput) (Object, error) {
	if in.Body == nil || in.Key == "" {
		return Object{}, errors.New("stage: a key and a body are required")
	}
	bucket, err := t.bucket()
	if err != nil {
		return Object{}, fmt.Errorf("stage %s: %w", in.Key, err)
	}
	st := &stager{t: t, in: in, held: map[int32]types.Part{}, track: in.Tracker}
	if st.track == nil {
		st.track = new(Tracker)
	}
	if err := st.open(ctx, bucket); err != nil {
		return Object{}, fmt.Errorf("stage %s: %w", in.Key, err)
	}
	st.track.Start(st.up)
	obj, err := st.run(ctx)
	if err != nil {
		if !in.KeepOnFailure {
			t.abort(st.up.Bucket, st.up.Key, st.up.UploadID)
		}
		return Object{}, fmt.Errorf("stage s3://%s/%s: %w", st.up.Bucket, st.up.Key, err)
	}
	return obj, nil
}

// abort removes a multipart upload under its own context, so a cancelled
// stage still cleans up.
func (t *Target) abort(bucket, key, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := t.call(ctx, "AbortMultipartUpload", func(ctx context.Context) error {
		_, err := t.s3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket: sdk.String(bucket), Key: sdk.String(key), UploadId: sdk.String(id)})
		return err
	})
	if err != nil && apiCode(err) != "NoSuchUpload" {
		t.log.Warn("abort multipart upload failed; the bucket lifecycle rule removes it within a day",
			"bucket", bucket, "key", key, "uploadId", id, "err", err)
	}
}

type stager struct {
	t    *Target
	in   StageInput
	up   Upload
	held map[int32]types.Part // what S3 holds of a resumed upload, by number
	prev map[int32]Part       // what the caller recorded, by number

	track *Tracker

	mu     sync.Mutex
	parts  map[int32]Part
	reused int
}

func (st *stager) open(ctx context.Context, bucket string) error {
	t := st.t
	if r := st.in.Resume; r != nil && r.UploadID != "" {
		if r.Key != st.in.Key || (r.Bucket != "" && r.Bucket != bucket) {
			return fmt.Errorf("resume: recorded upload is for s3://%s/%s", r.Bucket, r.Key)
		}
		if r.PartSize < MinPartSize || r.PartSize > MaxPartSize {
			return fmt.Errorf("resume: recorded part size %d is out of range", r.PartSize)
		}
		st.up = Upload{Bucket: bucket, Key: r.Key, UploadID: r.UploadID, PartSize: r.PartSize, Growing: r.Growing}
		err := st.listHeld(ctx)
		if err == nil {
			st.prev = map[int32]Part{}
			for _, p := range r.Parts {
				st.prev[p.Number] = p
			}
			return nil
		}
		if apiCode(err) != "NoSuchUpload" {
			return fmt.Errorf("resume upload %s: list parts: %w", r.UploadID, err)
		}
		t.log.Info("recorded multipart upload is gone; starting over", "bucket", bucket, "key", r.Key, "uploadId", r.UploadID)
		st.held = map[int32]types.Part{}
	}
	st.up = Upload{Bucket: bucket, Key: st.in.Key}
	if st.in.SizeHint > 0 {
		if st.in.SizeHint > MaxObjectSize {
			return fmt.Errorf("size %d exceeds the S3 object limit of 5 TiB", st.in.SizeHint)
		}
		st.up.PartSize = hintedPartSize(st.in.SizeHint, t.cfg.PartSize)
	} else {
		st.up.PartSize = max(t.cfg.PartSize, minGrowingPartSize)
		st.up.Growing = true
	}
	alg, kms, bk := t.sse()
	var out *s3.CreateMultipartUploadOutput
	err := t.call(ctx, "CreateMultipartUpload", func(ctx context.Context) error {
		var err error
		out, err = t.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
			Bucket: sdk.String(bucket), Key: sdk.String(st.in.Key),
			ServerSideEncryption: alg, SSEKMSKeyId: kms, BucketKeyEnabled: bk,
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
			ContentType:       sdk.String("application/octet-stream"),
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("create multipart upload: %w", err)
	}
	st.up.UploadID = sdk.ToString(out.UploadId)
	return nil
}

func (st *stager) listHeld(ctx context.Context) error {
	pages := s3.NewListPartsPaginator(st.t.s3, &s3.ListPartsInput{
		Bucket: sdk.String(st.up.Bucket), Key: sdk.String(st.up.Key), UploadId: sdk.String(st.up.UploadID)})
	return eachPage(ctx, st.t, "ListParts", pages, func(out *s3.ListPartsOutput) {
		for _, p := range out.Parts {
			st.held[sdk.ToInt32(p.PartNumber)] = p
		}
	})
}

// hintedPartSize is the fixed part size for a stream of at most hint bytes:
// at least floor, and large enough (rounded up to a MiB) for 10,000 parts.
func hintedPartSize(hint, floor int64) int64 {
	per := (hint + MaxParts - 1) / MaxParts
	per = (per + 1<<20 - 1) &^ (1<<20 - 1)
	return max(floor, per)
}

type job struct {
	n   int32
	buf []byte
	crc uint32 // CRC32C of buf, computed as it was filled
}

func (st *stager) run(ctx context.Context) (Object, error) {
	t := st.t
	st.parts = map[int32]Part{}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	conc := t.cfg.Concurrency
	f := &feeder{st: st, ctx: ctx, jobs: make(chan job), budget: t.cfg.BufferBytes, bufs: t.bufs}
	// conc buffers in flight plus one being filled: the memory bound, fewer
	// when parts are so large that they would not fit in BufferBytes.
	f.slots = f.fit(st.up.sizeOf(1), conc+1)
	f.tokens = make(chan struct{}, conc+1)
	for range f.slots {
		f.tokens <- struct{}{}
	}
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range f.jobs {
				if err := st.part(ctx, j.n, j.buf, j.crc); err != nil {
					cancel(fmt.Errorf("part %d: %w", j.n, err))
				}
				f.release(j.buf)
			}
		}()
	}

	var err error
	if wt, ok := st.in.Body.(io.WriterTo); ok {
		_, err = wt.WriteTo(f)
	} else {
		_, err = f.ReadFrom(st.in.Body)
	}
	if err == nil {
		err = f.finish()
	} else {
		f.drop()
	}
	close(f.jobs)
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil {
		return Object{}, cause
	}
	if err != nil {
		if f.own == nil {
			// Parts already read are good: they were let finish, so a
			// resume keeps them; the source's error fails the stage.
			err = fmt.Errorf("read source at byte %d: %w", f.total, err)
		}
		return Object{}, err
	}
	return st.complete(ctx, f.total, f.n)
}

// feeder cuts the stream into parts as it arrives: a reader is read, and a
// writer copied, straight into the part buffers, and each full buffer goes
// to the upload workers. The buffers come from the target's pool (shared
// with every other Stage) and go back to it once their part is stored; at
// most slots of them are this Stage's at once.
type feeder struct {
	st     *stager
	ctx    context.Context
	jobs   chan job
	bufs   *Buffers
	tokens chan struct{} // one per slot not holding a buffer
	budget int64         // bytes of buffers allowed (0: no limit)

	mu    sync.Mutex
	slots int          // buffers this Stage may hold
	cur   atomic.Int64 // size of the part being filled

	n     int32  // part being filled (0: none yet)
	buf   []byte // part n's bytes so far (cap ≥ size); nil between parts
	size  int64  // size of part n
	crc   uint32 // CRC32C of buf so far
	total int64
	own   error // the feeder's own failure (not the source's)
}

// fit is how many buffers of size bytes the budget allows, at most want
// and at least 2 (one in flight, one being filled).
func (f *feeder) fit(size int64, want int) int {
	if f.budget <= 0 {
		return want
	}
	return max(2, min(want, int(f.budget/size)))
}

// release gives a buffer back to the pool once its part is stored (or will
// not be sent), and its slot back to the Stage unless growing parts no
// longer fit as many buffers in the budget.
func (f *feeder) release(buf []byte) {
	f.bufs.put(buf)
	f.mu.Lock()
	drop := f.slots > f.fit(max(f.cur.Load(), int64(cap(buf))), f.slots)
	if drop {
		f.slots--
	}
	f.mu.Unlock()
	if !drop {
		f.tokens <- struct{}{}
	}
}

// next takes a buffer for the next part: a slot of this Stage's, then a
// buffer from the pool.
func (f *feeder) next() error {
	n := f.n + 1
	size := f.st.up.sizeOf(n)
	if n > MaxParts {
		f.own = fmt.Errorf("stream is longer than %d parts of %d bytes (size hint %d too small)", MaxParts, size, f.st.in.SizeHint)
		return f.own
	}
	select {
	case <-f.tokens:
	case <-f.ctx.Done():
		f.own = context.Cause(f.ctx)
		return f.own
	}
	buf, err := f.bufs.get(f.ctx, size)
	if err != nil {
		f.tokens <- struct{}{}
		f.own = err
		return f.own
	}
	f.n, f.buf, f.size, f.crc = n, buf[:0], size, 0
	f.cur.Store(size)
	return nil
}

// send hands part n to the workers.
func (f *feeder) send() error {
	select {
	case f.jobs <- job{f.n, f.buf, f.crc}:
		f.buf = nil
		return nil
	case <-f.ctx.Done():
		f.own = context.Cause(f.ctx)
		return f.own
	}
}

// Write copies p into the part buffers.
func (f *feeder) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if f.buf == nil {
			if err := f.next(); err != nil {
				return written, err
			}
		}
		k := copy(f.buf[len(f.buf):f.size], p)
		f.crc = crc32.Update(f.crc, castagnoli, f.buf[len(f.buf):len(f.buf)+k])
		f.buf = f.buf[:len(f.buf)+k]
		p, written, f.total = p[k:], written+k, f.total+int64(k)
		if int64(len(f.buf)) == f.size {
			if err := f.send(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// ReadFrom reads r into the part buffers until it ends. A clean end is
// io.EOF; any other error (an io.ErrUnexpectedEOF of a truncated download
// included) is returned, to fail the upload rather than end it.
func (f *feeder) ReadFrom(r io.Reader) (int64, error) {
	start := f.total
	for {
		if f.buf == nil {
			if err := f.next(); err != nil {
				return f.total - start, err
			}
		}
		// Reads of at most fillChunk leave the bytes in the cache for
		// their CRC32C.
		m, err := r.Read(f.buf[len(f.buf):min(f.size, int64(len(f.buf))+fillChunk)])
		f.crc = crc32.Update(f.crc, castagnoli, f.buf[len(f.buf):len(f.buf)+m])
		f.buf = f.buf[:len(f.buf)+m]
		f.total += int64(m)
		if int64(len(f.buf)) == f.size {
			if err := f.send(); err != nil {
				return f.total - start, err
			}
		}
		if err == io.EOF {
			return f.total - start, nil
		}
		if err != nil {
			return f.total - start, err
		}
	}
}

// fillChunk is the most the feeder reads at once: the CRC32C of what it
// read is computed while those bytes are still in the CPU's cache, rather
// than in a pass of its own over the whole part from memory.
const fillChunk = 1 << 20

// finish sends the last, short part (part 1 even when empty: an empty
// stream is one empty part).
func (f *feeder) finish() error {
	if f.n == 0 {
		if err := f.next(); err != nil {
			return err
		}
	}
	if f.buf == nil {
		return nil
	}
	if len(f.buf) == 0 && f.n > 1 {
		// The stream ended on a part boundary: the buffer was taken for
		// nothing.
		f.n--
		f.release(f.buf)
		f.buf = nil
		return nil
	}
	return f.send()
}

// drop gives back the buffer of a part that will not be sent.
func (f *feeder) drop() {
	if f.buf != nil {
		f.release(f.buf)
		f.buf = nil
		if f.n > 0 {
			f.n--
		}
	}
}

// part stores part n: reused when a resumed upload already holds the same
// bytes, otherwise uploaded with retries. Its CRC32C (crc, computed once by
// the feeder as the part was filled) is the resume's comparison and is handed to the SDK, which sends it as
// the x-amz-checksum-crc32c header for S3 to verify instead of hashing the
// part again (and signs UNSIGNED-PAYLOAD, TLS protecting the bytes, rather
// than a SHA-256 of them).
func (st *stager) part(ctx context.Context, n int32, buf []byte, crc uint32) error {
	p := Part{Number: n, Size: int64(len(buf))}
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], crc)
	p.Checksum = base64.StdEncoding.EncodeToString(c[:])

	if prev, ok := st.prev[n]; ok {
		held, onServer := st.held[n]
		same := prev.Size == p.Size && prev.Checksum == p.Checksum
		if onServer && same && sdk.ToInt64(held.Size) == p.Size && trimQuotes(sdk.ToString(held.ETag)) == trimQuotes(prev.ETag) &&
			(held.ChecksumCRC32C == nil || sdk.ToString(held.ChecksumCRC32C) == p.Checksum) {
			p.ETag = prev.ETag
			st.record(p, true)
			return nil
		}
		st.t.log.Warn("resumed part differs from the recorded one; uploading it again",
			"key", st.up.Key, "part", n, "onServer", onServer)
	}
	t := st.t
	// Generous per-attempt deadline: 5 minutes plus 1 MiB/s.
	perAttempt := 5*time.Minute + time.Duration(len(buf)>>20)*time.Second
	err := t.call(ctx, "UploadPart", func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, perAttempt)
		defer cancel()
		var body io.ReadSeeker = bytes.NewReader(buf)
		if st.in.Limiter != nil {
			body = &limitedBody{ctx: actx, buf: buf, r: bytes.NewReader(buf), lim: st.in.Limiter}
		}
		out, err := t.s3.UploadPart(actx, &s3.UploadPartInput{
			Bucket: sdk.String(st.up.Bucket), Key: sdk.String(st.up.Key), UploadId: sdk.String(st.up.UploadID),
			PartNumber: sdk.Int32(n), Body: body, ContentLength: sdk.Int64(int64(len(buf))),
			ChecksumCRC32C: sdk.String(p.Checksum),
		}, unsignedPayload)
		if err != nil {
			return err
		}
		if got := sdk.ToString(out.ChecksumCRC32C); got != "" && got != p.Checksum {
			return &checksumError{part: n, want: p.Checksum, got: got}
		}
		p.ETag = sdk.ToString(out.ETag)
		return nil
	})
	if err != nil {
		return err
	}
	st.record(p, false)
	return nil
}

// unsignedPayload signs a part's request with UNSIGNED-PAYLOAD instead of
// the SHA-256 the SDK would otherwise compute over the whole part (the part
// carries its CRC32C for S3 to check, and TLS protects it on the way).
func unsignedPayload(o *s3.Options) {
	o.APIOptions = append(slices.Clip(o.APIOptions), v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
}

// limitChunk is the most a part's body yields per read, so a bandwidth
// limiter is asked for small amounts (a rate.Limiter's burst must cover it).
const limitChunk = 64 << 10

// limitedBody is a part's body whose every read or write of at most
// limitChunk first waits for the limiter; Seek rewinds it for the SDK.
type limitedBody struct {
	ctx context.Context
	buf []byte
	r   *bytes.Reader // over buf
	lim Limiter
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n := min(len(p), limitChunk, b.r.Len())
	if n == 0 {
		return b.r.Read(p)
	}
	if err := b.lim.WaitN(b.ctx, n); err != nil {
		return 0, err
	}
	return b.r.Read(p[:n])
}

func (b *limitedBody) Seek(off int64, whence int) (int64, error) { return b.r.Seek(off, whence) }

// WriteTo writes the rest of the body from the part's buffer (no copy
// between: see bodyConn), limitChunk at a time.
func (b *limitedBody) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for b.r.Len() > 0 {
		k := min(limitChunk, b.r.Len())
		if err := b.lim.WaitN(b.ctx, k); err != nil {
			return n, err
		}
		off := len(b.buf) - b.r.Len()
		m, err := w.Write(b.buf[off : off+k])
		b.r.Seek(int64(m), io.SeekCurrent)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

type checksumError struct {
	part      int32
	want, got string
}

// Transient: a part S3 stored differently from what was sent was damaged in
// transit; sending it again is the remedy.
func (e *checksumError) Transient() bool { return true }

func (e *checksumError) Error() string {
	return fmt.Sprintf("part %d: S3 stored CRC32C %s, sent %s", e.part, e.got, e.want)
}

// record notes a stored part: a map insert and two counters, nothing that
// waits (see Tracker).
func (st *stager) record(p Part, reused bool) {
	st.mu.Lock()
	st.parts[p.Number] = p
	if reused {
		st.reused++
	}
	st.mu.Unlock()
	st.track.Add(p)
}

// snapshot is the upload with its completed parts in order; st.mu held.
func (st *stager) snapshot() Upload {
	u := st.up
	u.Parts = slices.SortedFunc(maps.Values(st.parts), func(a, b Part) int { return cmp.Compare(a.Number, b.Number) })
	return u
}

func (st *stager) complete(ctx context.Context, total int64, count int32) (Object, error) {
	t := st.t
	st.mu.Lock()
	u := st.snapshot()
	st.mu.Unlock()
	if int32(len(u.Parts)) != count {
		return Object{}, fmt.Errorf("internal: %d parts stored, %d read", len(u.Parts), count)
	}
	if st.in.BeforeComplete != nil {
		if err := st.in.BeforeComplete(u); err != nil {
			return Object{}, fmt.Errorf("before completing the upload: %w", err)
		}
	}
	cp := make([]types.CompletedPart, len(u.Parts))
	for i, p := range u.Parts {
		cp[i] = types.CompletedPart{PartNumber: sdk.Int32(p.Number), ETag: sdk.String(p.ETag), ChecksumCRC32C: sdk.String(p.Checksum)}
	}
	var out *s3.CompleteMultipartUploadOutput
	err := t.call(ctx, "CompleteMultipartUpload", func(ctx context.Context) error {
		var err error
		out, err = t.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: sdk.String(u.Bucket), Key: sdk.String(u.Key), UploadId: sdk.String(u.UploadID),
			MultipartUpload: &types.CompletedMultipartUpload{Parts: cp},
		})
		return err
	})
	obj := Object{Bucket: u.Bucket, Key: u.Key, Size: total, Format: st.in.Format, Parts: len(u.Parts), Reused: st.reused}
	if err != nil {
		// A retried Complete whose first attempt succeeded answers
		// NoSuchUpload: the object is there if its size matches.
		if apiCode(err) == "NoSuchUpload" {
			h, herr := t.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: sdk.String(u.Bucket), Key: sdk.String(u.Key)})
			if herr == nil && sdk.ToInt64(h.ContentLength) == total {
				obj.ETag = sdk.ToString(h.ETag)
				return obj, nil
			}
		}
		return Object{}, fmt.Errorf("complete multipart upload: %w", err)
	}
	obj.ETag = sdk.ToString(out.ETag)
	obj.Checksum = sdk.ToString(out.ChecksumCRC32C)
	return obj, nil
}

func trimQuotes(s string) string { return strings.Trim(s, `"`) }

// Recover finds the object a recorded upload became when the upload was
// completed but its caller never learnt so (a crash between
// CompleteMultipartUpload and recording the answer): the upload is gone and
// the key holds an object whose size and checksum are those of the recorded
// parts. ok is false when that is not so — the upload is still open (resume
// it with Stage), or the object is missing or different (stage again).
func (t *Target) Recover(ctx context.Context, up Upload, format disk.Format) (obj Object, ok bool, err error) {
	if up.UploadID == "" || up.Key == "" || len(up.Parts) == 0 {
		return Object{}, false, nil
	}
	bucket := cmp.Or(up.Bucket, t.cfg.Bucket)
	err = t.call(ctx, "ListParts", func(ctx context.Context) error {
		_, err := t.s3.ListParts(ctx, &s3.ListPartsInput{Bucket: sdk.String(bucket), Key: sdk.String(up.Key),
			UploadId: sdk.String(up.UploadID), MaxParts: sdk.Int32(1)})
		return err
	})
	switch {
	case err == nil:
		return Object{}, false, nil // still open: Stage resumes it
	case apiCode(err) != "NoSuchUpload":
		return Object{}, false, fmt.Errorf("recover s3://%s/%s: list parts of upload %s: %w", bucket, up.Key, up.UploadID, err)
	}
	var h *s3.HeadObjectOutput
	err = t.call(ctx, "HeadObject", func(ctx context.Context) error {
		var err error
		h, err = t.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: sdk.String(bucket), Key: sdk.String(up.Key),
			ChecksumMode: types.ChecksumModeEnabled})
		return err
	})
	if code := apiCode(err); code == "NotFound" || code == "NoSuchKey" {
		return Object{}, false, nil
	}
	if err != nil {
		return Object{}, false, fmt.Errorf("recover s3://%s/%s: %w", bucket, up.Key, err)
	}
	var size int64
	for _, p := range up.Parts {
		size += p.Size
	}
	obj = Object{Bucket: bucket, Key: up.Key, Size: sdk.ToInt64(h.ContentLength), ETag: sdk.ToString(h.ETag),
		Checksum: sdk.ToString(h.ChecksumCRC32C), Format: format, Parts: len(up.Parts), Reused: len(up.Parts)}
	if obj.Size != size || !sameParts(up.Parts, obj.Checksum, obj.ETag) {
		t.log.Info("an object is at the key of a finished upload but is not the recorded one; staging again",
			"bucket", bucket, "key", up.Key, "size", obj.Size, "recordedSize", size)
		return Object{}, false, nil
	}
	return obj, true, nil
}

// sameParts reports whether an object's composite checksum (CRC32C of the
// parts' CRC32Cs, "-N"), or failing that its multipart ETag (MD5 of the
// parts' MD5s, "-N"), is that of the recorded parts. Neither known: false.
func sameParts(parts []Part, checksum, etag string) bool {
	n := fmt.Sprintf("-%d", len(parts))
	if checksum != "" {
		crc := crc32.New(castagnoli)
		for _, p := range parts {
			b, err := base64.StdEncoding.DecodeString(p.Checksum)
			if err != nil || len(b) != 4 {
				return false
			}
			crc.Write(b)
		}
		return checksum == base64.StdEncoding.EncodeToString(crc.Sum(nil))+n
	}
	etag = trimQuotes(etag)
	if !strings.HasSuffix(etag, n) {
		return false
	}
	m := md5.New()
	for _, p := range parts {
		b, err := hex.DecodeString(trimQuotes(p.ETag))
		if err != nil || len(b) != md5.Size {
			return false
		}
		m.Write(b)
	}
	return etag == hex.EncodeToString(m.Sum(nil))+n
}
