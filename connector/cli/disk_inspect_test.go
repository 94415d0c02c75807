package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehost/rehost/pkg/disk"
)

func TestDiskInspect(t *testing.T) {
	data := diskTestData()
	var vmdk bytes.Buffer
	if _, err := disk.WriteStreamOptimized(&vmdk, disk.NewRaw(bytes.NewReader(data), int64(len(data)))); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "d.vmdk")
	if err := os.WriteFile(path, vmdk.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// Allocation is per 64 KiB grain: the islands touch grains 0, 0-1
	// (across the edge), 32-36 and the last one.
	wantAlloc := int64(64<<10)*2 + 5*64<<10 + 4096
	code, out, stderr := runCLI(t, nil, "disk", "inspect", path, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var info disk.Info
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("json %s: %v", out, err)
	}
	want := disk.Info{Format: disk.VMDK, Subformat: "streamOptimized", VirtualSize: int64(len(data)), AllocatedBytes: wantAlloc, ExtentCount: 3}
	if info != want {
		t.Fatalf("info %+v, want %+v", info, want)
	}

	code, out, stderr = runCLI(t, nil, "disk", "inspect", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, line := range []string{
		"format:       vmdk\n",
		"subformat:    streamOptimized\n",
		"virtual size: 3.0 MiB (3149824 bytes)\n",
		"allocated:    452 KiB (462848 bytes)\n",
		"extents:      3\n",
	} {
		if !strings.Contains(string(out), line) {
			t.Errorf("output lacks %q:\n%s", line, out)
		}
	}

	if code, _, stderr := runCLI(t, nil, "disk", "inspect"); code != 2 || !strings.Contains(stderr, "exactly one FILE") {
		t.Errorf("no FILE: exit %d, %q", code, stderr)
	}
	bad := filepath.Join(t.TempDir(), "bad.vhd")
	b := make([]byte, 4096)
	copy(b[len(b)-512:], "conectix") // a VHD footer with a wrong checksum
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, nil, "disk", "inspect", bad); code != 1 || !strings.Contains(stderr, "checksum") {
		t.Errorf("corrupt vhd: exit %d, %q", code, stderr)
	}
}

// Formats rehost does not convert are named, not read as raw.
func TestDiskInspectNamesUnsupportedFormats(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ format, want string }{
		{"qcow2", "qcow2"}, {"vdi", "VDI"}, {"qed", "QED"}, {"parallels", "Parallels"},
	} {
		path := filepath.Join(dir, "d."+c.format)
		if out, err := exec.Command("qemu-img", "create", "-f", c.format, path, "8M").CombinedOutput(); err != nil {
			t.Fatalf("qemu-img create %s: %v %s", c.format, err, out)
		}
		code, _, stderr := runCLI(t, nil, "disk", "inspect", path)
		if code != 1 || !strings.Contains(stderr, c.want) || !strings.Contains(stderr, "does not read") {
			t.Errorf("%s: exit %d, %q", c.format, code, stderr)
		}
	}
	// A VMDK whose extents are seSparse.
	desc := filepath.Join(dir, "se.vmdk")
	os.WriteFile(filepath.Join(dir, "se-sesparse.vmdk"), make([]byte, 4096), 0o644)
	os.WriteFile(desc, []byte("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"seSparse\"\n\nRW 16384 SESPARSE \"se-sesparse.vmdk\"\n"), 0o644)
	code, _, stderr := runCLI(t, nil, "disk", "inspect", desc)
	if code != 1 || !strings.Contains(stderr, "SESPARSE") || !strings.Contains(stderr, "seSparse") {
		t.Errorf("seSparse vmdk: exit %d, %q", code, stderr)
	}
}
