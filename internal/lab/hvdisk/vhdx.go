package hvdisk

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"unicode/utf16"
)

// VHDX layout constants (MS-VHDX).
const (
	mib          = 1 << 20
	vxHeader1    = 64 << 10
	vxHeader2    = 128 << 10
	vxRegion1    = 192 << 10
	vxRegion2    = 256 << 10
	vxLogOffset  = 1 * mib
	vxLogLength  = 1 * mib
	vxMetaOffset = 2 * mib
	vxMetaLength = 1 * mib
	vxBATOffset  = 3 * mib

	vxFullyPresent = 6
	vxPartPresent  = 7
	vxSBPresent    = 6
)

var (
	vxGUIDBAT         = mustGUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
	vxGUIDMetadata    = mustGUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
	vxGUIDFileParams  = mustGUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	vxGUIDDiskSize    = mustGUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	vxGUIDDiskID      = mustGUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
	vxGUIDLogical     = mustGUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	vxGUIDPhysical    = mustGUID("CDA348C7-445D-4471-9CC9-E9885251C556")
	vxGUIDParentLoc   = mustGUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
	vxGUIDLocatorType = mustGUID("B04AEFB7-D19E-4A81-B789-25B8E9445913")
	castagnoli        = crc32.MakeTable(crc32.Castagnoli)
)

func mustGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// VHDX is a dynamic or differencing VHDX held in memory.
type VHDX struct {
	sparseBlocks
	// Parent makes the disk a differencing disk (an AVHDX).
	Parent *Parent
	// DataWriteGUID is what a child of this disk records as its parent
	// linkage; it changes whenever the disk's content does.
	DataWriteGUID GUID
	FileWriteGUID GUID
	DiskID        GUID
}

// NewVHDX makes an empty VHDX of size bytes (a multiple of the logical
// sector size) with blockSize blocks (1–256 MiB, a power of two) and
// logical sectors of 512 or 4096 bytes; parent non-nil makes it
// differencing.
func NewVHDX(size, blockSize, logicalSector int64, parent *Parent) (*VHDX, error) {
	switch {
	case logicalSector != 512 && logicalSector != 4096:
		return nil, fmt.Errorf("hvdisk: logical sector size %d", logicalSector)
	case blockSize < mib || blockSize > 256*mib || blockSize&(blockSize-1) != 0:
		return nil, fmt.Errorf("hvdisk: block size %d", blockSize)
	case size <= 0 || size%logicalSector != 0:
		return nil, fmt.Errorf("hvdisk: size %d is not whole sectors", size)
	}
	return &VHDX{sparseBlocks: newBlocks(size, blockSize, logicalSector, parent != nil), Parent: parent,
		DataWriteGUID: NewGUID(), FileWriteGUID: NewGUID(), DiskID: NewGUID()}, nil
}

// WriteAt writes p at off of the virtual disk and gives the disk a new
// DataWriteGUID, as Hyper-V does on the first write after opening it.
func (v *VHDX) WriteAt(p []byte, off int64) (int, error) {
	v.DataWriteGUID = NewGUID()
	return v.writeAt(p, off)
}

// Save writes the encoded disk to path (replacing it atomically).
func (v *VHDX) Save(path string) error { return saveFile(path, v.Encode()) }

// Encode lays the disk out as a file: identifier, two headers, two region
// tables, an empty log, the metadata region, the BAT, then the payload
// blocks and (for a differencing disk) the sector bitmap blocks.
func (v *VHDX) Encode() []byte {
	le := binary.LittleEndian
	chunkRatio := (int64(1) << 23) * v.sector / v.blockSize
	nb := (v.size + v.blockSize - 1) / v.blockSize
	nsb := (nb + chunkRatio - 1) / chunkRatio
	entries := nsb * (chunkRatio + 1)
	batLen := (entries*8 + mib - 1) / mib * mib
	out := make([]byte, vxBATOffset+batLen)
	copy(out, "vhdxfile")
	copy(out[8:], utf16le("rehost hvdisk"))

	for i, off := range []int{vxHeader1, vxHeader2} {
		h := out[off : off+4096]
		copy(h, "head")
		le.PutUint64(h[8:], uint64(i+1))
		copy(h[16:], v.FileWriteGUID[:])
		copy(h[32:], v.DataWriteGUID[:])
		le.PutUint16(h[66:], 1)
		le.PutUint32(h[68:], vxLogLength)
		le.PutUint64(h[72:], vxLogOffset)
		putCRC32C(h)
	}
	for _, off := range []int{vxRegion1, vxRegion2} {
		r := out[off : off+64<<10]
		copy(r, "regi")
		le.PutUint32(r[8:], 2)
		for i, e := range []struct {
			id       GUID
			off, len int64
		}{{vxGUIDBAT, vxBATOffset, batLen}, {vxGUIDMetadata, vxMetaOffset, vxMetaLength}} {
			ent := r[16+i*32:]
			copy(ent, e.id[:])
			le.PutUint64(ent[16:], uint64(e.off))
			le.PutUint32(ent[24:], uint32(e.len))
			le.PutUint32(ent[28:], 1)
		}
		putCRC32C(r)
	}

	flags := uint32(0)
	if v.Parent != nil {
		flags = 2 // HasParent
	}
	type item struct {
		id    GUID
		flags uint32 // bit 1 IsVirtualDisk, bit 2 IsRequired
		value []byte
	}
	items := []item{
		{vxGUIDFileParams, 4, le.AppendUint32(le.AppendUint32(nil, uint32(v.blockSize)), flags)},
		{vxGUIDDiskSize, 6, le.AppendUint64(nil, uint64(v.size))},
		{vxGUIDDiskID, 6, v.DiskID[:]},
		{vxGUIDLogical, 6, le.AppendUint32(nil, uint32(v.sector))},
		{vxGUIDPhysical, 6, le.AppendUint32(nil, 4096)},
	}
	if v.Parent != nil {
		items = append(items, item{vxGUIDParentLoc, 4, v.parentLocator()})
	}
	m := out[vxMetaOffset : vxMetaOffset+vxMetaLength]
	copy(m, "metadata")
	le.PutUint16(m[10:], uint16(len(items)))
	at := 64 << 10
	for i, it := range items {
		ent := m[32+i*32:]
		copy(ent, it.id[:])
		le.PutUint32(ent[16:], uint32(at))
		le.PutUint32(ent[20:], uint32(len(it.value)))
		le.PutUint32(ent[24:], it.flags)
		copy(m[at:], it.value)
		at += (len(it.value) + 7) / 8 * 8
	}

	bat := out[vxBATOffset:]
	place := func(b []byte) int64 {
		off := int64(len(out))
		out = append(out, b...)
		if pad := (mib - len(b)%mib) % mib; pad > 0 {
			out = append(out, make([]byte, pad)...)
		}
		return off
	}
	bitmaps := map[int64][]byte{} // chunk → its sector bitmap block
	for _, b := range v.indices() {
		state := uint64(vxFullyPresent)
		if v.diff && !v.full(b) {
			state = vxPartPresent
			k := b / chunkRatio
			sb := bitmaps[k]
			if sb == nil {
				sb = make([]byte, mib)
				bitmaps[k] = sb
			}
			first := (b % chunkRatio) * (v.blockSize / v.sector)
			for s, p := range v.present[b] {
				if p {
					bit := first + int64(s)
					sb[bit/8] |= 1 << (bit % 8)
				}
			}
		}
		off := place(v.data[b])
		bat = out[vxBATOffset:]
		le.PutUint64(bat[(b+b/chunkRatio)*8:], uint64(off)|state)
	}
	for k := int64(0); k < nsb; k++ {
		sb, ok := bitmaps[k]
		if !ok {
			continue
		}
		off := place(sb)
		bat = out[vxBATOffset:]
		le.PutUint64(bat[(k*(chunkRatio+1)+chunkRatio)*8:], uint64(off)|vxSBPresent)
	}
	return out
}

func (v *VHDX) parentLocator() []byte {
	le := binary.LittleEndian
	kv := [][2]string{{"parent_linkage", "{" + v.Parent.ID.String() + "}"}}
	if v.Parent.RelativePath != "" {
		kv = append(kv, [2]string{"relative_path", v.Parent.RelativePath})
	}
	if v.Parent.AbsolutePath != "" {
		kv = append(kv, [2]string{"absolute_win32_path", `\\?\` + v.Parent.AbsolutePath})
	}
	head := make([]byte, 20+12*len(kv))
	copy(head, vxGUIDLocatorType[:])
	le.PutUint16(head[18:], uint16(len(kv)))
	var strs []byte
	for i, p := range kv {
		k, val := utf16le(p[0]), utf16le(p[1])
		e := head[20+12*i:]
		le.PutUint32(e[0:], uint32(len(head)+len(strs)))
		le.PutUint32(e[4:], uint32(len(head)+len(strs)+len(k)))
		le.PutUint16(e[8:], uint16(len(k)))
		le.PutUint16(e[10:], uint16(len(val)))
		strs = append(append(strs, k...), val...)
	}
	return append(head, strs...)
}

func utf16le(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

func putCRC32C(b []byte) {
	binary.LittleEndian.PutUint32(b[4:], 0)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b, castagnoli))
}
