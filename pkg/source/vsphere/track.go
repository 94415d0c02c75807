package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/internal/track"
	"github.com/rehost/rehost/pkg/source/vsphere/internal/vim"
)

// Changed block tracking (CBT): vCenter keeps, per disk, which areas were
// written since each change id it handed out; a snapshot's disks carry the
// change id of their point in time (VirtualDisk backing changeId). A
// change id outlives the snapshot, so a kept checkpoint holds nothing on
// vCenter: Keep records the change ids and removes the snapshot.
//
// Disks are read at random from the datastore over HTTPS (/folder, with
// Range requests): once the snapshot is taken, the disk file it names is
// frozen (the VM writes to a delta file), so its flat extent is the disk at
// the checkpoint. A snapshot on top of older snapshots names a delta file,
// which only VDDK reads; OpenDisk refuses it and the caller exports the
// disk instead.

var (
	_ source.ChangeTracker    = (*Source)(nil)
	_ source.CheckpointReader = (*Source)(nil)
)

// minCBTHardware is the virtual hardware version CBT needs.
const minCBTHardware = 7

// cbtCycleName names the snapshot that makes a CBT setting take effect on
// a running VM; a leftover is removed by the next EnableTracking, and the
// sweep of "rehost-" checkpoints finds it too.
const cbtCycleName = "rehost-cbt-enable"

// EnableTracking turns CBT on (ReconfigVM_Task with changeTrackingEnabled)
// and, for a running VM, takes and removes a snapshot so the setting takes
// effect (a stun cycle), as vSphere requires. A VM whose disks carry change
// ids already is left alone. Refusals wrap source.ErrNoTracking: hardware
// older than version 7, disks vCenter cannot track, or a user without the
// privilege to toggle disk change tracking (also source.ErrAuth).
func (s *Source) EnableTracking(ctx context.Context, vmID string) error {
	ref, err := s.findVM(ctx, vmID)
	if err != nil {
		return fmt.Errorf("enable change tracking: %w", err)
	}
	vm, err := s.trackingState(ctx, ref)
	if err != nil {
		return classify("enable change tracking of vm "+vmID, err)
	}
	if v := hardwareVersion(vm.version); v > 0 && v < minCBTHardware {
		return fmt.Errorf("vm %q has virtual hardware version %d; changed block tracking needs version %d or later: upgrade the VM's compatibility, then each run copies only what changed: %w",
			vm.name, v, minCBTHardware, source.ErrNoTracking)
	}
	if !vm.supported {
		return fmt.Errorf("vcenter reports that vm %q cannot track changed blocks (its disks may be independent or physical-mode RDMs): %w", vm.name, source.ErrNoTracking)
	}
	if err := s.removeCycleSnapshots(ctx, vmID); err != nil {
		return err
	}
	if vm.on && allTracked(vm.devices) {
		return nil
	}
	if !vm.on {
		res, err := s.c.Call(ctx, "ReconfigVM_Task", ref, vim.El("spec", vim.Bool("changeTrackingEnabled", true)))
		if err == nil {
			_, err = s.c.WaitTask(ctx, res.Child("returnval").Ref())
		}
		if isFault(err, "NoPermission", "NotAuthenticated") {
			return fmt.Errorf("turn on changed block tracking of vm %q: the vCenter user lacks the privilege Virtual machine > Change Configuration > Toggle disk change tracking: %w (%w)",
				vm.name, source.ErrNoTracking, source.ErrAuth)
		}
		if isFault(err, "NotSupported", "InvalidArgument", "InvalidDeviceSpec", "VmConfigFault") {
			return fmt.Errorf("turn on changed block tracking of vm %q: vcenter refused: %v: %w", vm.name, err, source.ErrNoTracking)
		}
		if err != nil {
			return classify(fmt.Sprintf("turn on changed block tracking of vm %q", vm.name), err)
		}
	}
	if vm.power != "poweredOn" {
		return nil // it takes effect at power-on
	}
	// A running VM starts tracking at its next stun: a snapshot's creation.
	snap, err := s.snapshot(ctx, ref, cbtCycleName, false)
	if err != nil {
		return classify(fmt.Sprintf("vm %q: take a snapshot so changed block tracking takes effect", vm.name), err)
	}
	if err := s.Release(ctx, source.Checkpoint{VMID: vmID, ID: snap.Value, Name: cbtCycleName}); err != nil {
		return fmt.Errorf("vm %q: remove the snapshot that made changed block tracking take effect: %w", vm.name, err)
	}
	slog.Info("changed block tracking turned on", "vm", vm.name, "id", vmID)
	return nil
}

// trackingState is what EnableTracking reads of a VM.
type trackingState struct {
	name, version, power string
	on, supported        bool
	devices              []device
}

func (s *Source) trackingState(ctx context.Context, ref vim.Ref) (trackingState, error) {
	objs, err := s.c.Get(ctx, []vim.Ref{ref}, "name", "config.version", "config.changeTrackingEnabled", "config.hardware.device",
		"capability.changeTrackingSupported", "runtime.powerState")
	if err != nil {
		return trackingState{}, err
	}
	if len(objs) != 1 {
		return trackingState{}, &vim.Fault{Name: "ManagedObjectNotFound", Message: "vm " + ref.Value + " is gone"}
	}
	p := objs[0].Props
	if !p["config.hardware.device"].Has() {
		return trackingState{}, fmt.Errorf("vm %s has no configuration", ref.Value)
	}
	return trackingState{
		name: p["name"].String(), version: p["config.version"].String(), power: p["runtime.powerState"].String(),
		on: p["config.changeTrackingEnabled"].Bool(), supported: p["capability.changeTrackingSupported"].Bool(),
		devices: devicesOf(p["config.hardware.device"]),
	}, nil
}

// removeCycleSnapshots removes what a crashed EnableTracking left.
func (s *Source) removeCycleSnapshots(ctx context.Context, vmID string) error {
	cps, err := s.Checkpoints(ctx, vmID, cbtCycleName)
	if err != nil {
		return err
	}
	for _, cp := range cps {
		if cp.Name == cbtCycleName {
			if err := s.Release(ctx, cp); err != nil {
				return fmt.Errorf("remove a leftover %q snapshot: %w", cbtCycleName, err)
			}
		}
	}
	return nil
}

// hardwareVersion reads "vmx-13" as 13; 0 when unknown.
func hardwareVersion(v string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(v, "vmx-"))
	return n
}

// allTracked reports whether every disk carries a change id: CBT is in
// effect.
func allTracked(devices []device) bool {
	vds := vdisks(devices)
	for _, vd := range vds {
		if vd.changeID() == "" {
			return false
		}
	}
	return len(vds) > 0
}

// snapshotDisk finds disk diskKey of a checkpoint's snapshot.
func (s *Source) snapshotDisk(ctx context.Context, cp source.Checkpoint, diskKey, op string) (vm, snap vim.Ref, vd device, err error) {
	vm, snap, devices, err := s.snapshotOf(ctx, cp)
	if err != nil {
		return vm, snap, vd, fmt.Errorf("%s: %w", op, err)
	}
	key, err := strconv.Atoi(diskKey)
	if err != nil {
		return vm, snap, vd, fmt.Errorf("%s: disk %q of vm %s is not a vSphere device key: %w", op, diskKey, cp.VMID, source.ErrNotFound)
	}
	vd, ok := findDevice(devices, int32(key))
	if !ok || !vd.isDisk() {
		return vm, snap, vd, fmt.Errorf("%s: snapshot %q of vm %s has no disk %s: %w", op, cp.Name, cp.VMID, diskKey, source.ErrNotFound)
	}
	return vm, snap, vd, nil
}

// ChangedAreas pages through QueryChangedDiskAreas against the checkpoint's
// snapshot: since the change id q.Since names, or "*" (every allocated
// area) for a seed. A change id vCenter refuses (CBT was reset by a storage
// vMotion, a revert, a CBT reset) is a *source.ResyncError; the first page
// is asked for before this returns, so the refusal shows here.
func (s *Source) ChangedAreas(ctx context.Context, cp source.Checkpoint, q source.ChangeQuery) (source.Changes, error) {
	op := fmt.Sprintf("changed areas of disk %s of vm %s", q.Disk, cp.VMID)
	vm, snap, vd, err := s.snapshotDisk(ctx, cp, q.Disk, op)
	if err != nil {
		return source.Changes{}, err
	}
	return s.changes(ctx, op, cp, vm, snap, vd, q)
}

// changes is ChangedAreas of a disk of a snapshot already read.
func (s *Source) changes(ctx context.Context, op string, cp source.Checkpoint, vm, snap vim.Ref, vd device, q source.ChangeQuery) (source.Changes, error) {
	capacity := vd.capacity()
	if vd.changeID() == "" {
		return source.Changes{}, fmt.Errorf("%s: changed block tracking is off (snapshot %q carries no change id); enable it and take a new checkpoint: %w", op, cp.Name, source.ErrNoTracking)
	}
	ch := source.Changes{Capacity: capacity}
	since := "*"
	if q.Since != "" {
		prev, native, err := track.ParseID(q.Disk, q.Since)
		if err != nil {
			return source.Changes{}, err
		}
		if err := track.Resized(q.Disk, q.Since, prev, capacity); err != nil {
			return source.Changes{}, err
		}
		ch.PreviousCapacity, since = prev, native
	}
	off := min(max(0, q.From/track.Sector*track.Sector), capacity)
	fetch := func(ctx context.Context) ([]disk.Extent, bool, error) {
		if off >= capacity {
			return nil, true, nil
		}
		res, err := s.c.Call(ctx, "QueryChangedDiskAreas", vm, vim.Mor("snapshot", snap), vim.Int("deviceKey", int64(vd.key())),
			vim.Int("startOffset", off), vim.Str("changeId", since))
		if err != nil {
			if since != "*" && isFault(err, "InvalidArgument", "FileFault") {
				return nil, false, &source.ResyncError{Disk: q.Disk, Since: q.Since,
					Reason: fmt.Sprintf("vCenter refused the change id of the last run (%v); a storage vMotion, a revert or a reset of changed block tracking does that", err)}
			}
			return nil, false, classify("query changed disk areas", err)
		}
		info := res.Child("returnval")
		var areas []disk.Extent
		for _, a := range info.Children("changedArea") {
			areas = append(areas, disk.Extent{Offset: a.Child("start").Int(), Length: a.Child("length").Int()})
		}
		next := info.Child("startOffset").Int() + info.Child("length").Int()
		if next <= off {
			return nil, false, fmt.Errorf("vcenter answered no progress at offset %d", off)
		}
		off = next
		return areas, off >= capacity, nil
	}
	f, err := track.First(ctx, fetch)
	if err != nil {
		return source.Changes{}, fmt.Errorf("%s: %w", op, err)
	}
	ch.Areas = track.NewPages(op, q.From, capacity, f)
	return ch, nil
}

// Keep reads the change id of each disk of the checkpoint's snapshot and
// removes the snapshot: the change ids stay valid without it. Called again
// once the snapshot is gone, it wraps source.ErrNotFound (the change ids
// went with it; the next run copies the disks whole).
func (s *Source) Keep(ctx context.Context, cp source.Checkpoint) (source.Base, error) {
	_, _, devices, err := s.snapshotOf(ctx, cp)
	if err != nil {
		return source.Base{}, fmt.Errorf("keep checkpoint %q: %w", cp.Name, err)
	}
	ids := map[string]string{}
	for _, vd := range vdisks(devices) {
		id := vd.changeID()
		if id == "" {
			return source.Base{}, fmt.Errorf("keep checkpoint %q of vm %s: disk %d carries no change id (changed block tracking is off): %w", cp.Name, cp.VMID, vd.key(), source.ErrNoTracking)
		}
		ids[strconv.Itoa(int(vd.key()))] = track.ID(vd.capacity(), id)
	}
	if err := s.Release(ctx, cp); err != nil {
		return source.Base{}, fmt.Errorf("keep checkpoint %q: %w", cp.Name, err)
	}
	return source.Base{Checkpoint: source.Checkpoint{VMID: cp.VMID, Name: cp.Name, Quiesced: cp.Quiesced, Base: true}, ChangeIDs: ids}, nil
}

// OpenDisk reads the disk file the checkpoint's snapshot froze straight
// from its datastore: its text descriptor, then its flat extents with
// ranged GETs. A disk that is a delta of older snapshots wraps
// errors.ErrUnsupported.
func (s *Source) OpenDisk(ctx context.Context, cp source.Checkpoint, diskKey string) (source.DiskData, error) {
	op := fmt.Sprintf("open disk %s of checkpoint %q of vm %s", diskKey, cp.Name, cp.VMID)
	vm, _, vd, err := s.snapshotDisk(ctx, cp, diskKey, op)
	if err != nil {
		return nil, err
	}
	b := vd.backing()
	fileName := b.Child("fileName").String()
	switch {
	case b.Type() != "VirtualDiskFlatVer2BackingInfo":
		return nil, fmt.Errorf("%s: its %s backing is not a flat file rehost can read at random; export the disk instead: %w", op, b.Type(), errors.ErrUnsupported)
	case b.Child("parent").Has():
		return nil, fmt.Errorf("%s: it is a delta of older snapshots of the VM (parent %s), which vCenter serves only through VDDK; remove the VM's other snapshots, or export the disk: %w",
			op, b.Path("parent", "fileName").String(), errors.ErrUnsupported)
	}
	p, ok := parseDatastorePath(fileName)
	if !ok {
		return nil, fmt.Errorf("%s: disk file %q is not a datastore path", op, fileName)
	}
	dc, err := s.datacenterPath(ctx, vm)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	dir := p.Path[:strings.LastIndex(p.Path, "/")+1]
	file := func(name string) *url.URL {
		u := *s.u
		u.Path = "/folder/" + dir + name
		u.RawQuery = url.Values{"dcPath": {dc}, "dsName": {p.Datastore}}.Encode()
		return &u
	}
	text, err := s.readSmall(ctx, file(p.Path[len(dir):]))
	if err != nil {
		return nil, classify(fmt.Sprintf("%s: read its descriptor %s", op, fileName), err)
	}
	d := &datastoreDisk{}
	img, closer, err := disk.OpenDescriptor(text, func(name string) (io.ReaderAt, int64, io.Closer, error) {
		f := &rangeFile{s: s, ctx: ctx, u: file(name), name: name}
		n, err := f.size(ctx)
		return f, n, nopCloser{}, err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	d.img, d.closer = img, closer
	if img.Size() != vd.capacity() {
		d.Close()
		return nil, fmt.Errorf("%s: its files hold %d bytes, the snapshot says %d", op, img.Size(), vd.capacity())
	}
	return d, nil
}

// datastorePath is a file's path on a datastore: "[ds1] app-01/app-01.vmdk".
type datastorePath struct{ Datastore, Path string }

func parseDatastorePath(s string) (datastorePath, bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), "[")
	if !ok {
		return datastorePath{}, false
	}
	ds, path, ok := strings.Cut(rest, "]")
	path = strings.TrimLeft(path, " ")
	if !ok || ds == "" || path == "" {
		return datastorePath{}, false
	}
	return datastorePath{Datastore: ds, Path: path}, true
}

// datacenterPath is the inventory path of the VM's datacenter below the
// root folder ("DC0", "EMEA/DC1"), as /folder's dcPath wants it.
func (s *Source) datacenterPath(ctx context.Context, vm vim.Ref) (string, error) {
	var names []string
	found := false
	ref := vm
	for range 64 {
		objs, err := s.c.Get(ctx, []vim.Ref{ref}, "name", "parent")
		if err == nil && len(objs) != 1 {
			err = &vim.Fault{Name: "ManagedObjectNotFound", Message: ref.String() + " is gone"}
		}
		if err != nil {
			return "", classify("find the vm's datacenter", err)
		}
		parent := objs[0].Props["parent"].Ref()
		if ref.Type == "Datacenter" {
			found = true
		}
		if found && ref != s.c.Content.RootFolder {
			names = append([]string{objs[0].Props["name"].String()}, names...)
		}
		if parent.IsZero() || parent == s.c.Content.RootFolder {
			break
		}
		ref = parent
	}
	if !found {
		return "", fmt.Errorf("vm %s is in no datacenter", vm.Value)
	}
	return strings.Join(names, "/"), nil
}

// get makes a request of a datastore file in the session (its cookie).
func (s *Source) get(ctx context.Context, method string, u *url.URL, rangeHeader string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if rangeHeader != "" {
		req.Header.Set("Range", rangeHeader)
	}
	return s.c.HTTP.Do(req)
}

// readSmall GETs a small datastore file (a descriptor).
func (s *Source) readSmall(ctx context.Context, u *url.URL) ([]byte, error) {
	res, err := s.get(ctx, http.MethodGet, u, "")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u.Path, res.Status)
	}
	return io.ReadAll(io.LimitReader(res.Body, 64<<10))
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

type datastoreDisk struct {
	img    disk.Image
	closer io.Closer
	once   sync.Once
}

func (d *datastoreDisk) Size() int64 { return d.img.Size() }
func (d *datastoreDisk) ReadAt(p []byte, off int64) (int, error) {
	return d.img.ReadAt(p, off)
}
func (d *datastoreDisk) Close() error {
	d.once.Do(func() { d.closer.Close() })
	return nil
}

// rangeFile is a datastore file read with ranged GETs under the session
// of the source (its cookie), bounded by the context OpenDisk was given.
type rangeFile struct {
	s    *Source
	ctx  context.Context
	u    *url.URL
	name string
}

func (f *rangeFile) size(ctx context.Context) (int64, error) {
	res, err := f.s.get(ctx, http.MethodHead, f.u, "")
	if err != nil {
		return 0, classify("stat datastore file "+f.name, err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.ContentLength < 0 {
		return 0, fmt.Errorf("stat datastore file %s: %s", f.name, res.Status)
	}
	return res.ContentLength, nil
}

func (f *rangeFile) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	res, err := f.s.get(f.ctx, http.MethodGet, f.u, fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1))
	if err != nil {
		return 0, classify(fmt.Sprintf("read datastore file %s at %d", f.name, off), err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusPartialContent {
		return 0, fmt.Errorf("read datastore file %s at %d: %s (want 206 Partial Content)", f.name, off, res.Status)
	}
	n, err := io.ReadFull(res.Body, p)
	if err != nil {
		return n, fmt.Errorf("read datastore file %s at %d: %w", f.name, off, err)
	}
	return n, nil
}
