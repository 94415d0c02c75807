package guestdisk

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBuild(t *testing.T) {
	if m := Missing(); len(m) > 0 {
		t.Fatalf("tools missing (make deps installs them): %v", m)
	}
	ctx := context.Background()
	for _, fw := range []string{BIOS, EFI} {
		t.Run(fw, func(t *testing.T) {
			dir := t.TempDir()
			o := Options{Size: 64 << 20, Firmware: fw, DataBytes: 3<<20 + 17, Seed: 7,
				Files: map[string][]byte{"/etc/motd": []byte("hello\n")}}
			a := filepath.Join(dir, "a.raw")
			l, err := Build(ctx, a, o)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := os.Stat(a)
			if st.Size() != o.Size {
				t.Fatalf("size %d, want %d", st.Size(), o.Size)
			}
			// The table is what sfdisk reads back.
			out, err := exec.Command(mustLook(t, "sfdisk"), "-J", a).Output()
			if err != nil {
				t.Fatal(err)
			}
			var pt struct {
				PartitionTable struct {
					Label      string `json:"label"`
					Partitions []struct {
						Start int64  `json:"start"`
						Size  int64  `json:"size"`
						Type  string `json:"type"`
					} `json:"partitions"`
				} `json:"partitiontable"`
			}
			if err := json.Unmarshal(out, &pt); err != nil {
				t.Fatal(err)
			}
			wantLabel, wantParts := "dos", 1
			if fw == EFI {
				wantLabel, wantParts = "gpt", 2
			}
			if pt.PartitionTable.Label != wantLabel || len(pt.PartitionTable.Partitions) != wantParts {
				t.Fatalf("partition table %+v", pt)
			}
			root := pt.PartitionTable.Partitions[wantParts-1]
			if root.Start*512 != l.RootOffset || root.Size*512 != l.RootSize {
				t.Errorf("root partition %+v, layout %+v", root, l)
			}
			if fw == EFI && !strings.EqualFold(pt.PartitionTable.Partitions[0].Type, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B") {
				t.Errorf("first partition type %s, want the EFI system partition", pt.PartitionTable.Partitions[0].Type)
			}
			// The root file system holds the files, as debugfs reads them.
			part := filepath.Join(dir, "root.ext4")
			extract(t, a, part, l.RootOffset, l.RootSize)
			if got := debugfsCat(t, part, "/etc/os-release"); got != DebianOSRelease {
				t.Errorf("/etc/os-release = %q", got)
			}
			if got := debugfsCat(t, part, "/etc/motd"); got != "hello\n" {
				t.Errorf("/etc/motd = %q", got)
			}
			if out, err := exec.Command(mustLook(t, "e2fsck"), "-fn", part).CombinedOutput(); err != nil {
				t.Errorf("e2fsck: %v\n%s", err, out)
			}
			// Deterministic: the same options give the same bytes, even
			// built in another (FAT's two-second) time slot.
			time.Sleep(time.Until(time.Now().Truncate(2 * time.Second).Add(2 * time.Second)))
			b := filepath.Join(dir, "b.raw")
			if _, err := Build(ctx, b, o); err != nil {
				t.Fatal(err)
			}
			if !sameFile(t, a, b) {
				t.Error("two builds with the same options differ")
			}
		})
	}
}

// A Windows guest: the system partition is NTFS, typed as such in the
// table; Write puts the same bytes into a sparse destination.
func TestWindowsAndWrite(t *testing.T) {
	ctx := context.Background()
	for _, fw := range []string{BIOS, EFI} {
		o := Options{Size: 64 << 20, Firmware: fw, Windows: true, Seed: 3}
		img := filepath.Join(t.TempDir(), "w.raw")
		l, err := Build(ctx, img, o)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		if string(b[l.RootOffset+3:l.RootOffset+11]) != "NTFS    " {
			t.Fatalf("%s: no NTFS boot sector at the system partition", fw)
		}
		out, err := exec.Command(mustLook(t, "sfdisk"), "-J", img).Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]string{BIOS: `"type": "7"`, EFI: "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"}[fw]; !strings.Contains(string(out), want) {
			t.Errorf("%s: partition table %s lacks %s", fw, out, want)
		}
		dst := make(writerAt, o.Size)
		if _, err := Write(ctx, dst, o); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dst, b) {
			t.Errorf("%s: Write wrote other bytes than Build", fw)
		}
	}
}

type writerAt []byte

func (w writerAt) WriteAt(p []byte, off int64) (int, error) { return copy(w[off:], p), nil }

func TestBuildRefusesBadOptions(t *testing.T) {
	for _, o := range []Options{{Size: 16 << 20}, {Size: 40 << 20, Firmware: EFI}, {Size: 64<<20 + 1}, {Size: 64 << 20, Firmware: "coreboot"}} {
		if _, err := Build(context.Background(), filepath.Join(t.TempDir(), "x"), o); err == nil {
			t.Errorf("Build(%+v) succeeded", o)
		}
	}
}

func mustLook(t *testing.T, name string) string {
	p, err := lookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func extract(t *testing.T, img, out string, off, n int64) {
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := io.Copy(w, io.NewSectionReader(f, off, n)); err != nil {
		t.Fatal(err)
	}
}

func debugfsCat(t *testing.T, img, path string) string {
	out, err := exec.Command(mustLook(t, "debugfs"), "-R", "cat "+path, img).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", path, err)
	}
	return string(out)
}

func sameFile(t *testing.T, a, b string) bool {
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}
