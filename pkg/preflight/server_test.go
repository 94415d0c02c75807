package preflight

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
)

const gib = int64(1) << 30

func vmWith(f func(*source.VM)) source.VM {
	vm := source.VM{ID: "vm-1", Name: "web-01", GuestOS: "Ubuntu Linux (64-bit)", GuestID: "ubuntu64Guest", GuestVersion: "22.04",
		Firmware: source.FirmwareBIOS, PowerState: "poweredOn", ToolsRunning: true, CBTEnabled: true, HardwareVersion: "vmx-19",
		Disks: []source.Disk{{Key: "2000", Label: "Hard disk 1", CapacityBytes: 40 * gib}}}
	if f != nil {
		f(&vm)
	}
	return vm
}

func codes(fs []Finding) string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f.Level)+":"+f.Code)
	}
	return strings.Join(out, " ")
}

var (
	mbrLinux = &disk.BootDisk{Table: disk.PartitionTable{Style: disk.StyleMBR, Partitions: []disk.Partition{{Offset: 1 << 20, Size: gib}}},
		FileSystems: []string{disk.FSExt4}, BIOS: true, Platform: disk.PlatformLinux, SystemFS: disk.FSExt4,
		OSRelease: disk.OSRelease{ID: "ubuntu", VersionID: "22.04", PrettyName: "Ubuntu 22.04.3 LTS"}}
	gptWindows = &disk.BootDisk{Table: disk.PartitionTable{Style: disk.StyleGPT, Partitions: []disk.Partition{{Offset: 1 << 20, Size: gib, TypeGUID: disk.GPTTypeESP}, {Offset: 2 << 30, Size: gib}}},
		FileSystems: []string{disk.FSFAT, disk.FSNTFS}, UEFI: true, Platform: disk.PlatformWindows, SystemFS: disk.FSNTFS}
)

// Each check on a VM that trips only it (and what the others say of a
// ready VM), with the level and code every surface shows.
func TestServerChecks(t *testing.T) {
	many := make([]source.Disk, 23)
	for i := range many {
		many[i] = source.Disk{Key: fmt.Sprint(i), CapacityBytes: gib}
	}
	for _, c := range []struct {
		name string
		in   Input
		want string
	}{
		{"ready", Input{VM: vmWith(nil)}, ""},
		{"ready, boot disk read", Input{VM: vmWith(nil), Boot: mbrLinux}, "note:BOOT_DISK_READ"},
		{"version unknown", Input{VM: vmWith(func(v *source.VM) { v.GuestVersion = "" })}, "note:OS_VERSION_UNKNOWN"},
		{"source refuses", Input{VM: vmWith(func(v *source.VM) { v.Warnings = []string{"will be refused: disk data-1 is an unmanaged VHD"} })}, "blocker:SOURCE_REFUSES"},
		{"source warns", Input{VM: vmWith(func(v *source.VM) { v.Warnings = []string{"trusted launch: the vTPM is not carried over"} })}, "warning:SOURCE_WARNING"},
		{"no disks", Input{VM: vmWith(func(v *source.VM) { v.Disks = nil })}, "blocker:NO_DISKS"},
		{"independent", Input{VM: vmWith(func(v *source.VM) {
			v.Disks = append(v.Disks, source.Disk{Label: "Hard disk 2", CapacityBytes: gib, Mode: source.DiskIndependent})
		})}, "blocker:DISK_INDEPENDENT note:CHANGE_TRACKING_UNAVAILABLE"},
		{"rdm", Input{VM: vmWith(func(v *source.VM) {
			v.Disks = append(v.Disks, source.Disk{CapacityBytes: gib, RawDevice: "physical RDM naa.600"})
		})}, "blocker:DISK_RAW_DEVICE note:CHANGE_TRACKING_UNAVAILABLE"},
		{"shared", Input{VM: vmWith(func(v *source.VM) { v.Disks[0].Shared = true })}, "blocker:DISK_SHARED note:CHANGE_TRACKING_UNAVAILABLE"},
		{"encrypted", Input{VM: vmWith(func(v *source.VM) { v.Disks[0].Encrypted = true })}, "blocker:DISK_ENCRYPTED"},
		{"17 TiB", Input{VM: vmWith(func(v *source.VM) {
			v.Firmware = source.FirmwareEFI
			v.Disks = append(v.Disks, source.Disk{CapacityBytes: 17 << 40})
		})}, "blocker:DISK_TOO_LARGE"},
		{"23 disks", Input{VM: vmWith(func(v *source.VM) { v.Disks = many })}, "warning:VOLUMES_OVER_IMAGE_LIMIT"},
		{"23 disks, snapshot import", Input{VM: vmWith(func(v *source.VM) { v.Disks = many }), SnapshotImport: true}, ""},
		{"uefi on mbr", Input{VM: vmWith(func(v *source.VM) { v.Firmware = source.FirmwareEFI }), Boot: mbrLinux}, "blocker:BOOT_FIRMWARE_MISMATCH note:BOOT_DISK_READ"},
		{"no partitions", Input{VM: vmWith(nil), BootErr: fmt.Errorf("read: %w", disk.ErrNoPartitionTable)}, "blocker:BOOT_DISK_NO_PARTITIONS"},
		{"unreadable", Input{VM: vmWith(nil), BootErr: errors.New("open \\\\hv01\\vms\\web.vhdx: sharing violation")}, "warning:BOOT_DISK_UNREADABLE"},
		{"3 TiB mbr read", Input{VM: vmWith(func(v *source.VM) { v.Disks[0].CapacityBytes = 3 << 40 }), Boot: mbrLinux}, "blocker:BOOT_DISK_OVER_MBR_LIMIT note:BOOT_DISK_READ"},
		{"3 TiB bios unread", Input{VM: vmWith(func(v *source.VM) { v.Disks[0].CapacityBytes = 3 << 40 })}, "warning:BOOT_DISK_OVER_MBR_LIMIT"},
		{"3 TiB uefi unread", Input{VM: vmWith(func(v *source.VM) { v.Disks[0].CapacityBytes = 3 << 40; v.Firmware = source.FirmwareEFI })}, ""},
		{"no os on the disk", Input{VM: vmWith(nil), Boot: &disk.BootDisk{Table: mbrLinux.Table, FileSystems: []string{disk.FSExt4}, BIOS: true}}, "blocker:BOOT_DISK_NO_OS note:BOOT_DISK_READ"},
		{"luks", Input{VM: vmWith(nil), Boot: &disk.BootDisk{Table: mbrLinux.Table, FileSystems: []string{disk.FSLUKS}, BIOS: true}}, "blocker:GUEST_VOLUME_ENCRYPTED note:BOOT_DISK_READ"},
		{"freebsd", Input{VM: vmWith(func(v *source.VM) {
			v.GuestOS, v.GuestID, v.GuestVersion = "FreeBSD 14 (64-bit)", "freebsd14_64Guest", ""
		})}, "blocker:OS_UNSUPPORTED"},
		{"ubuntu 10.04", Input{VM: vmWith(func(v *source.VM) { v.GuestVersion = "10.04" })}, "blocker:OS_VERSION_UNSUPPORTED"},
		{"2012 R2 on uefi", Input{VM: vmWith(func(v *source.VM) {
			v.GuestOS, v.GuestID, v.GuestVersion, v.Firmware = "Microsoft Windows Server 2012 R2 (64-bit)", "windows8Server64Guest", "", source.FirmwareEFI
		})}, "blocker:BOOT_MODE_UNSUPPORTED"},
		{"unknown os", Input{VM: vmWith(func(v *source.VM) { v.GuestOS, v.GuestID, v.GuestVersion = "", "otherGuest64", "" })}, "warning:OS_UNKNOWN"},
		{"empty guest info", Input{VM: vmWith(func(v *source.VM) { v.GuestOS, v.GuestID, v.GuestVersion = "", "", "" })}, "warning:OS_UNKNOWN"},
		{"no tools", Input{VM: vmWith(func(v *source.VM) { v.ToolsRunning = false })}, "warning:QUIESCE_UNAVAILABLE"},
		{"no tools, off", Input{VM: vmWith(func(v *source.VM) { v.ToolsRunning, v.PowerState = false, "poweredOff" })}, ""},
		{"deep chain", Input{VM: vmWith(func(v *source.VM) { v.Snapshots = 4 })}, "warning:SNAPSHOT_CHAIN_DEEP"},
		{"cbt off", Input{VM: vmWith(func(v *source.VM) { v.CBTEnabled = false })}, "note:CHANGE_TRACKING_OFF"},
		{"cbt off with a snapshot, incremental", Input{VM: vmWith(func(v *source.VM) { v.CBTEnabled, v.Snapshots = false, 1 }), Incremental: true}, "warning:CHANGE_TRACKING_UNAVAILABLE"},
		{"vmx-04", Input{VM: vmWith(func(v *source.VM) { v.HardwareVersion = "vmx-04" }), Incremental: true}, "warning:CHANGE_TRACKING_UNAVAILABLE"},
		{"hyper-v 2012", Input{VM: vmWith(func(v *source.VM) { v.ManagerType, v.HardwareVersion = "HYPERV-MANAGER", "5.0" })}, "note:CHANGE_TRACKING_UNAVAILABLE"},
		{"hyper-v 2019", Input{VM: vmWith(func(v *source.VM) { v.ManagerType, v.HardwareVersion = "HYPERV-MANAGER", "9.0" })}, ""},
		{"windows from the disk, version from the setting", Input{VM: vmWith(func(v *source.VM) {
			v.GuestOS, v.GuestID, v.GuestVersion, v.Firmware = "", "windows2019srv_64Guest", "", source.FirmwareEFI
		}), Boot: gptWindows}, "note:BOOT_DISK_READ"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := Server(c.in)
			if got := codes(fs); got != c.want {
				t.Fatalf("findings %q, want %q:\n%+v", got, c.want, fs)
			}
			for _, f := range fs {
				if !strings.HasSuffix(f.Message, ".") || f.Message[0] < 'A' || f.Message[0] > 'Z' {
					t.Errorf("%s: not one sentence: %q", f.Code, f.Message)
				}
				if f.Level != Note && f.Action == "" {
					t.Errorf("%s: a %s without what to do", f.Code, f.Level)
				}
			}
		})
	}
}

func TestStatusOf(t *testing.T) {
	n, w, b := Finding{Level: Note}, Finding{Level: Warning}, Finding{Level: Blocker}
	for _, c := range []struct {
		fs   []Finding
		want Status
	}{{nil, Ready}, {[]Finding{n}, Ready}, {[]Finding{n, w}, ReadyWithWarnings}, {[]Finding{w, b, n}, Blocked}} {
		if got := StatusOf(c.fs); got != c.want {
			t.Errorf("StatusOf(%v) = %s, want %s", c.fs, got, c.want)
		}
	}
	fs := []Finding{n, w, b, {Level: Warning, Code: "second"}}
	Sort(fs)
	if fs[0].Level != Blocker || fs[1].Level != Warning || fs[2].Code != "second" || fs[3].Level != Note {
		t.Errorf("sorted %v", fs)
	}
}

func TestIdentifyGuest(t *testing.T) {
	for _, c := range []struct {
		guestOS, guestID, version string
		boot                      *disk.BootDisk
		want                      string // id version platform
	}{
		{"Ubuntu Linux (64-bit)", "ubuntu64Guest", "", nil, "ubuntu  Linux"},
		{"Ubuntu Linux (64-bit)", "ubuntu64Guest", "22.04", nil, "ubuntu 22.04 Linux"},
		{"", "rhel8_64Guest", "", nil, "rhel 8 Linux"},
		{"Red Hat Enterprise Linux 8 (64-bit)", "rhel8_64Guest", "", mbrLinux, "ubuntu 22.04 Linux"},
		{"Microsoft Windows Server 2019 (64-bit)", "windows2019srv_64Guest", "", nil, "windows-server 2019 Windows"},
		{"Windows Server 2012 R2 Datacenter", "", "", nil, "windows-server 2012 R2 Windows"},
		{"Windows: Windows Server 2022 Datacenter", "", "10.0.20348", nil, "windows-server 2022 Windows"},
		{"Linux: ubuntu 22.04", "", "", nil, "ubuntu 22.04 Linux"},
		{"Linux", "", "", nil, " Linux"},
		{"Debian GNU/Linux 12 (bookworm)", "", "", nil, "debian 12 Linux"},
		{"SUSE Linux Enterprise Server 15 SP5", "", "", nil, "sles 15.5 Linux"},
		{"Rocky Linux 8.9 (Green Obsidian)", "", "", nil, "rocky 8.9 Linux"},
		{"", "windows9Server64Guest", "", gptWindows, "windows-server 2016 Windows"},
		{"", "", "", gptWindows, " Windows"},
		{"", "otherGuest64", "", nil, " "},
		{"", "", "", nil, " "},
	} {
		g := IdentifyGuest(source.VM{GuestOS: c.guestOS, GuestID: c.guestID, GuestVersion: c.version}, c.boot)
		if got := strings.TrimSpace(g.ID + " " + g.Version + " " + g.Platform); got != strings.TrimSpace(c.want) {
			t.Errorf("%q %q %q: %q (from %s), want %q", c.guestOS, c.guestID, c.version, got, g.From, c.want)
		}
	}
}
