package build

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rehost/rehost/appliance/internal/boot"
)

// grubModules go into the BIOS core image: the disk and partition table,
// the EFI system partition's FAT, and what boot.Config's script uses.
// (Debian's signed GRUB for UEFI has them built in.)
var grubModules = []string{"biosdisk", "part_gpt", "fat", "normal", "configfile", "linux", "loadenv", "test",
	"regexp", "echo", "sleep", "serial", "terminal", "halt", "reboot"}

// grubTool is a program of the pinned grub-common package, run from where
// the build unpacked it (its libraries are the host's: appliance/tools.sh
// installs them).
func grubTool(pkgs, name string) string {
	return filepath.Join(pkgs, "grub-common", "usr", "bin", name)
}

// checkConfig has GRUB's own parser check the generated configuration, so
// a mistake fails the build rather than the boot.
func checkConfig(ctx context.Context, pkgs, work string) error {
	p := filepath.Join(work, "grub.cfg")
	if err := os.WriteFile(p, []byte(boot.Config(KernelArgs)), 0o644); err != nil {
		return err
	}
	return run(ctx, nil, grubTool(pkgs, "grub-script-check"), p)
}

// coreImage makes GRUB's BIOS core image with the pinned grub-mkimage and
// modules: it reads its configuration from the EFI system partition (the
// BIOS boot disk's partition 2), where the signed UEFI GRUB reads it too.
// grub-mkimage's output depends only on its inputs.
func coreImage(ctx context.Context, pkgs, out string) ([]byte, error) {
	mods := filepath.Join(pkgs, "grub-pc-bin", "usr", "lib", "grub", "i386-pc")
	args := append([]string{"-O", "i386-pc", "-d", mods, "-o", out, "-p", "(hd0,gpt2)/" + filepath.Dir(boot.ConfigPath)}, grubModules...)
	if err := run(ctx, nil, grubTool(pkgs, "grub-mkimage"), args...); err != nil {
		return nil, err
	}
	return os.ReadFile(out)
}

// installBIOS does what grub-bios-setup would, on the image file: GRUB's
// boot sector code into the protective MBR (keeping its partition entry),
// told where the core image starts, and the core image into the BIOS boot
// partition, its first sector told where the rest of it lies.
func installBIOS(f *os.File, bootImg, core []byte) error {
	const (
		sector        = 512
		kernelSector  = 0x5c  // GRUB_BOOT_MACHINE_KERNEL_SECTOR: LBA of the core image
		driveCheck    = 0x66  // GRUB_BOOT_MACHINE_DRIVE_CHECK
		partStart     = 0x1b8 // GRUB_BOOT_MACHINE_PART_START: keep the MBR's from here on
		blocklist     = sector - 12
		blocklistLen  = blocklist + 8
		coreLBA       = BIOSOff / sector
		maxCoreSector = BIOSSize / sector
	)
	if len(bootImg) != sector {
		return fmt.Errorf("GRUB boot.img: %d bytes, want %d", len(bootImg), sector)
	}
	if pad := len(core) % sector; pad != 0 {
		core = append(core, make([]byte, sector-pad)...)
	}
	sectors := len(core) / sector
	if sectors > maxCoreSector {
		return fmt.Errorf("GRUB core image: %d sectors, the BIOS boot partition holds %d", sectors, maxCoreSector)
	}
	// grub-mkimage fills the first blocklist's length: the sectors after
	// the first.
	if n := binary.LittleEndian.Uint16(core[blocklistLen:]); int(n) != sectors-1 {
		return fmt.Errorf("GRUB core image: its blocklist names %d sectors, the image has %d after the first", n, sectors-1)
	}
	binary.LittleEndian.PutUint64(core[blocklist:], coreLBA+1)
	mbr := make([]byte, sector)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return fmt.Errorf("read the protective MBR: %w", err)
	}
	copy(mbr[:partStart], bootImg[:partStart])
	binary.LittleEndian.PutUint64(mbr[kernelSector:], coreLBA)
	// NOP the jump over the workaround for BIOSes that pass a floppy's
	// drive number when booting a disk (the boot drive becomes 0x80), as
	// grub-bios-setup does for a hard disk.
	mbr[driveCheck], mbr[driveCheck+1] = 0x90, 0x90
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return err
	}
	_, err := f.WriteAt(core, BIOSOff)
	return err
}
