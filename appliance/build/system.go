package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/rehost/rehost/appliance/internal/boot"
)

// KernelArgs is the kernel command line (GRUB adds rehost.slot=): the
// consoles (VGA and the first serial port; the init writes to both
// itself), a reboot ten seconds after a panic (so a system on trial that
// panics uses up a boot and the boot loader moves on), and quiet kernel
// messages so the console shows the appliance's screen. A static address
// can be added at the boot menu as rehost.net=ADDRESS/PREFIX,GATEWAY[,DNS...]
// (docs/appliance.md).
const KernelArgs = "console=tty0 console=ttyS0,115200n8 panic=10 loglevel=3"

// SystemLabel is the FAT volume label of a system partition image; the
// init checks it after writing an upgrade.
const SystemLabel = "REHOST-SYS"

// makeSystem writes a system partition image: the kernel, the initramfs
// and the version, on FAT32 (GRUB reads it on both firmwares). It is what
// an upgrade writes into the inactive system partition.
func makeSystem(ctx context.Context, o Options, img, work, vmlinuz, initrd string) error {
	return makeFAT(ctx, o, img, filepath.Join(work, "system"), SystemSize, SystemLabel, "system volume", map[string]string{
		"vmlinuz":    "@" + vmlinuz,
		"initrd.img": "@" + initrd,
		"VERSION":    o.Version + "\n",
	})
}

// makeESP writes the EFI system partition: Debian's shim, signed by
// Microsoft's UEFI CA, as the removable-media boot file; Debian's GRUB,
// signed by Debian, beside it (where shim looks); GRUB's configuration and
// environment where that GRUB's built-in prefix (/EFI/debian) points, which
// the BIOS core image shares.
func makeESP(ctx context.Context, o Options, img, work, pkgs string) error {
	env, err := boot.State{Default: boot.SlotA, Versions: map[boot.Slot]string{boot.SlotA: o.Version}}.Env().Marshal()
	if err != nil {
		return err
	}
	return makeFAT(ctx, o, img, filepath.Join(work, "esp"), ESPSize, "REHOST-BOOT", "boot volume", map[string]string{
		"EFI/BOOT/BOOTX64.EFI": "@" + filepath.Join(pkgs, "shim-signed", "usr/lib/shim/shimx64.efi.signed"),
		"EFI/BOOT/grubx64.efi": "@" + filepath.Join(pkgs, "grub-efi-amd64-signed", "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"),
		boot.ConfigPath:        boot.Config(KernelArgs),
		boot.EnvPath:           string(env),
		"VERSION":              o.Version + "\n",
	})
}

// makeFAT writes a FAT32 image of size bytes holding files (name: content,
// or "@path" to copy a file), reproducibly: the volume id derived from the
// version and purpose, every time stamp the build's.
func makeFAT(ctx context.Context, o Options, img, tree string, size int64, label, purpose string, files map[string]string) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		content := files[name]
		p := filepath.Join(tree, filepath.FromSlash(name))
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
	if err := setTimes(tree, o.Epoch); err != nil {
		return err
	}
	if err := truncate(img, size); err != nil {
		return err
	}
	epoch := fmt.Sprintf("SOURCE_DATE_EPOCH=%d", o.Epoch.Unix())
	mkfs, err := lookTool("mkfs.vfat")
	if err != nil {
		return err
	}
	volid := uuidFrom(o.Version, purpose)
	if err := run(ctx, []string{epoch}, mkfs, "-F", "32", "-i", fmt.Sprintf("%x", volid[:4]), img); err != nil {
		return err
	}
	// mtools: no configuration file, no geometry check of a plain file.
	mt := []string{epoch, "MTOOLS_SKIP_CHECK=1", "MTOOLSRC=/dev/null"}
	// The label by mlabel, not mkfs.vfat -n: mkfs.vfat stamps the label's
	// directory entry with the current time whatever SOURCE_DATE_EPOCH
	// says; mlabel honours it.
	if err := run(ctx, mt, "mlabel", "-i", img, "::"+label); err != nil {
		return err
	}
	entries, err := os.ReadDir(tree)
	if err != nil {
		return err
	}
	args := []string{"-i", img, "-s", "-m", "-Q"}
	for _, e := range entries {
		args = append(args, filepath.Join(tree, e.Name()))
	}
	return run(ctx, mt, "mcopy", append(args, "::/")...)
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
