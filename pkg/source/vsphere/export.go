package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/internal/track"
	"github.com/rehost/rehost/pkg/source/vsphere/internal/vim"
)

// snapshotOf reads the VM and the hardware of a checkpoint's snapshot.
func (s *Source) snapshotOf(ctx context.Context, cp source.Checkpoint) (vm, snap vim.Ref, devices []device, err error) {
	vm, err = s.findVM(ctx, cp.VMID)
	if err != nil {
		return vm, snap, nil, err
	}
	if cp.ID == "" {
		return vm, snap, nil, fmt.Errorf("checkpoint %q has no snapshot id: %w", cp.Name, source.ErrNotFound)
	}
	snap = vim.Ref{Type: "VirtualMachineSnapshot", Value: cp.ID}
	objs, err := s.c.Get(ctx, []vim.Ref{snap}, "vm", "config.hardware.device")
	if isFault(err, "ManagedObjectNotFound") || err == nil && (len(objs) != 1 || objs[0].Props["vm"].Ref() != vm) {
		return vm, snap, nil, fmt.Errorf("snapshot %q (%s) of vm %s: %w", cp.Name, cp.ID, cp.VMID, source.ErrNotFound)
	}
	if err != nil {
		return vm, snap, nil, classify(fmt.Sprintf("read snapshot %q of vm %s", cp.Name, cp.VMID), err)
	}
	return vm, snap, devicesOf(objs[0].Props["config.hardware.device"]), nil
}

// Export opens an NFC export lease on the checkpoint's snapshot
// (VirtualMachineSnapshot.ExportSnapshot): each disk streams as a
// streamOptimized VMDK of the snapshot's point-in-time content. A
// goroutine reports the lease's progress every 2 s, which also renews it,
// until Close, which completes the lease on success and aborts it
// otherwise. Where change tracking is on, each disk's allocated extents
// come from QueryChangedDiskAreas("*").
func (s *Source) Export(ctx context.Context, cp source.Checkpoint) (source.Export, error) {
	vm, snap, devices, err := s.snapshotOf(ctx, cp)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	disks := disksOf(devices, false)
	vds := vdisks(devices)
	ed := make([]source.ExportDisk, len(disks))
	for i, d := range disks {
		ed[i] = source.ExportDisk{Disk: d, Format: disk.VMDK, StreamSize: -1}
		if vds[i].changeID() == "" {
			continue
		}
		ext, err := s.allocated(ctx, cp, vm, snap, vds[i])
		if err != nil {
			slog.Debug("allocated extents unknown", "vm", cp.VMID, "disk", d.Key, "err", err)
			continue
		}
		ed[i].Extents = ext
	}

	res, err := s.c.Call(ctx, "ExportSnapshot", snap)
	if err != nil {
		return nil, classify(fmt.Sprintf("export snapshot %q of vm %s", cp.Name, cp.VMID), err)
	}
	e := &export{s: s, cp: cp, lease: res.Child("returnval").Ref(), disks: ed, cleanCtx: context.WithoutCancel(ctx)}
	fail := func(err error) (source.Export, error) {
		return nil, errors.Join(err, e.Close(err))
	}
	info, err := s.c.WaitLease(ctx, e.lease)
	if err != nil {
		return fail(classify(fmt.Sprintf("export snapshot %q of vm %s: wait for the nfc lease", cp.Name, cp.VMID), err))
	}
	var unmatched []*vim.Node
	byKey := map[string]*vim.Node{}
	for _, d := range info.Children("deviceUrl") {
		if d.Child("disk").Has() && !d.Child("disk").Bool() {
			continue
		}
		byKey[d.Child("key").String()] = d
		unmatched = append(unmatched, d)
	}
	if len(unmatched) != len(ed) {
		return fail(fmt.Errorf("export snapshot %q of vm %s: the lease offers %d disks, the snapshot has %d", cp.Name, cp.VMID, len(unmatched), len(ed)))
	}
	e.urls = make([]*url.URL, len(ed))
	e.progress = make([]float64, len(ed))
	for i := range ed {
		d, ok := byKey[leaseKey(vm, devices, vds[i])]
		if !ok {
			d = unmatched[i] // vCenter lists disks in device order
		}
		u, err := url.Parse(d.Child("url").String())
		if err != nil {
			return fail(fmt.Errorf("export snapshot %q of vm %s: disk url %q: %w", cp.Name, cp.VMID, d.Child("url").String(), err))
		}
		if u.Hostname() == "*" {
			u.Host = s.u.Host
		}
		if tp := d.Child("sslThumbprint").String(); tp != "" {
			if err := s.verify.PinIfUnset(u.Host, tp); err != nil {
				slog.Warn("the nfc lease names a host thumbprint rehost cannot read", "host", u.Host, "err", err)
			}
		}
		e.urls[i] = u
		if n := d.Child("fileSize").Int(); n > 0 {
			ed[i].StreamSize = n
		}
	}
	e.stop = make(chan struct{})
	e.stopped = make(chan struct{})
	go e.keepLease()
	return e, nil
}

// allocated lists the allocated areas of a disk of a CBT-tracked snapshot:
// its changes since "*".
func (s *Source) allocated(ctx context.Context, cp source.Checkpoint, vm, snap vim.Ref, vd device) ([]disk.Extent, error) {
	key := strconv.Itoa(int(vd.key()))
	ch, err := s.changes(ctx, fmt.Sprintf("allocated areas of disk %s of vm %s", key, cp.VMID), cp, vm, snap, vd, source.ChangeQuery{Disk: key})
	if err != nil {
		return nil, err
	}
	return track.All(ctx, ch.Areas)
}

type export struct {
	s        *Source
	cp       source.Checkpoint
	lease    vim.Ref
	disks    []source.ExportDisk
	urls     []*url.URL
	cleanCtx context.Context

	mu sync.Mutex
	// progress is each disk's share read, 0–1; the lease is told their
	// weighted mean.
	progress []float64
	closed   bool
	once     sync.Once
	closeErr error
	stop     chan struct{}
	stopped  chan struct{}
}

func (e *export) Disks() []source.ExportDisk { return e.disks }

// ID is the NFC lease's managed object id.
func (e *export) ID() string { return e.lease.Value }

func (e *export) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if err := source.CheckOpen(e.cp.Name, closed, i, len(e.urls)); err != nil {
		return nil, err
	}
	rc, err := e.s.c.Download(ctx, e.urls[i])
	if err != nil {
		return nil, classify(fmt.Sprintf("open disk %d of checkpoint %q of vm %s", i, e.cp.Name, e.cp.VMID), err)
	}
	return &progressReader{rc: rc, e: e, i: i, size: max(e.disks[i].CapacityBytes, 1)}, nil
}

// report records a disk's progress; it never blocks the stream.
func (e *export) report(i int, share float64) {
	e.mu.Lock()
	e.progress[i] = min(share, 1)
	e.mu.Unlock()
}

// percent is the export's progress: the disks' shares weighted by their
// capacities.
func (e *export) percent() int32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var done, total float64
	for i, p := range e.progress {
		w := float64(max(e.disks[i].CapacityBytes, 1))
		done += p * w
		total += w
	}
	if total == 0 {
		return 0
	}
	return int32(100 * done / total)
}

// keepLease tells vCenter the export's progress every 2 s until Close: a
// lease not told for its timeout (5 minutes on vCenter) expires.
func (e *export) keepLease() {
	defer close(e.stopped)
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.tell(e.percent())
		}
	}
}

func (e *export) tell(percent int32) {
	ctx, cancel := context.WithTimeout(e.cleanCtx, 30*time.Second)
	defer cancel()
	if _, err := e.s.c.Call(ctx, "HttpNfcLeaseProgress", e.lease, vim.Int("percent", int64(min(max(percent, 0), 100)))); err != nil {
		slog.Debug("nfc lease progress", "vm", e.cp.VMID, "err", err)
	}
}

// Progress reports overall progress to the lease, which also renews it.
func (e *export) Progress(percent int) {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if !closed {
		e.tell(int32(percent))
	}
}

// Close completes the lease when cause is nil and aborts it otherwise,
// under its own context so a cancelled run still releases the lease.
func (e *export) Close(cause error) error {
	e.once.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		if e.stop != nil {
			close(e.stop)
			<-e.stopped
		}
		ctx, cancel := cleanupContext(e.cleanCtx)
		defer cancel()
		if cause == nil {
			if _, err := e.s.c.Call(ctx, "HttpNfcLeaseComplete", e.lease); err != nil {
				e.closeErr = classify(fmt.Sprintf("complete the export of checkpoint %q of vm %s", e.cp.Name, e.cp.VMID), err)
			}
			return
		}
		if err := e.s.abort(ctx, e.lease, cause.Error()); err != nil {
			e.closeErr = classify(fmt.Sprintf("abort the export of checkpoint %q of vm %s", e.cp.Name, e.cp.VMID), err)
		}
	})
	return e.closeErr
}

// abort aborts a lease with a SystemError saying why; a lease that is gone
// or already ended is not an error.
func (s *Source) abort(ctx context.Context, lease vim.Ref, why string) error {
	_, err := s.c.Call(ctx, "HttpNfcLeaseAbort", lease, vim.El("fault",
		vim.Typed("fault", "SystemError", vim.Str("reason", why)), vim.Str("localizedMessage", why)))
	if isFault(err, "ManagedObjectNotFound", "InvalidState") {
		return nil
	}
	return err
}

type progressReader struct {
	rc      io.ReadCloser
	e       *export
	i       int
	size    int64
	n, sent int64
}

func (r *progressReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.n += int64(n)
	if r.n-r.sent >= 1<<20 {
		r.sent = r.n
		// The stream is compressed, so bytes read over capacity is a floor
		// of the true progress; it keeps the lease's progress moving.
		r.e.report(r.i, min(0.99, float64(r.n)/float64(r.size)))
	}
	if err == io.EOF {
		r.e.report(r.i, 1)
	}
	return n, err
}

func (r *progressReader) Close() error { return r.rc.Close() }

// AbortExport aborts the NFC lease id (an export's ID) that a crashed
// process left open, so it does not hold the snapshot until vCenter's
// timeout. A lease that is gone or already ended is not an error.
func (s *Source) AbortExport(ctx context.Context, cp source.Checkpoint, id string) error {
	if id == "" {
		return nil
	}
	const msg = "aborted by rehost: the connector restarted during the export"
	if err := s.abort(ctx, vim.Ref{Type: "HttpNfcLease", Value: id}, msg); err != nil {
		return classify(fmt.Sprintf("abort the export lease %s of checkpoint %q of vm %s", id, cp.Name, cp.VMID), err)
	}
	return nil
}

var _ source.ExportAborter = (*Source)(nil)
