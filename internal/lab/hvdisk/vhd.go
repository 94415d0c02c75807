package hvdisk

import (
	"encoding/binary"
	"fmt"
	"path"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/rehost/rehost/pkg/disk/chs"
)

const (
	vhdBlockSize = 2 * mib
	vhdSector    = 512
)

// VHD is a dynamic or differencing VHD held in memory.
type VHD struct {
	sparseBlocks
	// Parent makes the disk a differencing disk (an AVHD).
	Parent   *Parent
	UniqueID GUID
	// Created stamps the footer; a child records its parent's.
	Created time.Time
}

// NewVHD makes an empty VHD of size bytes (whole sectors) with blocks of
// blockSize bytes (0: 2 MiB, as Hyper-V makes them; smaller ones keep test
// images small); parent non-nil makes it differencing.
func NewVHD(size, blockSize int64, parent *Parent) (*VHD, error) {
	if blockSize == 0 {
		blockSize = vhdBlockSize
	}
	if size <= 0 || size%vhdSector != 0 || size > 2040<<30 || blockSize < 4096 || blockSize&(blockSize-1) != 0 {
		return nil, fmt.Errorf("hvdisk: vhd size %d, block size %d", size, blockSize)
	}
	return &VHD{sparseBlocks: newBlocks(size, blockSize, vhdSector, parent != nil), Parent: parent,
		UniqueID: NewGUID(), Created: time.Now()}, nil
}

// WriteAt writes p at off of the virtual disk.
func (v *VHD) WriteAt(p []byte, off int64) (int, error) { return v.writeAt(p, off) }

// Save writes the encoded disk to path (replacing it atomically).
func (v *VHD) Save(path string) error { return saveFile(path, v.Encode()) }

var vhdEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Encode lays the disk out: footer copy, dynamic header, parent locators,
// BAT, blocks (sector bitmap then data), footer.
func (v *VHD) Encode() []byte {
	be := binary.BigEndian
	diskType := uint32(3)
	if v.Parent != nil {
		diskType = 4
	}
	footer := make([]byte, 512)
	copy(footer, "conectix")
	be.PutUint32(footer[8:], 2)
	be.PutUint32(footer[12:], 0x00010000)
	be.PutUint64(footer[16:], 512)
	be.PutUint32(footer[24:], uint32(v.Created.Sub(vhdEpoch)/time.Second))
	copy(footer[28:], "win ")
	be.PutUint32(footer[32:], 0x000a0000)
	copy(footer[36:], "Wi2k")
	be.PutUint64(footer[40:], uint64(v.size))
	be.PutUint64(footer[48:], uint64(v.size))
	c, h, s := chs.VHD(v.size)
	be.PutUint16(footer[56:], c)
	footer[58], footer[59] = h, s
	be.PutUint32(footer[60:], diskType)
	copy(footer[68:], v.UniqueID[:])
	be.PutUint32(footer[64:], checksum(footer, 64))

	nb := (v.size + v.blockSize - 1) / v.blockSize
	type locator struct {
		code string
		path []byte // UTF-16LE
	}
	var locators []locator
	if v.Parent != nil {
		if v.Parent.RelativePath != "" {
			locators = append(locators, locator{"W2ru", utf16le(v.Parent.RelativePath)})
		}
		if v.Parent.AbsolutePath != "" {
			locators = append(locators, locator{"W2ku", utf16le(v.Parent.AbsolutePath)})
		}
	}
	locOff := int64(512 + 1024)
	tableOff := locOff + int64(len(locators))*512
	batBytes := (nb*4 + 511) / 512 * 512
	out := make([]byte, tableOff+batBytes)
	copy(out, footer)

	dh := out[512 : 512+1024]
	copy(dh, "cxsparse")
	be.PutUint64(dh[8:], ^uint64(0))
	be.PutUint64(dh[16:], uint64(tableOff))
	be.PutUint32(dh[24:], 0x00010000)
	be.PutUint32(dh[28:], uint32(nb))
	be.PutUint32(dh[32:], uint32(v.blockSize))
	if p := v.Parent; p != nil {
		copy(dh[40:], p.ID[:])
		name := p.AbsolutePath
		if name == "" {
			name = p.RelativePath
		}
		name = path.Base(strings.ReplaceAll(name, `\`, "/"))
		for i, u := range utf16.Encode([]rune(name)) {
			if 64+2*i+2 <= 576 {
				be.PutUint16(dh[64+2*i:], u)
			}
		}
		for i, l := range locators {
			e := dh[576+24*i:]
			n := min(len(l.path), 512)
			copy(e, l.code)
			be.PutUint32(e[4:], 512)
			be.PutUint32(e[8:], uint32(n))
			be.PutUint64(e[16:], uint64(locOff+int64(i)*512))
			copy(out[locOff+int64(i)*512:], l.path[:n])
		}
	}
	be.PutUint32(dh[36:], checksum(dh, 36))

	for i := int64(0); i < nb; i++ {
		be.PutUint32(out[tableOff+i*4:], 0xffffffff)
	}
	sectors := v.blockSize / vhdSector
	bitmapBytes := (sectors/8 + vhdSector - 1) / vhdSector * vhdSector
	for _, b := range v.indices() {
		be.PutUint32(out[tableOff+b*4:], uint32(len(out)/vhdSector))
		bm := make([]byte, bitmapBytes)
		bits := v.present[b]
		for s := range sectors {
			if bits == nil || bits[s] {
				bm[s/8] |= 0x80 >> (s % 8)
			}
		}
		out = append(append(out, bm...), v.data[b]...)
	}
	return append(out, footer...)
}

func checksum(b []byte, skip int) uint32 {
	var sum uint32
	for i, c := range b {
		if i < skip || i >= skip+4 {
			sum += uint32(c)
		}
	}
	return ^sum
}
