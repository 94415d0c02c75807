package emulator

import (
	"io"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/vmimport"
)

// What VM Import checks on the boot disk of an ImportImage before it
// converts the guest: a partition table that suits the boot mode, a file
// system it can read, an operating system on it, and that system and its
// boot mode on VM Import's list. The emulator reads the converted disk (the
// snapshot content) as the importer reads the volume, with pkg/disk's
// probes, and holds it to pkg/vmimport's rules: the ones preflight applies
// before a run, so what preflight calls a blocker the emulator refuses.

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

// refusal words a broken rule as VM Import's StatusMessage.
func refusal(v vmimport.Violation) error {
	switch v.Rule {
	case vmimport.RulePartitions:
		return errNoPartitions
	case vmimport.RuleNoOS:
		return errUnknownOS
	case vmimport.RuleEncrypted:
		return fail("ClientError: Unsupported volume: %s", v.Message)
	case vmimport.RuleBootTable, vmimport.RuleBootMode:
		return fail("ClientError: Unsupported boot mode: %s", v.Message)
	case vmimport.RuleOS:
		return fail("ClientError: Unsupported OS: %s", v.Message)
	case vmimport.RuleOSVersion:
		return fail("ClientError: Unsupported OS version: %s", v.Message)
	case vmimport.RuleVolumes:
		return fail("ClientError: Too many volumes: %s", v.Message)
	case vmimport.RuleVolumeSize, vmimport.RuleMBRSize:
		return fail("ClientError: Unsupported volume size: %s", v.Message)
	}
	return fail("ClientError: %s", v.Message)
}

// inspectBootDisk checks the boot disk (disks holds the virtual size of
// every disk of the image, the boot disk first) against the requested boot
// mode ("" or uefi-preferred: whatever the disk supports) and VM Import's
// rules, and detects its OS.
func inspectBootDisk(d io.ReaderAt, disks []int64, bootMode string) (Guest, error) {
	var g Guest
	b, err := disk.InspectBoot(d, disks[0])
	if err != nil {
		return g, errNoPartitions
	}
	g.PartitionStyle = b.Table.Style
	switch {
	case bootMode == vmimport.UEFI || bootMode == vmimport.BIOS:
		// Check says whether the table suits it.
	case !b.UEFI && b.BIOS:
		bootMode = vmimport.BIOS
	case b.UEFI:
		bootMode = vmimport.UEFI
	default:
		return g, errNoPartitions
	}
	img := vmimport.Image{BootMode: bootMode, Disks: disks, Boot: &b, OS: vmimport.OS{Platform: b.Platform}}
	if b.Platform == disk.PlatformLinux {
		// The importer identifies Windows from its registry, which the
		// emulator does not read: only Linux's os-release is checked.
		img.OS.ID, img.OS.Version, img.OS.Name = b.OSRelease.ID, b.OSRelease.VersionID, b.OSRelease.Title()
	}
	if vs := vmimport.Get().Check(img); len(vs) > 0 {
		return g, refusal(vs[0])
	}
	g.Platform, g.FileSystem, g.Distribution, g.BootMode = b.Platform, b.SystemFS, b.OSRelease.Title(), bootMode
	g.RootOffset, g.RootSize = b.System.Offset, b.System.Size
	return g, nil
}

// checkVolumes holds an image's disks to VM Import's count and size limits
// before anything is converted.
func checkVolumes(n int) error {
	if vs := vmimport.Get().Check(vmimport.Image{Disks: make([]int64, n)}); len(vs) > 0 {
		return refusal(vs[0])
	}
	return nil
}

// checkVolumeSize refuses a converted disk larger than an EBS volume.
func checkVolumeSize(i int, size int64) error {
	sizes := make([]int64, i+1)
	sizes[i] = size
	for _, v := range vmimport.Get().Check(vmimport.Image{Disks: sizes, Snapshot: true}) {
		if v.Rule == vmimport.RuleVolumeSize {
			return refusal(v)
		}
	}
	return nil
}
