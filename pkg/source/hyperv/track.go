package hyperv

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/internal/track"
)

// Resilient change tracking (RCT, Windows Server 2016 and later,
// configuration version 6.2 and later): Hyper-V tracks the writes to each
// VHDX itself. A tracked VM's checkpoints are recovery checkpoints; the
// areas its disks changed since an RCT id are
// Msvm_ImageManagementService.GetVirtualDiskChanges on the files a
// checkpoint froze; and Keep converts the checkpoint into a reference point
// (Msvm_VirtualSystemSnapshotService.ConvertToReferencePoint), which
// merges its differencing disks away and keeps the RCT id of each disk for
// the next run. Through SCVMM none of this is reachable.

var (
	_ source.ChangeTracker    = (*Source)(nil)
	_ source.CheckpointReader = (*Source)(nil)
)

// defaultAreasPerPage bounds the areas one hv-changes run answers.
const defaultAreasPerPage = 4096

// rctRefusal says why the VM's changes are not tracked, or "".
func (s *Source) rctRefusal(h hostVM) string {
	if s.cfg.Manager == ManagerSCVMM {
		return "SCVMM does not relay Hyper-V's resilient change tracking: add the Hyper-V host (or the cluster's nodes) as the source to copy only what changed"
	}
	if !versionAtLeast(h.Version, 6, 2) {
		v := h.Version
		if v == "" {
			v = "unknown"
		}
		return fmt.Sprintf("its configuration version is %s; resilient change tracking needs 6.2 or later (a Windows Server 2016 or later host): update it with Update-VMVersion while the VM is off", v)
	}
	for _, d := range h.Disks {
		if n := len(d.Chain); n > 0 && d.Chain[n-1].Format != "VHDX" {
			return fmt.Sprintf("disk %s (%s) is a %s; resilient change tracking needs VHDX: convert it (Convert-VHD) while the VM is off", d.Controller, d.Chain[n-1].Path, d.Chain[n-1].Format)
		}
	}
	return ""
}

// versionAtLeast compares a configuration version ("9.0") with maj.min.
func versionAtLeast(v string, maj, min int) bool {
	a, b, _ := strings.Cut(v, ".")
	x, err1 := strconv.Atoi(a)
	y, err2 := strconv.Atoi(b)
	if err1 != nil || (b != "" && err2 != nil) {
		return false
	}
	return x > maj || (x == maj && y >= min)
}

// EnableTracking checks that Hyper-V tracks the VM's changes: there is
// nothing to turn on (RCT is on for every VHDX of a 6.2 or later VM).
func (s *Source) EnableTracking(ctx context.Context, vmID string) error {
	h, err := s.hostVM(ctx, vmID)
	if err != nil {
		return fmt.Errorf("enable change tracking: %w", err)
	}
	if r := s.rctRefusal(h); r != "" {
		return fmt.Errorf("vm %q cannot be tracked: %s: %w", h.Name, r, source.ErrNoTracking)
	}
	return nil
}

// ChangedAreas lists, for a seed, the allocated areas of the disk as the
// checkpoint froze it (its chain's blocks, read over SMB), and otherwise
// pages through GetVirtualDiskChanges since the disk's RCT id. An id
// Hyper-V refuses (tracking reset, the disk replaced, the reference point
// gone) is a *source.ResyncError.
func (s *Source) ChangedAreas(ctx context.Context, cp source.Checkpoint, q source.ChangeQuery) (source.Changes, error) {
	op := fmt.Sprintf("changed areas of disk %s of vm %s", q.Disk, cp.VMID)
	if s.cfg.Manager == ManagerSCVMM {
		return source.Changes{}, fmt.Errorf("%s: %s: %w", op, s.rctRefusal(hostVM{}), source.ErrNoTracking)
	}
	if err := checkID(cp.VMID); err != nil {
		return source.Changes{}, fmt.Errorf("%s: %w", op, err)
	}
	from := max(0, q.From/track.Sector*track.Sector)
	if q.Since == "" {
		d, err := s.OpenDisk(ctx, cp, q.Disk)
		if err != nil {
			return source.Changes{}, fmt.Errorf("%s: %w", op, err)
		}
		ext := d.(*chainDisk).img.Extents()
		size := d.Size()
		d.Close()
		return source.Changes{Capacity: size, Areas: track.NewPages(op, q.From, size, memoryPages(ext, s.areasPerPage()))}, nil
	}
	prevSize, rct, err := track.ParseID(q.Disk, q.Since)
	if err != nil {
		return source.Changes{}, err
	}
	off := from
	var size int64
	fetch := func(ctx context.Context) ([]disk.Extent, bool, error) {
		p, err := s.ctl.changes(ctx, cp.VMID, cp.ID, q.Disk, rct, off, s.areasPerPage())
		var se *ScriptError
		if errors.As(err, &se) && se.refusal() == "RehostRctRefused" {
			return nil, false, &source.ResyncError{Disk: q.Disk, Since: q.Since, Reason: se.Message}
		}
		if err != nil {
			return nil, false, err
		}
		if len(p.Offsets) != len(p.Lengths) {
			return nil, false, fmt.Errorf("the host answered %d offsets and %d lengths", len(p.Offsets), len(p.Lengths))
		}
		size = int64(p.Size)
		areas := make([]disk.Extent, len(p.Offsets))
		for i := range p.Offsets {
			areas[i] = disk.Extent{Offset: int64(p.Offsets[i]), Length: int64(p.Lengths[i])}
		}
		next := int64(p.Next)
		if next <= off && next < size {
			return nil, false, fmt.Errorf("the host answered no progress at offset %d", off)
		}
		off = next
		return areas, off >= size, nil
	}
	// The first page now: it says the disk's size.
	f, err := track.First(ctx, fetch)
	if err != nil {
		return source.Changes{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := track.Resized(q.Disk, q.Since, prevSize, size); err != nil {
		return source.Changes{}, err
	}
	return source.Changes{Capacity: size, PreviousCapacity: prevSize, Areas: track.NewPages(op, q.From, size, f)}, nil
}

func (s *Source) areasPerPage() int {
	if s.cfg.AreasPerPage > 0 {
		return s.cfg.AreasPerPage
	}
	return defaultAreasPerPage
}

// memoryPages pages a list already in memory.
func memoryPages(ext []disk.Extent, n int) track.Fetch {
	return func(context.Context) ([]disk.Extent, bool, error) {
		k := min(n, len(ext))
		page := ext[:k]
		ext = ext[k:]
		return page, len(ext) == 0, nil
	}
}

// Keep converts the recovery checkpoint into a reference point; called
// again once it is one, it finds the reference point by the checkpoint's
// name where the host gave it that name, and otherwise wraps
// source.ErrNotFound. A checkpoint that is not a recovery one (taken
// before the VM could be tracked) wraps source.ErrNoTracking.
func (s *Source) Keep(ctx context.Context, cp source.Checkpoint) (source.Base, error) {
	op := fmt.Sprintf("keep checkpoint %q of vm %s", cp.Name, cp.VMID)
	if s.cfg.Manager == ManagerSCVMM {
		return source.Base{}, fmt.Errorf("%s: %s: %w", op, s.rctRefusal(hostVM{}), source.ErrNoTracking)
	}
	if err := checkID(cp.VMID); err != nil {
		return source.Base{}, fmt.Errorf("%s: %w", op, err)
	}
	rp, err := s.ctl.keep(ctx, cp.VMID, cp.ID, cp.Name)
	var se *ScriptError
	if errors.As(err, &se) && se.refusal() == "RehostNotRecovery" {
		return source.Base{}, fmt.Errorf("%s: %w: %w", op, err, source.ErrNoTracking)
	}
	if err != nil {
		return source.Base{}, fmt.Errorf("%s: %w", op, err)
	}
	ids := map[string]string{}
	for _, d := range rp.Disks {
		if d.Rct == "" || d.Size <= 0 {
			return source.Base{}, fmt.Errorf("%s: the reference point %s has no resilient change tracking id for disk %s", op, rp.ID, d.Disk)
		}
		ids[string(d.Disk)] = track.ID(int64(d.Size), string(d.Rct))
	}
	return source.Base{Checkpoint: source.Checkpoint{VMID: cp.VMID, ID: string(rp.ID), Name: cp.Name, Base: true}, ChangeIDs: ids}, nil
}

// OpenDisk opens the files the checkpoint froze for disk diskKey, with
// their older parents, over SMB (or locally, through WMI) and reads them
// as the merged chain: the disk at the checkpoint.
func (s *Source) OpenDisk(ctx context.Context, cp source.Checkpoint, diskKey string) (source.DiskData, error) {
	op := fmt.Sprintf("open disk %s of checkpoint %q of vm %s", diskKey, cp.Name, cp.VMID)
	if err := checkID(cp.VMID); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if cp.ID == "" {
		return nil, fmt.Errorf("%s: no checkpoint id: %w", op, source.ErrNotFound)
	}
	hx, err := s.ctl.export(ctx, cp.VMID, cp.ID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	for _, d := range hx.Disks {
		if d.Controller != diskKey {
			continue
		}
		chain, err := chainOrder(d)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		fs := s.files()
		img, err := openChain(ctx, fs, hx.Host, chain)
		if err != nil {
			fs.close()
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		return &chainDisk{img: img, fs: fs}, nil
	}
	return nil, fmt.Errorf("%s: the checkpoint has no such disk: %w", op, source.ErrNotFound)
}

// chainDisk is a checkpoint's disk read through its chain.
type chainDisk struct {
	img  disk.Image
	fs   files
	once sync.Once
}

func (d *chainDisk) Size() int64                             { return d.img.Size() }
func (d *chainDisk) ReadAt(p []byte, off int64) (int, error) { return d.img.ReadAt(p, off) }
func (d *chainDisk) Close() error {
	d.once.Do(func() { d.fs.close() })
	return nil
}
