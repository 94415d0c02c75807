package emulator

import (
	"fmt"
	"strings"
	"time"
)

// consoleOutput is what the instance's serial console has shown after up of
// its boot time: nothing for the first half, the firmware and the first
// kernel (or Windows setup) lines until the end, then the rest — a login
// prompt after cloud-init, EC2Launch's "Windows is Ready to use", or the
// firmware giving up on a disk without an operating system.
func consoleOutput(in *Instance, up, boot time.Duration) string {
	if up < boot/2 {
		return ""
	}
	lines := bootLines(in)
	if up < boot {
		lines = lines[:min(len(lines), 3)]
	}
	return strings.Join(lines, "\r\n") + "\r\n"
}

func bootLines(in *Instance) []string {
	g := in.Boot
	host := hostName(in.PrivateIP)
	var fw []string
	if g.BootMode == "uefi" {
		fw = []string{"BdsDxe: loading Boot0001 \"UEFI Amazon Elastic Block Store vol\" from PciRoot(0x0)/Pci(0x4,0x0)/NVMe(0x1,00-00-00-00-00-00-00-00)"}
	} else {
		fw = []string{"SeaBIOS (version 1.11.0-2.amzn2)", "Booting from Hard Disk..."}
	}
	switch {
	case !g.Boots && g.BootMode == "uefi":
		return append(fw, "BdsDxe: failed to load Boot0001 \"UEFI Amazon Elastic Block Store vol\": Not Found",
			"BdsDxe: No bootable option or device was found.", "BdsDxe: Press any key to enter the Boot Manager Menu.")
	case !g.Boots:
		return append(fw, "Boot failed: not a bootable disk", "", "No bootable device.")
	case g.Platform == "Windows":
		return append(fw,
			"Windows Boot Manager: loading \\Windows\\system32\\winload.exe",
			"2026/01/01 00:00:05Z: EC2Launch: Windows sysprep configuration complete.",
			"2026/01/01 00:00:09Z: EC2Launch: Message: Waiting for meta-data accessibility...",
			"2026/01/01 00:00:10Z: EC2Launch: Message: Meta-data is now available.",
			"2026/01/01 00:00:12Z: EC2Launch: AMI Origin Version: 2026.01.01",
			fmt.Sprintf("2026/01/01 00:00:14Z: EC2Launch: Computer Name: %s", strings.ToUpper(host)),
			"2026/01/01 00:00:20Z: EC2Launch: Message: Windows is Ready to use")
	}
	name := g.Distribution
	if name == "" {
		name = "Linux"
	}
	return append(fw,
		"[    0.000000] Linux version 5.15.0-1051-aws (buildd@lcy02-amd64) #56-generic SMP",
		"[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz root=/dev/nvme0n1p1 ro console=tty1 console=ttyS0",
		fmt.Sprintf("[    2.104417] %s (nvme0n1p1): mounted filesystem with ordered data mode. Quota mode: none.", fsName(g.FileSystem)),
		"[  OK  ] Reached target Multi-User System.",
		"[   11.682190] cloud-init[612]: Cloud-init v. 23.4.4 running 'modules:final' at Thu, 01 Jan 2026 00:00:11 +0000. Up 11.50 seconds.",
		"[   11.902334] cloud-init[612]: Cloud-init v. 23.4.4 finished at Thu, 01 Jan 2026 00:00:11 +0000. Datasource DataSourceEc2Local.  Up 11.89 seconds",
		"",
		name+" "+host+" ttyS0",
		"",
		host+" login: ")
}

func fsName(fs string) string {
	if fs == "" {
		return "EXT4-fs"
	}
	return strings.ToUpper(fs) + "-fs"
}
