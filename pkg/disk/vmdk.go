package disk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/klauspost/compress/zlib"
)

// VMDK sparse extent constants (VMware "Virtual Disk Format 5.0").
const (
	vmdkMagic = 0x564d444b // "KDMV" read little-endian

	vmdkFlagNLTest     = 1 << 0
	vmdkFlagRGD        = 1 << 1
	vmdkFlagZeroGrain  = 1 << 2
	vmdkFlagCompressed = 1 << 16
	vmdkFlagMarkers    = 1 << 17

	vmdkCompressDeflate = 1

	vmdkGDAtEnd = ^uint64(0)

	markerEOS    = 0
	markerGT     = 1
	markerGD     = 2
	markerFooter = 3

	// Defaults used by the writer and by every VMware product.
	vmdkGrainSectors = 128
	vmdkGrainSize    = vmdkGrainSectors * sectorSize
	vmdkGTEntries    = 512

	// Parser limits: grains of at most 1 MiB, grain tables of at most 4096
	// entries (VMware uses 64 KiB and 512).
	maxGrainSectors = 2048
	maxGTEntries    = 4096
)

type vmdkHeader struct {
	Version     uint32
	Flags       uint32
	Capacity    uint64 // sectors
	Granularity uint64 // sectors per grain
	DescOffset  uint64 // sectors
	DescSize    uint64 // sectors
	GTEntries   uint32
	RGDOffset   uint64 // sectors
	GDOffset    uint64 // sectors
	Overhead    uint64 // sectors
	Unclean     bool
	Compression uint16
}

func (h *vmdkHeader) marshal() []byte {
	b := make([]byte, sectorSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], vmdkMagic)
	le.PutUint32(b[4:], h.Version)
	le.PutUint32(b[8:], h.Flags)
	le.PutUint64(b[12:], h.Capacity)
	le.PutUint64(b[20:], h.Granularity)
	le.PutUint64(b[28:], h.DescOffset)
	le.PutUint64(b[36:], h.DescSize)
	le.PutUint32(b[44:], h.GTEntries)
	le.PutUint64(b[48:], h.RGDOffset)
	le.PutUint64(b[56:], h.GDOffset)
	le.PutUint64(b[64:], h.Overhead)
	if h.Unclean {
		b[72] = 1
	}
	// Line-ending probe bytes that detect a text-mode transfer.
	b[73], b[74], b[75], b[76] = '\n', ' ', '\r', '\n'
	le.PutUint16(b[77:], h.Compression)
	return b
}

// parseVMDKHeader decodes and sanity-checks a sparse extent header.
func parseVMDKHeader(b []byte) (vmdkHeader, error) {
	var h vmdkHeader
	if len(b) < 79 {
		return h, fmt.Errorf("vmdk header: short (%d bytes): %w", len(b), ErrFormat)
	}
	le := binary.LittleEndian
	if le.Uint32(b) != vmdkMagic {
		return h, fmt.Errorf("vmdk header: bad magic %#x: %w", le.Uint32(b), ErrFormat)
	}
	h.Version = le.Uint32(b[4:])
	h.Flags = le.Uint32(b[8:])
	h.Capacity = le.Uint64(b[12:])
	h.Granularity = le.Uint64(b[20:])
	h.DescOffset = le.Uint64(b[28:])
	h.DescSize = le.Uint64(b[36:])
	h.GTEntries = le.Uint32(b[44:])
	h.RGDOffset = le.Uint64(b[48:])
	h.GDOffset = le.Uint64(b[56:])
	h.Overhead = le.Uint64(b[64:])
	h.Unclean = b[72] != 0
	h.Compression = le.Uint16(b[77:])
	if h.Version == 0 || h.Version > 3 {
		return h, fmt.Errorf("vmdk header: unsupported version %d: %w", h.Version, ErrFormat)
	}
	if h.Flags&vmdkFlagNLTest != 0 && (b[73] != '\n' || b[74] != ' ' || b[75] != '\r' || b[76] != '\n') {
		return h, fmt.Errorf("vmdk header: line-ending probe damaged (file transferred in text mode?): %w", ErrFormat)
	}
	if h.Capacity > MaxVirtualSize/sectorSize {
		return h, fmt.Errorf("vmdk header: capacity of %d sectors exceeds the %d TiB limit: %w", h.Capacity, MaxVirtualSize>>40, ErrFormat)
	}
	if h.Granularity < 1 || h.Granularity > maxGrainSectors || h.Granularity&(h.Granularity-1) != 0 {
		return h, fmt.Errorf("vmdk header: grain of %d sectors is not a power of two up to %d: %w", h.Granularity, maxGrainSectors, ErrFormat)
	}
	if h.GTEntries < 1 || h.GTEntries > maxGTEntries {
		return h, fmt.Errorf("vmdk header: %d grain table entries out of range: %w", h.GTEntries, ErrFormat)
	}
	if h.Flags&vmdkFlagCompressed != 0 && h.Compression != vmdkCompressDeflate {
		return h, fmt.Errorf("vmdk header: unknown compression algorithm %d: %w", h.Compression, ErrFormat)
	}
	return h, nil
}

func (h *vmdkHeader) compressed() bool { return h.Flags&vmdkFlagCompressed != 0 }

// maxCompressedGrain bounds the size a compressed grain may claim: deflate
// of incompressible data grows by a few bytes per 16 KiB block.
func maxCompressedGrain(grainBytes int64) int64 { return grainBytes + grainBytes/8 + 4096 }

// vmdkSparse reads a hosted sparse extent (monolithicSparse or
// streamOptimized) through its grain directory.
type vmdkSparse struct {
	ra         io.ReaderAt
	fileSize   int64
	h          vmdkHeader
	size       int64
	grainBytes int64
	subformat  string
	gd         []uint32            // grain table sector per directory entry, 0 = none
	gts        map[uint32][]uint32 // grain tables by sector
	ext        []Extent

	mu        sync.Mutex
	cacheIdx  int64 // grain index held in cache, -1 none
	cache     []byte
	comp      []byte
	zr        io.ReadCloser
	zrSource  *bytes.Reader
	cacheErrs error
}

func openVMDKSparse(ra io.ReaderAt, fileSize int64) (Image, error) {
	hb := make([]byte, sectorSize)
	if _, err := readFull(ra, hb, 0, fileSize); err != nil {
		return nil, fmt.Errorf("open vmdk: read header: %w", err)
	}
	h, err := parseVMDKHeader(hb)
	if err != nil {
		return nil, fmt.Errorf("open vmdk: %w", err)
	}
	sub := "monolithicSparse"
	if h.GDOffset == vmdkGDAtEnd {
		// streamOptimized: the real header is the footer, 1024 bytes from the end.
		if fileSize < 3*sectorSize || fileSize%sectorSize != 0 {
			return nil, fmt.Errorf("open vmdk: stream of %d bytes is too short or unaligned for a footer: %w", fileSize, ErrFormat)
		}
		fb := make([]byte, 3*sectorSize)
		if _, err := readFull(ra, fb, fileSize-3*sectorSize, fileSize); err != nil {
			return nil, fmt.Errorf("open vmdk: read footer: %w", err)
		}
		le := binary.LittleEndian
		if le.Uint32(fb[8:]) != 0 || le.Uint32(fb[12:]) != markerFooter || le.Uint32(fb[2*sectorSize+8:]) != 0 || le.Uint32(fb[2*sectorSize+12:]) != markerEOS {
			return nil, fmt.Errorf("open vmdk: streamOptimized footer or end-of-stream marker missing (truncated download?): %w", ErrFormat)
		}
		h, err = parseVMDKHeader(fb[sectorSize : 2*sectorSize])
		if err != nil {
			return nil, fmt.Errorf("open vmdk: footer: %w", err)
		}
		if h.GDOffset == vmdkGDAtEnd {
			return nil, fmt.Errorf("open vmdk: footer gives no grain directory: %w", ErrFormat)
		}
	}
	if err := checkEmbeddedDescriptor(ra, fileSize, hb); err != nil {
		return nil, fmt.Errorf("open vmdk: %w", err)
	}
	if h.compressed() {
		sub = "streamOptimized"
		if h.Flags&vmdkFlagMarkers == 0 {
			return nil, fmt.Errorf("open vmdk: compressed grains without markers are not supported: %w", ErrFormat)
		}
	}
	v := &vmdkSparse{ra: ra, fileSize: fileSize, h: h, size: int64(h.Capacity) * sectorSize,
		grainBytes: int64(h.Granularity) * sectorSize, subformat: sub, cacheIdx: -1}
	if err := v.loadTables(); err != nil {
		return nil, fmt.Errorf("open vmdk (%s): %w", sub, err)
	}
	return v, nil
}

// readFull reads exactly len(p) bytes at off, failing if they lie beyond
// fileSize.
func readFull(ra io.ReaderAt, p []byte, off, fileSize int64) (int, error) {
	if off < 0 || off > fileSize || int64(len(p)) > fileSize-off {
		return 0, fmt.Errorf("%d bytes at offset %d lie beyond the end of the %d-byte file: %w", len(p), off, fileSize, ErrFormat)
	}
	n, err := ra.ReadAt(p, off)
	if n == len(p) {
		return n, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (v *vmdkSparse) loadTables() error {
	grains := (v.size + v.grainBytes - 1) / v.grainBytes
	ngt := (grains + int64(v.h.GTEntries) - 1) / int64(v.h.GTEntries)
	gdBytes := ngt * 4
	if v.h.GDOffset > uint64(v.fileSize/sectorSize) || gdBytes > v.fileSize-int64(v.h.GDOffset)*sectorSize {
		return fmt.Errorf("grain directory of %d entries at sector %d lies beyond the %d-byte file: %w", ngt, v.h.GDOffset, v.fileSize, ErrFormat)
	}
	raw := make([]byte, gdBytes)
	if _, err := readFull(v.ra, raw, int64(v.h.GDOffset)*sectorSize, v.fileSize); err != nil {
		return fmt.Errorf("read grain directory: %w", err)
	}
	v.gd = make([]uint32, ngt)
	v.gts = map[uint32][]uint32{}
	gtBytes := int64(v.h.GTEntries) * 4
	var used []uint32
	for i := range v.gd {
		v.gd[i] = binary.LittleEndian.Uint32(raw[i*4:])
		if v.gd[i] != 0 {
			used = append(used, v.gd[i])
		}
	}
	// Grain tables must not overlap: besides being what every writer does,
	// it bounds the tables' memory and the work of walking them by the file
	// size, whatever capacity the header claims.
	slices.Sort(used)
	for k := 1; k < len(used); k++ {
		if int64(used[k]-used[k-1])*sectorSize < gtBytes {
			return fmt.Errorf("grain tables at sectors %d and %d overlap: %w", used[k-1], used[k], ErrFormat)
		}
	}
	for i := range v.gd {
		s := v.gd[i]
		if s == 0 {
			continue
		}
		tb := make([]byte, gtBytes)
		if _, err := readFull(v.ra, tb, int64(s)*sectorSize, v.fileSize); err != nil {
			return fmt.Errorf("read grain table %d: %w", i, err)
		}
		gt := make([]uint32, v.h.GTEntries)
		for j := range gt {
			gt[j] = binary.LittleEndian.Uint32(tb[j*4:])
		}
		v.gts[s] = gt
	}
	for i, s := range v.gd {
		if s == 0 {
			continue
		}
		for j, gte := range v.gts[s] {
			if v.gteAllocated(gte) {
				off := (int64(i)*int64(v.h.GTEntries) + int64(j)) * v.grainBytes
				if off >= v.size {
					break
				}
				v.ext = appendExtent(v.ext, Extent{off, min(v.grainBytes, v.size-off)})
			}
		}
	}
	return nil
}

func (v *vmdkSparse) gteAllocated(gte uint32) bool {
	return gte > 1 || (gte == 1 && v.h.Flags&vmdkFlagZeroGrain == 0)
}

func (v *vmdkSparse) Size() int64       { return v.size }
func (v *vmdkSparse) Extents() []Extent { return v.ext }
func (v *vmdkSparse) Info() Info        { return infoOf(v, VMDK, v.subformat) }

func (v *vmdkSparse) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read vmdk: negative offset %d", off)
	}
	if off >= v.size {
		return 0, io.EOF
	}
	want := len(p)
	if rem := v.size - off; int64(want) > rem {
		want = int(rem)
	}
	n := 0
	for n < want {
		pos := off + int64(n)
		gi := pos / v.grainBytes
		in := pos % v.grainBytes
		chunk := min(int64(want-n), v.grainBytes-in)
		dst := p[n : n+int(chunk)]
		gte := uint32(0)
		if s := v.gd[gi/int64(v.h.GTEntries)]; s != 0 {
			gte = v.gts[s][gi%int64(v.h.GTEntries)]
		}
		switch {
		case !v.gteAllocated(gte):
			zeroFill(dst)
		case v.h.compressed():
			if err := v.readCompressed(gi, gte, in, dst); err != nil {
				return n, err
			}
		default:
			if _, err := readFull(v.ra, dst, int64(gte)*sectorSize+in, v.fileSize); err != nil {
				return n, fmt.Errorf("read vmdk grain %d: %w", gi, err)
			}
		}
		n += int(chunk)
	}
	if want < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (v *vmdkSparse) readCompressed(gi int64, gte uint32, in int64, dst []byte) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cacheIdx != gi {
		v.cacheIdx = -1
		if v.cache == nil {
			v.cache = make([]byte, v.grainBytes)
		}
		var mk [12]byte
		at := int64(gte) * sectorSize
		if _, err := readFull(v.ra, mk[:], at, v.fileSize); err != nil {
			return fmt.Errorf("read vmdk grain %d marker: %w", gi, err)
		}
		clen := int64(binary.LittleEndian.Uint32(mk[8:]))
		if clen == 0 || clen > maxCompressedGrain(v.grainBytes) {
			return fmt.Errorf("read vmdk grain %d: compressed size %d out of range: %w", gi, clen, ErrFormat)
		}
		if int64(cap(v.comp)) < clen {
			v.comp = make([]byte, clen)
		}
		comp := v.comp[:clen]
		if _, err := readFull(v.ra, comp, at+12, v.fileSize); err != nil {
			return fmt.Errorf("read vmdk grain %d: %w", gi, err)
		}
		if err := v.inflate(comp); err != nil {
			return fmt.Errorf("read vmdk grain %d: %w", gi, err)
		}
		v.cacheIdx = gi
	}
	copy(dst, v.cache[in:])
	return nil
}

// inflate decompresses one grain into v.cache; a grain shorter than the
// grain size (the last one, from some writers) reads as zero-padded.
func (v *vmdkSparse) inflate(comp []byte) error {
	var err error
	if v.zr == nil {
		v.zrSource = bytes.NewReader(comp)
		v.zr, err = zlib.NewReader(v.zrSource)
	} else {
		v.zrSource.Reset(comp)
		err = v.zr.(zlib.Resetter).Reset(v.zrSource, nil)
	}
	if err != nil {
		return fmt.Errorf("inflate: %v: %w", err, ErrFormat)
	}
	return inflateGrain(v.zr, v.cache)
}

// inflateGrain fills grain from zr, zero-padding a short grain and refusing
// one that inflates past the grain size.
func inflateGrain(zr io.Reader, grain []byte) error {
	n, stalls := 0, 0
	for n < len(grain) {
		m, err := zr.Read(grain[n:])
		n += m
		if err == io.EOF {
			zeroFill(grain[n:])
			return nil
		}
		if err != nil {
			return fmt.Errorf("inflate: %v: %w", err, ErrFormat)
		}
		if m == 0 {
			if stalls++; stalls > 100 {
				return fmt.Errorf("inflate: decompressor makes no progress: %w", ErrFormat)
			}
		}
	}
	var one [1]byte
	for range 100 {
		m, err := zr.Read(one[:])
		if m > 0 {
			return fmt.Errorf("inflate: grain inflates past %d bytes: %w", len(grain), ErrFormat)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("inflate: %v: %w", err, ErrFormat)
		}
	}
	return fmt.Errorf("inflate: decompressor makes no progress: %w", ErrFormat)
}

// checkEmbeddedDescriptor refuses a delta disk, whose embedded descriptor
// names a parent; the first header (hb) says where the descriptor is.
func checkEmbeddedDescriptor(ra io.ReaderAt, fileSize int64, hb []byte) error {
	off := binary.LittleEndian.Uint64(hb[28:])
	n := binary.LittleEndian.Uint64(hb[36:])
	if off == 0 || n == 0 {
		return nil
	}
	if n > maxDescriptorSize/sectorSize || off > uint64(fileSize/sectorSize) {
		return fmt.Errorf("embedded descriptor of %d sectors at sector %d out of range: %w", n, off, ErrFormat)
	}
	b := make([]byte, n*sectorSize)
	if _, err := readFull(ra, b, int64(off)*sectorSize, fileSize); err != nil {
		return fmt.Errorf("read embedded descriptor: %w", err)
	}
	d, err := parseDescriptor(b)
	if err != nil {
		return err
	}
	if d.ParentCID != "" && d.ParentCID != "ffffffff" {
		return fmt.Errorf("delta (snapshot) disk with parent CID %s needs its parent; export the consolidated disk instead: %w", d.ParentCID, ErrFormat)
	}
	return nil
}
