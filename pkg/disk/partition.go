package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Partition table styles.
const (
	StyleMBR = "MBR"
	StyleGPT = "GPT"
)

// GPT partition type GUIDs, in their text form.
const (
	GPTTypeESP      = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	GPTTypeBIOSBoot = "21686148-6449-6E6F-744E-656564454649"
)

// MBRMaxBytes is the most an MBR partition table addresses: 2^32 sectors
// of 512 bytes (2 TiB).
const MBRMaxBytes = int64(1<<32) * sectorSize

// ErrNoPartitionTable (which wraps ErrFormat) is wrapped by the error of
// ReadPartitions for a disk without a valid MBR or GPT.
var ErrNoPartitionTable = fmt.Errorf("no valid partition table: %w", ErrFormat)

// Partition is one partition of a disk: where it is and its type (MBRType
// for MBR partitions, TypeGUID for GPT ones).
type Partition struct {
	Offset   int64  `json:"offset"`
	Size     int64  `json:"size"`
	MBRType  byte   `json:"mbrType,omitempty"`
	TypeGUID string `json:"typeGuid,omitempty"`
}

// PartitionTable is a disk's partition table: its style and partitions in
// table order (an MBR's logical partitions after the primary ones).
type PartitionTable struct {
	Style      string      `json:"style"`
	Partitions []Partition `json:"partitions"`
}

// Has reports whether a GPT partition of the type exists.
func (t PartitionTable) Has(typeGUID string) bool {
	for _, p := range t.Partitions {
		if p.TypeGUID == typeGUID {
			return true
		}
	}
	return false
}

// Limits of the tables ReadPartitions follows: they bound what a hostile
// table can make it read.
const (
	maxEBRs       = 128
	maxGPTEntries = 1024
)

// ReadPartitions reads the MBR of a disk of size bytes, following a
// protective MBR to the GPT (both checksums verified) and an extended
// partition's chain to its logical partitions. It reads a few KiB; a disk
// without a valid table, or whose partitions lie beyond its end, wraps
// ErrNoPartitionTable.
func ReadPartitions(d io.ReaderAt, size int64) (PartitionTable, error) {
	t, err := readPartitions(d, size)
	if err != nil {
		return PartitionTable{}, fmt.Errorf("read partition table: %w: %w", err, ErrNoPartitionTable)
	}
	return t, nil
}

func readPartitions(d io.ReaderAt, size int64) (PartitionTable, error) {
	var t PartitionTable
	s0 := make([]byte, sectorSize)
	if _, err := d.ReadAt(s0, 0); err != nil {
		return t, fmt.Errorf("read sector 0: %v", err)
	}
	if s0[510] != 0x55 || s0[511] != 0xAA {
		return t, errors.New("no partition table signature")
	}
	entries := mbrEntries(s0)
	for _, e := range entries {
		if e.MBRType == 0xEE {
			return readGPT(d, size)
		}
	}
	t.Style = StyleMBR
	for _, e := range entries {
		switch e.MBRType {
		case 0x05, 0x0F, 0x85:
			logical, err := readEBRs(d, e.Offset, size)
			if err != nil {
				return t, err
			}
			t.Partitions = append(t.Partitions, logical...)
		default:
			t.Partitions = append(t.Partitions, e)
		}
	}
	if len(t.Partitions) == 0 {
		return t, errors.New("the MBR has no partitions")
	}
	for _, p := range t.Partitions {
		if p.Offset+p.Size > size {
			return t, fmt.Errorf("partition at %d ends beyond the disk", p.Offset)
		}
	}
	return t, nil
}

func mbrEntries(s []byte) []Partition {
	var out []Partition
	for i := range 4 {
		e := s[446+16*i:]
		typ := e[4]
		start := int64(binary.LittleEndian.Uint32(e[8:])) * sectorSize
		n := int64(binary.LittleEndian.Uint32(e[12:])) * sectorSize
		if typ == 0 || n == 0 {
			continue
		}
		out = append(out, Partition{Offset: start, Size: n, MBRType: typ})
	}
	return out
}

// readEBRs follows the chain of extended boot records from the extended
// partition at base.
func readEBRs(d io.ReaderAt, base, size int64) ([]Partition, error) {
	var out []Partition
	next := base
	s := make([]byte, sectorSize)
	for range maxEBRs {
		if next >= size {
			return nil, errors.New("extended partition beyond the disk")
		}
		if _, err := d.ReadAt(s, next); err != nil {
			return nil, fmt.Errorf("read extended boot record: %v", err)
		}
		if s[510] != 0x55 || s[511] != 0xAA {
			return nil, errors.New("extended boot record without signature")
		}
		es := mbrEntries(s)
		if len(es) == 0 {
			return out, nil
		}
		p := es[0]
		p.Offset += next
		out = append(out, p)
		if len(es) < 2 {
			return out, nil
		}
		next = base + es[1].Offset
	}
	return nil, errors.New("extended partition chain too long")
}

func readGPT(d io.ReaderAt, size int64) (PartitionTable, error) {
	t := PartitionTable{Style: StyleGPT}
	h := make([]byte, sectorSize)
	if _, err := d.ReadAt(h, sectorSize); err != nil {
		return t, fmt.Errorf("read GPT header: %v", err)
	}
	if string(h[:8]) != "EFI PART" {
		return t, errors.New("protective MBR without a GPT header")
	}
	hsize := binary.LittleEndian.Uint32(h[12:])
	if hsize < 92 || hsize > sectorSize {
		return t, errors.New("GPT header size out of range")
	}
	crc := binary.LittleEndian.Uint32(h[16:])
	hc := bytes.Clone(h[:hsize])
	clear(hc[16:20])
	if crc32.ChecksumIEEE(hc) != crc {
		return t, errors.New("GPT header checksum mismatch")
	}
	lba := int64(binary.LittleEndian.Uint64(h[72:]))
	n := binary.LittleEndian.Uint32(h[80:])
	esize := binary.LittleEndian.Uint32(h[84:])
	if lba < 2 || lba > size/sectorSize || n > maxGPTEntries || esize < 128 || esize > 1024 ||
		lba*sectorSize+int64(n)*int64(esize) > size {
		return t, errors.New("GPT partition array out of range")
	}
	arr := make([]byte, int(n)*int(esize))
	if _, err := d.ReadAt(arr, lba*sectorSize); err != nil {
		return t, fmt.Errorf("read GPT partition array: %v", err)
	}
	if crc32.ChecksumIEEE(arr) != binary.LittleEndian.Uint32(h[88:]) {
		return t, errors.New("GPT partition array checksum mismatch")
	}
	for i := range int(n) {
		e := arr[i*int(esize):]
		guid := guidString(e[:16])
		if guid == "00000000-0000-0000-0000-000000000000" {
			continue
		}
		first, last := int64(binary.LittleEndian.Uint64(e[32:])), int64(binary.LittleEndian.Uint64(e[40:]))
		if first < 0 || last < first || last >= size/sectorSize {
			return t, fmt.Errorf("GPT partition %d out of range", i+1)
		}
		t.Partitions = append(t.Partitions, Partition{Offset: first * sectorSize, Size: (last - first + 1) * sectorSize, TypeGUID: guid})
	}
	if len(t.Partitions) == 0 {
		return t, errors.New("the GPT has no partitions")
	}
	return t, nil
}

// guidString formats an on-disk (mixed-endian) GUID.
func guidString(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint16(b[4:]),
		binary.LittleEndian.Uint16(b[6:]), b[8:10], b[10:16])
}
