package hypervsim

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/rehost/rehost/internal/lab/hvdisk"
	"github.com/rehost/rehost/pkg/disk"
)

// Resilient change tracking as Hyper-V keeps it for a VM of configuration
// version 6.2 or later: each drive logs the sectors written, in epochs a
// checkpoint closes; a reference point (what a recovery checkpoint becomes)
// holds each drive's RCT id, "rctX:<generation>:<epoch>"; and
// GetVirtualDiskChanges since an id answers the sectors written after it up
// to the checkpoint asked about. A reset (ResetRCT) starts a new
// generation, whose ids the old ones are not.

// rctLog is one drive's tracking.
type rctLog struct {
	gen    string
	epoch  int
	writes [][3]int64 // epoch, start, end (sector-aligned)
}

func newRCTLog() rctLog { return rctLog{gen: hvdisk.NewGUID().String()} }

const sector = 512

func (l *rctLog) write(off, n int64) {
	start, end := off/sector*sector, (off+n+sector-1)/sector*sector
	l.writes = append(l.writes, [3]int64{int64(l.epoch), start, end})
}

// close ends the current epoch (a checkpoint) and returns it.
func (l *rctLog) close() int {
	e := l.epoch
	l.epoch++
	return e
}

func (l *rctLog) id(epoch int) string { return fmt.Sprintf("rctX:%s:%08d", l.gen, epoch) }

// since is the merged sectors written in epochs (from, upTo], below size.
func (l *rctLog) since(from, upTo int, size int64) [][2]int64 {
	var rs [][2]int64
	for _, w := range l.writes {
		if int(w[0]) > from && int(w[0]) <= upTo && w[1] < size {
			rs = append(rs, [2]int64{w[1], min(w[2], size)})
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i][0] < rs[j][0] })
	var out [][2]int64
	for _, r := range rs {
		if n := len(out); n > 0 && r[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}

// parse reads an RCT id of this log: its epoch, or false when the id is of
// another generation or malformed.
func (l *rctLog) parse(id string) (int, bool) {
	rest, ok := strings.CutPrefix(id, "rctX:"+l.gen+":")
	if !ok {
		return 0, false
	}
	e, err := strconv.Atoi(rest)
	return e, err == nil
}

// refPoint is a reference point: what a recovery checkpoint became.
type refPoint struct {
	id, name string
	rct      []string // per drive
	sizes    []int64
}

func (v *vm) snapNamed(name string) *snapshot {
	for _, s := range v.snaps {
		if s.name == name {
			return s
		}
	}
	return nil
}

// rctVersion reports whether a configuration version has RCT (6.2+).
func rctVersion(v string) bool {
	a, b, _ := strings.Cut(v, ".")
	x, _ := strconv.Atoi(a)
	y, _ := strconv.Atoi(b)
	return x > 6 || (x == 6 && y >= 2)
}

func driveKey(d *drive) string {
	return fmt.Sprintf("%s%d:%d", strings.ToLower(d.ctrl), d.number, d.location)
}

// changes is GetVirtualDiskChanges as hv-changes.ps1 pages it.
func (h *Host) changes(v *vm, id, disk, since string, off int64, limit int) (any, error) {
	var s *snapshot
	for _, o := range v.snaps {
		if strings.EqualFold(o.id, id) {
			s = o
		}
	}
	if s == nil {
		return nil, &psError{"ObjectNotFound", "RehostCheckpointNotFound,Stop-Rehost", fmt.Sprintf("checkpoint %s of VM %s does not exist", id, v.spec.Name)}
	}
	i := -1
	for k, d := range v.drives {
		if driveKey(d) == disk {
			i = k
		}
	}
	if i < 0 {
		return nil, &psError{"ObjectNotFound", "RehostDiskNotFound,Stop-Rehost", fmt.Sprintf("checkpoint %s of VM %s has no disk %s", s.name, v.spec.Name, disk)}
	}
	d := v.drives[i]
	from, ok := d.rct.parse(since)
	if !ok || from > s.epochs[i] || !rctVersion(v.spec.Version) {
		return nil, &psError{"InvalidData", "RehostRctRefused,Stop-Rehost", fmt.Sprintf("Hyper-V cannot list the changes of %s since %s: The specified resilient change tracking id is not valid for this virtual disk.", s.frozen[i], since)}
	}
	size := h.sizeOf(s.frozen[i])
	limit = max(1, limit)
	var offs, lens []int64
	next := size
	for _, r := range d.rct.since(from, s.epochs[i], size) {
		if r[1] <= off {
			continue
		}
		a := max(r[0], off)
		if len(offs) == limit {
			next = a
			break
		}
		offs, lens = append(offs, a), append(lens, r[1]-a)
	}
	return []any{map[string]any{"Size": size, "Next": next, "Offsets": offs, "Lengths": lens}}, nil
}

// keep is ConvertToReferencePoint as hv-keep.ps1 drives it: the recovery
// checkpoint merges away (as a removal) and a reference point, given the
// checkpoint's name, keeps each drive's RCT id at the checkpoint; asked
// again, the reference point of that name answers.
func (h *Host) keep(v *vm, id, name string) (any, error) {
	var s *snapshot
	for _, o := range v.snaps {
		if strings.EqualFold(o.id, id) {
			s = o
		}
	}
	var rp *refPoint
	switch {
	case s != nil:
		if !s.recovery {
			return nil, &psError{"InvalidOperation", "RehostNotRecovery,Stop-Rehost", fmt.Sprintf("checkpoint %s is a Standard checkpoint; only recovery checkpoints become reference points", s.name)}
		}
		rp = &refPoint{id: "Microsoft:" + strings.ToUpper(hvdisk.NewGUID().String()), name: s.name}
		for i, d := range v.drives {
			rp.rct = append(rp.rct, d.rct.id(s.epochs[i]))
			rp.sizes = append(rp.sizes, h.sizeOf(s.frozen[i]))
		}
		if err := h.remove(v, s); err != nil {
			return nil, &psError{"InvalidOperation", "ConvertToReferencePoint", err.Error()}
		}
		v.rps = append(v.rps, rp)
	default:
		for _, o := range v.rps {
			if o.name == name {
				rp = o
			}
		}
		if rp == nil {
			return nil, &psError{"ObjectNotFound", "RehostCheckpointNotFound,Stop-Rehost", fmt.Sprintf("VM %s has neither a checkpoint %s nor a reference point named %s", v.spec.Name, id, name)}
		}
	}
	var disks []any
	for i, d := range v.drives {
		disks = append(disks, map[string]any{"Disk": driveKey(d), "Rct": rp.rct[i], "Size": rp.sizes[i]})
	}
	return []any{map[string]any{"Id": rp.id, "Name": rp.name, "Disks": disks}}, nil
}

// ResetRCT makes Hyper-V forget the tracking of VM name's drives, as when
// its .rct files are lost or a disk is replaced: RCT ids handed out
// before are refused.
func (h *Host) ResetRCT(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, err := h.byName(name)
	if err != nil {
		return err
	}
	for _, d := range v.drives {
		d.rct = newRCTLog()
	}
	return nil
}

// ReferencePoints names VM name's reference points.
func (h *Host) ReferencePoints(name string) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, err := h.byName(name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rp := range v.rps {
		out = append(out, rp.name)
	}
	return out, nil
}

// ResizeDisk grows drive i of VM name to size bytes, as Resize-VHD does a
// dynamic VHDX without checkpoints; the new tail reads as zeros and
// tracking goes on.
func (h *Host) ResizeDisk(name string, i int, size int64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, err := h.byName(name)
	if err != nil {
		return err
	}
	if i < 0 || i >= len(v.drives) {
		return fmt.Errorf("hypervsim: vm %q has no drive %d", name, i)
	}
	win := v.drives[i].path
	l, old, _, _, err := h.describe(win)
	if err != nil {
		return err
	}
	switch {
	case l.ParentID != "":
		return fmt.Errorf("hypervsim: %s has checkpoints; Hyper-V resizes a virtual disk only without them", win)
	case l.Format != disk.VHDX:
		return fmt.Errorf("hypervsim: resizing a %s is not simulated", l.Format)
	case size < old || size%sector != 0:
		return fmt.Errorf("hypervsim: new size %d is below %d or not a multiple of %d", size, old, sector)
	}
	img, _, err := h.open(win)
	if err != nil {
		return err
	}
	x, err := hvdisk.NewVHDX(size, 32<<20, sector, nil)
	if err != nil {
		return err
	}
	for _, e := range img.Extents() {
		buf := make([]byte, e.Length)
		if _, err := img.ReadAt(buf, e.Offset); err != nil && err != io.EOF {
			return err
		}
		x.WriteAt(buf, e.Offset)
	}
	lp, err := h.local(win)
	if err != nil {
		return err
	}
	if err := x.Save(lp); err != nil {
		return err
	}
	h.models[strings.ToLower(win)] = &modelFile{win, x}
	return nil
}
