package aws

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"golang.org/x/time/rate"
)

// EBS direct: a replica is an EBS snapshot written block by block
// (StartSnapshot, PutSnapshotBlock, CompleteSnapshot), a child of the
// previous replica of the same disk so that it holds only what changed, and
// read back block by block (ListSnapshotBlocks, ListChangedBlocks,
// GetSnapshotBlock) to prove it equals the source.

// EBSAPI is the part of the EBS direct client the target uses.
type EBSAPI interface {
	StartSnapshot(context.Context, *ebs.StartSnapshotInput, ...func(*ebs.Options)) (*ebs.StartSnapshotOutput, error)
	PutSnapshotBlock(context.Context, *ebs.PutSnapshotBlockInput, ...func(*ebs.Options)) (*ebs.PutSnapshotBlockOutput, error)
	CompleteSnapshot(context.Context, *ebs.CompleteSnapshotInput, ...func(*ebs.Options)) (*ebs.CompleteSnapshotOutput, error)
	GetSnapshotBlock(context.Context, *ebs.GetSnapshotBlockInput, ...func(*ebs.Options)) (*ebs.GetSnapshotBlockOutput, error)
	ListSnapshotBlocks(context.Context, *ebs.ListSnapshotBlocksInput, ...func(*ebs.Options)) (*ebs.ListSnapshotBlocksOutput, error)
	ListChangedBlocks(context.Context, *ebs.ListChangedBlocksInput, ...func(*ebs.Options)) (*ebs.ListChangedBlocksOutput, error)
}

// BlockSize is the EBS direct block size: every block is put and read
// whole.
const BlockSize = 512 << 10

// GiB is the unit of an EBS volume's size.
const GiB = 1 << 30

// VolumeGiB is the smallest EBS volume holding size bytes.
func VolumeGiB(size int64) int64 { return max(1, (size+GiB-1)/GiB) }

// EBS direct's per-snapshot request rates are quotas of the account
// (1,000 PutSnapshotBlock and GetSnapshotBlock requests per second per
// snapshot by default); the target stays well below them, so that several
// disks written at once and a verification beside them are not throttled.
const defaultBlockRate = 400

// ReplicaInput starts a replica snapshot.
type ReplicaInput struct {
	// VolumeGiB is the volume's size, at least its parent's.
	VolumeGiB int64
	// Parent is the previous replica of the disk; "" starts a chain.
	Parent string
	// ClientToken makes the start idempotent: derive it from the run and
	// the disk. Required.
	ClientToken string
	Description string
	Tags        map[string]string
	// Encrypted and KMSKeyID encrypt a chain's first snapshot; a child
	// keeps its parent's encryption (EBS refuses Encrypted with a parent).
	Encrypted bool
	KMSKeyID  string
}

// Replica is a started replica snapshot; it is plain data to persist.
type Replica struct {
	SnapshotID string `json:"snapshotId"`
	VolumeGiB  int64  `json:"volumeGiB"`
	Parent     string `json:"parent,omitempty"`
}

// StartReplica starts a pending snapshot to put blocks into. Idempotent
// through the client token: a repeated call returns the snapshot the first
// one started. A pending snapshot with nothing written for a day is
// cancelled by EBS.
func (t *Target) StartReplica(ctx context.Context, in ReplicaInput) (Replica, error) {
	if in.ClientToken == "" {
		return Replica{}, errors.New("start replica snapshot: a client token (derived from the run and disk) is required")
	}
	if in.VolumeGiB < 1 {
		return Replica{}, fmt.Errorf("start replica snapshot: volume size %d GiB", in.VolumeGiB)
	}
	if t.ebs == nil {
		return Replica{}, errors.New("start replica snapshot: no EBS direct client")
	}
	req := &ebs.StartSnapshotInput{VolumeSize: sdk.Int64(in.VolumeGiB), ClientToken: sdk.String(in.ClientToken),
		Description: optString(in.Description), Timeout: sdk.Int32(24 * 60)}
	for _, k := range slices.Sorted(maps.Keys(in.Tags)) {
		req.Tags = append(req.Tags, ebstypes.Tag{Key: sdk.String(k), Value: sdk.String(in.Tags[k])})
	}
	if in.Parent != "" {
		req.ParentSnapshotId = sdk.String(in.Parent)
	} else if in.Encrypted || in.KMSKeyID != "" {
		req.Encrypted, req.KmsKeyArn = sdk.Bool(true), optString(in.KMSKeyID)
	}
	var out *ebs.StartSnapshotOutput
	err := t.call(ctx, "StartSnapshot", func(ctx context.Context) (err error) {
		out, err = t.ebs.StartSnapshot(ctx, req)
		return err
	})
	if err != nil {
		what := "a new chain"
		if in.Parent != "" {
			what = "a child of " + in.Parent
		}
		return Replica{}, fmt.Errorf("start replica snapshot (%d GiB, %s): %w", in.VolumeGiB, what, err)
	}
	return Replica{SnapshotID: sdk.ToString(out.SnapshotId), VolumeGiB: sdk.ToInt64(out.VolumeSize), Parent: sdk.ToString(out.ParentSnapshotId)}, nil
}

// WriteState is how far a BlockWriter got, to persist and to resume from:
// every block below Next that was given to the writer is stored.
type WriteState struct {
	Next int64 `json:"next"`
	// Count is the number of blocks stored below Next.
	Count int64 `json:"count"`
	// Aggregate is the running SHA-256 of the checksums of those blocks in
	// index order (its marshalled state): CompleteSnapshot's LINEAR
	// aggregate checksum.
	Aggregate []byte `json:"aggregate,omitempty"`
}

// WriterOptions tune a BlockWriter; zero fields take the defaults.
type WriterOptions struct {
	// Concurrency is the number of blocks put at once (default 8). The
	// writer holds twice as many block buffers: its memory is bounded by
	// them whatever the disk's size.
	Concurrency int
	// RequestsPerSecond bounds the PutSnapshotBlock requests on this
	// snapshot (default 400).
	RequestsPerSecond float64
	// Bandwidth, when not nil, is waited on for every block's bytes before
	// it is sent (nil: no cap). A rate.Limiter needs a burst of at least
	// BlockSize.
	Bandwidth Limiter
	// Resume continues a writer whose state was persisted: the caller
	// gives blocks again from Resume.Next.
	Resume *WriteState
}

// BlockWriter puts blocks into one pending replica snapshot, a few at a
// time, and keeps the state CompleteReplica needs. Put is called from one
// goroutine in ascending block order; State and Bytes may be called from
// any goroutine (a progress ticker).
type BlockWriter struct {
	t     *Target
	snap  string
	o     WriterOptions
	limit *rate.Limiter
	work  chan *pending
	free  chan []byte
	wg    sync.WaitGroup
	ctx   context.Context
	stop  context.CancelFunc
	bytes atomic.Int64

	mu    sync.Mutex
	queue []*pending // given, in index order, not yet below the frontier
	next  int64      // every block below it was given
	count int64
	agg   hash.Hash
	err   error
}

type pending struct {
	index int64
	data  []byte
	sum   [sha256.Size]byte
	done  bool
}

// NewBlockWriter opens a writer on a pending snapshot. Its puts run under
// ctx; Close must be called.
func (t *Target) NewBlockWriter(ctx context.Context, snapshotID string, o WriterOptions) (*BlockWriter, error) {
	if t.ebs == nil {
		return nil, errors.New("write replica snapshot: no EBS direct client")
	}
	o.Concurrency = max(1, cmp.Or(o.Concurrency, 8))
	if o.RequestsPerSecond <= 0 {
		o.RequestsPerSecond = defaultBlockRate
	}
	w := &BlockWriter{t: t, snap: snapshotID, o: o, agg: sha256.New(),
		limit: rate.NewLimiter(rate.Limit(o.RequestsPerSecond), o.Concurrency),
		work:  make(chan *pending, o.Concurrency), free: make(chan []byte, 2*o.Concurrency)}
	if r := o.Resume; r != nil {
		w.next, w.count = r.Next, r.Count
		if len(r.Aggregate) > 0 {
			if err := w.agg.(encoding.BinaryUnmarshaler).UnmarshalBinary(r.Aggregate); err != nil {
				return nil, fmt.Errorf("write replica snapshot %s: the recorded checksum state is unreadable: %w", snapshotID, err)
			}
		}
	}
	for range 2 * o.Concurrency {
		w.free <- make([]byte, BlockSize)
	}
	w.ctx, w.stop = context.WithCancel(ctx)
	for range o.Concurrency {
		w.wg.Add(1)
		go w.worker()
	}
	return w, nil
}

// Put stores block index with data (BlockSize bytes, copied) whose SHA-256
// is sum. Blocks are given in ascending order, each once, at or after the
// Resume state's Next. It waits while all buffers are in flight, and
// returns the first failure of any put so far.
func (w *BlockWriter) Put(ctx context.Context, index int64, data []byte, sum [sha256.Size]byte) error {
	if len(data) != BlockSize {
		return fmt.Errorf("put block %d of %s: %d bytes, not %d", index, w.snap, len(data), BlockSize)
	}
	w.mu.Lock()
	err, next := w.err, w.next
	w.mu.Unlock()
	if err != nil {
		return err
	}
	if index < next {
		return fmt.Errorf("put block %d of %s: blocks go in ascending order, and %d was given", index, w.snap, next)
	}
	var buf []byte
	select {
	case buf = <-w.free:
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-w.ctx.Done():
		return w.failure()
	}
	copy(buf, data)
	p := &pending{index: index, data: buf, sum: sum}
	w.mu.Lock()
	w.queue = append(w.queue, p)
	w.next = index + 1
	w.mu.Unlock()
	select {
	case w.work <- p:
		return nil
	case <-w.ctx.Done():
		return w.failure()
	}
}

// Advance tells the writer every block below next that needs writing was
// given (the caller skipped the rest: unchanged or zero), so State moves
// past them.
func (w *BlockWriter) Advance(next int64) {
	w.mu.Lock()
	w.next = max(w.next, next)
	w.mu.Unlock()
}

func (w *BlockWriter) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	return context.Cause(w.ctx)
}

func (w *BlockWriter) worker() {
	defer w.wg.Done()
	for p := range w.work {
		err := w.put(p)
		w.mu.Lock()
		if err != nil && w.err == nil {
			w.err = err
			w.stop()
		}
		p.done = err == nil
		// The frontier moves over the blocks stored in order; their
		// checksums join the aggregate in index order.
		for len(w.queue) > 0 && w.queue[0].done {
			q := w.queue[0]
			w.agg.Write(q.sum[:])
			w.count++
			w.queue = w.queue[1:]
		}
		w.mu.Unlock()
		w.free <- p.data
	}
}

func (w *BlockWriter) put(p *pending) error {
	if b := w.o.Bandwidth; b != nil {
		if err := b.WaitN(w.ctx, BlockSize); err != nil {
			return fmt.Errorf("put block %d of %s: wait for bandwidth: %w", p.index, w.snap, err)
		}
	}
	sum := base64.StdEncoding.EncodeToString(p.sum[:])
	err := w.t.call(w.ctx, "PutSnapshotBlock", func(ctx context.Context) error {
		if err := w.limit.Wait(ctx); err != nil {
			return err
		}
		_, err := w.t.ebs.PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{
			SnapshotId: sdk.String(w.snap), BlockIndex: sdk.Int32(int32(p.index)), BlockData: bytes.NewReader(p.data),
			DataLength: sdk.Int32(BlockSize), Checksum: sdk.String(sum), ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("put block %d of %s: %w", p.index, w.snap, err)
	}
	w.bytes.Add(BlockSize)
	return nil
}

// State is what the writer has stored so far, to persist. Safe from any
// goroutine.
func (w *BlockWriter) State() WriteState {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := WriteState{Next: w.next, Count: w.count}
	if len(w.queue) > 0 {
		st.Next = w.queue[0].index
	}
	st.Aggregate, _ = w.agg.(encoding.BinaryMarshaler).MarshalBinary()
	return st
}

// Bytes is the number of bytes this writer has stored (not those of the
// state it resumed from).
func (w *BlockWriter) Bytes() int64 { return w.bytes.Load() }

// Close waits for the puts in flight and returns the final state, and the
// first failure. A writer that failed keeps the blocks stored before the
// failure in its state, to resume from.
func (w *BlockWriter) Close() (WriteState, error) {
	close(w.work)
	w.wg.Wait()
	w.stop()
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	return w.State(), err
}

// ReplicaError is a snapshot EBS refused to complete: the aggregate
// checksum or the block count did not match what it stored (the snapshot
// is then in state error and must be deleted).
type ReplicaError struct {
	SnapshotID string
	Status     string
}

func (e *ReplicaError) Error() string {
	return fmt.Sprintf("replica snapshot %s ended %s: EBS did not accept its blocks' aggregate checksum", e.SnapshotID, e.Status)
}

// CompleteReplica completes a pending snapshot written by a BlockWriter
// whose final state is st. Completing a completed snapshot succeeds.
func (t *Target) CompleteReplica(ctx context.Context, snapshotID string, st WriteState) error {
	agg := sha256.New()
	if len(st.Aggregate) > 0 {
		if err := agg.(encoding.BinaryUnmarshaler).UnmarshalBinary(st.Aggregate); err != nil {
			return fmt.Errorf("complete replica snapshot %s: the checksum state is unreadable: %w", snapshotID, err)
		}
	}
	req := &ebs.CompleteSnapshotInput{SnapshotId: sdk.String(snapshotID), ChangedBlocksCount: sdk.Int32(int32(st.Count))}
	if st.Count > 0 {
		req.Checksum = sdk.String(base64.StdEncoding.EncodeToString(agg.Sum(nil)))
		req.ChecksumAlgorithm = ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256
		req.ChecksumAggregationMethod = ebstypes.ChecksumAggregationMethodChecksumAggregationLinear
	}
	var out *ebs.CompleteSnapshotOutput
	err := t.call(ctx, "CompleteSnapshot", func(ctx context.Context) (err error) {
		out, err = t.ebs.CompleteSnapshot(ctx, req)
		return err
	})
	if err != nil {
		return fmt.Errorf("complete replica snapshot %s (%d blocks): %w", snapshotID, st.Count, err)
	}
	switch out.Status {
	case ebstypes.StatusCompleted, ebstypes.StatusPending:
		// Pending: EBS completes it in the background; it is usable once
		// DescribeSnapshots says completed.
		return nil
	}
	return &ReplicaError{SnapshotID: snapshotID, Status: string(out.Status)}
}

// SnapshotState is the state of an EBS snapshot (pending, completed,
// error), or "" when it does not exist (any more).
func (t *Target) SnapshotState(ctx context.Context, id string) (string, error) {
	var out *ec2.DescribeSnapshotsOutput
	err := t.call(ctx, "DescribeSnapshots", func(ctx context.Context) (err error) {
		out, err = t.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}, OwnerIds: []string{"self"}})
		return err
	})
	if notFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up snapshot %s: %w", id, err)
	}
	for _, s := range out.Snapshots {
		if sdk.ToString(s.SnapshotId) == id {
			return string(s.State), nil
		}
	}
	return "", nil
}

// Block is a block of a snapshot that holds data, with the token that
// reads it.
type Block struct {
	Index int64
	Token string
}

// ListBlocks calls fn with the blocks of completed snapshot id that hold
// data, from index start, a page at a time in ascending order; fn returning
// an error stops the listing with it.
func (t *Target) ListBlocks(ctx context.Context, id string, start int64, fn func([]Block) error) error {
	var token *string
	for {
		var out *ebs.ListSnapshotBlocksOutput
		err := t.call(ctx, "ListSnapshotBlocks", func(ctx context.Context) (err error) {
			out, err = t.ebs.ListSnapshotBlocks(ctx, &ebs.ListSnapshotBlocksInput{SnapshotId: sdk.String(id),
				StartingBlockIndex: sdk.Int32(int32(start)), NextToken: token, MaxResults: sdk.Int32(10000)})
			return err
		})
		if err != nil {
			return fmt.Errorf("list the blocks of snapshot %s from %d: %w", id, start, err)
		}
		page := make([]Block, 0, len(out.Blocks))
		for _, b := range out.Blocks {
			page = append(page, Block{Index: int64(sdk.ToInt32(b.BlockIndex)), Token: sdk.ToString(b.BlockToken)})
		}
		if err := fn(page); err != nil {
			return err
		}
		if token = out.NextToken; sdk.ToString(token) == "" {
			return nil
		}
	}
}

// ChangedBlocks calls fn with the blocks of completed snapshot second that
// differ from completed snapshot first of its lineage (every block holding
// data when first is ""), a page at a time in ascending order. A block
// that holds data only in first has no Token.
func (t *Target) ChangedBlocks(ctx context.Context, first, second string, fn func([]Block) error) error {
	var token *string
	for {
		var out *ebs.ListChangedBlocksOutput
		err := t.call(ctx, "ListChangedBlocks", func(ctx context.Context) (err error) {
			out, err = t.ebs.ListChangedBlocks(ctx, &ebs.ListChangedBlocksInput{FirstSnapshotId: optString(first),
				SecondSnapshotId: sdk.String(second), NextToken: token, MaxResults: sdk.Int32(10000)})
			return err
		})
		if err != nil {
			return fmt.Errorf("list the blocks of snapshot %s changed since %s: %w", second, cmp.Or(first, "its start"), err)
		}
		page := make([]Block, 0, len(out.ChangedBlocks))
		for _, b := range out.ChangedBlocks {
			page = append(page, Block{Index: int64(sdk.ToInt32(b.BlockIndex)), Token: sdk.ToString(b.SecondBlockToken)})
		}
		if err := fn(page); err != nil {
			return err
		}
		if token = out.NextToken; sdk.ToString(token) == "" {
			return nil
		}
	}
}

// BlockReader reads blocks of one completed snapshot, at a bounded request
// rate; safe for concurrent use.
type BlockReader struct {
	t     *Target
	snap  string
	limit *rate.Limiter
	bytes atomic.Int64
}

// NewBlockReader reads blocks of snapshot id at most requestsPerSecond
// (default 400) at a time.
func (t *Target) NewBlockReader(id string, requestsPerSecond float64) *BlockReader {
	if requestsPerSecond <= 0 {
		requestsPerSecond = defaultBlockRate
	}
	return &BlockReader{t: t, snap: id, limit: rate.NewLimiter(rate.Limit(requestsPerSecond), 8)}
}

// Get reads block b into buf (BlockSize bytes) and returns the checksum
// EBS answered with it (base64 SHA-256 of the block as it was put).
// Callers compare the data's own hash: the answered one says what was
// sent, not what is stored.
func (r *BlockReader) Get(ctx context.Context, b Block, buf []byte) (string, error) {
	if len(buf) != BlockSize {
		return "", fmt.Errorf("get block %d of %s: buffer of %d bytes", b.Index, r.snap, len(buf))
	}
	var sum string
	err := r.t.call(ctx, "GetSnapshotBlock", func(ctx context.Context) error {
		if err := r.limit.Wait(ctx); err != nil {
			return err
		}
		out, err := r.t.ebs.GetSnapshotBlock(ctx, &ebs.GetSnapshotBlockInput{SnapshotId: sdk.String(r.snap),
			BlockIndex: sdk.Int32(int32(b.Index)), BlockToken: sdk.String(b.Token)})
		if err != nil {
			return err
		}
		defer out.BlockData.Close()
		if n := sdk.ToInt32(out.DataLength); n != BlockSize {
			return fmt.Errorf("EBS answered %d bytes", n)
		}
		if _, err := io.ReadFull(out.BlockData, buf); err != nil {
			return fmt.Errorf("read the block: %w", err)
		}
		sum = sdk.ToString(out.Checksum)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("get block %d of %s: %w", b.Index, r.snap, err)
	}
	r.bytes.Add(BlockSize)
	return sum, nil
}

// Bytes is the number of bytes read so far.
func (r *BlockReader) Bytes() int64 { return r.bytes.Load() }

// CheckEBSDirect tells whether the connector can use EBS direct in its
// region: an error says why not (no endpoint in the region, or no
// permission), and replication then goes through S3 and VM Import.
func (t *Target) CheckEBSDirect(ctx context.Context) error {
	if t.ebs == nil {
		return errors.New("EBS direct: no client configured")
	}
	// A well-formed id of no snapshot: an endpoint that answers "not
	// found" serves the API.
	err := t.call(ctx, "ListSnapshotBlocks", func(ctx context.Context) error {
		_, err := t.ebs.ListSnapshotBlocks(ctx, &ebs.ListSnapshotBlocksInput{SnapshotId: sdk.String("snap-00000000000000000"), MaxResults: sdk.Int32(100)})
		return err
	})
	switch code := apiCode(err); {
	case err == nil, code == "ResourceNotFoundException", code == "ValidationException":
		return nil
	case code == "AccessDeniedException", code == "UnauthorizedOperation", strings.Contains(code, "AccessDenied"):
		return fmt.Errorf("EBS direct in %s: the connector's credentials may not use it (allow ebs:StartSnapshot, ebs:PutSnapshotBlock, ebs:CompleteSnapshot, ebs:ListSnapshotBlocks, ebs:ListChangedBlocks and ebs:GetSnapshotBlock): %w", t.cfg.Region, err)
	case code != "":
		return fmt.Errorf("EBS direct in %s: %w", t.cfg.Region, err)
	}
	return fmt.Errorf("EBS direct in %s: its endpoint cannot be reached (the region may not offer it): %w", t.cfg.Region, err)
}
