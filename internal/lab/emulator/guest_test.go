package emulator

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehost/rehost/internal/lab/guestdisk"
)

func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	p, err := guestdisk.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(p, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func inspectFile(t *testing.T, path, bootMode string) (Guest, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	return inspectBootDisk(f, []int64{st.Size()}, bootMode)
}

// What the importer recognises on a boot disk, and what it refuses, worded
// as VM Import words it (pkg/disk tests the probes themselves).
func TestInspectBootDisk(t *testing.T) {
	ctx := context.Background()
	// root is where each disk's system partition lies, as Build or sfdisk
	// placed it: the emulator's instances read their guest files there.
	root := map[string][2]int64{}
	build := func(o guestdisk.Options) string {
		p := filepath.Join(t.TempDir(), "g.raw")
		l, err := guestdisk.Build(ctx, p, o)
		if err != nil {
			t.Fatal(err)
		}
		root[p] = [2]int64{l.RootOffset, l.RootSize}
		return p
	}
	bios := build(guestdisk.Options{Size: 32 << 20, Seed: 1})
	efi := build(guestdisk.Options{Size: 48 << 20, Firmware: guestdisk.EFI, Seed: 2})
	winEFI := build(guestdisk.Options{Size: 48 << 20, Firmware: guestdisk.EFI, Windows: true, Seed: 3})
	noOS := build(guestdisk.Options{Size: 32 << 20, NoOSRelease: true, Seed: 4})
	// A GPT disk without an EFI system partition (a Linux root only).
	gptNoESP := guestdisk.Partitioned(t, 32<<20, "label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n")
	// xfs and btrfs: the superblocks of real file systems in an MBR partition.
	xfsDisk := guestdisk.Partitioned(t, 32<<20, "label: dos\nstart=2048, type=83\n")
	guestdisk.Patch(t, xfsDisk, guestdisk.FileSystem(t, 300<<20, "mkfs.xfs", "-q", "-f")[:1<<20], 1<<20)
	btrfsDisk := guestdisk.Partitioned(t, 32<<20, "label: dos\nstart=2048, type=83\n")
	guestdisk.Patch(t, btrfsDisk, guestdisk.FileSystem(t, 128<<20, "mkfs.btrfs", "-q", "-f")[:1<<20], 1<<20)
	// sfdisk's one partition from sector 2048 to the end of the disk.
	root[xfsDisk] = [2]int64{1 << 20, 31 << 20}
	root[btrfsDisk] = root[xfsDisk]
	blank := guestdisk.Partitioned(t, 32<<20, "label: dos\nstart=2048, type=83\n")
	nothing := filepath.Join(t.TempDir(), "zero.raw")
	os.WriteFile(nothing, make([]byte, 8<<20), 0o600)

	for _, c := range []struct {
		name, disk, bootMode string
		want                 Guest
		err                  string
	}{
		{"bios linux", bios, "", Guest{Platform: "Linux", Distribution: "Debian GNU/Linux 12 (bookworm)", FileSystem: "ext4", PartitionStyle: "MBR", BootMode: "legacy-bios"}, ""},
		{"bios as legacy-bios", bios, "legacy-bios", Guest{Platform: "Linux", Distribution: "Debian GNU/Linux 12 (bookworm)", FileSystem: "ext4", PartitionStyle: "MBR", BootMode: "legacy-bios"}, ""},
		{"efi linux", efi, "uefi", Guest{Platform: "Linux", Distribution: "Debian GNU/Linux 12 (bookworm)", FileSystem: "ext4", PartitionStyle: "GPT", BootMode: "uefi"}, ""},
		{"efi uefi-preferred", efi, "uefi-preferred", Guest{Platform: "Linux", Distribution: "Debian GNU/Linux 12 (bookworm)", FileSystem: "ext4", PartitionStyle: "GPT", BootMode: "uefi"}, ""},
		{"windows", winEFI, "", Guest{Platform: "Windows", FileSystem: "ntfs", PartitionStyle: "GPT", BootMode: "uefi"}, ""},
		{"xfs", xfsDisk, "", Guest{Platform: "Linux", FileSystem: "xfs", PartitionStyle: "MBR", BootMode: "legacy-bios"}, ""},
		{"btrfs", btrfsDisk, "", Guest{Platform: "Linux", FileSystem: "btrfs", PartitionStyle: "MBR", BootMode: "legacy-bios"}, ""},
		{"mbr disk as uefi", bios, "uefi", Guest{}, "boot mode uefi needs a GPT boot disk with an EFI system partition"},
		{"gpt without esp as uefi", gptNoESP, "uefi", Guest{}, "boot mode uefi needs a GPT boot disk with an EFI system partition"},
		{"efi disk as legacy-bios", efi, "legacy-bios", Guest{}, "boot mode legacy-bios needs an MBR boot disk"},
		{"no os-release", noOS, "", Guest{}, "ClientError: Unknown OS / Missing OS files."},
		{"empty partition", blank, "", Guest{}, "ClientError: No valid partitions. Not a valid volume."},
		{"no partition table", nothing, "", Guest{}, "ClientError: No valid partitions. Not a valid volume."},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, err := inspectFile(t, c.disk, c.bootMode)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %+v, %v; want an error containing %q", g, err, c.err)
				}
				return
			}
			c.want.RootOffset, c.want.RootSize = root[c.disk][0], root[c.disk][1]
			if err != nil || g != c.want {
				t.Fatalf("got %+v, %v; want %+v", g, err, c.want)
			}
		})
	}
	// A GPT whose checksum does not hold is no table.
	b, _ := os.ReadFile(efi)
	b[1024] ^= 1 // the first partition entry: the array's checksum no longer holds
	corrupt := filepath.Join(t.TempDir(), "corrupt.raw")
	os.WriteFile(corrupt, b, 0o600)
	if _, err := inspectFile(t, corrupt, ""); err == nil || err.Error() != errNoPartitions.Error() {
		t.Fatalf("corrupt GPT: %v", err)
	}
}

func FuzzInspectBootDisk(f *testing.F) {
	mbr := make([]byte, 8<<10)
	mbr[510], mbr[511] = 0x55, 0xAA
	mbr[446+4], mbr[446+8], mbr[446+12] = 0x83, 1, 100
	f.Add(mbr)
	gpt := bytes.Clone(mbr)
	gpt[446+4] = 0xEE
	copy(gpt[512:], "EFI PART")
	f.Add(gpt)
	f.Fuzz(func(t *testing.T, b []byte) {
		inspectBootDisk(bytes.NewReader(b), []int64{int64(len(b))}, "")
	})
}
