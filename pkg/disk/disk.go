// Package disk reads and writes the virtual disk image formats a hypervisor hands
// over and EC2 VM Import accepts: VMDK (streamOptimized, monolithicSparse, flat),
// VHD (fixed, dynamic) and VHDX (fixed, dynamic), and raw.
//
// Every reader reports the allocated extents of the virtual disk, so callers
// never read, compress or upload the zeroes of an unallocated region. Every
// parser treats its input as hostile: a malformed header, a truncated stream or
// an absurd claimed size is an error, never a panic, a hang, or an allocation
// proportional to a size the input claims.
//
// # Reading
//
// Open detects the format from signatures (raw is the fallback) and gives an
// Image: random access plus Extents and Info. OpenFile also follows a VMDK
// text descriptor to its FLAT, VMFS, ZERO and SPARSE extent files (monolithicFlat,
// vmfs, twoGbMaxExtentFlat/Sparse). NewStreamOptimizedReader reads a
// streamOptimized VMDK strictly sequentially, as an export lease serves it.
//
//   - VMDK sparse (monolithicSparse, streamOptimized): the grain directory and
//     tables are read at open; grain tables must not overlap. A streamOptimized
//     file whose header says "grain directory at end" is read through its
//     footer. Delta disks (a parentCID) are refused. Extents are per grain.
//   - VHD: the footer and dynamic header checksums are verified; the size is
//     the footer's current size (not the CHS geometry). A dynamic disk's
//     extents are its allocated blocks; like qemu, sector bitmaps are not
//     consulted. A differencing disk is refused alone; see OpenChain.
//   - VHDX: both headers and region tables are tried (CRC-32C checked), the
//     one with the highest sequence number wins; a non-empty log (unclean
//     shutdown) is refused with an error saying what to do, and so is a
//     differencing disk alone. Dynamic extents are the present blocks.
//   - Differencing VHD and VHDX (the AVHD/AVHDX of a Hyper-V checkpoint):
//     OpenChain stacks them over their base, following sector bitmaps, after
//     checking each child's record of its parent's identity (ReadLink).
//   - Formats without allocation data (raw, fixed VHD, fixed VHDX, flat VMDK)
//     report the 64 KiB regions that hold non-zero bytes, found by one lazy
//     scan on the first call to Extents or Info.
//
// Limits: virtual size at most 64 TiB (MaxVirtualSize), VMDK grains at most
// 1 MiB and 4096 entries per grain table, VHD blocks at most 256 MiB, VHDX
// blocks 1–256 MiB with 512 or 4096-byte logical sectors.
//
// # Writing
//
// WriteStreamOptimized (from a Sparse, reading only its extents) and
// WriteStreamOptimizedFrom (from a sequential raw stream) write a
// streamOptimized VMDK as VMware and qemu lay it out: zlib grains behind
// markers, tables emitted as each 32 MiB span completes, directory, footer,
// end-of-stream marker. Grains are compressed in parallel by a bounded pool
// with the output kept in order; memory does not grow with the disk beyond
// the grain directory (4 bytes per 32 MiB). WriteVHD writes a fixed or
// dynamic VHD (2 MiB blocks) of exactly the source's size, at most 2040 GiB;
// WriteVHDFixedFrom does so from a stream; WriteRaw and WriteRawFrom write
// raw, leaving holes in a regular file. Sizes that are not a multiple of 512
// are padded with zeros to the next sector in VMDK and VHD output.
//
// Fuzz targets cover every parser; run each with a short minimisation
// budget, which large seeds otherwise exhaust:
//
//	go test ./pkg/disk -run '^$' -fuzz '^FuzzVMDKStream$' -fuzztime=10s -fuzzminimizetime=200x
package disk

import (
	"errors"
	"io"
)

// Format names a disk image container format.
type Format string

const (
	Raw  Format = "raw"
	VMDK Format = "vmdk"
	VHD  Format = "vhd"
	VHDX Format = "vhdx"
)

// Extent is a byte range [Offset, Offset+Length) of the virtual disk.
type Extent struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// End returns the first byte after the extent.
func (e Extent) End() int64 { return e.Offset + e.Length }

// Info describes an image.
type Info struct {
	Format      Format `json:"format"`
	Subformat   string `json:"subformat,omitempty"` // streamOptimized, monolithicSparse, monolithicFlat, fixed, dynamic, differencing
	VirtualSize int64  `json:"virtualSize"`
	// AllocatedBytes is the sum of the lengths of the allocated extents.
	AllocatedBytes int64 `json:"allocatedBytes"`
	ExtentCount    int   `json:"extentCount"`
}

// Sparse is a virtual disk read through its allocated extents: bytes outside
// the extents read as zero.
type Sparse interface {
	io.ReaderAt
	// Size is the virtual size in bytes.
	Size() int64
	// Extents are sorted, non-overlapping and within [0, Size()).
	Extents() []Extent
}

// ErrFormat is wrapped by every error about malformed or unsupported input.
var ErrFormat = errors.New("invalid disk image")
