package disk

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"
)

// VHDXOptions fix what a VHDX file otherwise takes from chance: its GUIDs.
// Zero GUIDs are not allowed for FileWrite, DataWrite and Page83 (Hyper-V
// keys on them), so a caller that wants reproducible output derives them
// from something stable; NewVHDXOptions draws random ones.
type VHDXOptions struct {
	FileWrite, DataWrite, Page83 [16]byte
	// BlockSize of the payload blocks: a power of two from 1 MiB to
	// 256 MiB; default 2 MiB, which keeps a mostly empty disk small.
	BlockSize int64
	// Creator is recorded in the file type identifier (at most 256 UTF-16
	// code units); default "rehost".
	Creator string
}

// Where the writer lays the regions out: everything 1 MiB aligned, as the
// specification requires for the log, metadata, BAT and payload.
const (
	vhdxLogOff  = 1 << 20
	vhdxLogLen  = 1 << 20
	vhdxMetaOff = 2 << 20
	vhdxMetaLen = 1 << 20
	vhdxBATOff  = 3 << 20
)

// WriteVHDX writes src as a dynamic VHDX (version 1, 512-byte logical and
// 4096-byte physical sectors) of exactly src.Size() virtual bytes, rounded
// up to a whole sector. Only the blocks that src's extents touch are stored
// (each whole); the others read as zero. The log is empty, so the file needs
// no replay. Output depends only on src and o. It returns the bytes written.
func WriteVHDX(w io.Writer, src Sparse, o VHDXOptions) (int64, error) {
	n, err := writeVHDX(w, src, o)
	if err != nil {
		return n, fmt.Errorf("write vhdx: %w", err)
	}
	return n, nil
}

func writeVHDX(w io.Writer, src Sparse, o VHDXOptions) (int64, error) {
	if o.BlockSize == 0 {
		o.BlockSize = 2 << 20
	}
	if o.Creator == "" {
		o.Creator = "rehost"
	}
	bs := o.BlockSize
	if bs < 1<<20 || bs > 256<<20 || bs&(bs-1) != 0 {
		return 0, fmt.Errorf("block size %d is not a power of two from 1 MiB to 256 MiB", bs)
	}
	var zero [16]byte
	if o.FileWrite == zero || o.DataWrite == zero || o.Page83 == zero {
		return 0, fmt.Errorf("the file-write, data-write and page 83 GUIDs must not be zero")
	}
	size := (src.Size() + sectorSize - 1) / sectorSize * sectorSize
	if size > MaxVirtualSize {
		return 0, fmt.Errorf("virtual size %d exceeds the %d TiB limit", size, MaxVirtualSize>>40)
	}
	nb := (size + bs - 1) / bs
	chunkRatio := (int64(1) << 23) * sectorSize / bs
	// Entries: the payload blocks with a sector bitmap entry after each
	// chunk of chunkRatio blocks (unused in a disk without parent).
	entries := nb
	if nb > 0 {
		entries += (nb - 1) / chunkRatio
	}
	batLen := (entries*8 + (1<<20 - 1)) / (1 << 20) * (1 << 20)
	if batLen == 0 {
		batLen = 1 << 20
	}
	if batLen > 1<<32-1<<20 {
		return 0, fmt.Errorf("virtual size %d needs a BAT larger than a region may be", size)
	}

	present := make([]bool, nb)
	var prevEnd int64
	for _, e := range src.Extents() {
		if e.Offset < prevEnd || e.Length <= 0 || e.End() > src.Size() {
			return 0, fmt.Errorf("source extent %+v is out of order or outside the %d-byte disk", e, src.Size())
		}
		prevEnd = e.End()
		for b := e.Offset / bs; b*bs < e.End(); b++ {
			present[b] = true
		}
	}

	le := binary.LittleEndian
	cw := &countWriter{w: w}
	put := func(b []byte) error { _, err := cw.Write(b); return err }

	// File type identifier, two headers, two region tables.
	head := make([]byte, vhdxLogOff)
	copy(head, vhdxSignature)
	for i, u := range utf16.Encode([]rune(o.Creator)) {
		if i >= 256 {
			return 0, fmt.Errorf("creator %q longer than 256 UTF-16 code units", o.Creator)
		}
		le.PutUint16(head[8+2*i:], u)
	}
	for i, off := range []int{vhdxHeader1, vhdxHeader2} {
		h := head[off : off+vhdxHeaderSize]
		copy(h, "head")
		le.PutUint64(h[8:], uint64(i+1)) // sequence: the second is current
		copy(h[16:], o.FileWrite[:])
		copy(h[32:], o.DataWrite[:])
		// LogGuid (48..64) zero: nothing to replay.
		le.PutUint16(h[64:], 0) // log version
		le.PutUint16(h[66:], 1) // version
		le.PutUint32(h[68:], vhdxLogLen)
		le.PutUint64(h[72:], vhdxLogOff)
		vhdxSetChecksum(h)
	}
	for _, off := range []int{vhdxRegion1, vhdxRegion2} {
		r := head[off : off+vhdxRegionSize]
		copy(r, "regi")
		le.PutUint32(r[8:], 2)
		for i, reg := range []struct {
			id       [16]byte
			off, len int64
		}{{vhdxGUIDBAT, vhdxBATOff, batLen}, {vhdxGUIDMetadata, vhdxMetaOff, vhdxMetaLen}} {
			e := r[16+32*i:]
			copy(e, reg.id[:])
			le.PutUint64(e[16:], uint64(reg.off))
			le.PutUint32(e[24:], uint32(reg.len))
			le.PutUint32(e[28:], 1) // required
		}
		vhdxSetChecksum(r)
	}
	if err := put(head); err != nil {
		return cw.n, err
	}
	// The log region: zeros (no entries).
	if err := put(make([]byte, vhdxLogLen)); err != nil {
		return cw.n, err
	}

	// Metadata: table, then the items from 64 KiB on.
	meta := make([]byte, vhdxMetaLen)
	copy(meta, "metadata")
	const (
		isVirtualDisk = 2
		isRequired    = 4
	)
	items := []struct {
		id    [16]byte
		data  []byte
		flags uint32
	}{
		{vhdxGUIDFileParams, le.AppendUint32(le.AppendUint32(nil, uint32(bs)), 0), isRequired},
		{vhdxGUIDDiskSize, le.AppendUint64(nil, uint64(size)), isVirtualDisk | isRequired},
		{vhdxGUIDPage83, o.Page83[:], isVirtualDisk | isRequired},
		{vhdxGUIDLogicalSec, le.AppendUint32(nil, sectorSize), isVirtualDisk | isRequired},
		{vhdxGUIDPhysicalSec, le.AppendUint32(nil, 4096), isVirtualDisk | isRequired},
	}
	le.PutUint16(meta[10:], uint16(len(items)))
	itemOff := 64 << 10
	for i, it := range items {
		e := meta[32+32*i:]
		copy(e, it.id[:])
		le.PutUint32(e[16:], uint32(itemOff))
		le.PutUint32(e[20:], uint32(len(it.data)))
		le.PutUint32(e[24:], it.flags)
		copy(meta[itemOff:], it.data)
		itemOff += len(it.data)
	}
	if err := put(meta); err != nil {
		return cw.n, err
	}

	// BAT: present blocks follow one another from 4 MiB on. Written in
	// pieces so no buffer grows with the disk.
	firstBlock := int64(vhdxBATOff) + batLen
	next := firstBlock
	piece := make([]byte, 0, 64<<10)
	for i := range entries {
		var v uint64                   // not present: reads as zero
		if (i+1)%(chunkRatio+1) != 0 { // a payload entry, not a bitmap one
			b := i - i/(chunkRatio+1)
			if present[b] {
				v = uint64(next>>20)<<20 | vhdxBlockFullPresent
				next += bs
			}
		}
		piece = le.AppendUint64(piece, v)
		if len(piece) == cap(piece) {
			if err := put(piece); err != nil {
				return cw.n, err
			}
			piece = piece[:0]
		}
	}
	if err := put(piece); err != nil {
		return cw.n, err
	}
	if err := put(make([]byte, batLen-entries*8)); err != nil {
		return cw.n, err
	}

	buf := make([]byte, bs)
	for b, ok := range present {
		if !ok {
			continue
		}
		off := int64(b) * bs
		n, err := src.ReadAt(buf, off)
		if n < len(buf) && !(err == io.EOF && off+int64(n) >= src.Size()) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return cw.n, fmt.Errorf("read source block at %d: %w", off, err)
		}
		zeroFill(buf[n:])
		if err := put(buf); err != nil {
			return cw.n, err
		}
	}
	return cw.n, nil
}

// vhdxSetChecksum stores the CRC-32C of b, computed with its checksum field
// (offset 4) zero, in that field.
func vhdxSetChecksum(b []byte) {
	binary.LittleEndian.PutUint32(b[4:], 0)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b, castagnoli))
}
