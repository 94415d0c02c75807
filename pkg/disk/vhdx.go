package disk

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"sync"
)

const (
	vhdxSignature   = "vhdxfile"
	vhdxHeader1     = 64 << 10
	vhdxHeader2     = 128 << 10
	vhdxHeaderSize  = 4 << 10
	vhdxRegion1     = 192 << 10
	vhdxRegion2     = 256 << 10
	vhdxRegionSize  = 64 << 10
	vhdxMetaMaxSize = 1 << 20
	vhdxMaxEntries  = 2047

	vhdxBlockNotPresent  = 0
	vhdxBlockUndefined   = 1
	vhdxBlockZero        = 2
	vhdxBlockUnmapped    = 3
	vhdxBlockFullPresent = 6
	vhdxBlockPartPresent = 7

	vhdxSBPresent = 6

	vhdxFlagLeaveAllocated = 1
	vhdxFlagHasParent      = 2
)

var (
	vhdxGUIDBAT          = msGUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
	vhdxGUIDMetadata     = msGUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
	vhdxGUIDFileParams   = msGUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	vhdxGUIDDiskSize     = msGUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	vhdxGUIDLogicalSec   = msGUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	vhdxGUIDPhysicalSec  = msGUID("CDA348C7-445D-4471-9CC9-E9885251C556")
	vhdxGUIDPage83       = msGUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
	vhdxGUIDParentLocate = msGUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
	castagnoli           = crc32.MakeTable(crc32.Castagnoli)
)

// msGUID encodes a GUID's text form as Microsoft lays it out on disk: the
// first three groups little-endian, the rest as written.
func msGUID(s string) [16]byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		panic("disk: bad GUID literal " + s)
	}
	var g [16]byte
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	copy(g[8:], b[8:])
	return g
}

// vhdxChecksumOK verifies a CRC-32C stored at offset 4 of b, computed with
// that field zeroed.
func vhdxChecksumOK(b []byte) bool {
	want := binary.LittleEndian.Uint32(b[4:])
	c := crc32.Update(0, castagnoli, b[:4])
	c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
	c = crc32.Update(c, castagnoli, b[8:])
	return c == want
}

type vhdxImage struct {
	ra         io.ReaderAt
	fileSize   int64
	size       int64
	blockSize  int64
	chunkRatio int64
	fixed      bool
	bat        []uint64 // payload block entries only, in block order

	// A differencing disk (HasParent) is parsed but opened only as part of
	// a chain (OpenChain): its identity, parent locator and sector bitmap
	// entries, one per chunk.
	diff      bool
	sector    int64
	dataWrite [16]byte
	locator   []byte
	sbBAT     []uint64

	once sync.Once
	ext  []Extent
}

func openVHDX(ra io.ReaderAt, fileSize int64) (Image, error) {
	v, err := parseVHDX(ra, fileSize)
	if err != nil {
		return nil, fmt.Errorf("open vhdx: %w", err)
	}
	if v.diff {
		return nil, fmt.Errorf("open vhdx: differencing disk needs its parent; merge it into its parent first or open the whole chain: %w", ErrFormat)
	}
	return v, nil
}

func parseVHDX(ra io.ReaderAt, fileSize int64) (*vhdxImage, error) {
	// The current header is the valid one with the higher sequence number.
	var hdr []byte
	var seq uint64
	for _, off := range []int64{vhdxHeader1, vhdxHeader2} {
		b := make([]byte, vhdxHeaderSize)
		if _, err := readFull(ra, b, off, fileSize); err != nil {
			continue
		}
		if string(b[:4]) != "head" || !vhdxChecksumOK(b) {
			continue
		}
		if s := binary.LittleEndian.Uint64(b[8:]); hdr == nil || s > seq {
			hdr, seq = b, s
		}
	}
	if hdr == nil {
		return nil, fmt.Errorf("neither header is valid (bad signature or checksum): %w", ErrFormat)
	}
	le := binary.LittleEndian
	if ver := le.Uint16(hdr[66:]); ver != 1 {
		return nil, fmt.Errorf("unsupported version %d: %w", ver, ErrFormat)
	}
	if !isZero(hdr[48:64]) {
		return nil, fmt.Errorf("the log holds unreplayed writes (the disk was not closed cleanly); attach it once in Hyper-V, or run qemu-img check -r all on a copy: %w", ErrFormat)
	}
	var rt []byte
	for _, off := range []int64{vhdxRegion1, vhdxRegion2} {
		b := make([]byte, vhdxRegionSize)
		if _, err := readFull(ra, b, off, fileSize); err != nil {
			continue
		}
		if string(b[:4]) == "regi" && vhdxChecksumOK(b) {
			rt = b
			break
		}
	}
	if rt == nil {
		return nil, fmt.Errorf("neither region table is valid: %w", ErrFormat)
	}
	n := le.Uint32(rt[8:])
	if n > vhdxMaxEntries {
		return nil, fmt.Errorf("region table claims %d entries: %w", n, ErrFormat)
	}
	var batOff, batLen, metaOff, metaLen int64
	for i := range int(n) {
		e := rt[16+i*32 : 16+(i+1)*32]
		var id [16]byte
		copy(id[:], e)
		off, length, required := int64(le.Uint64(e[16:])), int64(le.Uint32(e[24:])), le.Uint32(e[28:])&1 != 0
		switch id {
		case vhdxGUIDBAT:
			batOff, batLen = off, length
		case vhdxGUIDMetadata:
			metaOff, metaLen = off, length
		default:
			if required {
				return nil, fmt.Errorf("unknown required region %x: %w", id, ErrFormat)
			}
			continue
		}
		if off < 0 || off > fileSize || length > fileSize-off {
			return nil, fmt.Errorf("region %x at %d+%d lies beyond the %d-byte file: %w", id, off, length, fileSize, ErrFormat)
		}
	}
	if batLen == 0 || metaLen == 0 {
		return nil, fmt.Errorf("region table lacks the BAT or metadata region: %w", ErrFormat)
	}
	v := &vhdxImage{ra: ra, fileSize: fileSize, dataWrite: [16]byte(hdr[32:48])}
	logical, err := v.readMetadata(metaOff, min(metaLen, vhdxMetaMaxSize))
	if err != nil {
		return nil, err
	}
	v.sector = logical
	v.chunkRatio = (int64(1) << 23) * logical / v.blockSize
	nb := (v.size + v.blockSize - 1) / v.blockSize
	if nb > 0 {
		last := (nb - 1) + (nb-1)/v.chunkRatio
		if v.diff {
			// A differencing disk's BAT also maps the last chunk's sector
			// bitmap, which follows the chunk's payload entries.
			last = ((nb-1)/v.chunkRatio)*(v.chunkRatio+1) + v.chunkRatio
		}
		if (last+1)*8 > batLen {
			return nil, fmt.Errorf("BAT region of %d bytes cannot map %d blocks: %w", batLen, nb, ErrFormat)
		}
		raw := make([]byte, (last+1)*8)
		if _, err := readFull(ra, raw, batOff, fileSize); err != nil {
			return nil, fmt.Errorf("read BAT: %w", err)
		}
		v.bat = make([]uint64, nb)
		for i := range v.bat {
			idx := int64(i) + int64(i)/v.chunkRatio
			e := le.Uint64(raw[idx*8:])
			switch e & 7 {
			case vhdxBlockNotPresent, vhdxBlockUndefined, vhdxBlockZero, vhdxBlockUnmapped, vhdxBlockFullPresent:
			case vhdxBlockPartPresent:
				if !v.diff {
					return nil, fmt.Errorf("block %d is partially present, which only a differencing disk may be: %w", i, ErrFormat)
				}
			default:
				return nil, fmt.Errorf("block %d has invalid state %d: %w", i, e&7, ErrFormat)
			}
			v.bat[i] = e
		}
		if v.diff {
			v.sbBAT = make([]uint64, (nb+v.chunkRatio-1)/v.chunkRatio)
			for k := range v.sbBAT {
				e := le.Uint64(raw[(int64(k)*(v.chunkRatio+1)+v.chunkRatio)*8:])
				if s := e & 7; s != vhdxBlockNotPresent && s != vhdxSBPresent {
					return nil, fmt.Errorf("sector bitmap %d has invalid state %d: %w", k, s, ErrFormat)
				}
				v.sbBAT[k] = e
			}
		}
	}
	return v, nil
}

// readMetadata reads the metadata table and items, setting size, block size
// and fixed, and returning the logical sector size.
func (v *vhdxImage) readMetadata(off, length int64) (int64, error) {
	if length < 32 {
		return 0, fmt.Errorf("metadata region of %d bytes too small: %w", length, ErrFormat)
	}
	// The table, then each item the reader needs: the region is mostly
	// free space (1 MiB where the table and items take a few KiB), and
	// over a network share every byte counts.
	le := binary.LittleEndian
	head := make([]byte, 32)
	if _, err := readFull(v.ra, head, off, v.fileSize); err != nil {
		return 0, fmt.Errorf("read metadata: %w", err)
	}
	if string(head[:8]) != "metadata" {
		return 0, fmt.Errorf("metadata table signature missing: %w", ErrFormat)
	}
	n := int64(le.Uint16(head[10:]))
	if n > vhdxMaxEntries || 32+n*32 > length {
		return 0, fmt.Errorf("metadata table claims %d entries: %w", n, ErrFormat)
	}
	m := make([]byte, 32+n*32)
	if _, err := readFull(v.ra, m, off, v.fileSize); err != nil {
		return 0, fmt.Errorf("read metadata table: %w", err)
	}
	items := map[[16]byte][]byte{}
	for i := range n {
		e := m[32+i*32 : 32+(i+1)*32]
		var id [16]byte
		copy(id[:], e)
		itemOff, il, flags := int64(le.Uint32(e[16:])), int64(le.Uint32(e[20:])), le.Uint32(e[24:])
		if itemOff > length || il > length-itemOff {
			return 0, fmt.Errorf("metadata item %x lies beyond the metadata region: %w", id, ErrFormat)
		}
		switch id {
		case vhdxGUIDFileParams, vhdxGUIDDiskSize, vhdxGUIDLogicalSec, vhdxGUIDPhysicalSec, vhdxGUIDPage83, vhdxGUIDParentLocate:
			if il > 64<<10 {
				return 0, fmt.Errorf("metadata item %x of %d bytes: %w", id, il, ErrFormat)
			}
			item := make([]byte, il)
			if _, err := readFull(v.ra, item, off+itemOff, v.fileSize); err != nil {
				return 0, fmt.Errorf("read metadata item %x: %w", id, err)
			}
			items[id] = item
		default:
			if flags&4 != 0 {
				return 0, fmt.Errorf("unknown required metadata item %x: %w", id, ErrFormat)
			}
		}
	}
	get := func(id [16]byte, name string, n int) ([]byte, error) {
		b, ok := items[id]
		if !ok || len(b) < n {
			return nil, fmt.Errorf("metadata item %s missing or short: %w", name, ErrFormat)
		}
		return b, nil
	}
	fp, err := get(vhdxGUIDFileParams, "file parameters", 8)
	if err != nil {
		return 0, err
	}
	ds, err := get(vhdxGUIDDiskSize, "virtual disk size", 8)
	if err != nil {
		return 0, err
	}
	ls, err := get(vhdxGUIDLogicalSec, "logical sector size", 4)
	if err != nil {
		return 0, err
	}
	v.blockSize = int64(le.Uint32(fp))
	flags := le.Uint32(fp[4:])
	v.diff = flags&vhdxFlagHasParent != 0
	v.locator = items[vhdxGUIDParentLocate]
	v.fixed = !v.diff && flags&vhdxFlagLeaveAllocated != 0
	if v.blockSize < 1<<20 || v.blockSize > 256<<20 || v.blockSize&(v.blockSize-1) != 0 {
		return 0, fmt.Errorf("block size %d is not a power of two from 1 MiB to 256 MiB: %w", v.blockSize, ErrFormat)
	}
	logical := int64(le.Uint32(ls))
	if logical != 512 && logical != 4096 {
		return 0, fmt.Errorf("logical sector size %d is neither 512 nor 4096: %w", logical, ErrFormat)
	}
	size := le.Uint64(ds)
	if size > MaxVirtualSize {
		return 0, fmt.Errorf("virtual size %d exceeds the %d TiB limit: %w", size, MaxVirtualSize>>40, ErrFormat)
	}
	v.size = int64(size)
	return logical, nil
}

func (v *vhdxImage) Size() int64 { return v.size }

func (v *vhdxImage) Info() Info {
	sub := "dynamic"
	if v.fixed {
		sub = "fixed"
	}
	return infoOf(v, VHDX, sub)
}

// Extents are the present blocks; in a fixed disk every block is present, so
// there they are narrowed to the non-zero data by scanning.
func (v *vhdxImage) Extents() []Extent {
	v.once.Do(func() {
		for i, e := range v.bat {
			if e&7 != vhdxBlockFullPresent {
				continue
			}
			off := int64(i) * v.blockSize
			b := Extent{off, min(v.blockSize, v.size-off)}
			if !v.fixed {
				v.ext = appendExtent(v.ext, b)
				continue
			}
			for _, z := range scanNonZero(readerAtFunc(v.ReadAt), b.Offset, b.Length) {
				v.ext = appendExtent(v.ext, Extent{b.Offset + z.Offset, z.Length})
			}
		}
	})
	return v.ext
}

func (v *vhdxImage) ReadAt(p []byte, off int64) (int, error) {
	return readBlocks(p, off, v.size, v.blockSize, "vhdx", func(dst []byte, b, in int64) error {
		e := v.bat[b]
		if e&7 != vhdxBlockFullPresent {
			zeroFill(dst)
			return nil
		}
		_, err := readFull(v.ra, dst, int64(e>>20)<<20+in, v.fileSize)
		return err
	})
}
