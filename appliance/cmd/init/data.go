//go:build linux

package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/rehost/rehost/appliance/internal/boot"
	"github.com/rehost/rehost/appliance/internal/gpt"
	"golang.org/x/sys/unix"
)

// findPartition waits for the kernel to show the partition named name (its
// storage driver may still be probing) and returns its device and that of
// the disk holding it.
func findPartition(ctx context.Context, name string, wait time.Duration) (part, disk string, err error) {
	deadline := time.Now().Add(wait)
	for {
		m, _ := filepath.Glob("/sys/class/block/*/uevent")
		for _, ue := range m {
			b, err := os.ReadFile(ue)
			if err != nil || !strings.Contains(string(b), "\nPARTNAME="+name+"\n") && !strings.HasPrefix(string(b), "PARTNAME="+name+"\n") {
				continue
			}
			dir := filepath.Dir(ue)
			real, err := filepath.EvalSymlinks(dir)
			if err != nil {
				continue
			}
			return "/dev/" + filepath.Base(dir), "/dev/" + filepath.Base(filepath.Dir(real)), nil
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("no partition named %q appeared within %s (is the appliance's disk attached, on a controller this kernel drives?)", name, wait)
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// mountData finds the data partition, grows it (and its file system) to
// the end of the disk when the disk was made larger, and mounts it.
func (a *appliance) mountData(ctx context.Context) error {
	part, disk, err := findPartition(ctx, boot.DataName, 60*time.Second)
	if err != nil {
		return err
	}
	grown, err := growTable(disk, part)
	if err != nil {
		// The appliance still works at the old size.
		a.logf("grow the data partition on %s: %v", disk, err)
	} else if grown {
		a.logf("the disk %s grew: data partition extended to its end", disk)
	}
	os.MkdirAll(dataMount, 0o755)
	if err := unix.Mount(part, dataMount, "ext4", unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mount %s (ext4) on %s: %w", part, dataMount, err)
	}
	if err := growFS(part); err != nil {
		a.logf("grow the data file system on %s: %v", part, err)
	}
	for _, d := range []string{stateDir, filepath.Dir(settingsFile), logDir} {
		os.MkdirAll(d, 0o755)
	}
	os.Chmod(stateDir, 0o700)
	a.logf("data partition %s mounted on %s", part, dataMount)
	return nil
}

// growTable extends the data partition to the end of its disk and has the
// kernel re-read the table (nothing on the disk is mounted yet).
func growTable(disk, part string) (bool, error) {
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	size, err := f.Seek(0, 2)
	if err != nil {
		return false, err
	}
	changed, err := gpt.Grow(f, size, boot.DataName)
	if err != nil || !changed {
		return false, err
	}
	if err := f.Sync(); err != nil {
		return false, err
	}
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0); err != nil {
		return true, fmt.Errorf("re-read the partition table: %w (the new size applies after a reboot)", err)
	}
	// The kernel re-adds the partitions at once; devtmpfs makes their
	// device nodes a moment later.
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(part); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true, nil
}

// ext4ResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64): the kernel's
// online resize, what resize2fs asks for on a mounted file system.
const ext4ResizeFS = 0x40086610

// growFS grows the mounted ext4 file system on part to fill the partition.
func growFS(part string) error {
	psize, err := partSize(part)
	if err != nil {
		return err
	}
	f, err := os.Open(part)
	if err != nil {
		return err
	}
	sb := make([]byte, 1024)
	_, err = f.ReadAt(sb, 1024)
	f.Close()
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	if le.Uint16(sb[0x38:]) != 0xef53 {
		return fmt.Errorf("%s holds no ext4 file system", part)
	}
	blockSize := int64(1024) << le.Uint32(sb[0x18:])
	blocks := uint64(le.Uint32(sb[4:]))
	if le.Uint32(sb[0x60:])&0x80 != 0 { // INCOMPAT_64BIT
		blocks |= uint64(le.Uint32(sb[0x150:])) << 32
	}
	want := uint64(psize / blockSize)
	if want <= blocks {
		return nil
	}
	d, err := os.Open(dataMount)
	if err != nil {
		return err
	}
	defer d.Close()
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, d.Fd(), ext4ResizeFS, uintptr(unsafe.Pointer(&want))); errno != 0 {
		return fmt.Errorf("online resize from %d to %d blocks: %w", blocks, want, errno)
	}
	return nil
}

// partSize reads a block device's size from sysfs (in 512-byte sectors).
func partSize(dev string) (int64, error) {
	b, err := os.ReadFile("/sys/class/block/" + filepath.Base(dev) + "/size")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n * 512, err
}
