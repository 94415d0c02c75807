package vspheresim

import (
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	"github.com/google/uuid"

	"github.com/rehost/rehost/pkg/disk"
)

// sector is the granularity at which written ranges are tracked, as a
// hypervisor tracks them: a write of any byte marks its whole sector.
const sector = 512

// content is the bytes of one virtual disk (live or frozen in a snapshot):
// a sparse file of the disk's capacity plus the extents ever written, so that
// memory and disk use follow what was written, not the capacity.
type content struct {
	mu    sync.RWMutex
	f     *os.File
	size  int64
	alloc []disk.Extent
}

func newContent(path string, size int64) (*content, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return &content{f: f, size: size}, nil
}

// writeAt stores p at off and returns the sector-aligned extent it covers.
func (c *content) writeAt(p []byte, off int64) (disk.Extent, error) {
	if off < 0 || off+int64(len(p)) > c.size {
		return disk.Extent{}, fmt.Errorf("write of %d bytes at %d is outside the %d-byte disk", len(p), off, c.size)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.f.WriteAt(p, off); err != nil {
		return disk.Extent{}, err
	}
	e := alignOut(disk.Extent{Offset: off, Length: int64(len(p))}, c.size)
	if e.Length > 0 {
		c.alloc = addExtent(c.alloc, e)
	}
	return e, nil
}

// clone copies c into a new sparse file at path, reading only the allocated
// extents, so a snapshot of a mostly empty disk costs what was written.
func (c *content) clone(path string) (*content, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	d, err := newContent(path, c.size)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1<<20)
	for _, e := range c.alloc {
		for off := e.Offset; off < e.End(); {
			n := int(min(int64(len(buf)), e.End()-off))
			if _, err := c.f.ReadAt(buf[:n], off); err != nil && err != io.EOF {
				d.remove()
				return nil, err
			}
			if _, err := d.f.WriteAt(buf[:n], off); err != nil {
				d.remove()
				return nil, err
			}
			off += int64(n)
		}
	}
	d.alloc = append([]disk.Extent(nil), c.alloc...)
	return d, nil
}

// replaceWith makes c's bytes those of src (a revert to a snapshot).
func (c *content) replaceWith(src *content) error {
	src.mu.RLock()
	defer src.mu.RUnlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.f.Truncate(0); err != nil {
		return err
	}
	if err := c.f.Truncate(c.size); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for _, e := range src.alloc {
		for off := e.Offset; off < e.End(); {
			n := int(min(int64(len(buf)), e.End()-off))
			if _, err := src.f.ReadAt(buf[:n], off); err != nil && err != io.EOF {
				return err
			}
			if _, err := c.f.WriteAt(buf[:n], off); err != nil {
				return err
			}
			off += int64(n)
		}
	}
	c.alloc = append([]disk.Extent(nil), src.alloc...)
	return nil
}

func (c *content) extents() []disk.Extent {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]disk.Extent(nil), c.alloc...)
}

func (c *content) remove() {
	name := c.f.Name()
	c.f.Close()
	os.Remove(name)
}

// sparseView is a frozen content read as a disk.Sparse.
type sparseView struct {
	c   *content
	ext []disk.Extent
}

func (v *sparseView) Size() int64            { return v.c.size }
func (v *sparseView) Extents() []disk.Extent { return v.ext }
func (v *sparseView) ReadAt(p []byte, off int64) (int, error) {
	v.c.mu.RLock()
	defer v.c.mu.RUnlock()
	if off >= v.c.size {
		return 0, io.EOF
	}
	want := len(p)
	if rest := v.c.size - off; int64(want) > rest {
		want = int(rest)
	}
	n, err := v.c.f.ReadAt(p[:want], off)
	if err == io.EOF && n < want {
		clear(p[n:want]) // the sparse file's tail reads as zero
		n, err = want, nil
	}
	if err == nil && want < len(p) {
		err = io.EOF
	}
	return n, err
}

// diskState is one virtual disk of a simulated VM: its live content and its
// change tracking. Every write is stamped with the current change epoch; a
// snapshot closes the epoch, and its change id names it.
type diskState struct {
	key      int32
	label    string
	capacity int64
	live     *content

	mu sync.Mutex
	// cbtID identifies the change-tracking generation; a revert starts a
	// new one so that change ids from before it are refused.
	cbtID   string
	epoch   int
	changes []change
}

type change struct {
	epoch int
	ext   disk.Extent
}

func (d *diskState) write(p []byte, off int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, err := d.live.writeAt(p, off)
	if err != nil {
		return err
	}
	if e.Length > 0 {
		d.changes = append(d.changes, change{epoch: d.epoch, ext: e})
	}
	return nil
}

// freezeAll copies the live content of every disk for a snapshot and
// closes each disk's change epoch, holding all the disks still at once so
// the copies are of one instant; it returns the copies, the change ids and
// the epochs closed.
func freezeAll(disks []*diskState, path func(i int) string) ([]*content, []string, []int, error) {
	for _, d := range disks {
		d.mu.Lock()
	}
	defer func() {
		for _, d := range disks {
			d.mu.Unlock()
		}
	}()
	var cs []*content
	for i, d := range disks {
		c, err := d.live.clone(path(i))
		if err != nil {
			for _, c := range cs {
				c.remove()
			}
			return nil, nil, nil, fmt.Errorf("snapshot disk %d: %w", i, err)
		}
		cs = append(cs, c)
	}
	ids, eps := make([]string, len(disks)), make([]int, len(disks))
	for i, d := range disks {
		ids[i], eps[i] = fmt.Sprintf("%s/%d", d.cbtID, d.epoch), d.epoch
		d.epoch++
	}
	return cs, ids, eps, nil
}

// changedSince returns the sectors below size written in epochs (since,
// upTo].
func (d *diskState) changedSince(since, upTo int, size int64) []disk.Extent {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []disk.Extent
	for _, c := range d.changes {
		if c.epoch > since && c.epoch <= upTo && c.ext.Offset < size {
			out = addExtent(out, disk.Extent{Offset: c.ext.Offset, Length: min(c.ext.End(), size) - c.ext.Offset})
		}
	}
	return out
}

// newGeneration starts change tracking afresh (CBT turned on, reset, or
// the disk moved by a storage vMotion): change ids handed out before are
// refused from now on.
func (d *diskState) newGeneration() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cbtID = uuid.NewString()
	d.epoch = 0
	d.changes = nil
}

// currentID is the change id the disk would hand out now.
func (d *diskState) currentID() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return fmt.Sprintf("%s/%d", d.cbtID, d.epoch)
}

// grow extends the live disk to size bytes (the new tail reads as zeros).
func (d *diskState) grow(size int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if size < d.capacity || size%sector != 0 {
		return fmt.Errorf("new size %d is below %d or not a multiple of %d", size, d.capacity, sector)
	}
	d.live.mu.Lock()
	defer d.live.mu.Unlock()
	if err := d.live.f.Truncate(size); err != nil {
		return err
	}
	d.live.size, d.capacity = size, size
	return nil
}

func (d *diskState) restart(src *content) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.live.replaceWith(src); err != nil {
		return err
	}
	d.cbtID = uuid.NewString()
	d.epoch = 0
	d.changes = nil
	return nil
}

func alignOut(e disk.Extent, size int64) disk.Extent {
	start := e.Offset / sector * sector
	end := (e.End() + sector - 1) / sector * sector
	end = min(end, size)
	return disk.Extent{Offset: start, Length: end - start}
}

// addExtent inserts e into the sorted, merged list l.
func addExtent(l []disk.Extent, e disk.Extent) []disk.Extent {
	i := sort.Search(len(l), func(i int) bool { return l[i].End() >= e.Offset })
	j := i
	start, end := e.Offset, e.End()
	for j < len(l) && l[j].Offset <= end {
		start = min(start, l[j].Offset)
		end = max(end, l[j].End())
		j++
	}
	merged := disk.Extent{Offset: start, Length: end - start}
	out := append(l[:i:i], merged)
	return append(out, l[j:]...)
}
