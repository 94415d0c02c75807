package disk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Image is an opened disk image with random access to its virtual content.
// ReadAt is safe for concurrent use.
type Image interface {
	Sparse
	Info() Info
}

const (
	sectorSize = 512
	// MaxVirtualSize caps the virtual size any parser accepts (64 TiB, the
	// VHDX limit and beyond what EC2 imports), so a hostile header cannot make
	// a reader walk or allocate for an absurd disk.
	MaxVirtualSize = 64 << 40
	// scanGranularity is the unit in which raw content is searched for
	// non-zero data.
	scanGranularity = 64 << 10
)

// Open detects the format (raw, VMDK streamOptimized/monolithicSparse, VHD
// fixed/dynamic, VHDX fixed/dynamic) of the image in ra and opens it. Raw is
// the fallback when no signature matches; a format it recognises but does
// not read (qcow2, QED, VDI, Parallels, a VMDK COWD delta) is refused with
// an error wrapping ErrUnsupported. A VHD or VHDX differencing disk is
// refused with an error wrapping ErrFormat that says it needs its parent, and
// a VMDK text descriptor is refused with a hint to use OpenFile.
func Open(ra io.ReaderAt, size int64) (Image, error) {
	if size < 0 {
		return nil, fmt.Errorf("open disk image: negative size %d: %w", size, ErrFormat)
	}
	var head [72]byte
	n, err := ra.ReadAt(head[:], 0)
	if n < len(head) && err != nil && err != io.EOF {
		return nil, fmt.Errorf("open disk image: read header: %w", err)
	}
	h := head[:n]
	switch {
	case len(h) >= 4 && binary.LittleEndian.Uint32(h) == vmdkMagic:
		return openVMDKSparse(ra, size)
	case bytes.HasPrefix(h, []byte(vhdxSignature)):
		return openVHDX(ra, size)
	case bytes.HasPrefix(h, []byte(descriptorSignature)):
		return nil, fmt.Errorf("open disk image: this is a VMDK text descriptor; its extents live in other files, open it by path: %w", ErrFormat)
	}
	if err := unsupportedError(h); err != nil {
		return nil, err
	}
	if size >= vhdFooterSize {
		var foot [8]byte
		if _, err := ra.ReadAt(foot[:], size-vhdFooterSize); err != nil && err != io.EOF {
			return nil, fmt.Errorf("open disk image: read vhd footer: %w", err)
		}
		if string(foot[:]) == vhdCookie {
			return openVHD(ra, size)
		}
	}
	return &rawImage{ra: ra, size: size}, nil
}

// OpenFile opens the image at path with Open; it also understands a VMDK text
// descriptor whose extents are FLAT, VMFS, ZERO or SPARSE files, resolving
// each extent file relative to the descriptor. The Closer closes every file
// opened.
func OpenFile(path string) (Image, io.Closer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open disk image: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("open disk image %s: %w", path, err)
	}
	var head [len(descriptorSignature)]byte
	n, _ := f.ReadAt(head[:], 0)
	if n == len(head) && string(head[:]) == descriptorSignature {
		defer f.Close()
		if st.Size() > maxDescriptorSize {
			return nil, nil, fmt.Errorf("open disk image %s: descriptor of %d bytes is too large: %w", path, st.Size(), ErrFormat)
		}
		text, err := io.ReadAll(io.LimitReader(f, maxDescriptorSize))
		if err != nil {
			return nil, nil, fmt.Errorf("open disk image %s: read descriptor: %w", path, err)
		}
		d, err := parseDescriptor(text)
		if err != nil {
			return nil, nil, fmt.Errorf("open disk image %s: %w", path, err)
		}
		img, closer, err := openDescriptorExtents(d, localExtents(filepath.Dir(path)))
		if err != nil {
			return nil, nil, fmt.Errorf("open disk image %s: %w", path, err)
		}
		return img, closer, nil
	}
	img, err := Open(f, st.Size())
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("open disk image %s: %w", path, err)
	}
	if r, ok := img.(*rawImage); ok && r.format == "" {
		// A sparse raw file: its holes come from the file system, not from
		// reading them.
		if ext, ok := fileExtents(f, st.Size()); ok {
			r.once.Do(func() { r.ext, r.known = ext, true })
		}
	}
	return img, f, nil
}

// NewRaw views raw bytes as a Sparse. Its Extents are the regions holding
// non-zero data, found by scanning at a 64 KiB granularity on the first call
// (a full read of the content); from the first region that cannot be read
// on, everything is reported as allocated so the caller's own read surfaces
// the error.
func NewRaw(ra io.ReaderAt, size int64) Sparse {
	return &rawImage{ra: ra, size: size}
}

type rawImage struct {
	ra   io.ReaderAt
	size int64
	// fixed, when set, names the container whose data region this is.
	format    Format
	subformat string

	once sync.Once
	ext  []Extent
	// known is set when ext came from the file system rather than a scan.
	known bool
}

func (r *rawImage) Size() int64 { return r.size }

func (r *rawImage) ReadAt(p []byte, off int64) (int, error) {
	return readClipped(r.ra, p, off, r.size)
}

func (r *rawImage) Extents() []Extent {
	r.once.Do(func() { r.ext = scanNonZero(r.ra, 0, r.size) })
	return r.ext
}

func (r *rawImage) Info() Info {
	f := r.format
	if f == "" {
		f = Raw
	}
	return infoOf(r, f, r.subformat)
}

// readClipped reads from ra at off but never past size; bytes the backing
// store lacks below size (a truncated file) are an error, not zeros.
func readClipped(ra io.ReaderAt, p []byte, off, size int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at negative offset %d", off)
	}
	if off >= size {
		return 0, io.EOF
	}
	var short bool
	if rem := size - off; int64(len(p)) > rem {
		p = p[:rem]
		short = true
	}
	n, err := ra.ReadAt(p, off)
	if n == len(p) {
		err = nil
	} else if err == io.EOF || err == nil {
		err = io.ErrUnexpectedEOF
	}
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

// scanNonZero returns the regions of [base, base+size) of ra that hold
// non-zero bytes, as offsets relative to base, at scanGranularity.
func scanNonZero(ra io.ReaderAt, base, size int64) []Extent {
	var out []Extent
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		chunk := buf
		if rem := size - off; rem < int64(len(chunk)) {
			chunk = chunk[:rem]
		}
		n, err := ra.ReadAt(chunk, base+off)
		if n < len(chunk) && err != nil {
			// Unreadable: report the rest as allocated so the caller's read
			// fails loudly instead of the region silently reading as zeros.
			return appendExtent(out, Extent{off, size - off})
		}
		for i := 0; i < len(chunk); i += scanGranularity {
			end := min(i+scanGranularity, len(chunk))
			if !isZero(chunk[i:end]) {
				out = appendExtent(out, Extent{off + int64(i), int64(end - i)})
			}
		}
	}
	return out
}

var zeroBlock [64 << 10]byte

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// appendExtent appends e to list, merging it with the last extent when they
// touch or overlap; list must be sorted and e must not start before the last.
func appendExtent(list []Extent, e Extent) []Extent {
	if e.Length <= 0 {
		return list
	}
	if n := len(list); n > 0 && list[n-1].End() >= e.Offset {
		if e.End() > list[n-1].End() {
			list[n-1].Length = e.End() - list[n-1].Offset
		}
		return list
	}
	return append(list, e)
}

func infoOf(s Sparse, f Format, sub string) Info {
	ext := s.Extents()
	var alloc int64
	for _, e := range ext {
		alloc += e.Length
	}
	return Info{Format: f, Subformat: sub, VirtualSize: s.Size(), AllocatedBytes: alloc, ExtentCount: len(ext)}
}

// zeroFill clears p.
func zeroFill(p []byte) { clear(p) }

// readBlocks is ReadAt of an image of size bytes stored in blocks of bs
// bytes: it cuts p at block boundaries and reads each piece with read (the
// piece, its block, its offset in the block); errors name the image kind
// what and the block.
func readBlocks(p []byte, off, size, bs int64, what string, read func(dst []byte, b, in int64) error) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s: negative offset %d", what, off)
	}
	if off >= size {
		return 0, io.EOF
	}
	want := int(min(int64(len(p)), size-off))
	n := 0
	for n < want {
		pos := off + int64(n)
		b, in := pos/bs, pos%bs
		chunk := int(min(int64(want-n), bs-in))
		if err := read(p[n:n+chunk], b, in); err != nil {
			return n, fmt.Errorf("read %s block %d: %w", what, b, err)
		}
		n += chunk
	}
	if want < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readerAtFunc adapts a function to io.ReaderAt.
type readerAtFunc func(p []byte, off int64) (int, error)

func (f readerAtFunc) ReadAt(p []byte, off int64) (int, error) { return f(p, off) }

// sectionImage is a region of a ReaderAt presented as an Image with the
// extents of a fixed-size container (found by scanning).
func sectionImage(ra io.ReaderAt, base, size int64, f Format, sub string) *rawImage {
	return &rawImage{ra: io.NewSectionReader(ra, base, size), size: size, format: f, subformat: sub}
}

// multiCloser closes several closers, returning the first error.
type multiCloser []io.Closer

func (m multiCloser) Close() error {
	var first error
	for _, c := range m {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
