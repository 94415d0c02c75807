package vmimport

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/rehost/rehost/pkg/disk"
)

// OS names a guest's operating system as far as it is known: any field may
// be empty.
type OS struct {
	Platform string `json:"platform,omitempty"` // Linux or Windows
	// ID is a System.ID ("ubuntu", "windows-server"), or the os-release ID
	// of a system VM Import does not import.
	ID      string `json:"id,omitempty"`
	Version string `json:"version,omitempty"` // "22.04", "2019"
	// Name is how the source or the disk names it, for messages.
	Name string `json:"name,omitempty"`
}

// Title names the OS for a message.
func (o OS) Title() string {
	if o.Name != "" {
		return o.Name
	}
	if s := rules.System(o.ID); s != nil {
		return strings.TrimSpace(s.Name + " " + o.Version)
	}
	return strings.TrimSpace(o.ID + " " + o.Version)
}

// Image is what an import of a VM carries, as far as the caller knows it.
type Image struct {
	OS OS
	// BootMode is the mode the import boots the guest in (BIOS or UEFI);
	// empty when not known.
	BootMode string
	// Disks are the virtual sizes of the disks, the boot disk first.
	Disks []int64
	// Snapshot: the disks are imported one by one (ImportSnapshot, then
	// RegisterImage), so ImportImage's volume limit does not apply.
	Snapshot bool
	// Boot is the boot disk as disk.InspectBoot read it, nil when it was
	// not read; BootErr is InspectBoot's error.
	Boot    *disk.BootDisk
	BootErr error
}

// Rule names one of VM Import's rules; a Violation says which one an image
// breaks.
type Rule string

// The rules, in the order Check applies them.
const (
	RuleVolumes    Rule = "volumes"            // more disks than ImportImage takes
	RuleVolumeSize Rule = "volume-size"        // a disk larger than an EBS volume
	RuleBootTable  Rule = "boot-table"         // a partition table that does not suit the boot mode
	RuleEncrypted  Rule = "encrypted"          // an encrypted volume (LUKS, BitLocker) on the boot disk
	RulePartitions Rule = "partitions"         // a boot disk without a valid partition table or file system
	RuleMBRSize    Rule = "mbr-boot-disk-size" // an MBR boot disk over 2 TiB
	RuleNoOS       Rule = "os-missing"         // file systems, but no operating system on them
	RuleOS         Rule = "os"                 // a system VM Import imports no version of
	RuleOSVersion  Rule = "os-version"         // a version of a system that is not on the list
	RuleBootMode   Rule = "boot-mode"          // a boot mode VM Import does not boot the system in
)

// Violation is one rule an image breaks.
type Violation struct {
	Rule Rule `json:"rule"`
	// Disk is the disk concerned (0: the boot disk), -1 for the image.
	Disk    int    `json:"disk"`
	Message string `json:"message"`
}

func (v Violation) Error() string { return v.Message }

// Check returns every rule img breaks, in the order of the Rule constants.
// What the image does not say (an unknown OS, an unread boot disk) breaks
// nothing: VM Import decides it at import, and preflight says so.
func (r *Rules) Check(img Image) []Violation {
	var out []Violation
	add := func(rule Rule, d int, format string, args ...any) {
		out = append(out, Violation{Rule: rule, Disk: d, Message: fmt.Sprintf(format, args...)})
	}
	if !img.Snapshot && len(img.Disks) > r.Limits.ImageVolumes {
		add(RuleVolumes, -1, "the image has %d disks; ImportImage takes at most %d (more are imported one by one with ImportSnapshot)",
			len(img.Disks), r.Limits.ImageVolumes)
	}
	for i, size := range img.Disks {
		if size > r.Limits.VolumeMaxBytes {
			add(RuleVolumeSize, i, "disk %d is %s; an EBS volume holds at most %s", i+1, iec(size), iec(r.Limits.VolumeMaxBytes))
		}
	}
	if errors.Is(img.BootErr, disk.ErrNoPartitionTable) {
		add(RulePartitions, 0, "the boot disk has no valid partition table (MBR or GPT)")
	}
	if b := img.Boot; b != nil && img.BootErr == nil {
		switch {
		case img.BootMode == UEFI && !b.UEFI:
			add(RuleBootTable, 0, "boot mode uefi needs a GPT boot disk with an EFI system partition; this disk has %s", describeTable(b.Table))
		case img.BootMode == BIOS && !b.BIOS:
			add(RuleBootTable, 0, "boot mode legacy-bios needs an MBR boot disk (or GPT with a BIOS boot partition); this disk has %s", describeTable(b.Table))
		}
		if i := b.Encrypted(); i >= 0 {
			add(RuleEncrypted, 0, "partition %d of the boot disk is an encrypted volume (%s); VM Import does not import encrypted volumes", i+1, b.FileSystems[i])
		} else if !b.Recognised() {
			add(RulePartitions, 0, "no partition of the boot disk holds a file system VM Import reads (ext2/3/4, xfs, btrfs, NTFS, FAT)")
		}
		if b.Table.Style == disk.StyleMBR && len(img.Disks) > 0 && img.Disks[0] > r.Limits.MBRBootDiskBytes {
			add(RuleMBRSize, 0, "the boot disk is %s with an MBR partition table, which addresses at most %s", iec(img.Disks[0]), iec(r.Limits.MBRBootDiskBytes))
		}
		if b.Recognised() && b.Platform == "" && b.Encrypted() < 0 {
			add(RuleNoOS, 0, "the boot disk's file systems hold no operating system VM Import recognises (no /etc/os-release, no Windows system partition)")
		}
	}
	if img.OS.ID == "" {
		return out
	}
	sys := r.System(img.OS.ID)
	if sys == nil {
		add(RuleOS, -1, "%s is not an operating system VM Import imports", img.OS.Title())
		return out
	}
	if img.OS.Version != "" {
		rel, m := sys.Release(img.OS.Version)
		if m == NoMatch {
			add(RuleOSVersion, -1, "%s %s is not a version VM Import imports (it imports %s %s)", sys.Name, img.OS.Version, sys.Name, sys.Versions())
			return out
		}
		if img.BootMode != "" && !slices.Contains(rel.BootModes, img.BootMode) {
			add(RuleBootMode, -1, "VM Import boots %s %s in %s only, not %s", sys.Name, img.OS.Version, strings.Join(rel.BootModes, " or "), img.BootMode)
		}
		return out
	}
	if img.BootMode != "" && !slices.ContainsFunc(sys.Releases, func(rel Release) bool { return slices.Contains(rel.BootModes, img.BootMode) }) {
		add(RuleBootMode, -1, "VM Import boots no version of %s in %s", sys.Name, img.BootMode)
	}
	return out
}

func describeTable(t disk.PartitionTable) string {
	switch {
	case t.Style == disk.StyleMBR:
		return "an MBR partition table"
	case t.Has(disk.GPTTypeESP):
		return "GPT with an EFI system partition"
	}
	return "GPT without an EFI system partition"
}

func iec(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

// BootModes are the boot modes VM Import boots a system's version in (all
// its releases' when the version is not known); nil for a system it does
// not import.
func (r *Rules) BootModes(o OS) []string {
	sys := r.System(o.ID)
	if sys == nil {
		return nil
	}
	if o.Version != "" {
		if rel, m := sys.Release(o.Version); m != NoMatch {
			return rel.BootModes
		}
		return nil
	}
	var out []string
	for _, rel := range sys.Releases {
		for _, m := range rel.BootModes {
			if !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return out
}
