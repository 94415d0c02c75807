package disk

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// Builders of small valid images, for unit tests and fuzz seeds that must
// not depend on qemu-img.

// buildMonolithicSparse lays out data as a monolithicSparse VMDK with
// uncompressed 64 KiB grains; all-zero grains are left unallocated.
func buildMonolithicSparse(data []byte) []byte {
	capSectors := (len(data) + 511) / 512
	grains := (capSectors + vmdkGrainSectors - 1) / vmdkGrainSectors
	ngt := (grains + vmdkGTEntries - 1) / vmdkGTEntries
	gdSector := 21
	gdSectors := (ngt*4 + 511) / 512
	gtSector := gdSector + gdSectors
	gtSectors := ngt * vmdkGTEntries * 4 / 512
	overhead := gtSector + gtSectors // VMware rounds up to a grain; readers need not
	h := vmdkHeader{Version: 1, Flags: vmdkFlagNLTest, Capacity: uint64(capSectors), Granularity: vmdkGrainSectors,
		DescOffset: 1, DescSize: 20, GTEntries: vmdkGTEntries, GDOffset: uint64(gdSector), Overhead: uint64(overhead)}
	out := make([]byte, overhead*512)
	copy(out, h.marshal())
	copy(out[512:], "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\n\nRW "+
		itoa(capSectors)+" SPARSE \"x.vmdk\"\n")
	le := binary.LittleEndian
	for t := range ngt {
		le.PutUint32(out[gdSector*512+t*4:], uint32(gtSector+t*vmdkGTEntries*4/512))
	}
	for g := range grains {
		start := g * vmdkGrainSize
		grain := make([]byte, vmdkGrainSize)
		copy(grain, data[start:min(start+vmdkGrainSize, len(data))])
		if isZero(grain) {
			continue
		}
		le.PutUint32(out[gtSector*512+g*4:], uint32(len(out)/512))
		out = append(out, grain...)
	}
	return out
}

func putCRC32C(b []byte) {
	binary.LittleEndian.PutUint32(b[4:], 0)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b, castagnoli))
}

// buildVHDX lays out data as a VHDX with the given block size (a multiple of
// 1 MiB) and logical sector size. A fixed disk has every block present; a
// dynamic one only the blocks holding non-zero data. The metadata and BAT
// sit right after the region tables, so an image without present blocks is
// small (a few hundred KiB), as fuzz seeds should be.
func buildVHDX(data []byte, blockSize int64, logical uint32, fixed bool) []byte {
	const metaOff, metaLen, batOff = 320 << 10, 64 << 10, 384 << 10
	size := int64(len(data))
	nb := (size + blockSize - 1) / blockSize
	cr := (int64(1) << 23) * int64(logical) / blockSize
	entries := int64(0)
	if nb > 0 {
		entries = (nb - 1) + (nb-1)/cr + 1
	}
	batLen := (entries*8 + 4095) / 4096 * 4096
	out := make([]byte, batOff+batLen)
	copy(out, vhdxSignature)
	le := binary.LittleEndian
	for i, off := range []int{vhdxHeader1, vhdxHeader2} {
		h := out[off : off+vhdxHeaderSize]
		copy(h, "head")
		le.PutUint64(h[8:], uint64(i+1))
		h[16], h[32] = 1, 2 // file and data write GUIDs; the log GUID stays zero
		le.PutUint16(h[66:], 1)
		le.PutUint32(h[68:], 1<<20)
		le.PutUint64(h[72:], 1<<20)
		putCRC32C(h)
	}
	for _, off := range []int{vhdxRegion1, vhdxRegion2} {
		r := out[off : off+vhdxRegionSize]
		copy(r, "regi")
		le.PutUint32(r[8:], 2)
		for i, e := range []struct {
			id       [16]byte
			off, len int64
		}{{vhdxGUIDBAT, batOff, batLen}, {vhdxGUIDMetadata, metaOff, metaLen}} {
			ent := r[16+i*32:]
			copy(ent, e.id[:])
			le.PutUint64(ent[16:], uint64(e.off))
			le.PutUint32(ent[24:], uint32(e.len))
			le.PutUint32(ent[28:], 1)
		}
		putCRC32C(r)
	}
	m := out[metaOff : metaOff+metaLen]
	copy(m, "metadata")
	items := []struct {
		id    [16]byte
		value []byte
	}{
		{vhdxGUIDFileParams, le.AppendUint32(le.AppendUint32(nil, uint32(blockSize)), map[bool]uint32{true: vhdxFlagLeaveAllocated}[fixed])},
		{vhdxGUIDDiskSize, le.AppendUint64(nil, uint64(size))},
		{vhdxGUIDLogicalSec, le.AppendUint32(nil, logical)},
		{vhdxGUIDPhysicalSec, le.AppendUint32(nil, 4096)},
		{vhdxGUIDPage83, make([]byte, 16)},
	}
	le.PutUint16(m[10:], uint16(len(items)))
	for i, it := range items {
		ent := m[32+i*32:]
		copy(ent, it.id[:])
		at := 4096 + i*64
		le.PutUint32(ent[16:], uint32(at))
		le.PutUint32(ent[20:], uint32(len(it.value)))
		le.PutUint32(ent[24:], 4|2) // required, virtual-disk item
		copy(m[at:], it.value)
	}
	next := int64(1 << 20)
	for b := range nb {
		block := make([]byte, blockSize)
		copy(block, data[b*blockSize:min((b+1)*blockSize, size)])
		if !fixed && isZero(block) {
			continue
		}
		if int64(len(out)) < next {
			out = append(out, make([]byte, next-int64(len(out)))...)
		}
		le.PutUint64(out[batOff+(b+b/cr)*8:], uint64(next>>20)<<20|vhdxBlockFullPresent)
		out = append(out, block...)
		next += blockSize
	}
	return out
}

// buildCompactStream is a streamOptimized VMDK of data whose descriptor area
// is only 2 sectors, so that fuzz seeds stay small.
func buildCompactStream(tb testing.TB, data []byte) []byte {
	var buf bytes.Buffer
	src := NewRaw(bytes.NewReader(data), int64(len(data)))
	_, err := writeStream(&buf, src.Size(), 3, StreamOptions{}, func(feed *grainFeed) error {
		for gi := int64(0); gi*vmdkGrainSize < src.Size(); gi++ {
			if err := feed.grain(gi, func(b []byte) error {
				n, _ := src.ReadAt(b, gi*vmdkGrainSize)
				zeroFill(b[n:])
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}
