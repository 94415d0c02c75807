package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/nfc"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/internal/track"
)

// snapshotOf reads the VM and the hardware of a checkpoint's snapshot.
func (s *Source) snapshotOf(ctx context.Context, cp source.Checkpoint) (vm, snap types.ManagedObjectReference, devices object.VirtualDeviceList, err error) {
	vm, err = s.findVM(ctx, cp.VMID)
	if err != nil {
		return vm, snap, nil, err
	}
	if cp.ID == "" {
		return vm, snap, nil, fmt.Errorf("checkpoint %q has no snapshot id: %w", cp.Name, source.ErrNotFound)
	}
	snap = types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: cp.ID}
	objs, err := s.retrieve(ctx, []types.ManagedObjectReference{snap}, []string{"vm", "config.hardware.device"})
	if err != nil {
		return vm, snap, nil, classify(fmt.Sprintf("read snapshot %q of vm %s", cp.Name, cp.VMID), err)
	}
	var ms mo.VirtualMachineSnapshot
	if len(objs) != 1 || mo.LoadObjectContent(objs, &ms) != nil || ms.Vm != vm {
		return vm, snap, nil, fmt.Errorf("snapshot %q (%s) of vm %s: %w", cp.Name, cp.ID, cp.VMID, source.ErrNotFound)
	}
	return vm, snap, object.VirtualDeviceList(ms.Config.Hardware.Device), nil
}

// Export opens an NFC export lease on the checkpoint's snapshot
// (VirtualMachineSnapshot.ExportSnapshot): each disk streams as a
// streamOptimized VMDK of the snapshot's point-in-time content. The lease
// progress updater runs until Close, which completes the lease on success
// and aborts it otherwise. Where change tracking is on, each disk's
// allocated extents come from QueryChangedDiskAreas("*").
func (s *Source) Export(ctx context.Context, cp source.Checkpoint) (source.Export, error) {
	vm, snap, devices, err := s.snapshotOf(ctx, cp)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	disks := disksOf(devices)
	vdisks := devices.SelectByType((*types.VirtualDisk)(nil))
	ed := make([]source.ExportDisk, len(disks))
	for i, d := range disks {
		ed[i] = source.ExportDisk{Disk: d, Format: disk.VMDK, StreamSize: -1}
		if changeIDOf(vdisks[i].(*types.VirtualDisk)) == "" {
			continue
		}
		ext, err := s.allocated(ctx, cp, d.Key)
		if err != nil {
			slog.Debug("allocated extents unknown", "vm", cp.VMID, "disk", d.Key, "err", err)
			continue
		}
		ed[i].Extents = ext
	}

	res, err := methods.ExportSnapshot(ctx, s.c, &types.ExportSnapshot{This: snap})
	if err != nil {
		return nil, classify(fmt.Sprintf("export snapshot %q of vm %s", cp.Name, cp.VMID), err)
	}
	e := &export{s: s, cp: cp, lease: nfc.NewLease(s.c, res.Returnval), disks: ed, cleanCtx: context.WithoutCancel(ctx)}
	fail := func(err error) (source.Export, error) {
		return nil, errors.Join(err, e.Close(err))
	}
	info, err := e.lease.Wait(ctx, nil)
	if err != nil {
		return fail(classify(fmt.Sprintf("export snapshot %q of vm %s: wait for the nfc lease", cp.Name, cp.VMID), err))
	}
	var unmatched []types.HttpNfcLeaseDeviceUrl
	byKey := map[string]types.HttpNfcLeaseDeviceUrl{}
	for _, d := range info.DeviceUrl {
		if d.Disk != nil && !*d.Disk {
			continue
		}
		byKey[d.Key] = d
		unmatched = append(unmatched, d)
	}
	if len(unmatched) != len(ed) {
		return fail(fmt.Errorf("export snapshot %q of vm %s: the lease offers %d disks, the snapshot has %d", cp.Name, cp.VMID, len(unmatched), len(ed)))
	}
	e.urls = make([]*url.URL, len(ed))
	for i := range ed {
		d, ok := byKey[leaseKey(vm, devices, vdisks[i].(*types.VirtualDisk))]
		if !ok {
			d = unmatched[i] // vCenter lists disks in device order
		}
		u, err := s.soap.ParseURL(d.Url)
		if err != nil {
			return fail(fmt.Errorf("export snapshot %q of vm %s: disk url %q: %w", cp.Name, cp.VMID, d.Url, err))
		}
		if u.Hostname() == "*" {
			u.Host = s.u.Host
		}
		if d.SslThumbprint != "" {
			if err := s.verify.PinIfUnset(u.Host, d.SslThumbprint); err != nil {
				slog.Warn("the nfc lease names a host thumbprint rehost cannot read", "host", u.Host, "err", err)
			}
		}
		e.urls[i] = u
		if d.FileSize > 0 {
			ed[i].StreamSize = d.FileSize
		}
		e.items = append(e.items, nfc.NewFileItem(u, types.OvfFileItem{DeviceId: d.Key, Path: d.TargetId, Size: max(ed[i].CapacityBytes, 1)}))
	}
	e.sinkClosed = make([]bool, len(e.items))
	if len(e.items) > 0 {
		e.updater = e.lease.StartUpdater(e.cleanCtx, &nfc.LeaseInfo{HttpNfcLeaseInfo: info.HttpNfcLeaseInfo, Items: e.items})
	}
	return e, nil
}

// allocated lists the allocated areas of a disk of a CBT-tracked snapshot.
func (s *Source) allocated(ctx context.Context, cp source.Checkpoint, key string) ([]disk.Extent, error) {
	ch, err := s.ChangedAreas(ctx, cp, source.ChangeQuery{Disk: key})
	if err != nil {
		return nil, err
	}
	return track.All(ctx, ch.Areas)
}

// leaseKey is the key vCenter gives a disk in an export lease:
// "/vm-42/VirtualLsiLogicController0:1".
func leaseKey(vm types.ManagedObjectReference, devices object.VirtualDeviceList, vd *types.VirtualDisk) string {
	ctrl := devices.FindByKey(vd.ControllerKey)
	name, bus := "VirtualController", int32(0)
	if c, ok := ctrl.(types.BaseVirtualController); ok {
		name = strings.TrimPrefix(fmt.Sprintf("%T", ctrl), "*types.")
		bus = c.GetVirtualController().BusNumber
	}
	unit := int32(0)
	if vd.UnitNumber != nil {
		unit = *vd.UnitNumber
	}
	return fmt.Sprintf("/%s/%s%d:%d", vm.Value, name, bus, unit)
}

type export struct {
	s        *Source
	cp       source.Checkpoint
	lease    *nfc.Lease
	updater  *nfc.LeaseUpdater
	disks    []source.ExportDisk
	urls     []*url.URL
	items    []nfc.FileItem
	cleanCtx context.Context

	mu         sync.Mutex
	closed     bool
	sinkClosed []bool
	once       sync.Once
	closeErr   error
}

func (e *export) Disks() []source.ExportDisk { return e.disks }

// ID is the NFC lease's managed object id.
func (e *export) ID() string { return e.lease.Reference().Value }

func (e *export) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if err := source.CheckOpen(e.cp.Name, closed, i, len(e.urls)); err != nil {
		return nil, err
	}
	rc, _, err := e.s.soap.Download(ctx, e.urls[i], &soap.DefaultDownload)
	if err != nil {
		return nil, classify(fmt.Sprintf("open disk %d of checkpoint %q of vm %s", i, e.cp.Name, e.cp.VMID), err)
	}
	return &progressReader{rc: rc, e: e, i: i, size: e.items[i].Size}, nil
}

// report feeds the lease updater; it never blocks the stream.
func (e *export) report(i int, pct float32, done bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.sinkClosed[i] {
		return
	}
	if done {
		e.sinkClosed[i] = true
		close(e.items[i].Sink())
		return
	}
	select {
	case e.items[i].Sink() <- progressReport(pct):
	default:
	}
}

// Progress reports overall progress to the lease, which also renews it.
func (e *export) Progress(percent int) {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return
	}
	ctx, cancel := context.WithTimeout(e.cleanCtx, 30*time.Second)
	defer cancel()
	if err := e.lease.Progress(ctx, int32(min(max(percent, 0), 100))); err != nil {
		slog.Debug("nfc lease progress", "vm", e.cp.VMID, "err", err)
	}
}

// Close completes the lease when cause is nil and aborts it otherwise,
// under its own context so a cancelled run still releases the lease.
func (e *export) Close(cause error) error {
	e.once.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		if e.updater != nil {
			e.updater.Done()
		}
		ctx, cancel := cleanupContext(e.cleanCtx)
		defer cancel()
		if cause == nil {
			if err := e.lease.Complete(ctx); err != nil {
				e.closeErr = classify(fmt.Sprintf("complete the export of checkpoint %q of vm %s", e.cp.Name, e.cp.VMID), err)
			}
			return
		}
		msg := cause.Error()
		err := e.lease.Abort(ctx, &types.LocalizedMethodFault{Fault: &types.SystemError{Reason: msg}, LocalizedMessage: msg})
		if err != nil && !isFault(err, "ManagedObjectNotFound", "InvalidState") {
			e.closeErr = classify(fmt.Sprintf("abort the export of checkpoint %q of vm %s", e.cp.Name, e.cp.VMID), err)
		}
	})
	return e.closeErr
}

type progressReader struct {
	rc       io.ReadCloser
	e        *export
	i        int
	size     int64
	n, sent  int64
	finished bool
}

func (r *progressReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.n += int64(n)
	if r.n-r.sent >= 1<<20 {
		r.sent = r.n
		// The stream is compressed, so bytes read over capacity is a floor
		// of the true progress; it keeps the lease updater moving.
		r.e.report(r.i, min(99, float32(100*r.n)/float32(r.size)), false)
	}
	if err == io.EOF && !r.finished {
		r.finished = true
		r.e.report(r.i, 100, true)
	}
	return n, err
}

func (r *progressReader) Close() error { return r.rc.Close() }

type progressReport float32

func (p progressReport) Percentage() float32 { return float32(p) }
func (p progressReport) Detail() string      { return "" }
func (p progressReport) Error() error        { return nil }

func changeIDOf(vd *types.VirtualDisk) string {
	switch b := vd.Backing.(type) {
	case *types.VirtualDiskFlatVer2BackingInfo:
		return b.ChangeId
	case *types.VirtualDiskSparseVer2BackingInfo:
		return b.ChangeId
	case *types.VirtualDiskSeSparseBackingInfo:
		return b.ChangeId
	case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
		return b.ChangeId
	}
	return ""
}

// AbortExport aborts the NFC lease id (an export's ID) that a crashed
// process left open, so it does not hold the snapshot until vCenter's
// timeout. A lease that is gone or already ended is not an error.
func (s *Source) AbortExport(ctx context.Context, cp source.Checkpoint, id string) error {
	if id == "" {
		return nil
	}
	lease := nfc.NewLease(s.c, types.ManagedObjectReference{Type: "HttpNfcLease", Value: id})
	const msg = "aborted by rehost: the connector restarted during the export"
	err := lease.Abort(ctx, &types.LocalizedMethodFault{Fault: &types.SystemError{Reason: msg}, LocalizedMessage: msg})
	if err != nil && !isFault(err, "ManagedObjectNotFound", "InvalidState") {
		return classify(fmt.Sprintf("abort the export lease %s of checkpoint %q of vm %s", id, cp.Name, cp.VMID), err)
	}
	return nil
}

var _ source.ExportAborter = (*Source)(nil)
