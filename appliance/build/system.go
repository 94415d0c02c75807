package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// KernelArgs is the kernel command line of both boot loaders: the consoles
// (VGA and the first serial port; the init writes to both itself), a reboot
// ten seconds after a panic, and quiet kernel messages so the console shows
// the appliance's screen. A static address can be added at the boot
// prompt as rehost.net=ADDRESS/PREFIX,GATEWAY[,DNS...] (docs/appliance.md).
const KernelArgs = "console=tty0 console=ttyS0,115200n8 panic=10 loglevel=3"

// makeSystem writes the FAT32 system partition image: the kernel and
// initramfs, SYSLINUX for BIOS (installed with its mtools installer, which
// writes to the image file, no mount) and systemd-boot as the removable-media
// boot file for UEFI, each with a configuration that boots at once.
func makeSystem(ctx context.Context, o Options, img, work, pkgs, vmlinuz, initrd string) error {
	esp := filepath.Join(work, "esp")
	files := map[string]string{
		"vmlinuz":              "@" + vmlinuz,
		"initrd.img":           "@" + initrd,
		"EFI/BOOT/BOOTX64.EFI": "@" + filepath.Join(pkgs, "systemd-boot-efi", "usr/lib/systemd/boot/efi/systemd-bootx64.efi"),
		"VERSION":              o.Version + "\n",
		"loader/loader.conf":   "default rehost.conf\ntimeout 0\nconsole-mode keep\neditor yes\n",
		"loader/entries/rehost.conf": fmt.Sprintf("title rehost connector %s\nversion %s\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n",
			o.Version, o.Version, KernelArgs),
		// PROMPT 0 boots at once; holding Shift or Alt shows the prompt,
		// where "rehost rehost.net=…" boots with a static address.
		"syslinux/syslinux.cfg": fmt.Sprintf("SERIAL 0 115200\nDEFAULT rehost\nPROMPT 0\nTIMEOUT 0\nSAY rehost connector %s\n"+
			"LABEL rehost\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND %s\n", o.Version, KernelArgs),
	}
	for name, content := range files {
		p := filepath.Join(esp, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if src, ok := cutAt(content); ok {
			if err := copyFile(p, src); err != nil {
				return err
			}
		} else if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := setTimes(esp, o.Epoch); err != nil {
		return err
	}
	if err := truncate(img, SystemSize); err != nil {
		return err
	}
	epoch := fmt.Sprintf("SOURCE_DATE_EPOCH=%d", o.Epoch.Unix())
	mkfs, err := lookTool("mkfs.vfat")
	if err != nil {
		return err
	}
	volid := uuidFrom(o.Version, "system volume")
	if err := run(ctx, []string{epoch}, mkfs, "-F", "32", "-i", fmt.Sprintf("%x", volid[:4]), img); err != nil {
		return err
	}
	// mtools: no configuration file, no geometry check of a plain file.
	mt := []string{epoch, "MTOOLS_SKIP_CHECK=1", "MTOOLSRC=/dev/null"}
	// The label by mlabel, not mkfs.vfat -n: mkfs.vfat stamps the label's
	// directory entry with the current time whatever SOURCE_DATE_EPOCH
	// says; mlabel honours it. The init checks this label before an upgrade.
	if err := run(ctx, mt, "mlabel", "-i", img, "::REHOST-SYS"); err != nil {
		return err
	}
	entries, err := os.ReadDir(esp)
	if err != nil {
		return err
	}
	args := []string{"-i", img, "-s", "-m", "-Q"}
	for _, e := range entries {
		args = append(args, filepath.Join(esp, e.Name()))
	}
	if err := run(ctx, mt, "mcopy", append(args, "::/")...); err != nil {
		return err
	}
	// The pinned installer writes ldlinux.sys and ldlinux.c32 into
	// /syslinux and the FAT boot sector; the GPT MBR code (gptmbr.bin,
	// written by makeDisk) chains to it.
	syslinux := filepath.Join(pkgs, "syslinux", "usr", "bin", "syslinux")
	return run(ctx, mt, syslinux, "--install", "--directory", "/syslinux", img)
}

func cutAt(s string) (string, bool) {
	if len(s) > 0 && s[0] == '@' {
		return s[1:], true
	}
	return "", false
}

func copyFile(dst, src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func truncate(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
