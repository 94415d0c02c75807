// Package guestdisk builds small but real guest disks for tests and the demo:
// a partition table consistent with the boot mode (MBR for BIOS, GPT with an
// EFI system partition for UEFI) and an ext4 root file system holding
// /etc/os-release and the files a Linux importer looks for — or, for a
// Windows guest, an NTFS system partition. It drives the Debian tools a user
// would (sfdisk, mkfs.ext4 -d, mkfs.vfat, mkntfs) on plain files: no mounts,
// loop devices or root.
//
// Output is deterministic for the same Options: fixed UUIDs, hash seed and
// timestamps (E2FSPROGS_FAKE_TIME), so fixtures and images built from it are
// reproducible.
package guestdisk

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rehost/rehost/testdata"
)

// Boot modes, named as source.Firmware* are.
const (
	BIOS = "bios"
	EFI  = "efi"
)

// DebianOSRelease is the default /etc/os-release.
var DebianOSRelease = testdata.OSRelease("debian-12")

const mib = 1 << 20

// Options describe a guest disk.
type Options struct {
	// Size of the whole disk in bytes: a multiple of 1 MiB, at least 32 MiB
	// (BIOS) or 48 MiB (EFI).
	Size int64
	// Firmware is BIOS (MBR, one bootable Linux partition) or EFI (GPT: an
	// EFI system partition, then the root partition). Default BIOS.
	Firmware string
	// OSRelease is /etc/os-release; default DebianOSRelease. Empty content
	// is written as given only when NoOSRelease is set.
	OSRelease   string
	NoOSRelease bool
	// Files are extra files of the root file system, by absolute path.
	Files map[string][]byte
	// DataBytes of seeded pseudo-random content go into /var/lib/fill.bin,
	// so the disk holds data worth comparing byte for byte.
	DataBytes int64
	Seed      uint64
	// UUID of the root file system; default derived from Seed.
	UUID string
	// Windows makes the system partition an empty NTFS volume (mkntfs)
	// instead of the ext4 root: the partition a Windows importer looks
	// for. OSRelease, Files and DataBytes do not apply.
	Windows bool
}

// Tools are the commands Build runs; Missing reports the absent ones.
var Tools = []string{"sfdisk", "mkfs.ext4", "debugfs", "mkfs.vfat", "mkntfs"}

// Missing lists the tools of Tools not on PATH (nor in /sbin, /usr/sbin).
func Missing() []string {
	var out []string
	for _, t := range Tools {
		if _, err := lookPath(t); err != nil {
			out = append(out, t)
		}
	}
	return out
}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: install Debian packages fdisk, e2fsprogs, dosfstools and ntfs-3g", name)
}

// Layout says where Build put the partitions.
type Layout struct {
	ESPOffset, ESPSize   int64 // zero for BIOS
	RootOffset, RootSize int64
}

// Build writes the guest disk as a raw image to path, replacing it.
func Build(ctx context.Context, path string, o Options) (Layout, error) {
	if o.Firmware == "" {
		o.Firmware = BIOS
	}
	min := int64(32 * mib)
	if o.Firmware == EFI {
		min = 48 * mib
	}
	switch {
	case o.Firmware != BIOS && o.Firmware != EFI:
		return Layout{}, fmt.Errorf("guest disk: firmware %q: want %q or %q", o.Firmware, BIOS, EFI)
	case o.Size%mib != 0 || o.Size < min:
		return Layout{}, fmt.Errorf("guest disk: size %d: want a multiple of 1 MiB of at least %d MiB", o.Size, min/mib)
	}
	if o.UUID == "" {
		o.UUID = uuidFrom(o.Seed)
	}
	work, err := os.MkdirTemp(filepath.Dir(path), ".guestdisk-")
	if err != nil {
		return Layout{}, err
	}
	defer os.RemoveAll(work)

	var l Layout
	// 1 MiB for the table (and GPT's backup at the end), partitions aligned
	// to 1 MiB.
	end := o.Size - mib
	l.RootOffset = mib
	if o.Firmware == EFI {
		l.ESPOffset, l.ESPSize = mib, 16*mib
		l.RootOffset = l.ESPOffset + l.ESPSize
	}
	l.RootSize = end - l.RootOffset

	if err := writeTable(ctx, path, o, l); err != nil {
		return l, err
	}
	rootImg := filepath.Join(work, "root.img")
	if o.Windows {
		if err := mkntfs(ctx, rootImg, l); err != nil {
			return l, err
		}
	} else {
		root := filepath.Join(work, "root")
		if err := populate(root, o); err != nil {
			return l, err
		}
		if err := mkext4(ctx, rootImg, root, l.RootSize, o.UUID); err != nil {
			return l, err
		}
	}
	if err := copyInto(path, rootImg, l.RootOffset); err != nil {
		return l, err
	}
	if o.Firmware == EFI {
		espImg := filepath.Join(work, "esp.vfat")
		if err := mkvfat(ctx, espImg, l.ESPSize, o.Seed); err != nil {
			return l, err
		}
		if err := copyInto(path, espImg, l.ESPOffset); err != nil {
			return l, err
		}
	}
	return l, nil
}

func run(ctx context.Context, env []string, name string, args ...string) error {
	p, err := lookPath(name)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, p, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func writeTable(ctx context.Context, path string, o Options, l Layout) error {
	const sector = 512
	mbrType, gptType := "83", "0FC63DAF-8483-4772-8E79-3D69D8477DE4" // Linux
	if o.Windows {
		mbrType, gptType = "7", "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" // NTFS, Microsoft basic data
	}
	var script string
	if o.Firmware == BIOS {
		script = fmt.Sprintf("label: dos\nlabel-id: 0x%08x\nunit: sectors\n\nstart=%d, size=%d, type=%s, bootable\n",
			uint32(o.Seed)|1, l.RootOffset/sector, l.RootSize/sector, mbrType)
	} else {
		script = fmt.Sprintf("label: gpt\nlabel-id: %s\nunit: sectors\n\n"+
			"start=%d, size=%d, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=%s, name=\"EFI system partition\"\n"+
			"start=%d, size=%d, type=%s, uuid=%s, name=\"root\"\n",
			uuidFrom(o.Seed+1), l.ESPOffset/sector, l.ESPSize/sector, uuidFrom(o.Seed+2),
			l.RootOffset/sector, l.RootSize/sector, gptType, uuidFrom(o.Seed+3))
	}
	return partitioned(ctx, path, o.Size, script)
}

// epoch is the time stamped on every file and in the file systems.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// atime is the access time of every file. mkfs.ext4 -d copies it, and under
// relatime any read of a file or directory whose access time is in the past
// moves it to now: only an access time in the future stays put, which keeps
// the built file system the same from one build to the next.
var atime = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

func populate(root string, o Options) error {
	files := map[string][]byte{
		"/etc/fstab":                    []byte("UUID=" + o.UUID + " / ext4 defaults 0 1\n"),
		"/etc/hostname":                 []byte("guest\n"),
		"/boot/vmlinuz-6.1.0-rehost":    []byte("placeholder kernel of a rehost test guest\n"),
		"/boot/initrd.img-6.1.0-rehost": []byte("placeholder initramfs of a rehost test guest\n"),
		"/sbin/init":                    []byte("#!/bin/sh\n"),
	}
	if !o.NoOSRelease {
		files["/etc/os-release"] = []byte(cmp.Or(o.OSRelease, DebianOSRelease))
	}
	for k, v := range o.Files {
		files[k] = v
	}
	if o.DataBytes > 0 {
		files["/var/lib/fill.bin"] = nil // written below, streamed
	}
	names := make([]string, 0, len(files))
	for k := range files {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if name == "/var/lib/fill.bin" && o.DataBytes > 0 {
			if err := writeFill(p, o.DataBytes, o.Seed); err != nil {
				return err
			}
		} else if err := os.WriteFile(p, files[name], 0o644); err != nil {
			return err
		}
		if name == "/sbin/init" {
			os.Chmod(p, 0o755)
		}
	}
	// Fixed times everywhere, directories last (writing changes them).
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, atime, epoch)
	})
}

func writeFill(path string, n int64, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, 64<<10)
	for n > 0 {
		m := min(n, int64(len(buf)))
		for i := 0; i < int(m); i += 8 {
			v := r.Uint64()
			for j := 0; j < 8 && i+j < int(m); j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := f.Write(buf[:m]); err != nil {
			f.Close()
			return err
		}
		n -= m
	}
	return f.Close()
}

func mkext4(ctx context.Context, img, root string, size int64, uuid string) error {
	env := []string{fmt.Sprintf("E2FSPROGS_FAKE_TIME=%d", epoch.Unix())}
	if err := run(ctx, env, "mkfs.ext4", "-q", "-F", "-t", "ext4", "-b", "4096",
		"-L", "root", "-U", uuid, "-E", "root_owner=0:0,hash_seed="+uuid,
		"-d", root, img, fmt.Sprintf("%dk", size/1024)); err != nil {
		return err
	}
	// mkfs.ext4 -d copies each file's change time, which no one can set on
	// the host (writing the files and fixing their times changes it): set
	// it in the image, for every file copied.
	var cmds strings.Builder
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(&cmds, "sif \"/%s\" ctime %s\n", filepath.ToSlash(strings.TrimPrefix(rel, ".")), epoch.Format("20060102150405"))
		return nil
	})
	if err != nil {
		return err
	}
	script := img + ".debugfs"
	if err := os.WriteFile(script, []byte(cmds.String()), 0o600); err != nil {
		return err
	}
	defer os.Remove(script)
	return run(ctx, env, "debugfs", "-w", "-f", script, img)
}

// mkntfs makes the NTFS system partition; -T fixes its times (and with
// them the serial number mkntfs derives from the clock), so builds repeat.
func mkntfs(ctx context.Context, img string, l Layout) error {
	if err := sparseFile(img, l.RootSize); err != nil {
		return err
	}
	return run(ctx, nil, "mkntfs", "-F", "-Q", "-q", "-T", "-s", "512", "-L", "Windows",
		"-p", fmt.Sprint(l.RootOffset/512), "-H", "255", "-S", "63", img)
}

func mkvfat(ctx context.Context, img string, size int64, seed uint64) error {
	if err := sparseFile(img, size); err != nil {
		return err
	}
	// --invariant: mkfs.vfat stamps the volume label's entry with the
	// clock, SOURCE_DATE_EPOCH notwithstanding.
	return run(ctx, []string{"SOURCE_DATE_EPOCH=" + fmt.Sprint(epoch.Unix())}, "mkfs.vfat", "--invariant",
		"-F", "16", "-n", "EFI", "-i", fmt.Sprintf("%08x", uint32(seed)|1), img)
}

// sparseFile makes path an empty (sparse) file of size bytes.
func sparseFile(path string, size int64) error {
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

func copyInto(dst, src string, off int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.NewOffsetWriter(out, off), in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s into %s: %w", src, dst, err)
	}
	return out.Close()
}

func uuidFrom(seed uint64) string {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	var b [16]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Write builds the guest disk and writes its non-zero 64 KiB chunks to w
// at their offsets: for a destination that reads as zeros where nothing is
// written (a new sparse virtual disk), which so holds only the data.
func Write(ctx context.Context, w io.WriterAt, o Options) (Layout, error) {
	dir, err := os.MkdirTemp("", "guestdisk-")
	if err != nil {
		return Layout{}, err
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "disk.raw")
	l, err := Build(ctx, img, o)
	if err != nil {
		return l, err
	}
	f, err := os.Open(img)
	if err != nil {
		return l, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for off := int64(0); off < o.Size; off += int64(len(buf)) {
		n, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			return l, err
		}
		chunk := buf[:n]
		if bytes.Count(chunk, []byte{0}) == len(chunk) {
			continue
		}
		if _, err := w.WriteAt(chunk, off); err != nil {
			return l, fmt.Errorf("write guest disk at %d: %w", off, err)
		}
	}
	return l, nil
}
