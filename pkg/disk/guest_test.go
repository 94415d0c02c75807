package disk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/testdata"
)

// The ext reader finds files the way an importer needs: through extents
// (ext4) and block maps (ext2), large hashed directories, and symlinks to
// /usr/lib/os-release, relative and absolute.
func TestReadExtFile(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"etc", "usr/lib", "var/lib"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	want := []byte("NAME=\"Rocky Linux\"\nVERSION=\"9.3 (Blue Onyx)\"\n")
	os.WriteFile(filepath.Join(root, "usr/lib/os-release"), want, 0o644)
	os.Symlink("../usr/lib/os-release", filepath.Join(root, "etc/os-release"))
	os.Symlink("/usr/lib/os-release", filepath.Join(root, "etc/absolute-release"))
	// Enough entries to make /etc an htree directory.
	for i := range 600 {
		os.WriteFile(filepath.Join(root, "etc", fmt.Sprintf("conf-%03d-with-a-long-name.d", i)), []byte("x"), 0o644)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16) // beyond ext2's direct blocks
	os.WriteFile(filepath.Join(root, "var/lib/big"), big, 0o644)
	for _, fs := range []string{"ext2", "ext3", "ext4"} {
		t.Run(fs, func(t *testing.T) {
			img := guestdisk.FileSystem(t, 32<<20, "mkfs."+fs, "-q", "-F", "-b", "1024", "-d", root)
			r := bytes.NewReader(img)
			if v := disk.ProbeFileSystem(r, disk.Partition{Size: int64(len(img))}); v != fs {
				t.Errorf("file system %s, want %s", v, fs)
			}
			for _, p := range []string{"/etc/os-release", "/etc/absolute-release", "/usr/lib/os-release"} {
				got, err := disk.ReadExtFile(r, p)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s: %q %v", p, got, err)
				}
			}
			got, err := disk.ReadExtFile(r, "/etc/conf-599-with-a-long-name.d")
			if err != nil || string(got) != "x" {
				t.Fatalf("a file of a large directory: %q %v", got, err)
			}
			got, err = disk.ReadExtFile(r, "/var/lib/big")
			if err != nil || !bytes.Equal(got, big[:min(len(big), 1<<20)]) {
				t.Fatalf("a file through indirect blocks: %d bytes, %v", len(got), err)
			}
			if _, err := disk.ReadExtFile(r, "/etc/missing"); err == nil {
				t.Fatal("a missing file was found")
			}
		})
	}
}

func inspectFile(t *testing.T, path string) (disk.BootDisk, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	return disk.InspectBoot(f, st.Size())
}

// guestDisks are real guest disks of every kind the probes tell apart,
// built with the Debian tools.
func guestDisks(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	build := func(o guestdisk.Options) string {
		p := filepath.Join(t.TempDir(), "g.raw")
		if _, err := guestdisk.Build(ctx, p, o); err != nil {
			t.Fatal(err)
		}
		return p
	}
	d := map[string]string{
		"bios":   build(guestdisk.Options{Size: 32 << 20, Seed: 1}),
		"efi":    build(guestdisk.Options{Size: 48 << 20, Firmware: guestdisk.EFI, OSRelease: testdata.OSRelease("rocky-8.9"), Seed: 2}),
		"winEFI": build(guestdisk.Options{Size: 48 << 20, Firmware: guestdisk.EFI, Windows: true, Seed: 3}),
		"noOS":   build(guestdisk.Options{Size: 32 << 20, NoOSRelease: true, Seed: 4}),
		// A GPT disk without an EFI system partition (a Linux root only).
		"gptNoESP": guestdisk.Partitioned(t, 32<<20, "label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"),
		"xfs":      guestdisk.Partitioned(t, 32<<20, "label: dos\nstart=2048, type=83\n"),
		"btrfs":    guestdisk.Partitioned(t, 32<<20, "label: dos\nstart=2048, type=83\n"),
		"blank":    guestdisk.Partitioned(t, 32<<20, "label: dos\nstart=2048, type=83\n"),
		// A logical partition in an extended one.
		"logical": guestdisk.Partitioned(t, 32<<20, "label: dos\nstart=2048, size=4096, type=83\nstart=8192, type=5\nstart=10240, type=83\n"),
	}
	// xfs and btrfs: the superblocks of real file systems in an MBR partition.
	guestdisk.Patch(t, d["xfs"], guestdisk.FileSystem(t, 300<<20, "mkfs.xfs", "-q", "-f")[:1<<20], 1<<20)
	guestdisk.Patch(t, d["btrfs"], guestdisk.FileSystem(t, 128<<20, "mkfs.btrfs", "-q", "-f")[:1<<20], 1<<20)
	nothing := filepath.Join(t.TempDir(), "zero.raw")
	os.WriteFile(nothing, make([]byte, 8<<20), 0o600)
	d["nothing"] = nothing
	return d
}

// What the probes find on each kind of boot disk.
func TestInspectBoot(t *testing.T) {
	d := guestDisks(t)
	debian := disk.ParseOSRelease([]byte(testdata.OSRelease("debian-12")))
	rocky := disk.ParseOSRelease([]byte(testdata.OSRelease("rocky-8.9")))
	for _, c := range []struct {
		disk          string
		style         string
		uefi, bios    bool
		platform, fs  string
		rel           disk.OSRelease
		recognised    bool
		noTable       bool
		partitions    int
		firstFSOfDisk string
	}{
		{disk: "bios", style: "MBR", bios: true, platform: "Linux", fs: "ext4", rel: debian, recognised: true, partitions: 1},
		{disk: "efi", style: "GPT", uefi: true, platform: "Linux", fs: "ext4", rel: rocky, recognised: true, partitions: 2, firstFSOfDisk: "vfat"},
		{disk: "winEFI", style: "GPT", uefi: true, platform: "Windows", fs: "ntfs", recognised: true, partitions: 2},
		{disk: "noOS", style: "MBR", bios: true, recognised: true, partitions: 1},
		{disk: "gptNoESP", style: "GPT", partitions: 1},
		{disk: "xfs", style: "MBR", bios: true, platform: "Linux", fs: "xfs", recognised: true, partitions: 1},
		{disk: "btrfs", style: "MBR", bios: true, platform: "Linux", fs: "btrfs", recognised: true, partitions: 1},
		{disk: "blank", style: "MBR", bios: true, partitions: 1},
		{disk: "logical", style: "MBR", bios: true, partitions: 2},
		{disk: "nothing", noTable: true},
	} {
		t.Run(c.disk, func(t *testing.T) {
			b, err := inspectFile(t, d[c.disk])
			if c.noTable {
				if !errors.Is(err, disk.ErrNoPartitionTable) || !errors.Is(err, disk.ErrFormat) {
					t.Fatalf("got %+v, %v; want ErrNoPartitionTable", b, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Table.Style != c.style || b.UEFI != c.uefi || b.BIOS != c.bios || b.Platform != c.platform || b.SystemFS != c.fs ||
				b.OSRelease != c.rel || b.Recognised() != c.recognised || len(b.Table.Partitions) != c.partitions {
				t.Fatalf("got %+v", b)
			}
			if c.firstFSOfDisk != "" && b.FileSystems[0] != c.firstFSOfDisk {
				t.Errorf("first partition holds %q, want %q", b.FileSystems[0], c.firstFSOfDisk)
			}
		})
	}
	if rocky.ID != "rocky" || rocky.VersionID != "8.9" || debian.Title() != "Debian GNU/Linux 12 (bookworm)" {
		t.Errorf("os-release parsed as %+v and %+v", rocky, debian)
	}
	// An encrypted root: LUKS's and BitLocker's signatures.
	for _, c := range []struct {
		fs  string
		sig []byte
		off int64
	}{{disk.FSLUKS, []byte("LUKS\xba\xbe\x00\x02"), 0}, {disk.FSBitLocker, []byte("-FVE-FS-"), 3}} {
		p := guestdisk.Partitioned(t, 32<<20, "label: dos\nstart=2048, type=83\n")
		guestdisk.Patch(t, p, c.sig, 1<<20+c.off)
		b, err := inspectFile(t, p)
		if err != nil || b.FileSystems[0] != c.fs || b.Encrypted() != 0 || b.Recognised() {
			t.Errorf("%s: %+v %v", c.fs, b, err)
		}
	}
	// A GPT whose checksum does not hold is no table.
	b, _ := os.ReadFile(d["efi"])
	b[1024] ^= 1 // the first partition entry: the array's checksum no longer holds
	corrupt := filepath.Join(t.TempDir(), "corrupt.raw")
	os.WriteFile(corrupt, b, 0o600)
	if _, err := inspectFile(t, corrupt); !errors.Is(err, disk.ErrNoPartitionTable) {
		t.Fatalf("corrupt GPT: %v", err)
	}
}

// An inspection of a real guest disk reads a few hundred KiB, so it can
// read a remote disk; a budget ends it cleanly when spent.
func TestInspectBootBudget(t *testing.T) {
	p := filepath.Join(t.TempDir(), "g.raw")
	if _, err := guestdisk.Build(context.Background(), p, guestdisk.Options{Size: 32 << 20, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	r := disk.NewBudgetReader(f, 2<<20)
	b, err := disk.InspectBoot(r, st.Size())
	if err != nil || b.OSRelease.ID != "debian" {
		t.Fatalf("inspect within 2 MiB: %+v %v", b, err)
	}
	t.Logf("read %d bytes", 2<<20-r.Left())
	r = disk.NewBudgetReader(f, 600)
	if _, err := disk.InspectBoot(r, st.Size()); err != nil {
		// The table fits in 600 bytes; the file systems' reads do not and
		// are skipped.
		t.Fatalf("inspect within 600 bytes: %v", err)
	}
	if _, err := r.ReadAt(make([]byte, 1), 0); !errors.Is(err, disk.ErrReadBudget) {
		t.Fatalf("read beyond the budget: %v", err)
	}
}

func FuzzInspectBoot(f *testing.F) {
	mbr := make([]byte, 8<<10)
	mbr[510], mbr[511] = 0x55, 0xAA
	mbr[446+4], mbr[446+8], mbr[446+12] = 0x83, 1, 100
	f.Add(mbr)
	gpt := bytes.Clone(mbr)
	gpt[446+4] = 0xEE
	copy(gpt[512:], "EFI PART")
	f.Add(gpt)
	ext := bytes.Clone(mbr)
	ext[446+4] = 0x05
	f.Add(ext)
	f.Fuzz(func(t *testing.T, b []byte) {
		r := disk.NewBudgetReader(bytes.NewReader(b), 64<<20)
		disk.InspectBoot(r, int64(len(b)))
		disk.ReadExtFile(bytes.NewReader(b), "/etc/os-release")
	})
}

// BenchmarkInspectBoot inspects a real guest disk (MBR, ext4 root with
// /etc/os-release) as preflight does through a source, and reports what
// one inspection reads: the cost of reading a boot disk over SMB.
func BenchmarkInspectBoot(b *testing.B) {
	p := filepath.Join(b.TempDir(), "g.raw")
	if _, err := guestdisk.Build(context.Background(), p, guestdisk.Options{Size: 32 << 20, OSRelease: testdata.OSRelease("ubuntu-22.04"), Seed: 1}); err != nil {
		b.Fatal(err)
	}
	img, err := os.ReadFile(p)
	if err != nil {
		b.Fatal(err)
	}
	const budget = 16 << 20
	var read int64
	b.ReportAllocs()
	for b.Loop() {
		r := disk.NewBudgetReader(bytes.NewReader(img), budget)
		if _, err := disk.InspectBoot(r, int64(len(img))); err != nil {
			b.Fatal(err)
		}
		read = budget - r.Left()
	}
	b.ReportMetric(float64(read), "read-bytes/op")
}
