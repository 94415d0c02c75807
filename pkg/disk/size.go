package disk

// MaxImageSize bounds the size of an image of format f holding a virtual
// disk of capacity bytes, as this package's writers and the hypervisors'
// exporters lay them out: what a stager must be ready to receive when the
// exact length of a stream is not known in advance. An unknown format is
// bounded as a streamOptimized VMDK, the largest.
func MaxImageSize(f Format, capacity int64) int64 {
	if capacity < 0 {
		capacity = 0
	}
	const mib = 1 << 20
	sectors := (capacity + 511) / 512 * 512 // sizes are padded to a sector
	switch f {
	case Raw:
		return capacity
	case VHD:
		// Dynamic: footer copy, header, the BAT (4 bytes per 2 MiB block),
		// a 512-byte bitmap per block, and the last block written whole;
		// fixed is only the footer more.
		return sectors + sectors/4096 + 3*mib
	case VHDX:
		// 1 MiB header region, log, metadata, the BAT (8 bytes per block
		// and per sector-bitmap chunk) with blocks of at least 1 MiB.
		return sectors + sectors/(128*1024)*8 + 8*mib
	default:
		// streamOptimized: each grain of 64 KiB deflated at worst stores
		// its bytes plus a few of framing, behind a 12-byte marker, padded
		// to a sector (at most 1 KiB more); a 2 KiB grain table and its
		// marker per 32 MiB; the directory, footer and start overhead.
		grains := (sectors + vmdkGrainSize - 1) / vmdkGrainSize
		spans := (sectors + 32*mib - 1) / (32 * mib)
		return sectors + grains*1024 + spans*(2048+512) + spans*4 + 2*mib
	}
}

// Sizes are the exact sizes of a disk's images as this package writes them,
// from its allocated extents alone.
type Sizes struct {
	// VHDDynamic and VHDFixed are a dynamic and a fixed VHD's.
	VHDDynamic, VHDFixed int64
	// VMDKMax is the most a streamOptimized VMDK can be (every touched
	// grain stored, incompressible); Grains is how many grains the extents
	// touch.
	VMDKMax, Grains int64
}

// EncodedSizes computes the Sizes of a virtual disk with the given extents.
func EncodedSizes(virtual int64, ext []Extent) Sizes {
	const gtSpan = vmdkGTEntries * vmdkGrainSize // one grain table's span
	var blocks, spans, grains int64
	lastB, lastG, lastS := int64(-1), int64(-1), int64(-1)
	for _, e := range ext {
		for b := max(e.Offset/vhdBlockSize, lastB+1); b*vhdBlockSize < e.End(); b++ {
			blocks, lastB = blocks+1, b
		}
		for g := max(e.Offset/vmdkGrainSize, lastG+1); g*vmdkGrainSize < e.End(); g++ {
			grains, lastG = grains+1, g
			if s := g * vmdkGrainSize / gtSpan; s != lastS {
				spans, lastS = spans+1, s
			}
		}
	}
	v := (virtual + sectorSize - 1) / sectorSize * sectorSize
	nblocks := (v + vhdBlockSize - 1) / vhdBlockSize
	z := Sizes{Grains: grains, VHDFixed: v + sectorSize}
	z.VHDDynamic = sectorSize + 2*sectorSize + (nblocks*4+sectorSize-1)/sectorSize*sectorSize + blocks*(sectorSize+vhdBlockSize) + sectorSize
	// Header and descriptor (64 KiB), per grain a marker and the zlib
	// stream padded to a sector (at most 64 KiB + 512 for incompressible
	// data), per table span a marker and 512 entries, then the directory,
	// the footer and the end-of-stream marker.
	ngt := (v + gtSpan - 1) / gtSpan
	z.VMDKMax = soOverhead*sectorSize + grains*(vmdkGrainSize+sectorSize) + spans*(sectorSize+vmdkGTEntries*4) + sectorSize + (ngt*4+sectorSize-1)/sectorSize*sectorSize + 3*sectorSize
	return z
}
