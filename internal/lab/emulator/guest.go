package emulator

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// What VM Import checks on the boot disk of an ImportImage before it
// converts the guest: a partition table that suits the boot mode, a file
// system it can read, and an operating system on it. The emulator reads the
// converted disk (the snapshot content) as the importer reads the volume.

const sectorSize = 512

// Partition table styles.
const (
	styleMBR = "MBR"
	styleGPT = "GPT"
)

// GPT partition type GUIDs, in their text form.
const (
	gptESP      = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	gptBIOSBoot = "21686148-6449-6E6F-744E-656564454649"
)

type partition struct {
	Offset, Size int64
	MBRType      byte   // MBR partitions
	TypeGUID     string // GPT partitions
}

type partitionTable struct {
	Style string
	Parts []partition
}

func (t partitionTable) hasType(guid string) bool {
	for _, p := range t.Parts {
		if p.TypeGUID == guid {
			return true
		}
	}
	return false
}

// readPartitions reads the MBR, following a protective MBR to the GPT and
// extended partitions to their logical ones. A disk without a valid table
// returns an error.
func readPartitions(d io.ReaderAt, size int64) (partitionTable, error) {
	var t partitionTable
	s0 := make([]byte, sectorSize)
	if _, err := d.ReadAt(s0, 0); err != nil {
		return t, fmt.Errorf("read sector 0: %w", err)
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
	t.Style = styleMBR
	for _, e := range entries {
		switch e.MBRType {
		case 0:
		case 0x05, 0x0F, 0x85:
			logical, err := readEBRs(d, e.Offset, size)
			if err != nil {
				return t, err
			}
			t.Parts = append(t.Parts, logical...)
		default:
			t.Parts = append(t.Parts, e)
		}
	}
	if len(t.Parts) == 0 {
		return t, errors.New("the MBR has no partitions")
	}
	for _, p := range t.Parts {
		if p.Offset+p.Size > size {
			return t, fmt.Errorf("partition at %d ends beyond the disk", p.Offset)
		}
	}
	return t, nil
}

func mbrEntries(s []byte) []partition {
	var out []partition
	for i := 0; i < 4; i++ {
		e := s[446+16*i:]
		typ := e[4]
		start := int64(binary.LittleEndian.Uint32(e[8:])) * sectorSize
		n := int64(binary.LittleEndian.Uint32(e[12:])) * sectorSize
		if typ == 0 || n == 0 {
			continue
		}
		out = append(out, partition{Offset: start, Size: n, MBRType: typ})
	}
	return out
}

// readEBRs follows the chain of extended boot records from the extended
// partition at base.
func readEBRs(d io.ReaderAt, base, size int64) ([]partition, error) {
	var out []partition
	next := base
	for range 128 {
		s := make([]byte, sectorSize)
		if next >= size {
			return nil, errors.New("extended partition beyond the disk")
		}
		if _, err := d.ReadAt(s, next); err != nil {
			return nil, fmt.Errorf("read extended boot record: %w", err)
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

func readGPT(d io.ReaderAt, size int64) (partitionTable, error) {
	t := partitionTable{Style: styleGPT}
	h := make([]byte, sectorSize)
	if _, err := d.ReadAt(h, sectorSize); err != nil {
		return t, fmt.Errorf("read GPT header: %w", err)
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
	if n > 1024 || esize < 128 || esize > 1024 || lba*sectorSize+int64(n)*int64(esize) > size {
		return t, errors.New("GPT partition array out of range")
	}
	arr := make([]byte, int(n)*int(esize))
	if _, err := d.ReadAt(arr, lba*sectorSize); err != nil {
		return t, fmt.Errorf("read GPT partition array: %w", err)
	}
	if crc32.ChecksumIEEE(arr) != binary.LittleEndian.Uint32(h[88:]) {
		return t, errors.New("GPT partition array checksum mismatch")
	}
	for i := 0; i < int(n); i++ {
		e := arr[i*int(esize):]
		guid := guidString(e[:16])
		if guid == "00000000-0000-0000-0000-000000000000" {
			continue
		}
		first, last := int64(binary.LittleEndian.Uint64(e[32:])), int64(binary.LittleEndian.Uint64(e[40:]))
		if last < first || (last+1)*sectorSize > size {
			return t, fmt.Errorf("GPT partition %d out of range", i+1)
		}
		t.Parts = append(t.Parts, partition{Offset: first * sectorSize, Size: (last - first + 1) * sectorSize, TypeGUID: guid})
	}
	if len(t.Parts) == 0 {
		return t, errors.New("the GPT has no partitions")
	}
	return t, nil
}

// guidString formats an on-disk (mixed-endian) GUID.
func guidString(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint16(b[4:]),
		binary.LittleEndian.Uint16(b[6:]), b[8:10], b[10:16])
}

// File systems the importer recognises.
const (
	fsExt2  = "ext2"
	fsExt3  = "ext3"
	fsExt4  = "ext4"
	fsXFS   = "xfs"
	fsBtrfs = "btrfs"
	fsNTFS  = "ntfs"
	fsFAT   = "vfat"
)

// probeFS names the file system at the start of a partition, "" when none
// is recognised.
func probeFS(d io.ReaderAt, p partition) string {
	head := make([]byte, 4096)
	if _, err := d.ReadAt(head, p.Offset); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	switch {
	case string(head[3:11]) == "NTFS    " && head[510] == 0x55 && head[511] == 0xAA:
		return fsNTFS
	case string(head[:4]) == "XFSB":
		return fsXFS
	case binary.LittleEndian.Uint16(head[1024+0x38:]) == 0xEF53:
		return extVariant(head[1024:])
	case head[510] == 0x55 && head[511] == 0xAA && (string(head[54:59]) == "FAT12" || string(head[54:59]) == "FAT16" || string(head[82:87]) == "FAT32"):
		return fsFAT
	}
	sb := make([]byte, 8)
	if _, err := d.ReadAt(sb, p.Offset+0x10040); err == nil && string(sb) == "_BHRfS_M" {
		return fsBtrfs
	}
	return ""
}

// Guest is what the importer found on the boot disk.
type Guest struct {
	// Platform is "Linux" or "Windows".
	Platform string `json:"platform"`
	// Distribution is os-release's PRETTY_NAME (or NAME VERSION) for
	// Linux; empty where the emulator cannot read the root file system
	// (xfs and btrfs are recognised by their superblock only).
	Distribution string `json:"distribution,omitempty"`
	// FileSystem of the system partition, PartitionStyle of the disk.
	FileSystem     string `json:"fileSystem"`
	PartitionStyle string `json:"partitionStyle"`
	// BootMode the disk boots in: legacy-bios or uefi.
	BootMode string `json:"bootMode"`
	// RootOffset and RootSize locate the system partition on the disk.
	RootOffset int64 `json:"rootOffset,omitempty"`
	RootSize   int64 `json:"rootSize,omitempty"`
}

// Import failures of the boot disk, worded as VM Import words them.
var (
	errNoPartitions = fail("ClientError: No valid partitions. Not a valid volume.")
	errUnknownOS    = fail("ClientError: Unknown OS / Missing OS files.")
)

// inspectBootDisk checks the boot disk against the requested boot mode
// ("" or uefi-preferred: whatever the disk supports) and detects its OS.
func inspectBootDisk(d io.ReaderAt, size int64, bootMode string) (Guest, error) {
	var g Guest
	t, err := readPartitions(d, size)
	if err != nil {
		return g, errNoPartitions
	}
	g.PartitionStyle = t.Style
	uefi := t.Style == styleGPT && t.hasType(gptESP)
	bios := t.Style == styleMBR || t.hasType(gptBIOSBoot)
	switch {
	case bootMode == "uefi" && !uefi:
		return g, fail("ClientError: Unsupported boot mode: boot mode uefi needs a GPT boot disk with an EFI system partition; this disk has %s", describeTable(t))
	case bootMode == "legacy-bios" && !bios:
		return g, fail("ClientError: Unsupported boot mode: boot mode legacy-bios needs an MBR boot disk (or GPT with a BIOS boot partition); this disk has %s", describeTable(t))
	case bootMode == "legacy-bios" || !uefi && bios:
		g.BootMode = "legacy-bios"
	case uefi:
		g.BootMode = "uefi"
	default:
		return g, errNoPartitions
	}
	recognised := false
	for _, p := range t.Parts {
		fs := probeFS(d, p)
		if fs == "" || fs == fsFAT {
			recognised = recognised || fs == fsFAT
			continue
		}
		recognised = true
		g.RootOffset, g.RootSize = p.Offset, p.Size
		switch fs {
		case fsNTFS:
			// A Windows system partition: the importer identifies the
			// version from the registry, which the emulator does not
			// read.
			g.Platform, g.FileSystem = "Windows", fs
			return g, nil
		case fsExt2, fsExt3, fsExt4:
			rel, err := readExtFile(io.NewSectionReader(d, p.Offset, p.Size), "/etc/os-release")
			if err != nil {
				continue // not the root file system (/boot, data)
			}
			g.Platform, g.FileSystem, g.Distribution = "Linux", fs, distribution(rel)
			return g, nil
		case fsXFS, fsBtrfs:
			g.Platform, g.FileSystem = "Linux", fs
			return g, nil
		}
	}
	if !recognised {
		return g, errNoPartitions
	}
	return g, errUnknownOS
}

func describeTable(t partitionTable) string {
	switch {
	case t.Style == styleMBR:
		return "an MBR partition table"
	case t.hasType(gptESP):
		return "GPT with an EFI system partition"
	}
	return "GPT without an EFI system partition"
}

// distribution names the OS from /etc/os-release.
func distribution(osRelease []byte) string {
	kv := map[string]string{}
	for line := range strings.SplitSeq(string(osRelease), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		kv[k] = strings.Trim(v, `"'`)
	}
	if n := kv["PRETTY_NAME"]; n != "" {
		return n
	}
	return strings.TrimSpace(kv["NAME"] + " " + kv["VERSION"])
}
