package replication

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
)

// trackedSource is fakeSource with change tracking, as a hypervisor keeps
// it: every write to a VM's disk is logged with a generation, a checkpoint
// freezes the disks' content and the generation, ChangedAreas answers the
// writes between a change id's generation and the checkpoint's (every
// non-zero area for a seed), a reset starts a new epoch whose change ids
// the old ones are not, and OpenDisk reads the frozen content.
type trackedSource struct {
	fakeSource
	tr *tracking
}

// tracking is the fake hypervisor's change tracking, shared by every
// trackedSource of a world.
type tracking struct {
	epoch int
	gen   int
	log   []write
	// frozen is each checkpoint's disks at its creation, and its gen.
	frozen map[string][][]byte
	gens   map[string]int
	// keepBases makes Keep keep a base on the source (a Hyper-V reference
	// point, Azure snapshots), which the run releases when superseded;
	// otherwise the change ids outlive the checkpoint (vSphere).
	keepBases bool
	// noTracking makes EnableTracking refuse, with the reason.
	noTracking string
	enabled    bool
}

type write struct {
	vm     string
	disk   int
	gen    int
	off, n int64
}

func (w *world) tracked() *tracking {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tr == nil {
		w.tr = &tracking{frozen: map[string][][]byte{}, gens: map[string]int{}}
	}
	return w.tr
}

// write changes a VM's disk as its guest would, growing it if needed.
func (w *world) write(vm string, i int, off int64, p []byte) {
	tr := w.tracked()
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.data[vm][i]
	if end := off + int64(len(p)); end > int64(len(d)) {
		d = append(d, make([]byte, end-int64(len(d)))...)
	}
	copy(d[off:], p)
	w.data[vm][i] = d
	tr.gen++
	tr.log = append(tr.log, write{vm: vm, disk: i, gen: tr.gen, off: off, n: int64(len(p))})
	v := w.vms[vm]
	v.Disks[i].CapacityBytes = int64(len(d))
	w.vms[vm] = v
}

// resize grows a disk, as an administrator extending it does.
func (w *world) resize(vm string, i int, size int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.data[vm][i] = append(w.data[vm][i], make([]byte, size-int64(len(w.data[vm][i])))...)
	v := w.vms[vm]
	v.Disks[i].CapacityBytes = size
	w.vms[vm] = v
}

// resetTracking refuses every change id handed out so far.
func (w *world) resetTracking() {
	tr := w.tracked()
	w.mu.Lock()
	tr.epoch++
	w.mu.Unlock()
}

func (s trackedSource) Checkpoint(ctx context.Context, vmID, name string) (source.Checkpoint, error) {
	cp, err := s.fakeSource.Checkpoint(ctx, vmID, name)
	if err != nil {
		return cp, err
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if _, ok := s.tr.frozen[cp.ID]; !ok {
		var disks [][]byte
		for _, d := range s.w.data[vmID] {
			disks = append(disks, bytes.Clone(d))
		}
		s.tr.frozen[cp.ID], s.tr.gens[cp.ID] = disks, s.tr.gen
	}
	return cp, nil
}

func (s trackedSource) EnableTracking(ctx context.Context, vmID string) error {
	if err := s.w.at(ctx, "EnableTracking", "before"); err != nil {
		return err
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if s.tr.noTracking != "" {
		return fmt.Errorf("vm %s: %s: %w", vmID, s.tr.noTracking, source.ErrNoTracking)
	}
	s.tr.enabled = true
	return nil
}

func changeID(epoch, gen int, capacity int64) string {
	return fmt.Sprintf("e%d:g%d:c%d", epoch, gen, capacity)
}

func parseChangeID(id string) (epoch, gen int, capacity int64, ok bool) {
	parts := strings.Split(id, ":")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	e, err1 := strconv.Atoi(strings.TrimPrefix(parts[0], "e"))
	g, err2 := strconv.Atoi(strings.TrimPrefix(parts[1], "g"))
	c, err3 := strconv.ParseInt(strings.TrimPrefix(parts[2], "c"), 10, 64)
	return e, g, c, err1 == nil && err2 == nil && err3 == nil
}

// diskIndex finds disk key's place in vm.
func (s trackedSource) diskIndex(vmID, key string) (int, error) {
	for i, d := range s.w.vms[vmID].Disks {
		if d.Key == key {
			return i, nil
		}
	}
	return 0, fmt.Errorf("vm %s has no disk %s: %w", vmID, key, source.ErrNotFound)
}

func (s trackedSource) ChangedAreas(ctx context.Context, cp source.Checkpoint, q source.ChangeQuery) (source.Changes, error) {
	if err := s.w.at(ctx, "ChangedAreas", "before"); err != nil {
		return source.Changes{}, err
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	frozen, ok := s.tr.frozen[cp.ID]
	if !ok {
		return source.Changes{}, fmt.Errorf("checkpoint %s: %w", cp.ID, source.ErrNotFound)
	}
	i, err := s.diskIndex(cp.VMID, q.Disk)
	if err != nil {
		return source.Changes{}, err
	}
	if !s.tr.enabled {
		return source.Changes{}, fmt.Errorf("tracking is off: %w", source.ErrNoTracking)
	}
	data := frozen[i]
	ch := source.Changes{Capacity: int64(len(data))}
	var areas []disk.Extent
	if q.Since == "" {
		// Every allocated area: the non-zero 64 KiB runs.
		for off := int64(0); off < int64(len(data)); off += 64 << 10 {
			end := min(off+64<<10, int64(len(data)))
			if !bytes.Equal(data[off:end], make([]byte, end-off)) {
				areas = append(areas, disk.Extent{Offset: off, Length: end - off})
			}
		}
	} else {
		epoch, gen, capacity, ok := parseChangeID(q.Since)
		switch {
		case !ok || epoch != s.tr.epoch:
			return source.Changes{}, &source.ResyncError{Disk: q.Disk, Since: q.Since, Reason: "change tracking was reset since the last run"}
		case capacity > int64(len(data)):
			return source.Changes{}, &source.ResyncError{Disk: q.Disk, Since: q.Since, Reason: "the disk shrank"}
		}
		ch.PreviousCapacity = capacity
		for _, wr := range s.tr.log {
			if wr.vm == cp.VMID && wr.disk == i && wr.gen > gen && wr.gen <= s.tr.gens[cp.ID] {
				start, end := wr.off/512*512, min((wr.off+wr.n+511)/512*512, int64(len(data)))
				areas = append(areas, disk.Extent{Offset: start, Length: end - start})
			}
		}
		areas = mergeAreas(areas)
	}
	var out []disk.Extent
	for _, a := range areas {
		if a.End() > q.From {
			if a.Offset < q.From {
				a = disk.Extent{Offset: q.From / 512 * 512, Length: a.End() - q.From/512*512}
			}
			out = append(out, a)
		}
	}
	ch.Areas = &fakeAreas{w: s.w, areas: out}
	return ch, nil
}

func mergeAreas(in []disk.Extent) []disk.Extent {
	slices.SortFunc(in, func(a, b disk.Extent) int { return int(a.Offset - b.Offset) })
	var out []disk.Extent
	for _, a := range in {
		if n := len(out); n > 0 && a.Offset <= out[n-1].End() {
			out[n-1].Length = max(out[n-1].End(), a.End()) - out[n-1].Offset
			continue
		}
		out = append(out, a)
	}
	return out
}

// fakeAreas pages areas two at a time, each page a call that can fail.
type fakeAreas struct {
	w     *world
	areas []disk.Extent
}

func (a *fakeAreas) Next(ctx context.Context) ([]disk.Extent, error) {
	if err := a.w.at(ctx, "AreasNext", "before"); err != nil {
		return nil, err
	}
	if len(a.areas) == 0 {
		return nil, io.EOF
	}
	n := min(2, len(a.areas))
	page := a.areas[:n]
	a.areas = a.areas[n:]
	return page, nil
}

func (s trackedSource) Keep(ctx context.Context, cp source.Checkpoint) (source.Base, error) {
	if err := s.w.at(ctx, "Keep", "before"); err != nil {
		return source.Base{}, err
	}
	s.w.mu.Lock()
	cur, ok := s.w.snaps[cp.Name]
	frozen := s.tr.frozen[cp.ID]
	if !ok || (cur.ID != cp.ID && cur.ID != "base-"+cp.ID) {
		s.w.mu.Unlock()
		return source.Base{}, fmt.Errorf("checkpoint %q: %w", cp.Name, source.ErrNotFound)
	}
	b := source.Base{ChangeIDs: map[string]string{}, Checkpoint: source.Checkpoint{VMID: cp.VMID, Name: cp.Name, Base: true}}
	for i, d := range s.w.vms[cp.VMID].Disks {
		b.ChangeIDs[d.Key] = changeID(s.tr.epoch, s.tr.gens[cp.ID], int64(len(frozen[i])))
	}
	if s.tr.keepBases {
		b.Checkpoint.ID = "base-" + cp.ID
		s.w.snaps[cp.Name] = b.Checkpoint
	} else {
		delete(s.w.snaps, cp.Name)
	}
	s.w.mu.Unlock()
	return b, s.w.at(ctx, "Keep", "after")
}

func (s trackedSource) OpenDisk(ctx context.Context, cp source.Checkpoint, key string) (source.DiskData, error) {
	if err := s.w.at(ctx, "OpenDisk", "before"); err != nil {
		return nil, err
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	frozen, ok := s.tr.frozen[cp.ID]
	if !ok {
		return nil, fmt.Errorf("checkpoint %s: %w", cp.ID, source.ErrNotFound)
	}
	i, err := s.diskIndex(cp.VMID, key)
	if err != nil {
		return nil, err
	}
	return &frozenDisk{w: s.w, r: bytes.NewReader(frozen[i]), size: int64(len(frozen[i]))}, nil
}

type frozenDisk struct {
	w    *world
	r    *bytes.Reader
	size int64
}

func (d *frozenDisk) ReadAt(p []byte, off int64) (int, error) {
	if err := d.w.at(context.Background(), "ReadAt", "before"); err != nil {
		return 0, err
	}
	return d.r.ReadAt(p, off)
}
func (d *frozenDisk) Size() int64  { return d.size }
func (d *frozenDisk) Close() error { return nil }

var (
	_ source.ChangeTracker    = trackedSource{}
	_ source.CheckpointReader = trackedSource{}
)
