// Package hvdisk writes virtual disk files as Hyper-V lays them out: VHDX
// and VHD, dynamic or differencing (the AVHDX/AVHD files a checkpoint
// creates), with sector bitmaps and parent locators. The Hyper-V simulator
// uses it to keep a VM's checkpoint chain as real files on its SMB share,
// and pkg/disk's tests use it to build the differencing disks qemu-img
// cannot make.
//
// A disk is held in memory (only its written blocks) and encoded whole; the
// disks of tests and the simulator are tens of MiB, mostly sparse. It does
// not parse files: callers that start from an existing image copy its
// content in with WriteAt.
//
// The package depends on nothing of pkg/disk, so that package's own tests
// can import it.
package hvdisk

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strings"
)

// GUID is a 128-bit identifier in the byte order Microsoft stores it.
type GUID [16]byte

// NewGUID returns a random GUID.
func NewGUID() GUID {
	var g GUID
	if _, err := rand.Read(g[:]); err != nil {
		panic("hvdisk: no randomness: " + err.Error())
	}
	g[7] = g[7]&0x0f | 0x40
	g[8] = g[8]&0x3f | 0x80
	return g
}

// ParseGUID reads the text form ("{83ed0ec3-24c8-…}", braces optional).
func ParseGUID(s string) (GUID, error) {
	var g GUID
	b, err := hex.DecodeString(strings.ReplaceAll(strings.Trim(s, "{}"), "-", ""))
	if err != nil || len(b) != 16 {
		return g, fmt.Errorf("hvdisk: %q is not a GUID", s)
	}
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	copy(g[8:], b[8:])
	return g, nil
}

// String is the lower-case text form without braces.
func (g GUID) String() string {
	return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%x-%x",
		g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8:10], g[10:16])
}

// Parent says where a differencing disk's parent is and which content of
// it the child was made against.
type Parent struct {
	// ID is the parent's identity as a child records it: for VHDX the
	// parent's DataWriteGuid, for VHD the parent's unique id.
	ID GUID
	// RelativePath and AbsolutePath are Windows paths of the parent, as
	// Hyper-V writes them into the locator ("..\\base.vhdx",
	// "C:\\VMs\\base.vhdx"); either may be empty.
	RelativePath, AbsolutePath string
}

// sparseBlocks holds the written blocks of a disk: each block's data and,
// for a differencing disk, which of its sectors the file holds.
type sparseBlocks struct {
	size, blockSize, sector int64
	data                    map[int64][]byte
	present                 map[int64][]bool // nil entry: block wholly present
	diff                    bool
}

func newBlocks(size, blockSize, sector int64, diff bool) sparseBlocks {
	return sparseBlocks{size: size, blockSize: blockSize, sector: sector, diff: diff,
		data: map[int64][]byte{}, present: map[int64][]bool{}}
}

// writeAt stores p at off, allocating blocks as needed; a differencing disk
// marks the sectors written as present (whole sectors only: the caller
// writes sector-aligned data, as a guest does).
func (s *sparseBlocks) writeAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > s.size {
		return 0, fmt.Errorf("hvdisk: write of %d bytes at %d outside the %d-byte disk", len(p), off, s.size)
	}
	if s.diff && (off%s.sector != 0 || int64(len(p))%s.sector != 0) {
		return 0, fmt.Errorf("hvdisk: write of %d bytes at %d is not whole %d-byte sectors", len(p), off, s.sector)
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		b, in := pos/s.blockSize, pos%s.blockSize
		chunk := int(min(int64(len(p)-n), s.blockSize-in))
		blk := s.data[b]
		if blk == nil {
			blk = make([]byte, s.blockSize)
			s.data[b] = blk
			if s.diff {
				s.present[b] = make([]bool, s.blockSize/s.sector)
			}
		}
		copy(blk[in:], p[n:n+chunk])
		if bits := s.present[b]; bits != nil {
			for k := in / s.sector; k < (in+int64(chunk))/s.sector; k++ {
				bits[k] = true
			}
		}
		n += chunk
	}
	return n, nil
}

func (s *sparseBlocks) indices() []int64 {
	out := make([]int64, 0, len(s.data))
	for b := range s.data {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// full reports whether every sector of block b is present.
func (s *sparseBlocks) full(b int64) bool {
	for _, p := range s.present[b] {
		if !p {
			return false
		}
	}
	return true
}

// Written returns the byte ranges [off, off+len) the file itself holds, in
// order: whole blocks for a dynamic disk, present sectors for a
// differencing one.
func (s *sparseBlocks) Written() [][2]int64 {
	var out [][2]int64
	add := func(off, n int64) {
		n = min(n, s.size-off)
		if n <= 0 {
			return
		}
		if k := len(out); k > 0 && out[k-1][0]+out[k-1][1] == off {
			out[k-1][1] += n
			return
		}
		out = append(out, [2]int64{off, n})
	}
	for _, b := range s.indices() {
		base := b * s.blockSize
		bits := s.present[b]
		if bits == nil {
			add(base, s.blockSize)
			continue
		}
		for k, p := range bits {
			if p {
				add(base+int64(k)*s.sector, s.sector)
			}
		}
	}
	return out
}

// ReadOwnAt copies the file's own bytes at off into p: zeros where the file
// holds nothing (see Written for where it does).
func (s *sparseBlocks) ReadOwnAt(p []byte, off int64) {
	for n := 0; n < len(p); {
		pos := off + int64(n)
		b, in := pos/s.blockSize, pos%s.blockSize
		chunk := int(min(int64(len(p)-n), s.blockSize-in))
		if blk := s.data[b]; blk != nil {
			copy(p[n:n+chunk], blk[in:])
		} else {
			clear(p[n : n+chunk])
		}
		n += chunk
	}
}

func saveFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
