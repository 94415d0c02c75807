package disk

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

const (
	descriptorSignature = "# Disk DescriptorFile"
	maxDescriptorSize   = 64 << 10
	maxDescriptorExtent = 4096
)

// descriptor is a parsed VMDK text descriptor.
type descriptor struct {
	CreateType string
	ParentCID  string
	Extents    []descExtent
}

type descExtent struct {
	Access  string // RW, RDONLY, NOACCESS
	Sectors int64
	Type    string // FLAT, SPARSE, ZERO, VMFS, VMFSSPARSE, …
	File    string
	Offset  int64 // sectors into File, for FLAT and VMFS
}

// parseDescriptor parses the text descriptor of a VMDK, embedded or
// standalone. Unknown keys are ignored, as VMware does.
func parseDescriptor(text []byte) (*descriptor, error) {
	if len(text) > maxDescriptorSize {
		return nil, fmt.Errorf("vmdk descriptor: %d bytes exceeds %d: %w", len(text), maxDescriptorSize, ErrFormat)
	}
	if i := bytes.IndexByte(text, 0); i >= 0 {
		text = text[:i] // an embedded descriptor is NUL-padded
	}
	d := &descriptor{}
	var total int64
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 4096), maxDescriptorSize)
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		if f := strings.Fields(l); len(f) > 0 && (f[0] == "RW" || f[0] == "RDONLY" || f[0] == "NOACCESS") {
			e, err := parseExtentLine(l)
			if err != nil {
				return nil, fmt.Errorf("vmdk descriptor line %d: %w", line, err)
			}
			if len(d.Extents) == maxDescriptorExtent {
				return nil, fmt.Errorf("vmdk descriptor: more than %d extents: %w", maxDescriptorExtent, ErrFormat)
			}
			total += e.Sectors
			if total > MaxVirtualSize/sectorSize {
				return nil, fmt.Errorf("vmdk descriptor: extents exceed the %d TiB limit: %w", MaxVirtualSize>>40, ErrFormat)
			}
			d.Extents = append(d.Extents, e)
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
		switch strings.ToLower(k) {
		case "createtype":
			d.CreateType = v
		case "parentcid":
			d.ParentCID = strings.ToLower(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("vmdk descriptor: %v: %w", err, ErrFormat)
	}
	return d, nil
}

func parseExtentLine(l string) (descExtent, error) {
	var e descExtent
	q := strings.IndexByte(l, '"')
	if q < 0 {
		// Only a ZERO extent may omit its file name.
		if f := strings.Fields(l); len(f) == 3 && strings.EqualFold(f[2], "ZERO") {
			l, q = l+` ""`, len(l)+1
		} else {
			return e, fmt.Errorf("extent %q has no quoted file name: %w", l, ErrFormat)
		}
	}
	head := strings.Fields(l[:q])
	rest := l[q+1:]
	r := strings.IndexByte(rest, '"')
	if r < 0 || len(head) != 3 {
		return e, fmt.Errorf("malformed extent %q: %w", l, ErrFormat)
	}
	e.Access, e.Type, e.File = head[0], strings.ToUpper(head[2]), rest[:r]
	n, err := strconv.ParseInt(head[1], 10, 64)
	if err != nil || n < 0 || n > MaxVirtualSize/sectorSize {
		return e, fmt.Errorf("extent %q: bad sector count: %w", l, ErrFormat)
	}
	e.Sectors = n
	if tail := strings.Fields(rest[r+1:]); len(tail) > 0 {
		o, err := strconv.ParseInt(tail[0], 10, 64)
		if err != nil || o < 0 || o > MaxVirtualSize/sectorSize {
			return e, fmt.Errorf("extent %q: bad offset: %w", l, ErrFormat)
		}
		e.Offset = o
	}
	if e.File == "" && e.Type != "ZERO" {
		return e, fmt.Errorf("extent %q: empty file name: %w", l, ErrFormat)
	}
	return e, nil
}

// ExtentOpener opens an extent file a VMDK text descriptor names (as the
// descriptor spells it, relative to the descriptor) for random access, and
// gives its size; the Closer is called when the image is closed.
type ExtentOpener func(name string) (io.ReaderAt, int64, io.Closer, error)

// OpenDescriptor opens the VMDK whose text descriptor is text, reading its
// FLAT, VMFS, ZERO and SPARSE extents through open: a disk whose files are
// not local (a datastore read over HTTP). A delta (snapshot) descriptor is
// refused, as OpenFile refuses it. The Closer closes every extent opened.
func OpenDescriptor(text []byte, open ExtentOpener) (Image, io.Closer, error) {
	d, err := parseDescriptor(text)
	if err != nil {
		return nil, nil, err
	}
	return openDescriptorExtents(d, open)
}

// openDescriptorExtents opens the extent files a standalone descriptor names
// and joins them into one image.
func openDescriptorExtents(d *descriptor, open ExtentOpener) (Image, io.Closer, error) {
	if d.ParentCID != "" && d.ParentCID != "ffffffff" {
		return nil, nil, fmt.Errorf("vmdk is a delta (snapshot) disk with parent CID %s and needs its parent; export the consolidated disk instead: %w", d.ParentCID, ErrFormat)
	}
	if len(d.Extents) == 0 {
		return nil, nil, fmt.Errorf("vmdk descriptor names no extents: %w", ErrFormat)
	}
	var closers multiCloser
	fail := func(err error) (Image, io.Closer, error) {
		closers.Close()
		return nil, nil, err
	}
	c := &concatImage{subformat: d.CreateType}
	var at int64
	for i, e := range d.Extents {
		size := e.Sectors * sectorSize
		var part Sparse
		switch e.Type {
		case "ZERO":
		case "FLAT", "VMFS", "VMFSRAW", "VMFSRDM":
			f, n, closer, err := open(e.File)
			if err != nil {
				return fail(fmt.Errorf("extent %d: %w", i+1, err))
			}
			closers = append(closers, closer)
			if e.Offset*sectorSize > n || size > n-e.Offset*sectorSize {
				return fail(fmt.Errorf("extent %d: flat file %s holds %d bytes, fewer than the %d the descriptor claims: %w", i+1, e.File, n, e.Offset*sectorSize+size, ErrFormat))
			}
			part = sectionImage(f, e.Offset*sectorSize, size, VMDK, d.CreateType)
		case "SPARSE", "VMFSSPARSE":
			f, n, closer, err := open(e.File)
			if err != nil {
				return fail(fmt.Errorf("extent %d: %w", i+1, err))
			}
			closers = append(closers, closer)
			img, err := openVMDKSparse(f, n)
			if err != nil {
				return fail(fmt.Errorf("extent %d (%s): %w", i+1, e.File, err))
			}
			if img.Size() < size {
				return fail(fmt.Errorf("extent %d: sparse file %s holds %d bytes, fewer than the %d the descriptor claims: %w", i+1, e.File, img.Size(), size, ErrFormat))
			}
			part = img
		default:
			return fail(fmt.Errorf("extent %d: VMDK %s extents (createType %q) are not read by rehost; convert the disk (e.g. qemu-img convert -O vmdk -o subformat=streamOptimized) or export it again: %w",
				i+1, e.Type, d.CreateType, ErrUnsupported))
		}
		c.parts = append(c.parts, concatPart{start: at, size: size, s: part})
		at += size
	}
	c.size = at
	return c, closers, nil
}

// localExtents opens extent files relative to dir.
func localExtents(dir string) ExtentOpener {
	return func(name string) (io.ReaderAt, int64, io.Closer, error) {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, filepath.FromSlash(name))
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("open extent file: %w", err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, nil, fmt.Errorf("open extent file: %w", err)
		}
		return f, st.Size(), f, nil
	}
}

// concatImage joins images end to end; a part with a nil Sparse reads as
// zeros.
type concatImage struct {
	parts     []concatPart
	size      int64
	subformat string
	once      sync.Once
	ext       []Extent
}

type concatPart struct {
	start, size int64
	s           Sparse
}

func (c *concatImage) Size() int64 { return c.size }
func (c *concatImage) Info() Info  { return infoOf(c, VMDK, c.subformat) }

func (c *concatImage) Extents() []Extent {
	c.once.Do(func() {
		for _, p := range c.parts {
			if p.s == nil {
				continue
			}
			for _, e := range p.s.Extents() {
				if e.Offset >= p.size {
					break
				}
				c.ext = appendExtent(c.ext, Extent{p.start + e.Offset, min(e.Length, p.size-e.Offset)})
			}
		}
	})
	return c.ext
}

func (c *concatImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read vmdk: negative offset %d", off)
	}
	if off >= c.size {
		return 0, io.EOF
	}
	want := int(min(int64(len(p)), c.size-off))
	n := 0
	i := sort.Search(len(c.parts), func(i int) bool { return c.parts[i].start+c.parts[i].size > off })
	for n < want && i < len(c.parts) {
		pt := c.parts[i]
		pos := off + int64(n)
		in := pos - pt.start
		chunk := int(min(int64(want-n), pt.size-in))
		if pt.s == nil {
			zeroFill(p[n : n+chunk])
		} else if m, err := pt.s.ReadAt(p[n:n+chunk], in); m < chunk {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n + m, fmt.Errorf("read vmdk extent %d: %w", i+1, err)
		}
		n += chunk
		i++
	}
	if want < len(p) {
		return n, io.EOF
	}
	return n, nil
}
