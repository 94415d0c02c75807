// Package disk reads and writes the virtual disk image formats a hypervisor hands
// over and EC2 VM Import accepts: VMDK (streamOptimized, monolithicSparse, flat),
// VHD (fixed, dynamic) and VHDX (fixed, dynamic), and raw.
//
// Every reader reports the allocated extents of the virtual disk, so callers
// never read, compress or upload the zeroes of an unallocated region. Every
// parser treats its input as hostile: a malformed header, a truncated stream or
// an absurd claimed size is an error, never a panic, a hang, or an allocation
// proportional to a size the input claims.
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
