package preflight

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/vmimport"
)

// Server finding codes. Blockers:
const (
	CodeSourceRefuses        = "SOURCE_REFUSES"          // the source says it will refuse the VM
	CodeNoDisks              = "NO_DISKS"                // nothing to replicate
	CodeDiskIndependent      = "DISK_INDEPENDENT"        // left out of snapshots
	CodeDiskRawDevice        = "DISK_RAW_DEVICE"         // RDM or pass-through
	CodeDiskShared           = "DISK_SHARED"             // multi-writer, shared VHDX
	CodeDiskEncrypted        = "DISK_ENCRYPTED"          // encrypted by the hypervisor
	CodeDiskTooLarge         = "DISK_TOO_LARGE"          // over an EBS volume's size
	CodeGuestVolumeEncrypted = "GUEST_VOLUME_ENCRYPTED"  // LUKS or BitLocker on the boot disk
	CodeFirmwareMismatch     = "BOOT_FIRMWARE_MISMATCH"  // the boot disk's table does not suit the firmware
	CodeNoPartitions         = "BOOT_DISK_NO_PARTITIONS" // no partition table or file system
	CodeMBROverLimit         = "BOOT_DISK_OVER_MBR_LIMIT"
	CodeNoOS                 = "BOOT_DISK_NO_OS"
	CodeOSUnsupported        = "OS_UNSUPPORTED"
	CodeOSVersion            = "OS_VERSION_UNSUPPORTED"
	CodeBootMode             = "BOOT_MODE_UNSUPPORTED"
)

// Warnings and notes:
const (
	CodeOSUnknown         = "OS_UNKNOWN"
	CodeOSVersionUnknown  = "OS_VERSION_UNKNOWN"
	CodeVolumes           = "VOLUMES_OVER_IMAGE_LIMIT"
	CodeBootUnreadable    = "BOOT_DISK_UNREADABLE"
	CodeQuiesce           = "QUIESCE_UNAVAILABLE"
	CodeSnapshotChain     = "SNAPSHOT_CHAIN_DEEP"
	CodeSourceWarning     = "SOURCE_WARNING"
	CodeChangeTracking    = "CHANGE_TRACKING_UNAVAILABLE"
	CodeChangeTrackingOff = "CHANGE_TRACKING_OFF"
	CodeBootDiskRead      = "BOOT_DISK_READ"
)

// DeepChain is the number of existing snapshots from which a VM's chain
// counts as deep: VMware advises no more than two or three, each slows
// the VM's I/O and its export.
const DeepChain = 3

// Input is what preflight knows of a server.
type Input struct {
	VM source.VM
	// Boot is the boot disk as disk.InspectBoot read it through the
	// source, nil when it was not read; BootErr is why not (nil too when
	// the source cannot read disks).
	Boot    *disk.BootDisk
	BootErr error
	// Incremental: the job copies only what changed, so a VM without
	// change tracking would silently fall back to full copies: a warning
	// rather than a note.
	Incremental bool
	// SnapshotImport: the registration imports disk by disk
	// (ImportSnapshot + RegisterImage).
	SnapshotImport bool
}

// BootMode is the boot mode an import of a VM with this firmware asks for.
func BootMode(firmware string) string {
	if firmware == source.FirmwareEFI {
		return vmimport.UEFI
	}
	return vmimport.BIOS
}

// Server checks one server. Findings come in the order of the checks; see
// Sort for severity order.
func Server(in Input) []Finding {
	var fs []Finding
	add := func(l Level, code, disk, action, format string, args ...any) {
		fs = append(fs, Finding{Level: l, Code: code, Disk: disk, Message: sentence(fmt.Sprintf(format, args...)), Action: action})
	}
	vm := in.VM
	for _, w := range vm.Warnings {
		if r, ok := strings.CutPrefix(w, "will be refused: "); ok {
			add(Blocker, CodeSourceRefuses, "", "Change what the source names, then re-import the catalog ('rehost server import').", "The source will refuse this VM: %s.", strings.TrimSuffix(r, "."))
		} else {
			add(Warning, CodeSourceWarning, "", "Read it before migrating; it is not carried over to the AMI.", "The source warns: %s.", strings.TrimSuffix(w, "."))
		}
	}
	if len(vm.Disks) == 0 {
		add(Blocker, CodeNoDisks, "", "Attach the VM's disks, or remove it from the plan.", "The VM has no disks to replicate.")
	}
	for i, d := range vm.Disks {
		label := diskLabel(i, d)
		switch {
		case d.Mode == source.DiskIndependent || d.Mode == source.DiskIndependentNonpersistent:
			add(Blocker, CodeDiskIndependent, label, "Switch the disk to dependent mode (vSphere: Edit Settings, the disk's Disk Mode) or detach it.",
				"%s is an independent disk (%s), which snapshots leave out, so it cannot be copied at a point in time.", label, d.Mode)
		case d.RawDevice != "":
			add(Blocker, CodeDiskRawDevice, label, "Move its data onto a virtual disk (vSphere: migrate the RDM to a VMDK; Hyper-V: copy the pass-through disk into a VHDX) or detach it.",
				"%s maps a physical device (%s); VM Import does not import raw device mappings or pass-through disks.", label, d.RawDevice)
		case d.Shared:
			add(Blocker, CodeDiskShared, label, "Detach the shared disk and migrate its data with the cluster's own tools.",
				"%s is shared with other VMs (multi-writer or a shared VHDX), which cannot be snapshotted or exported with one VM.", label)
		case d.Encrypted:
			add(Blocker, CodeDiskEncrypted, label, "Decrypt the VM (vSphere: apply a storage policy without encryption) before migrating.",
				"%s is encrypted by the hypervisor; an encrypted VM cannot be exported and VM Import does not import encrypted volumes.", label)
		}
	}

	g := IdentifyGuest(vm, in.Boot)
	img := vmimport.Image{OS: g.OS, BootMode: BootMode(vm.Firmware), Snapshot: in.SnapshotImport, Boot: in.Boot, BootErr: in.BootErr}
	for _, d := range vm.Disks {
		img.Disks = append(img.Disks, d.CapacityBytes)
	}
	for _, v := range vmimport.Get().Check(img) {
		fs = append(fs, fromViolation(v, vm, g))
	}
	rules := vmimport.Get()
	noSystem := in.Boot != nil && in.Boot.Platform == "" // a blocker says so
	switch sys := rules.System(g.ID); {
	case noSystem:
	case g.Platform == "" && g.ID == "":
		add(Warning, CodeOSUnknown, "", "Install or start the guest tools (VMware Tools, Hyper-V integration services, the Azure VM agent) so the guest reports its OS, then re-run 'rehost preflight'.",
			"The guest OS is unknown (the source says %q), so whether VM Import imports it is known only at import.", strings.TrimSpace(vm.GuestOS+" "+vm.GuestID))
	case sys != nil && g.Version == "":
		add(Note, CodeOSVersionUnknown, "", "",
			"%s, version not known (from %s): VM Import imports %s %s, and checks the version at import.", sys.Name, g.From, sys.Name, sys.Versions())
	case sys == nil && g.ID == "":
		add(Note, CodeOSVersionUnknown, "", "",
			"A %s guest whose distribution or version is not known (from %s): VM Import checks it at import.", g.Platform, g.From)
	}
	if in.Boot == nil && in.BootErr == nil && vm.Firmware != source.FirmwareEFI && len(vm.Disks) > 0 && vm.Disks[0].CapacityBytes > rules.Limits.MBRBootDiskBytes {
		add(Warning, CodeMBROverLimit, diskLabel(0, vm.Disks[0]), "Check the boot disk's partition table: convert it to GPT (and the VM to UEFI) if it is MBR.",
			"The boot disk is %s and the VM boots with BIOS, which usually means an MBR partition table; VM Import refuses an MBR boot disk over %s.",
			iec(vm.Disks[0].CapacityBytes), iec(rules.Limits.MBRBootDiskBytes))
	}
	if b := in.Boot; b != nil && in.BootErr == nil {
		what := "no operating system"
		if b.Platform != "" {
			what = strings.TrimSpace(b.Platform + " on " + b.SystemFS + " " + paren(b.OSRelease.Title()))
		}
		add(Note, CodeBootDiskRead, bootLabel(vm), "", "Read the boot disk: %s; %s.", describeTable(b.Table), what)
	}
	if in.BootErr != nil && !errors.Is(in.BootErr, disk.ErrNoPartitionTable) {
		add(Warning, CodeBootUnreadable, bootLabel(vm), "Nothing to do before migrating; VM Import checks the boot disk at import. Fix the access to see the result here.",
			"The boot disk could not be read, so its partitions and OS were not checked: %v.", in.BootErr)
	}
	if vm.PowerState == "poweredOn" && !vm.ToolsRunning {
		add(Warning, CodeQuiesce, "", "Install and start the guest tools (VMware Tools, Hyper-V integration services, the Azure VM agent) for application-consistent copies.",
			"The VM runs without guest tools, so its snapshots cannot be quiesced: the copies are crash-consistent.")
	}
	if vm.Snapshots >= DeepChain {
		add(Warning, CodeSnapshotChain, "", "Delete or consolidate the snapshots you no longer need before migrating.",
			"The VM already has %d snapshots; each replication adds one more for its duration, slowing the VM and the export.", vm.Snapshots)
	}
	fs = append(fs, changeTracking(in)...)
	return fs
}

func fromViolation(v vmimport.Violation, vm source.VM, g Guest) Finding {
	f := Finding{Level: Blocker, Message: sentence(v.Message)}
	if v.Disk >= 0 && v.Disk < len(vm.Disks) {
		f.Disk = diskLabel(v.Disk, vm.Disks[v.Disk])
	}
	switch v.Rule {
	case vmimport.RuleVolumes:
		f.Level, f.Code = Warning, CodeVolumes
		f.Message = sentence(v.Message) + " rehost does so: the data disks arrive as EBS snapshots of the AMI."
		f.Action = "Nothing, unless you want ImportImage's driver and OS checks on every disk: then detach the disks beyond 21."
	case vmimport.RuleVolumeSize:
		f.Code, f.Action = CodeDiskTooLarge, "Shrink the disk below 16 TiB, or split its data across disks, before migrating."
	case vmimport.RuleBootTable:
		f.Code = CodeFirmwareMismatch
		f.Action = fmt.Sprintf("Make the firmware match the boot disk: the VM boots with %s; set it to %s, or convert the disk's partition table.",
			firmwareName(vm.Firmware), firmwareName(otherFirmware(vm.Firmware)))
	case vmimport.RuleEncrypted:
		f.Code, f.Action = CodeGuestVolumeEncrypted, "Decrypt the volume inside the guest (BitLocker: manage-bde -off; LUKS: cryptsetup-reencrypt --decrypt) before migrating."
	case vmimport.RulePartitions:
		f.Code, f.Action = CodeNoPartitions, "Make sure the first disk is the boot disk (reorder the VM's disks) and that it holds a partitioned system."
	case vmimport.RuleMBRSize:
		f.Code, f.Action = CodeMBROverLimit, "Convert the boot disk to GPT and the VM to UEFI (an OS VM Import boots with UEFI), or shrink the disk below 2 TiB."
	case vmimport.RuleNoOS:
		f.Code, f.Action = CodeNoOS, "Make sure the first disk is the boot disk; VM Import looks for the OS there."
	case vmimport.RuleOS:
		f.Code, f.Action = CodeOSUnsupported, "Migrate this server another way (rebuild it on an AMI of a supported OS); VM Import cannot import it."
	case vmimport.RuleOSVersion:
		f.Code, f.Action = CodeOSVersion, "Upgrade the guest to a version VM Import imports before migrating."
	case vmimport.RuleBootMode:
		f.Code = CodeBootMode
		f.Action = fmt.Sprintf("Switch the VM to %s firmware (its boot disk's partition table too) or upgrade %s to a version VM Import boots with %s.",
			firmwareName(otherFirmware(vm.Firmware)), g.Title(), firmwareName(vm.Firmware))
	}
	return f
}

// changeTracking says whether an incremental job can copy only what
// changed, from what the VM's configuration says (issue 22's change
// tracking itself lives in the sources).
func changeTracking(in Input) []Finding {
	vm := in.VM
	var why []string
	switch vm.ManagerType {
	case "VSPHERE", "":
		if vm.HardwareVersion != "" {
			if n, ok := versionNumber(strings.TrimPrefix(vm.HardwareVersion, "vmx-")); ok && n < 7 {
				why = append(why, fmt.Sprintf("its virtual hardware %s predates vmx-07, which changed block tracking needs", vm.HardwareVersion))
			}
		}
		if !vm.CBTEnabled && vm.Snapshots > 0 {
			why = append(why, fmt.Sprintf("changed block tracking is off and cannot be switched on while it has %d snapshot(s)", vm.Snapshots))
		}
		for i, d := range vm.Disks {
			switch {
			case d.Mode == source.DiskIndependent || d.Mode == source.DiskIndependentNonpersistent:
				why = append(why, diskLabel(i, d)+" is independent")
			case d.Shared:
				why = append(why, diskLabel(i, d)+" is multi-writer")
			case d.RawDevice != "":
				why = append(why, diskLabel(i, d)+" is a raw device mapping")
			}
		}
	case "HYPERV-MANAGER", "SCVMM":
		if vm.HardwareVersion != "" {
			if n, ok := versionNumber(vm.HardwareVersion); ok && n < 8 {
				why = append(why, fmt.Sprintf("its configuration version %s predates Windows Server 2016 (8.0), whose resilient change tracking incremental copies need", vm.HardwareVersion))
			}
		}
		for i, d := range vm.Disks {
			if d.RawDevice != "" || d.Shared {
				why = append(why, diskLabel(i, d)+" is not a VHDX of its own")
			}
		}
	}
	level := Note
	if in.Incremental {
		level = Warning
	}
	if len(why) > 0 {
		return []Finding{{Level: level, Code: CodeChangeTracking,
			Message: "Incremental runs would copy every disk in full: " + strings.Join(why, "; ") + ".",
			Action:  "Upgrade the VM's hardware or configuration version, delete its snapshots, or make the disks dependent and unshared, then re-run 'rehost preflight'."}}
	}
	if (vm.ManagerType == "VSPHERE" || vm.ManagerType == "") && !vm.CBTEnabled && len(vm.Disks) > 0 {
		return []Finding{{Level: Note, Code: CodeChangeTrackingOff,
			Message: "Changed block tracking is off; it can be switched on (the VM has no snapshot), which an incremental job does at its first run."}}
	}
	return nil
}

func versionNumber(s string) (int, bool) {
	major, _, _ := strings.Cut(s, ".")
	n, err := strconv.Atoi(major)
	return n, err == nil
}

func diskLabel(i int, d source.Disk) string {
	if d.Label != "" {
		return fmt.Sprintf("disk %d (%s)", i+1, d.Label)
	}
	return fmt.Sprintf("disk %d", i+1)
}

func bootLabel(vm source.VM) string {
	if len(vm.Disks) == 0 {
		return ""
	}
	return diskLabel(0, vm.Disks[0])
}

func firmwareName(f string) string {
	if f == source.FirmwareEFI {
		return "UEFI"
	}
	return "BIOS"
}

func otherFirmware(f string) string {
	if f == source.FirmwareEFI {
		return source.FirmwareBIOS
	}
	return source.FirmwareEFI
}

func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return "(" + s + ")"
}

func describeTable(t disk.PartitionTable) string {
	n := len(t.Partitions)
	switch {
	case t.Style == disk.StyleGPT && t.Has(disk.GPTTypeESP):
		return fmt.Sprintf("GPT with an EFI system partition, %d partitions", n)
	case t.Style == disk.StyleGPT:
		return fmt.Sprintf("GPT without an EFI system partition, %d partitions", n)
	}
	return fmt.Sprintf("MBR, %d partitions", n)
}

func iec(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }
