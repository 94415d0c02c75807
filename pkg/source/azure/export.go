package azure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
)

// sampleBytes bounds the data read to measure how well a dense disk
// compresses, and a 32nd of its allocation (so the extra read stays small).
const sampleBytes = 1 << 20

// Export grants read access to each snapshot of the checkpoint, lists its
// allocated page ranges and picks, per disk, the smaller of a VHD and a
// streamOptimized VMDK (logging which and why). Close revokes the grants.
func (s *Source) Export(ctx context.Context, cp source.Checkpoint) (source.Export, error) {
	rid, err := parseID(cp.VMID, "virtualMachines")
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	name := cmpOr(cp.ID, cp.Name)
	snaps, err := s.snapshotsOf(ctx, rid.ResourceGroupName, cp.VMID, name)
	if err != nil {
		return nil, fmt.Errorf("export checkpoint %q: %w", name, err)
	}
	if len(snaps) == 0 {
		return nil, fmt.Errorf("export checkpoint %q of vm %s: it has no snapshots: %w", name, cp.VMID, source.ErrNotFound)
	}
	e := &export{s: s, cp: cp, name: name, rg: rid.ResourceGroupName, snaps: snaps, cleanCtx: context.WithoutCancel(ctx)}
	fail := func(err error) (source.Export, error) {
		return nil, errors.Join(err, e.Close(err))
	}
	for _, sn := range snaps {
		p := sn.Properties
		key := val(sn.Tags[tagDisk])
		if p == nil || val(p.ProvisioningState) != "Succeeded" {
			state := "no properties"
			if p != nil {
				state = val(p.ProvisioningState)
			}
			return fail(fmt.Errorf("export checkpoint %q: snapshot %s of disk %s is not ready (%s); take the checkpoint again", name, val(sn.Name), key, state))
		}
		if c := p.CompletionPercent; c != nil && *c < 100 {
			return fail(fmt.Errorf("export checkpoint %q: the background copy of snapshot %s is at %.0f%%", name, val(sn.Name), *c))
		}
		g := &readGrant{s: s, rg: e.rg, snap: val(sn.Name), entra: val(p.DataAccessAuthMode) == armcompute.DataAccessAuthModeAzureActiveDirectory}
		e.grants = append(e.grants, g)
		if err := g.renew(ctx); err != nil {
			return fail(fmt.Errorf("export checkpoint %q: disk %s: %w", name, key, err))
		}
		size := val(p.DiskSizeBytes)
		ext, err := g.pageRanges(ctx, size)
		if err != nil {
			return fail(fmt.Errorf("export checkpoint %q: disk %s: %w", name, key, err))
		}
		pl := choose(size, ext, func() ([]byte, error) {
			off, n := sampleAt(ext, min(sampleBytes, allocated(ext)/32))
			b := make([]byte, n)
			return b, g.read(ctx, off, b)
		})
		s.log.Info("azure disk stream format", "vm", cp.VMID, "disk", key, "format", pl.Format, "dynamic", pl.Dynamic,
			"virtualBytes", size, "allocatedBytes", allocated(ext), "vhdBytes", pl.VHD, "vmdkMaxBytes", pl.VMDKMax, "why", pl.Reason)
		e.plans = append(e.plans, pl)
		e.disks = append(e.disks, source.ExportDisk{
			Disk:       source.Disk{Key: key, Label: val(sn.Name), CapacityBytes: size, Controller: controller(key), Backing: val(sn.ID)},
			Format:     pl.Format,
			StreamSize: pl.Size,
			Extents:    ext,
		})
	}
	return e, nil
}

func allocated(ext []disk.Extent) int64 {
	var n int64
	for _, e := range ext {
		n += e.Length
	}
	return n
}

type export struct {
	s        *Source
	cp       source.Checkpoint
	name, rg string
	snaps    []*armcompute.Snapshot
	grants   []*readGrant
	plans    []plan
	disks    []source.ExportDisk
	cleanCtx context.Context

	mu       sync.Mutex
	closed   bool
	once     sync.Once
	closeErr error
}

// ID names the read grants of the checkpoint's snapshots, which AbortExport
// revokes after a crash.
func (e *export) ID() string                 { return "read-grant:" + e.name }
func (e *export) Disks() []source.ExportDisk { return e.disks }
func (e *export) Progress(int)               {}

// Open streams disk i as its plan says, reading only its allocated ranges.
func (e *export) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if err := source.CheckOpen(e.name, closed, i, len(e.disks)); err != nil {
		return nil, err
	}
	d, pl, g := e.disks[i], e.plans[i], e.grants[i]
	br := newBlobReader(ctx, d.CapacityBytes, d.Extents, e.s.cfg.ReadConcurrency, e.s.cfg.ChunkBytes, g.read)
	enc := disk.NewEncoder(br, pl.Format, disk.EncodeOptions{Dynamic: pl.Dynamic})
	return &stream{enc: enc, br: br, e: e, d: d, pl: pl}, nil
}

// stream is one disk being encoded: written straight into the consumer
// when it asks (WriteTo), through a pipe when it reads.
type stream struct {
	enc  *disk.Encoder
	br   *blobReader
	e    *export
	d    source.ExportDisk
	pl   plan
	once sync.Once
}

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.enc.Read(p)
	if err != nil && err != io.EOF {
		err = s.wrap(err)
	}
	return n, err
}

// WriteTo encodes the disk straight into w.
func (s *stream) WriteTo(w io.Writer) (int64, error) {
	n, err := s.enc.WriteTo(w)
	if err != nil {
		err = s.wrap(err)
	}
	s.done(n, err)
	return n, err
}

// BytesRead is what the disk's page-range reads fetched from the blob.
func (s *stream) BytesRead() int64 { return s.br.fetched.Load() }

// Pacing says how the disk is being encoded: the format chosen and why,
// and for a VMDK how its grains are.
func (s *stream) Pacing() disk.Pacing {
	p := s.enc.Pacing()
	p.Plan = s.pl.Reason
	return p
}

func (s *stream) wrap(err error) error {
	return fmt.Errorf("stream disk %s of checkpoint %q: %w", s.d.Key, s.e.name, err)
}

// done stops the reads in flight and logs what the disk cost, once.
func (s *stream) done(n int64, err error) {
	s.once.Do(func() {
		s.br.close()
		s.e.s.log.Info("azure disk streamed", "vm", s.e.cp.VMID, "disk", s.d.Key, "format", s.pl.Format, "streamBytes", n,
			"readBytes", s.br.fetched.Load(), "allocatedBytes", allocated(s.d.Extents), "virtualBytes", s.d.CapacityBytes,
			"rangeReads", s.br.requests.Load(), "err", err)
	})
}

// Close stops the reads in flight and waits for the encoder to end.
func (s *stream) Close() error {
	s.br.cancel()
	s.enc.Close()
	s.done(s.enc.Written(), nil)
	return nil
}

// Close revokes the read grants, success or not, under its own context.
func (e *export) Close(error) error {
	e.once.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		ctx, cancel := cleanupContext(e.cleanCtx)
		defer cancel()
		if err := e.s.revoke(ctx, e.rg, e.snaps); err != nil {
			e.closeErr = fmt.Errorf("revoke read access to the snapshots of checkpoint %q: %w", e.name, err)
		}
	})
	return e.closeErr
}

// AbortExport revokes the read grants on a checkpoint's snapshots that a
// crashed process left open.
func (s *Source) AbortExport(ctx context.Context, cp source.Checkpoint, _ string) error {
	rid, err := parseID(cp.VMID, "virtualMachines")
	if err != nil {
		return nil
	}
	snaps, err := s.snapshotsOf(ctx, rid.ResourceGroupName, cp.VMID, cmpOr(cp.ID, cp.Name))
	if err == nil {
		err = s.revoke(ctx, rid.ResourceGroupName, snaps)
	}
	if err != nil && !errors.Is(err, source.ErrNotFound) {
		return fmt.Errorf("abort the export of checkpoint %q: %w", cmpOr(cp.ID, cp.Name), err)
	}
	return nil
}

// readGrant is a time-limited read SAS on one snapshot, renewed before it
// expires (or when the data endpoint refuses it) while a read goes on.
type readGrant struct {
	s     *Source
	rg    string
	snap  string
	entra bool

	renewing sync.Mutex // one renewal at a time; the others wait for it
	mu       sync.Mutex
	expiry   time.Time
	client   *pageblob.Client
	sas      string // the grant's URL, for x-ms-previous-snapshot-url
}

// renew asks for a (new) read grant and waits for it; each request is a
// call under the retry policy.
func (g *readGrant) renew(ctx context.Context) error {
	dur := g.s.cfg.GrantDuration
	op := "grant read access to snapshot " + g.snap
	var p *runtime.Poller[armcompute.SnapshotsClientGrantAccessResponse]
	err := g.s.call(ctx, op, func(ctx context.Context) (err error) {
		p, err = g.s.snaps.BeginGrantAccess(ctx, g.rg, g.snap, armcompute.GrantAccessData{
			Access: to.Ptr(armcompute.AccessLevelRead), DurationInSeconds: to.Ptr(int32(max(1, dur/time.Second))),
		}, nil)
		return err
	})
	if err != nil {
		return err
	}
	start := time.Now()
	polls := []*runtime.Poller[armcompute.SnapshotsClientGrantAccessResponse]{p}
	if err := waitAll(ctx, g.s, op, polls); err != nil {
		return err
	}
	r, err := p.Result(ctx) // cached by waitAll's call of it
	if err != nil || r.AccessSAS == nil {
		return classify(op, errors.Join(err, errors.New("no SAS in the answer")))
	}
	// The SDK's retries are off, as for every Azure client here (New):
	// read is the one policy around a ranged read.
	opts := &pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: g.s.copts.Transport, Retry: policy.RetryOptions{MaxRetries: -1}}}
	var c *pageblob.Client
	if g.entra {
		// The disk's data access needs an Entra ID token (the identity
		// holds Data Operator for Managed Disks) besides the SAS.
		opts.Audience = diskAudience
		c, err = pageblob.NewClient(*r.AccessSAS, g.s.cred, opts)
	} else {
		c, err = pageblob.NewClientWithNoCredential(*r.AccessSAS, opts)
	}
	if err != nil {
		return fmt.Errorf("read snapshot %s: %w", g.snap, err)
	}
	g.mu.Lock()
	g.client, g.expiry, g.sas = c, start.Add(dur), *r.AccessSAS
	g.mu.Unlock()
	return nil
}

// url is the grant's read URL (a SAS: never logged), renewed as current
// renews it.
func (g *readGrant) url(ctx context.Context) (string, error) {
	if _, err := g.current(ctx); err != nil {
		return "", err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sas, nil
}

// current returns the grant's client, renewing the grant when less than a
// quarter of its lifetime is left.
func (g *readGrant) current(ctx context.Context) (*pageblob.Client, error) {
	fresh := func() (*pageblob.Client, time.Duration) {
		g.mu.Lock()
		defer g.mu.Unlock()
		left := time.Until(g.expiry)
		if g.client != nil && left > g.s.cfg.GrantDuration/4 {
			return g.client, left
		}
		return nil, left
	}
	if c, _ := fresh(); c != nil {
		return c, nil
	}
	g.renewing.Lock()
	defer g.renewing.Unlock()
	c, left := fresh()
	if c != nil {
		return c, nil // renewed while this read waited
	}
	g.s.log.Info("renewing the read grant of a snapshot", "snapshot", g.snap, "left", left.Round(time.Second))
	if err := g.renew(ctx); err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.client, nil
}

// read fills p from the snapshot at off with one ranged read (the request
// and its body, retried as one call under the retry policy). A refused
// grant (expired early, revoked by an administrator) is renewed, once, and
// the read tried again.
func (g *readGrant) read(ctx context.Context, off int64, p []byte) error {
	if len(p) == 0 {
		return nil // a ranged read of 0 bytes would read the whole blob
	}
	op := fmt.Sprintf("read snapshot %s at %d", g.snap, off)
	renewed := false
	pol := g.s.policy(op).With(func(err error) bool {
		if renewed || !refused(err) {
			return false
		}
		renewed = true
		g.mu.Lock()
		g.expiry = time.Time{} // the next try's current renews it
		g.mu.Unlock()
		return true
	})
	return pol.Do(ctx, func(ctx context.Context) error {
		c, err := g.current(ctx)
		if err != nil {
			return err
		}
		return classify(op, readRange(ctx, c, off, p))
	})
}

func readRange(ctx context.Context, c *pageblob.Client, off int64, p []byte) error {
	r, err := c.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: off, Count: int64(len(p))}})
	if err != nil {
		return err
	}
	defer r.Body.Close()
	if _, err := io.ReadFull(r.Body, p); err != nil {
		return fmt.Errorf("read %d bytes: %w", len(p), err)
	}
	return nil
}

func refused(err error) bool {
	var re *azcore.ResponseError
	return bloberror.HasCode(err, bloberror.AuthenticationFailed) || (errors.As(err, &re) && re.StatusCode == http.StatusForbidden)
}

// pageRanges lists the snapshot's allocated page ranges (drained), merged
// where they touch.
func (g *readGrant) pageRanges(ctx context.Context, size int64) ([]disk.Extent, error) {
	c, err := g.current(ctx)
	if err != nil {
		return nil, err
	}
	var pages []pageblob.GetPageRangesResponse
	err = drain(ctx, g.s, "list the page ranges of snapshot "+g.snap, func() *runtime.Pager[pageblob.GetPageRangesResponse] {
		return c.NewGetPageRangesPager(nil)
	}, func(p pageblob.GetPageRangesResponse) { pages = append(pages, p) })
	if err != nil {
		return nil, err
	}
	var out []disk.Extent
	for _, page := range pages {
		for _, r := range page.PageRange {
			if r == nil || r.Start == nil || r.End == nil {
				continue
			}
			e := disk.Extent{Offset: *r.Start, Length: *r.End - *r.Start + 1}
			if e.Offset < 0 || e.Length <= 0 || e.End() > size {
				return nil, fmt.Errorf("snapshot %s: page range %d-%d lies outside the %d-byte disk", g.snap, *r.Start, *r.End, size)
			}
			if n := len(out); n > 0 && out[n-1].End() >= e.Offset {
				if e.Offset < out[n-1].Offset {
					return nil, fmt.Errorf("snapshot %s: page ranges out of order at %d", g.snap, e.Offset)
				}
				out[n-1].Length = max(out[n-1].End(), e.End()) - out[n-1].Offset
				continue
			}
			out = append(out, e)
		}
	}
	return out, nil
}
