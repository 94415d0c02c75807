package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
)

// File systems ProbeFileSystem recognises, by the names blkid gives them.
const (
	FSExt2  = "ext2"
	FSExt3  = "ext3"
	FSExt4  = "ext4"
	FSXFS   = "xfs"
	FSBtrfs = "btrfs"
	FSNTFS  = "ntfs"
	FSFAT   = "vfat"
	// Encrypted volumes: a LUKS container, a BitLocker volume.
	FSLUKS      = "crypto_LUKS"
	FSBitLocker = "BitLocker"
)

// ProbeFileSystem names the file system at the start of partition p from
// its superblock, "" when none is recognised. It reads 4 KiB (and 8 bytes
// at 64 KiB for btrfs).
func ProbeFileSystem(d io.ReaderAt, p Partition) string {
	head := make([]byte, 4096)
	if _, err := d.ReadAt(head, p.Offset); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	switch {
	case string(head[:6]) == "LUKS\xba\xbe":
		return FSLUKS
	case string(head[3:11]) == "-FVE-FS-":
		return FSBitLocker
	case string(head[3:11]) == "NTFS    " && head[510] == 0x55 && head[511] == 0xAA:
		return FSNTFS
	case string(head[:4]) == "XFSB":
		return FSXFS
	case binary.LittleEndian.Uint16(head[1024+0x38:]) == extMagic:
		return extVariant(head[1024:])
	case head[510] == 0x55 && head[511] == 0xAA && (string(head[54:59]) == "FAT12" || string(head[54:59]) == "FAT16" || string(head[82:87]) == "FAT32"):
		return FSFAT
	}
	sb := make([]byte, 8)
	if _, err := d.ReadAt(sb, p.Offset+0x10040); err == nil && string(sb) == "_BHRfS_M" {
		return FSBtrfs
	}
	return ""
}

// Platforms InspectBoot reports.
const (
	PlatformLinux   = "Linux"
	PlatformWindows = "Windows"
)

// OSRelease is what a Linux guest's /etc/os-release says of it.
type OSRelease struct {
	ID         string `json:"id,omitempty"`        // "ubuntu", "rhel", "rocky"
	IDLike     string `json:"idLike,omitempty"`    // "rhel centos fedora"
	VersionID  string `json:"versionId,omitempty"` // "22.04", "8.9"
	Name       string `json:"name,omitempty"`
	PrettyName string `json:"prettyName,omitempty"`
}

// Title names the OS: PRETTY_NAME, or NAME and VERSION_ID.
func (o OSRelease) Title() string {
	if o.PrettyName != "" {
		return o.PrettyName
	}
	return strings.TrimSpace(o.Name + " " + o.VersionID)
}

// ParseOSRelease reads os-release(5) text: KEY=value lines, values
// optionally quoted.
func ParseOSRelease(b []byte) OSRelease {
	kv := map[string]string{}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		kv[k] = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	return OSRelease{ID: strings.ToLower(kv["ID"]), IDLike: strings.ToLower(kv["ID_LIKE"]), VersionID: kv["VERSION_ID"],
		Name: kv["NAME"], PrettyName: kv["PRETTY_NAME"]}
}

// BootDisk is what InspectBoot found on a boot disk.
type BootDisk struct {
	Table PartitionTable `json:"table"`
	// FileSystems are the recognised file systems by partition index in
	// Table.Partitions ("" where none was recognised).
	FileSystems []string `json:"fileSystems"`
	// UEFI: a GPT with an EFI system partition. BIOS: an MBR, or a GPT with
	// a BIOS boot partition. A disk may boot both ways.
	UEFI bool `json:"uefi"`
	BIOS bool `json:"bios"`
	// Platform is PlatformLinux or PlatformWindows when a system partition
	// was found (NTFS: Windows; ext2/3/4 holding /etc/os-release, xfs,
	// btrfs: Linux), empty otherwise; SystemFS is its file system and
	// OSRelease what it says (ext2/3/4 only: xfs and btrfs are recognised by
	// their superblock, and Windows's version lives in its registry).
	Platform  string    `json:"platform,omitempty"`
	SystemFS  string    `json:"systemFS,omitempty"`
	OSRelease OSRelease `json:"osRelease,omitzero"`
	// System is the system partition (zero when Platform is empty): where
	// an importer reads the guest's files.
	System Partition `json:"system,omitzero"`
}

// Recognised reports whether any partition holds a file system
// ProbeFileSystem knows (an encrypted volume is not one).
func (b BootDisk) Recognised() bool {
	for _, fs := range b.FileSystems {
		if fs != "" && fs != FSLUKS && fs != FSBitLocker {
			return true
		}
	}
	return false
}

// Encrypted returns the index of the first partition holding an encrypted
// volume (LUKS, BitLocker), -1 for none.
func (b BootDisk) Encrypted() int {
	for i, fs := range b.FileSystems {
		if fs == FSLUKS || fs == FSBitLocker {
			return i
		}
	}
	return -1
}

// InspectBoot reads a boot disk as an importer does before converting the
// guest: its partition table, the file system of each partition, and the
// operating system on the first partition that holds one. Reads are small
// and bounded (a few KiB per partition, and ReadExtFile's budget per ext
// partition), so d may be a remote disk. A disk without a valid partition
// table wraps ErrNoPartitionTable; a disk whose partitions hold no system
// is no error: Platform is empty.
func InspectBoot(d io.ReaderAt, size int64) (BootDisk, error) {
	var b BootDisk
	t, err := ReadPartitions(d, size)
	if err != nil {
		return b, err
	}
	b.Table = t
	b.UEFI = t.Style == StyleGPT && t.Has(GPTTypeESP)
	b.BIOS = t.Style == StyleMBR || t.Has(GPTTypeBIOSBoot)
	b.FileSystems = make([]string, len(t.Partitions))
	for i, p := range t.Partitions {
		b.FileSystems[i] = ProbeFileSystem(d, p)
	}
	for i, p := range t.Partitions {
		switch fs := b.FileSystems[i]; fs {
		case FSNTFS:
			b.Platform, b.SystemFS, b.System = PlatformWindows, fs, p
			return b, nil
		case FSExt2, FSExt3, FSExt4:
			rel, err := ReadExtFile(io.NewSectionReader(d, p.Offset, p.Size), "/etc/os-release")
			if err != nil {
				continue // not the root file system (/boot, data)
			}
			b.Platform, b.SystemFS, b.OSRelease, b.System = PlatformLinux, fs, ParseOSRelease(rel), p
			return b, nil
		case FSXFS, FSBtrfs:
			b.Platform, b.SystemFS, b.System = PlatformLinux, fs, p
			return b, nil
		}
	}
	return b, nil
}

// ErrReadBudget is wrapped by reads of a BudgetReader beyond its budget.
var ErrReadBudget = errors.New("read budget spent")

// BudgetReader is an io.ReaderAt that fails with ErrReadBudget once it has
// read its budget of bytes in all: it bounds what an inspection of a remote
// disk transfers, whatever the disk's tables make it ask for.
type BudgetReader struct {
	r    io.ReaderAt
	left atomic.Int64
}

// NewBudgetReader reads at most n bytes of r in all.
func NewBudgetReader(r io.ReaderAt, n int64) *BudgetReader {
	b := &BudgetReader{r: r}
	b.left.Store(n)
	return b
}

// ReadAt reads from the underlying reader while the budget lasts.
func (b *BudgetReader) ReadAt(p []byte, off int64) (int, error) {
	if b.left.Add(-int64(len(p))) < 0 {
		return 0, fmt.Errorf("read %d bytes at %d: %w", len(p), off, ErrReadBudget)
	}
	return b.r.ReadAt(p, off)
}

// Left is what remains of the budget.
func (b *BudgetReader) Left() int64 { return max(b.left.Load(), 0) }
