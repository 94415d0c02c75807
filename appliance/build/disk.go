package build

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/rehost/rehost/appliance/internal/boot"
)

// makeDisk writes the raw appliance disk: a GPT with the BIOS boot
// partition (GRUB's core image), the EFI system partition, system
// partitions A (the system image) and B (empty until the first upgrade)
// and the data partition; GRUB's boot code in the protective MBR; then
// every file system into its place.
func makeDisk(ctx context.Context, o Options, raw, sys, work, pkgs string) error {
	dataSize := o.DiskSize - DataOff - mib // 1 MiB left for the backup GPT
	data := filepath.Join(work, "data.ext4")
	if err := makeData(ctx, o, data, filepath.Join(work, "data"), dataSize); err != nil {
		return err
	}
	if err := checkConfig(ctx, pkgs, work); err != nil {
		return fmt.Errorf("GRUB's configuration: %w", err)
	}
	esp := filepath.Join(work, "esp.img")
	if err := makeESP(ctx, o, esp, work, pkgs); err != nil {
		return err
	}
	core, err := coreImage(ctx, pkgs, filepath.Join(work, "core.img"))
	if err != nil {
		return err
	}
	bootImg, err := os.ReadFile(filepath.Join(pkgs, "grub-pc-bin", "usr", "lib", "grub", "i386-pc", "boot.img"))
	if err != nil {
		return err
	}
	if err := truncate(raw, o.DiskSize); err != nil {
		return err
	}
	const sector = 512
	type part struct {
		off, size int64
		typ, name string
	}
	parts := []part{
		{BIOSOff, BIOSSize, "21686148-6449-6E6F-744E-656564454649", boot.BIOSName},
		{ESPOff, ESPSize, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", boot.ESPName},
		{SystemAOff, SystemSize, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", boot.SlotA.PartName()},
		{SystemBOff, SystemSize, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", boot.SlotB.PartName()},
		{DataOff, dataSize, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", boot.DataName},
	}
	var script strings.Builder
	fmt.Fprintf(&script, "label: gpt\nlabel-id: %s\nunit: sectors\nfirst-lba: 2048\n\n", uuidString(uuidFrom(o.Version, "disk")))
	for _, p := range parts {
		fmt.Fprintf(&script, "start=%d, size=%d, type=%s, uuid=%s, name=%q\n",
			p.off/sector, p.size/sector, p.typ, uuidString(uuidFrom(o.Version, p.name+" partition")), p.name)
	}
	sfdisk, err := lookTool("sfdisk")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, sfdisk, "--no-reread", "--no-tell-kernel", "-q", raw)
	cmd.Stdin = strings.NewReader(script.String())
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("sfdisk %s: %w: %s", raw, err, b)
	}
	f, err := os.OpenFile(raw, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := installBIOS(f, bootImg, core); err != nil {
		return err
	}
	for _, p := range []struct {
		src string
		off int64
	}{{esp, ESPOff}, {sys, SystemAOff}, {data, DataOff}} {
		if err := copyInto(f, p.src, p.off); err != nil {
			return err
		}
	}
	return f.Close()
}

// DataDirs are the data partition's top-level directories: the connector's
// state (rehost serve --state-dir), the appliance's own settings (network,
// NTP) and its logs.
var DataDirs = map[string]os.FileMode{"state": 0o700, "appliance": 0o755, "log": 0o755}

// makeData makes the ext4 data partition with mkfs.ext4 -d: fixed UUID,
// hash seed and time (E2FSPROGS_FAKE_TIME), so it is the same every build.
func makeData(ctx context.Context, o Options, img, root string, size int64) error {
	for d, mode := range DataDirs {
		if err := os.MkdirAll(filepath.Join(root, d), mode); err != nil {
			return err
		}
		if err := os.Chmod(filepath.Join(root, d), mode); err != nil {
			return err
		}
	}
	if err := setTimes(root, o.Epoch); err != nil {
		return err
	}
	mkfs, err := lookTool("mkfs.ext4")
	if err != nil {
		return err
	}
	uuid := uuidString(uuidFrom(o.Version, "data file system"))
	fake := []string{fmt.Sprintf("E2FSPROGS_FAKE_TIME=%d", o.Epoch.Unix())}
	// Room to grow a thousand-fold online (resize_inode reserves GDT
	// blocks for it); 64-bit so it can pass 16 TiB.
	if err := run(ctx, fake, mkfs,
		"-q", "-F", "-t", "ext4", "-b", "4096", "-L", boot.DataName, "-U", uuid,
		"-O", "64bit,resize_inode", "-E", "root_owner=0:0,hash_seed="+uuid+",resize="+fmt.Sprint(size/4096*1024),
		"-d", root, img, fmt.Sprintf("%dk", size/1024)); err != nil {
		return err
	}
	// mkfs.ext4 -d copies each file's change time, which no one can set:
	// it is when the build made the directory. Set it to the epoch.
	debugfs, err := lookTool("debugfs")
	if err != nil {
		return err
	}
	cmds := filepath.Join(filepath.Dir(root), "debugfs.cmds")
	var b strings.Builder
	for _, p := range append([]string{"/"}, sortedKeys(dataDirSet())...) {
		fmt.Fprintf(&b, "sif %s ctime @%d\n", p, o.Epoch.Unix())
	}
	if err := os.WriteFile(cmds, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return run(ctx, fake, debugfs, "-w", "-f", cmds, img)
}

func dataDirSet() map[string]bool {
	m := map[string]bool{}
	for d := range DataDirs {
		m["/"+d] = true
	}
	return m
}

func copyInto(dst *os.File, src string, off int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if _, err := io.Copy(io.NewOffsetWriter(dst, off), in); err != nil {
		return fmt.Errorf("copy %s into the disk: %w", src, err)
	}
	return nil
}
