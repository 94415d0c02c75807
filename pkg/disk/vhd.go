package disk

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/rehost/rehost/pkg/disk/chs"
)

const (
	vhdCookie     = "conectix"
	vhdDynCookie  = "cxsparse"
	vhdFooterSize = 512
	vhdDynHdrSize = 1024

	vhdTypeFixed   = 2
	vhdTypeDynamic = 3
	vhdTypeDiff    = 4

	vhdBlockSize = 2 << 20
	// MaxVHDSize is the largest virtual size the VHD format holds (2040 GiB).
	MaxVHDSize = 2040 << 30
	// vhdMaxBlockSize bounds the block size a parser accepts.
	vhdMaxBlockSize = 256 << 20
)

// vhdEpoch is the VHD timestamp origin.
var vhdEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

type vhdFooter struct {
	DataOffset  uint64
	CurrentSize uint64
	DiskType    uint32
	CreatorApp  string
}

// vhdChecksum is the one's complement of the byte sum of b, skipping the
// 4-byte checksum field at skip.
func vhdChecksum(b []byte, skip int) uint32 {
	var sum uint32
	for i, c := range b {
		if i >= skip && i < skip+4 {
			continue
		}
		sum += uint32(c)
	}
	return ^sum
}

func parseVHDFooter(b []byte) (vhdFooter, error) {
	var f vhdFooter
	if len(b) < vhdFooterSize || string(b[:8]) != vhdCookie {
		return f, fmt.Errorf("vhd footer: no %q cookie: %w", vhdCookie, ErrFormat)
	}
	be := binary.BigEndian
	if got, want := be.Uint32(b[64:]), vhdChecksum(b[:vhdFooterSize], 64); got != want {
		return f, fmt.Errorf("vhd footer: checksum %#08x, computed %#08x: %w", got, want, ErrFormat)
	}
	f.DataOffset = be.Uint64(b[16:])
	f.CurrentSize = be.Uint64(b[48:])
	f.DiskType = be.Uint32(b[60:])
	f.CreatorApp = string(b[28:32])
	if f.CurrentSize > MaxVirtualSize {
		return f, fmt.Errorf("vhd footer: virtual size %d exceeds the %d TiB limit: %w", f.CurrentSize, MaxVirtualSize>>40, ErrFormat)
	}
	return f, nil
}

func openVHD(ra io.ReaderAt, fileSize int64) (Image, error) {
	fb := make([]byte, vhdFooterSize)
	if _, err := readFull(ra, fb, fileSize-vhdFooterSize, fileSize); err != nil {
		return nil, fmt.Errorf("open vhd: read footer: %w", err)
	}
	f, err := parseVHDFooter(fb)
	if err != nil {
		return nil, fmt.Errorf("open vhd: %w", err)
	}
	size := int64(f.CurrentSize)
	switch f.DiskType {
	case vhdTypeFixed:
		if size > fileSize-vhdFooterSize {
			return nil, fmt.Errorf("open vhd: fixed disk of %d bytes in a %d-byte file (truncated?): %w", size, fileSize, ErrFormat)
		}
		return sectionImage(ra, 0, size, VHD, "fixed"), nil
	case vhdTypeDynamic:
		v, err := openVHDDynamic(ra, fileSize, f)
		if err != nil {
			return nil, fmt.Errorf("open vhd (dynamic): %w", err)
		}
		return v, nil
	case vhdTypeDiff:
		return nil, fmt.Errorf("open vhd: differencing disk needs its parent; merge it into its parent first: %w", ErrFormat)
	default:
		return nil, fmt.Errorf("open vhd: unknown disk type %d: %w", f.DiskType, ErrFormat)
	}
}

// vhdDynamic reads a dynamic VHD through its BAT. Like qemu and Hyper-V, it
// treats an allocated block as wholly present: a non-differencing disk's
// sector bitmaps only ever mark data that was zero-filled on allocation.
type vhdDynamic struct {
	ra        io.ReaderAt
	fileSize  int64
	size      int64
	blockSize int64
	bitmap    int64 // bytes of sector bitmap before each block's data
	bat       []uint32
	ext       []Extent
}

func openVHDDynamic(ra io.ReaderAt, fileSize int64, f vhdFooter) (*vhdDynamic, error) {
	if f.DataOffset > uint64(fileSize) {
		return nil, fmt.Errorf("dynamic header offset %d beyond the %d-byte file: %w", f.DataOffset, fileSize, ErrFormat)
	}
	h := make([]byte, vhdDynHdrSize)
	if _, err := readFull(ra, h, int64(f.DataOffset), fileSize); err != nil {
		return nil, fmt.Errorf("read dynamic header: %w", err)
	}
	if string(h[:8]) != vhdDynCookie {
		return nil, fmt.Errorf("dynamic header: no %q cookie: %w", vhdDynCookie, ErrFormat)
	}
	be := binary.BigEndian
	if got, want := be.Uint32(h[36:]), vhdChecksum(h, 36); got != want {
		return nil, fmt.Errorf("dynamic header: checksum %#08x, computed %#08x: %w", got, want, ErrFormat)
	}
	tableOff := be.Uint64(h[16:])
	entries := int64(be.Uint32(h[28:]))
	bs := int64(be.Uint32(h[32:]))
	if bs < sectorSize || bs > vhdMaxBlockSize || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("dynamic header: block size %d is not a power of two from 512 B to 256 MiB: %w", bs, ErrFormat)
	}
	size := int64(f.CurrentSize)
	need := (size + bs - 1) / bs
	if entries < need {
		return nil, fmt.Errorf("dynamic header: %d BAT entries cannot map %d bytes: %w", entries, size, ErrFormat)
	}
	if tableOff > uint64(fileSize) || need*4 > fileSize-int64(tableOff) {
		return nil, fmt.Errorf("BAT of %d entries at %d lies beyond the %d-byte file: %w", need, tableOff, fileSize, ErrFormat)
	}
	raw := make([]byte, need*4)
	if _, err := readFull(ra, raw, int64(tableOff), fileSize); err != nil {
		return nil, fmt.Errorf("read BAT: %w", err)
	}
	v := &vhdDynamic{ra: ra, fileSize: fileSize, size: size, blockSize: bs,
		bitmap: (bs/sectorSize/8 + sectorSize - 1) / sectorSize * sectorSize, bat: make([]uint32, need)}
	for i := range v.bat {
		v.bat[i] = be.Uint32(raw[i*4:])
		if v.bat[i] != 0xffffffff {
			off := int64(i) * bs
			v.ext = appendExtent(v.ext, Extent{off, min(bs, size-off)})
		}
	}
	return v, nil
}

func (v *vhdDynamic) Size() int64       { return v.size }
func (v *vhdDynamic) Extents() []Extent { return v.ext }
func (v *vhdDynamic) Info() Info        { return infoOf(v, VHD, "dynamic") }

func (v *vhdDynamic) ReadAt(p []byte, off int64) (int, error) {
	return readBlocks(p, off, v.size, v.blockSize, "vhd", func(dst []byte, b, in int64) error {
		s := v.bat[b]
		if s == 0xffffffff {
			zeroFill(dst)
			return nil
		}
		_, err := readFull(v.ra, dst, int64(s)*sectorSize+v.bitmap+in, v.fileSize)
		return err
	})
}

func vhdFooterBytes(size int64, diskType uint32, dataOffset uint64, id [16]byte, now time.Time) []byte {
	b := make([]byte, vhdFooterSize)
	be := binary.BigEndian
	copy(b, vhdCookie)
	be.PutUint32(b[8:], 2) // features: reserved bit always set
	be.PutUint32(b[12:], 0x00010000)
	be.PutUint64(b[16:], dataOffset)
	be.PutUint32(b[24:], uint32(now.Sub(vhdEpoch)/time.Second))
	// Creator "win " (Hyper-V) tells readers to trust the exact current size
	// rather than the CHS-rounded one; qemu and Azure key on it.
	copy(b[28:], "win ")
	be.PutUint32(b[32:], 0x000a0000)
	copy(b[36:], "Wi2k")
	be.PutUint64(b[40:], uint64(size))
	be.PutUint64(b[48:], uint64(size))
	c, h, s := chs.VHD(size)
	be.PutUint16(b[56:], c)
	b[58], b[59] = h, s
	be.PutUint32(b[60:], diskType)
	copy(b[68:], id[:])
	be.PutUint32(b[64:], vhdChecksum(b, 64))
	return b
}

// WriteVHD writes src as a VHD of exactly src.Size() virtual bytes (padded
// with zeros to a whole sector when it is not a multiple of 512): fixed
// (the raw data then the footer) or dynamic (footer copy, dynamic header,
// BAT, 2 MiB blocks with full sector bitmaps, footer). A dynamic disk holds
// only the blocks that src's extents touch. It returns the bytes written.
func WriteVHD(w io.Writer, src Sparse, dynamic bool) (int64, error) {
	size := (src.Size() + sectorSize - 1) / sectorSize * sectorSize
	if size > MaxVHDSize {
		return 0, fmt.Errorf("write vhd: virtual size %d exceeds the VHD limit of 2040 GiB; use VMDK", size)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return 0, fmt.Errorf("write vhd: unique id: %w", err)
	}
	now := time.Now()
	cw := &countWriter{w: w}
	if !dynamic {
		if _, err := writeRawTo(cw, src, size, false); err != nil {
			return cw.n, fmt.Errorf("write vhd (fixed): %w", err)
		}
		if _, err := cw.Write(vhdFooterBytes(size, vhdTypeFixed, ^uint64(0), id, now)); err != nil {
			return cw.n, fmt.Errorf("write vhd (fixed): footer: %w", err)
		}
		return cw.n, nil
	}
	if err := writeVHDDynamic(cw, src, size, id, now); err != nil {
		return cw.n, fmt.Errorf("write vhd (dynamic): %w", err)
	}
	return cw.n, nil
}

func writeVHDDynamic(w *countWriter, src Sparse, size int64, id [16]byte, now time.Time) error {
	const bs = vhdBlockSize
	nblocks := (size + bs - 1) / bs
	var blocks []int64
	var prevEnd int64
	for _, e := range src.Extents() {
		if e.Offset < prevEnd || e.Length <= 0 || e.End() > src.Size() {
			return fmt.Errorf("source extent %+v is out of order or outside the %d-byte disk", e, src.Size())
		}
		prevEnd = e.End()
		for b := e.Offset / bs; b*bs < e.End(); b++ {
			if n := len(blocks); n == 0 || blocks[n-1] < b {
				blocks = append(blocks, b)
			}
		}
	}
	footer := vhdFooterBytes(size, vhdTypeDynamic, vhdFooterSize, id, now)
	if _, err := w.Write(footer); err != nil {
		return err
	}
	const tableOff = vhdFooterSize + vhdDynHdrSize
	h := make([]byte, vhdDynHdrSize)
	be := binary.BigEndian
	copy(h, vhdDynCookie)
	be.PutUint64(h[8:], ^uint64(0))
	be.PutUint64(h[16:], tableOff)
	be.PutUint32(h[24:], 0x00010000)
	be.PutUint32(h[28:], uint32(nblocks))
	be.PutUint32(h[32:], bs)
	be.PutUint32(h[36:], vhdChecksum(h, 36))
	if _, err := w.Write(h); err != nil {
		return err
	}
	const bitmapBytes = bs / sectorSize / 8
	batBytes := (nblocks*4 + sectorSize - 1) / sectorSize * sectorSize
	firstBlock := tableOff + batBytes
	// The BAT for nblocks of a 2040 GiB disk is 4 MiB; written in pieces so
	// no buffer grows with the disk.
	next := 0
	var piece [4096]byte
	for i := int64(0); i < batBytes/4; {
		k := 0
		for ; k < len(piece)/4 && i < batBytes/4; k, i = k+1, i+1 {
			v := uint32(0xffffffff)
			if next < len(blocks) && blocks[next] == i {
				v = uint32((firstBlock + int64(next)*(bitmapBytes+bs)) / sectorSize)
				next++
			}
			be.PutUint32(piece[k*4:], v)
		}
		if _, err := w.Write(piece[:k*4]); err != nil {
			return err
		}
	}
	buf := make([]byte, bitmapBytes+bs)
	for i := range bitmapBytes {
		buf[i] = 0xff
	}
	data := buf[bitmapBytes:]
	for _, b := range blocks {
		off := b * bs
		n, err := src.ReadAt(data, off)
		if n < len(data) && !(err == io.EOF && off+int64(n) >= src.Size()) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read source block at %d: %w", off, err)
		}
		zeroFill(data[n:])
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	_, err := w.Write(footer)
	return err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WriteVHDFixedFrom writes the raw disk read sequentially from r as a fixed
// VHD: size bytes of r, or everything up to EOF when size is negative,
// padded to a whole sector, then the footer. It returns the bytes written.
func WriteVHDFixedFrom(w io.Writer, r io.Reader, size int64) (int64, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return 0, fmt.Errorf("write vhd (fixed): unique id: %w", err)
	}
	return WriteVHDFixedFromID(w, r, size, id, time.Now())
}

// WriteVHDFixedFromID is WriteVHDFixedFrom with the footer's unique id and
// time stamp given, for images that must come out byte-identical from one
// build to the next.
func WriteVHDFixedFromID(w io.Writer, r io.Reader, size int64, id [16]byte, created time.Time) (int64, error) {
	if size > MaxVHDSize {
		return 0, fmt.Errorf("write vhd (fixed): virtual size %d exceeds the VHD limit of 2040 GiB; use VMDK", size)
	}
	src := r
	if size >= 0 {
		src = io.LimitReader(r, size)
	} else {
		src = io.LimitReader(r, MaxVHDSize+1)
	}
	cw := &countWriter{w: w}
	n, err := io.Copy(cw, src)
	if err != nil {
		return cw.n, fmt.Errorf("write vhd (fixed): copy data: %w", err)
	}
	if size >= 0 && n != size {
		return cw.n, fmt.Errorf("write vhd (fixed): source ended after %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	if n > MaxVHDSize {
		return cw.n, fmt.Errorf("write vhd (fixed): source exceeds the VHD limit of 2040 GiB; use VMDK")
	}
	if rem := n % sectorSize; rem != 0 {
		if _, err := cw.Write(zeroBlock[:sectorSize-rem]); err != nil {
			return cw.n, fmt.Errorf("write vhd (fixed): %w", err)
		}
		n += sectorSize - rem
	}
	if _, err := cw.Write(vhdFooterBytes(n, vhdTypeFixed, ^uint64(0), id, created)); err != nil {
		return cw.n, fmt.Errorf("write vhd (fixed): footer: %w", err)
	}
	return cw.n, nil
}

// WriteVHDDynamicFrom writes the raw disk of the given size, read
// sequentially from r, as a dynamic VHD into w, which must be positioned at
// its start and seekable (a file): the BAT precedes the blocks but is only
// known once every block has been seen, so it is written last, in place.
// Blocks that are all zero are not stored. It returns the bytes written.
func WriteVHDDynamicFrom(w io.WriteSeeker, r io.Reader, size int64) (int64, error) {
	n, err := writeVHDDynamicFrom(w, r, size)
	if err != nil {
		return n, fmt.Errorf("write vhd (dynamic): %w", err)
	}
	return n, nil
}

func writeVHDDynamicFrom(w io.WriteSeeker, r io.Reader, size int64) (int64, error) {
	const bs = vhdBlockSize
	const bitmapBytes = bs / sectorSize / 8
	if size < 0 {
		return 0, fmt.Errorf("size %d out of range", size)
	}
	vsize := (size + sectorSize - 1) / sectorSize * sectorSize
	if vsize > MaxVHDSize {
		return 0, fmt.Errorf("virtual size %d exceeds the VHD limit of 2040 GiB; use VMDK", vsize)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return 0, fmt.Errorf("unique id: %w", err)
	}
	nblocks := (vsize + bs - 1) / bs
	const tableOff = vhdFooterSize + vhdDynHdrSize
	batBytes := (nblocks*4 + sectorSize - 1) / sectorSize * sectorSize
	footer := vhdFooterBytes(vsize, vhdTypeDynamic, vhdFooterSize, id, time.Now())
	h := make([]byte, vhdDynHdrSize)
	be := binary.BigEndian
	copy(h, vhdDynCookie)
	be.PutUint64(h[8:], ^uint64(0))
	be.PutUint64(h[16:], tableOff)
	be.PutUint32(h[24:], 0x00010000)
	be.PutUint32(h[28:], uint32(nblocks))
	be.PutUint32(h[32:], bs)
	be.PutUint32(h[36:], vhdChecksum(h, 36))
	cw := &countWriter{w: w}
	if _, err := cw.Write(footer); err != nil {
		return cw.n, err
	}
	if _, err := cw.Write(h); err != nil {
		return cw.n, err
	}
	// Placeholder BAT, all unallocated; 4 bytes a block is small (4 MiB at
	// the 2040 GiB maximum) and is kept in memory until the end.
	bat := make([]byte, batBytes)
	for i := range bat {
		bat[i] = 0xff
	}
	if _, err := cw.Write(bat); err != nil {
		return cw.n, err
	}
	buf := make([]byte, bitmapBytes+bs)
	for i := range bitmapBytes {
		buf[i] = 0xff
	}
	data := buf[bitmapBytes:]
	for b := int64(0); b < nblocks; b++ {
		off := b * bs
		want := min(bs, size-off)
		m, err := io.ReadFull(r, data[:max(want, 0)])
		if err != nil {
			return cw.n, fmt.Errorf("read source at %d: got %d of %d bytes: %w", off+int64(m), m, want, err)
		}
		zeroFill(data[max(want, 0):])
		if isZero(data) {
			continue
		}
		be.PutUint32(bat[b*4:], uint32(cw.n/sectorSize))
		if _, err := cw.Write(buf); err != nil {
			return cw.n, err
		}
	}
	if _, err := cw.Write(footer); err != nil {
		return cw.n, err
	}
	if _, err := w.Seek(tableOff, io.SeekStart); err != nil {
		return cw.n, fmt.Errorf("seek to the BAT: %w", err)
	}
	if _, err := w.Write(bat); err != nil {
		return cw.n, fmt.Errorf("write the BAT: %w", err)
	}
	if _, err := w.Seek(cw.n, io.SeekStart); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}
