package azure

import (
	"bytes"
	"fmt"

	"github.com/klauspost/compress/zlib"

	"github.com/rehost/rehost/pkg/disk"
)

// plan is how a disk is streamed to the target and why.
type plan struct {
	Format  disk.Format
	Dynamic bool  // VHD: dynamic (holes left out) rather than fixed
	Size    int64 // exact stream size, or -1 (VMDK: known after compression)
	VHD     int64 // the VHD's exact size (the smaller of fixed and dynamic)
	VMDKMax int64 // the VMDK's size if no grain compressed at all
	Reason  string
}

// sizes are the sizes of the images of a disk (see disk.EncodedSizes).
func sizes(virtual int64, ext []disk.Extent) (dyn, fixed, vmdkMax, grains int64) {
	z := disk.EncodedSizes(virtual, ext)
	return z.VHDDynamic, z.VHDFixed, z.VMDKMax, z.Grains
}

// choose picks the format that is smaller to upload. When the VMDK is no
// larger than the VHD even if nothing compresses, it is the VMDK without
// further ado; otherwise (the data fills whole 2 MiB blocks) sample
// measures how well the data compresses, and the VHD wins unless the
// estimated VMDK is clearly smaller. A disk beyond the VHD limit is a VMDK.
func choose(virtual int64, ext []disk.Extent, sample func() ([]byte, error)) plan {
	dyn, fixed, vmdkMax, grains := sizes(virtual, ext)
	p := plan{Format: disk.VHD, Dynamic: dyn < fixed, VHD: min(dyn, fixed), VMDKMax: vmdkMax}
	p.Size = p.VHD
	kind := "fixed"
	if p.Dynamic {
		kind = "dynamic"
	}
	switch {
	case virtual > disk.MaxVHDSize:
		p = plan{Format: disk.VMDK, Size: -1, VMDKMax: vmdkMax, Reason: "the disk exceeds the VHD limit of 2040 GiB"}
		return p
	case len(ext) == 0:
		p.Reason = fmt.Sprintf("no allocated data: a %s VHD of %d bytes", kind, p.VHD)
		return p
	case vmdkMax <= p.VHD:
		p.Format, p.Size = disk.VMDK, -1
		p.Reason = fmt.Sprintf("sparse data: a streamOptimized VMDK of the %d touched 64 KiB grains is at most %d bytes even uncompressed, a %s VHD %d bytes", grains, vmdkMax, kind, p.VHD)
		return p
	}
	raw, err := sample()
	if err != nil || len(raw) == 0 {
		p.Reason = fmt.Sprintf("dense data: a %s VHD is %d bytes, an uncompressed VMDK up to %d; compressibility unknown (%v)", kind, p.VHD, vmdkMax, err)
		return p
	}
	ratio := compressedRatio(raw)
	est := int64(float64(vmdkMax-grains*512)*ratio) + grains*512
	if float64(est) < 0.95*float64(p.VHD) {
		p.Format, p.Size = disk.VMDK, -1
		p.Reason = fmt.Sprintf("dense but compressible data (a %d-byte sample compresses to %.0f%%): VMDK about %d bytes, %s VHD %d", len(raw), 100*ratio, est, kind, p.VHD)
		return p
	}
	p.Reason = fmt.Sprintf("dense, incompressible data (a %d-byte sample compresses to %.0f%%): %s VHD %d bytes, VMDK about %d, and no CPU spent compressing", len(raw), 100*ratio, kind, p.VHD, est)
	return p
}

// compressedRatio is the size of b compressed as the VMDK writer does
// (zlib per 64 KiB grain) over its size.
func compressedRatio(b []byte) float64 {
	var out bytes.Buffer
	var n int
	const vmdkGrain = 64 << 10
	for off := 0; off < len(b); off += vmdkGrain {
		out.Reset()
		zw, err := zlib.NewWriterLevel(&out, disk.StreamCompressionLevel)
		if err != nil {
			return 1
		}
		zw.Write(b[off:min(off+vmdkGrain, len(b))])
		zw.Close()
		n += out.Len()
	}
	return min(1, float64(n)/float64(len(b)))
}

// sampleAt picks where to sample n bytes of allocated data: the middle of
// the allocation, where a file system keeps file data rather than the
// metadata at its start.
func sampleAt(ext []disk.Extent, n int64) (off, length int64) {
	var total int64
	for _, e := range ext {
		total += e.Length
	}
	mid := total / 2
	for _, e := range ext {
		if mid < e.Length {
			start := e.Offset + mid/512*512
			return start, min(n, e.End()-start)
		}
		mid -= e.Length
	}
	return 0, 0
}
