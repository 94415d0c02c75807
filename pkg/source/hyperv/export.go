package hyperv

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
)

// Export opens the files each disk of the checkpoint froze, with their
// older parents, on the node running the VM now, and checks every chain
// (pkg/disk verifies each parent link). Each disk then streams as a
// streamOptimized VMDK of the chain's content, reading only its allocated
// blocks. A checkpoint that is gone wraps source.ErrNotFound; a VM whose
// disks are being merged is refused (the files may change under the read).
func (s *Source) Export(ctx context.Context, cp source.Checkpoint) (source.Export, error) {
	if err := checkID(cp.VMID); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if cp.ID == "" {
		return nil, fmt.Errorf("export checkpoint %q of vm %s: no checkpoint id: %w", cp.Name, cp.VMID, source.ErrNotFound)
	}
	h, err := s.hostVM(ctx, cp.VMID)
	if err != nil {
		return nil, fmt.Errorf("export checkpoint %q: %w", cp.Name, err)
	}
	hx, err := s.ctl.export(ctx, cp.VMID, cp.ID)
	if err != nil {
		return nil, fmt.Errorf("export checkpoint %q of vm %q: %w", cp.Name, h.Name, err)
	}
	if strings.Contains(strings.ToLower(hx.Status), "merg") {
		return nil, fmt.Errorf("export checkpoint %q of vm %q: a checkpoint merge is in progress (%s); retry when it has finished", cp.Name, h.Name, hx.Status)
	}
	e := &export{cp: cp, fs: s.files()}
	for i, d := range orderDisks(hx.Disks, h.bootDisk) {
		chain, err := chainOrder(d)
		var img disk.Image
		if err == nil {
			img, err = openChain(ctx, e.fs, hx.Host, chain)
		}
		if err != nil {
			e.fs.close()
			return nil, fmt.Errorf("export checkpoint %q of vm %q: disk %d (%s): %w", cp.Name, h.Name, i+1, d.Controller, err)
		}
		e.imgs = append(e.imgs, img)
		e.disks = append(e.disks, source.ExportDisk{
			Disk:       source.Disk{Key: d.Controller, Label: fmt.Sprintf("Hard Drive %d", i+1), CapacityBytes: img.Size(), Controller: d.Controller, Backing: d.Path},
			Format:     disk.VMDK,
			StreamSize: -1,
			Extents:    img.Extents(),
		})
	}
	return e, nil
}

type export struct {
	cp    source.Checkpoint
	fs    files
	imgs  []disk.Image
	disks []source.ExportDisk

	mu     sync.Mutex
	closed bool
	once   sync.Once
}

// openChain opens a disk's chain of files (base first) on node and reads
// them as one image; the files close with fs.
func openChain(ctx context.Context, fs files, node string, chain []vhdFile) (disk.Image, error) {
	var cf []disk.ChainFile
	for _, f := range chain {
		fh, err := fs.open(ctx, node, f.Path)
		if err != nil {
			return nil, err
		}
		cf = append(cf, disk.ChainFile{Name: f.Path, R: fh, Size: fh.Size()})
	}
	return disk.OpenChain(cf)
}

// ID is empty: an SMB read holds nothing on the host that outlives the
// connection.
func (e *export) ID() string                 { return "" }
func (e *export) Disks() []source.ExportDisk { return e.disks }
func (e *export) Progress(int)               {}

// Open streams disk i as a streamOptimized VMDK, encoded as it is read:
// written straight into the consumer when it asks (WriteTo), through a
// pipe when it reads.
func (e *export) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if err := source.CheckOpen(e.cp.Name, closed, i, len(e.imgs)); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	ra := newReadahead(sctx, e.imgs[i])
	enc := disk.NewEncoder(ra, disk.VMDK, disk.EncodeOptions{})
	return &stream{enc: enc, ra: ra, cancel: cancel, what: fmt.Sprintf("disk %d of checkpoint %q", i+1, e.cp.Name)}, nil
}

// Close releases the SMB sessions; nothing on the host needs completing
// or aborting.
func (e *export) Close(error) error {
	e.once.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		e.fs.close()
	})
	return nil
}

type stream struct {
	enc    *disk.Encoder
	ra     *readahead
	cancel context.CancelFunc
	what   string
}

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.enc.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%s: %w", s.what, err)
	}
	return n, err
}

// WriteTo encodes the disk straight into w.
func (s *stream) WriteTo(w io.Writer) (int64, error) {
	n, err := s.enc.WriteTo(w)
	if err != nil {
		err = fmt.Errorf("%s: %w", s.what, err)
	}
	return n, err
}

// BytesRead is what the encoder's reads took from the disk's chain of
// files: its allocated blocks.
func (s *stream) BytesRead() int64 { return s.ra.read.Load() }

// Pacing says how the disk's grains are being encoded, and why.
func (s *stream) Pacing() disk.Pacing { return s.enc.Pacing() }

// Close stops the encoder and waits for it, so no read of the share runs
// after the stream is closed.
func (s *stream) Close() error {
	s.cancel()
	return s.enc.Close()
}

// readahead serves the encoder's 64 KiB reads from reads of up to 1 MiB
// of the image, never past the end of the allocated extent being read, so
// a round trip to the share fetches 16 grains and no unallocated byte.
type readahead struct {
	ctx context.Context
	img disk.Image
	ext []disk.Extent

	mu  sync.Mutex
	buf []byte
	off int64
	n   int

	read atomic.Int64 // bytes read from img
}

const readaheadWindow = 1 << 20

func newReadahead(ctx context.Context, img disk.Image) *readahead {
	return &readahead{ctx: ctx, img: img, ext: img.Extents(), buf: make([]byte, readaheadWindow)}
}

func (r *readahead) Size() int64            { return r.img.Size() }
func (r *readahead) Extents() []disk.Extent { return r.ext }

func (r *readahead) ReadAt(p []byte, off int64) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if off >= r.off && off+int64(len(p)) <= r.off+int64(r.n) {
		return copy(p, r.buf[off-r.off:]), nil
	}
	if len(p) >= len(r.buf) {
		n, err := r.img.ReadAt(p, off)
		r.read.Add(int64(n))
		return n, err
	}
	end := off + int64(len(p))
	k := sort.Search(len(r.ext), func(k int) bool { return r.ext[k].End() > off })
	if k < len(r.ext) && r.ext[k].Offset <= off {
		end = max(end, min(r.ext[k].End(), off+readaheadWindow))
	}
	end = min(end, r.img.Size())
	n, err := r.img.ReadAt(r.buf[:end-off], off)
	r.read.Add(int64(n))
	if n < int(end-off) {
		r.n = 0
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		m := copy(p, r.buf[:min(n, len(p))])
		return m, err
	}
	r.off, r.n = off, n
	m := copy(p, r.buf[:n])
	if m < len(p) {
		return m, io.EOF
	}
	return m, nil
}
