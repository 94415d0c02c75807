// Package gpt grows the last partition of a GUID partition table to the end
// of its disk, as the appliance does at boot when the virtual disk was made
// larger: it moves the backup table to the disk's new end, extends the last
// usable sector and the last partition (keeping 1 MiB alignment), and
// rewrites both headers and the protective MBR with their checksums.
package gpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

const (
	sector    = 512
	align     = 2048 // sectors: 1 MiB
	signature = "EFI PART"
)

// Disk is what Grow needs of a disk: read and write at offsets.
type Disk interface {
	io.ReaderAt
	io.WriterAt
}

// Partition is one entry of the table.
type Partition struct {
	Index             int // from 1, as the kernel numbers them
	Name              string
	FirstLBA, LastLBA uint64
}

// Size in bytes.
func (p Partition) Size() int64 { return int64(p.LastLBA-p.FirstLBA+1) * sector }

type header struct {
	raw                     []byte
	current, backup         uint64
	firstUsable, lastUsable uint64
	entriesLBA              uint64
	numEntries, entrySize   uint32
}

func readHeader(d io.ReaderAt, lba uint64) (header, error) {
	b := make([]byte, sector)
	if _, err := d.ReadAt(b, int64(lba)*sector); err != nil {
		return header{}, fmt.Errorf("read GPT header at sector %d: %w", lba, err)
	}
	if string(b[:8]) != signature {
		return header{}, fmt.Errorf("no GPT header at sector %d", lba)
	}
	le := binary.LittleEndian
	size := le.Uint32(b[12:])
	if size < 92 || size > sector {
		return header{}, fmt.Errorf("GPT header at sector %d: size %d", lba, size)
	}
	want := le.Uint32(b[16:])
	c := bytes.Clone(b[:size])
	le.PutUint32(c[16:], 0)
	if crc32.ChecksumIEEE(c) != want {
		return header{}, fmt.Errorf("GPT header at sector %d: checksum mismatch", lba)
	}
	h := header{raw: b[:size], current: le.Uint64(b[24:]), backup: le.Uint64(b[32:]),
		firstUsable: le.Uint64(b[40:]), lastUsable: le.Uint64(b[48:]), entriesLBA: le.Uint64(b[72:]),
		numEntries: le.Uint32(b[80:]), entrySize: le.Uint32(b[84:])}
	if h.entrySize < 128 || h.entrySize%8 != 0 || h.numEntries == 0 || h.numEntries > 1024 {
		return header{}, fmt.Errorf("GPT header at sector %d: %d entries of %d bytes", lba, h.numEntries, h.entrySize)
	}
	return h, nil
}

func (h header) entriesBytes() int64 { return int64(h.numEntries) * int64(h.entrySize) }

// Read returns the partitions of the disk's primary table.
func Read(d io.ReaderAt) ([]Partition, error) {
	h, ents, err := readPrimary(d)
	if err != nil {
		return nil, err
	}
	return partitions(h, ents), nil
}

func readPrimary(d io.ReaderAt) (header, []byte, error) {
	h, err := readHeader(d, 1)
	if err != nil {
		return h, nil, err
	}
	ents := make([]byte, h.entriesBytes())
	if _, err := d.ReadAt(ents, int64(h.entriesLBA)*sector); err != nil {
		return h, nil, fmt.Errorf("read GPT entries: %w", err)
	}
	if crc32.ChecksumIEEE(ents) != binary.LittleEndian.Uint32(h.raw[88:]) {
		return h, nil, errors.New("GPT entries: checksum mismatch")
	}
	return h, ents, nil
}

func partitions(h header, ents []byte) []Partition {
	var ps []Partition
	le := binary.LittleEndian
	for i := range int(h.numEntries) {
		e := ents[i*int(h.entrySize):]
		if isZero(e[:16]) {
			continue
		}
		var name []rune
		for j := 56; j+1 < 128; j += 2 {
			u := le.Uint16(e[j:])
			if u == 0 {
				break
			}
			name = append(name, rune(u))
		}
		ps = append(ps, Partition{Index: i + 1, Name: string(name), FirstLBA: le.Uint64(e[32:]), LastLBA: le.Uint64(e[40:])})
	}
	return ps
}

// Grow extends the partition named name, which must be the last one on the
// disk, to the end of a disk of size bytes. It reports whether it changed
// anything; a disk whose table already reaches its end is left alone.
// The write order (backup table first, then primary) leaves a readable
// table whichever write a crash interrupts.
func Grow(d Disk, size int64, name string) (bool, error) {
	h, ents, err := readPrimary(d)
	if err != nil {
		return false, err
	}
	last := uint64(size/sector) - 1
	entSectors := uint64((h.entriesBytes() + sector - 1) / sector)
	lastUsable := last - entSectors - 1
	if lastUsable < h.lastUsable {
		return false, fmt.Errorf("the disk (%d bytes) is smaller than its partition table says: shrinking is not supported", size)
	}
	ps := partitions(h, ents)
	var target *Partition
	for i := range ps {
		if ps[i].Name == name {
			target = &ps[i]
		}
	}
	if target == nil {
		return false, fmt.Errorf("no partition named %q", name)
	}
	for _, p := range ps {
		if p.LastLBA > target.LastLBA {
			return false, fmt.Errorf("partition %q is not the last one on the disk", name)
		}
	}
	newLast := (lastUsable+1)/align*align - 1
	if newLast < target.LastLBA {
		newLast = target.LastLBA
	}
	if h.backup == last && h.lastUsable == lastUsable && newLast == target.LastLBA {
		return false, nil
	}
	le := binary.LittleEndian
	le.PutUint64(ents[(target.Index-1)*int(h.entrySize)+40:], newLast)
	entCRC := crc32.ChecksumIEEE(ents)

	mk := func(current, backup, entriesLBA uint64) []byte {
		b := bytes.Clone(h.raw)
		le.PutUint64(b[24:], current)
		le.PutUint64(b[32:], backup)
		le.PutUint64(b[48:], lastUsable)
		le.PutUint64(b[72:], entriesLBA)
		le.PutUint32(b[88:], entCRC)
		le.PutUint32(b[16:], 0)
		le.PutUint32(b[16:], crc32.ChecksumIEEE(b))
		return b
	}
	backupEntries := last - entSectors
	writes := []struct {
		b   []byte
		lba uint64
	}{
		{ents, backupEntries},
		{mk(last, 1, backupEntries), last},
		{ents, h.entriesLBA},
		{mk(1, last, h.entriesLBA), 1},
	}
	for _, w := range writes {
		if _, err := d.WriteAt(w.b, int64(w.lba)*sector); err != nil {
			return false, fmt.Errorf("write GPT at sector %d: %w", w.lba, err)
		}
	}
	// The protective MBR's 0xEE entry covers the disk, up to 2^32-1 sectors.
	mbr := make([]byte, 16)
	if _, err := d.ReadAt(mbr, 446); err == nil && mbr[4] == 0xee {
		le.PutUint32(mbr[12:], uint32(min(last, 0xffffffff)))
		if _, err := d.WriteAt(mbr, 446); err != nil {
			return false, fmt.Errorf("write protective MBR: %w", err)
		}
	}
	return true, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
