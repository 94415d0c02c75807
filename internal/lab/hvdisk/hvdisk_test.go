package hvdisk

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestQemuReadsDynamic: qemu-img reads the dynamic disks this package
// writes as the content written (qemu does not read differencing VHD or
// VHDX; pkg/disk's chain tests prove those against qemu overlays).
func TestQemuReadsDynamic(t *testing.T) {
	dir := t.TempDir()
	const size = 6 << 20
	want := make([]byte, size)
	writes := []struct {
		off int64
		n   int
	}{{0, 4096}, {1<<20 - 512, 1024}, {3 << 20, 2 << 20}, {size - 512, 512}}
	for i, w := range writes {
		p := bytes.Repeat([]byte{byte(i + 1)}, w.n)
		copy(want[w.off:], p)
	}
	raw := filepath.Join(dir, "want.raw")
	if err := os.WriteFile(raw, want, 0o644); err != nil {
		t.Fatal(err)
	}
	vx, err := NewVHDX(size, 1<<20, 512, nil)
	if err != nil {
		t.Fatal(err)
	}
	vh, err := NewVHD(size, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range writes {
		p := bytes.Repeat([]byte{byte(i + 1)}, w.n)
		if _, err := vx.WriteAt(p, w.off); err != nil {
			t.Fatal(err)
		}
		if _, err := vh.WriteAt(p, w.off); err != nil {
			t.Fatal(err)
		}
	}
	for name, d := range map[string]interface{ Save(string) error }{"d.vhdx": vx, "d.vhd": vh} {
		path := filepath.Join(dir, name)
		if err := d.Save(path); err != nil {
			t.Fatal(err)
		}
		format := map[string]string{"d.vhdx": "vhdx", "d.vhd": "vpc"}[name]
		if out, err := exec.Command("qemu-img", "check", "-f", format, path).CombinedOutput(); err != nil && format == "vhdx" {
			t.Fatalf("qemu-img check %s: %v\n%s", name, err, out)
		}
		if out, err := exec.Command("qemu-img", "compare", "-f", format, "-F", "raw", path, raw).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img compare %s: %v\n%s", name, err, out)
		}
	}
}

func TestGUIDText(t *testing.T) {
	const s = "83ed0ec3-24c8-49a6-a959-5e4bf1288bfb"
	g, err := ParseGUID("{" + s + "}")
	if err != nil || g.String() != s || g[0] != 0xc3 || g[8] != 0xa9 {
		t.Fatalf("%v %s %x", err, g, g)
	}
	if _, err := ParseGUID("nope"); err == nil {
		t.Fatal("bad guid accepted")
	}
}
