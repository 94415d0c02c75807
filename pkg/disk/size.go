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
