package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehost/rehost/pkg/disk"
)

// runCLI runs a verb in-process and returns its exit code, stdout, stderr.
func runCLI(t *testing.T, stdin []byte, args ...string) (int, []byte, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := Env{Stdin: bytes.NewReader(stdin), Stdout: &out, Stderr: &errb}
	code := Main(context.Background(), env, args)
	return code, out.Bytes(), errb.String()
}

// diskTestData is a 3 MiB + 4 KiB disk: random islands in zeros, one of them
// across a 64 KiB grain edge and one at the very end.
func diskTestData() []byte {
	const size = 3<<20 + 4096
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(7, 7))
	for _, isl := range [][2]int{{0, 8192}, {64<<10 - 10, 100}, {2 << 20, 300000}, {size - 512, 512}} {
		for i := isl[0]; i < isl[0]+isl[1]; i++ {
			b[i] = byte(r.Uint32())
		}
	}
	return b
}

func readImage(t *testing.T, path string) (disk.Info, []byte) {
	t.Helper()
	img, c, err := disk.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, img.Size())
	if n, err := img.ReadAt(buf, 0); n != len(buf) {
		t.Fatalf("read %s: %d bytes, %v", path, n, err)
	}
	return img.Info(), buf
}

func TestDiskConvertRoundTrips(t *testing.T) {
	dir := t.TempDir()
	data := diskTestData()
	raw := filepath.Join(dir, "in.raw")
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want disk.Info
	}{
		{[]string{"--to", "vmdk"}, disk.Info{Format: disk.VMDK, Subformat: "streamOptimized"}},
		{[]string{"--to", "vhd"}, disk.Info{Format: disk.VHD, Subformat: "dynamic"}},
		{[]string{"--to", "vhd", "--vhd-type", "fixed"}, disk.Info{Format: disk.VHD, Subformat: "fixed"}},
		{[]string{"--to", "raw"}, disk.Info{Format: disk.Raw}},
	}
	for i, c := range cases {
		out := filepath.Join(dir, "out"+string(rune('a'+i)))
		code, _, stderr := runCLI(t, nil, append(append([]string{"disk", "convert"}, c.args...), raw, out)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, stderr)
		}
		if !strings.Contains(stderr, "bytes written") {
			t.Fatalf("%v: no summary on stderr: %q", c.args, stderr)
		}
		info, got := readImage(t, out)
		if info.Format != c.want.Format || info.Subformat != c.want.Subformat || info.VirtualSize != int64(len(data)) {
			t.Fatalf("%v: output info %+v", c.args, info)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%v: output content differs from the input", c.args)
		}
		// And back to raw, through the converter again.
		back := out + ".raw"
		if code, _, stderr := runCLI(t, nil, "disk", "convert", out, back, "--to", "raw"); code != 0 {
			t.Fatalf("%v back to raw: exit %d: %s", c.args, code, stderr)
		}
		if b, err := os.ReadFile(back); err != nil || !bytes.Equal(b, data) {
			t.Fatalf("%v back to raw: content differs (err %v)", c.args, err)
		}
	}
}

func TestDiskConvertStreams(t *testing.T) {
	data := diskTestData()
	size := itoa64(int64(len(data)))

	// raw stdin (with --size) → streamOptimized VMDK on stdout.
	code, vmdk, stderr := runCLI(t, data, "disk", "convert", "--to", "vmdk", "--size", size, "-", "-")
	if code != 0 {
		t.Fatalf("raw stdin to vmdk: exit %d: %s", code, stderr)
	}
	img, err := disk.Open(bytes.NewReader(vmdk), int64(len(vmdk)))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, img.Size())
	if n, _ := img.ReadAt(got, 0); n != len(data) || !bytes.Equal(got, data) {
		t.Fatalf("vmdk from stdin: content differs (%d bytes)", n)
	}

	// streamOptimized VMDK on stdin → raw on stdout.
	code, raw, stderr := runCLI(t, vmdk, "disk", "convert", "--to", "raw", "-", "-")
	if code != 0 || !bytes.Equal(raw, data) {
		t.Fatalf("vmdk stdin to raw: exit %d, %d bytes, equal %v: %s", code, len(raw), bytes.Equal(raw, data), stderr)
	}

	// streamOptimized VMDK on stdin → fixed VHD file.
	out := filepath.Join(t.TempDir(), "x.vhd")
	if code, _, stderr := runCLI(t, vmdk, "disk", "convert", "--to", "vhd", "--vhd-type", "fixed", "-", out); code != 0 {
		t.Fatalf("vmdk stdin to vhd: exit %d: %s", code, stderr)
	}
	info, content := readImage(t, out)
	if info.Format != disk.VHD || info.Subformat != "fixed" || !bytes.Equal(content, data) {
		t.Fatalf("vhd from vmdk stdin: info %+v, content equal %v", info, bytes.Equal(content, data))
	}

	// streamOptimized VMDK on stdin → dynamic VHD file (BAT written last).
	out = filepath.Join(t.TempDir(), "y.vhd")
	if code, _, stderr := runCLI(t, vmdk, "disk", "convert", "--to", "vhd", "-", out); code != 0 {
		t.Fatalf("vmdk stdin to dynamic vhd: exit %d: %s", code, stderr)
	}
	info, content = readImage(t, out)
	if info.Format != disk.VHD || info.Subformat != "dynamic" || !bytes.Equal(content, data) {
		t.Fatalf("dynamic vhd from vmdk stdin: info %+v, content equal %v", info, bytes.Equal(content, data))
	}
	if info.ExtentCount != 1 || info.AllocatedBytes != int64(len(data)) { // both 2 MiB blocks hold data
		t.Fatalf("dynamic vhd from stdin: %d extents, %d bytes allocated", info.ExtentCount, info.AllocatedBytes)
	}

	// raw stdin read to EOF → raw file, with a --json summary.
	out = filepath.Join(t.TempDir(), "x.raw")
	code, js, stderr := runCLI(t, data, "disk", "convert", "--json", "--to", "raw", "-", out)
	if code != 0 {
		t.Fatalf("raw stdin to raw: exit %d: %s", code, stderr)
	}
	var res diskConvertResult
	if err := json.Unmarshal(js, &res); err != nil || res.BytesWritten != int64(len(data)) || res.OutputFormat != "raw" {
		t.Fatalf("json summary %s (err %v)", js, err)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, data) {
		t.Fatal("raw from stdin: content differs")
	}
}

func TestDiskConvertErrors(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "in.raw")
	if err := os.WriteFile(raw, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		stdin []byte
		args  []string
		code  int
		msg   string
	}{
		{nil, []string{raw, filepath.Join(dir, "o")}, 2, "--to is required"},
		{nil, []string{"--to", "qcow2", raw, filepath.Join(dir, "o")}, 2, `--to "qcow2"`},
		{nil, []string{"--to", "vhd", "--vhd-type", "huge", raw, filepath.Join(dir, "o")}, 2, "--vhd-type"},
		{nil, []string{"--to", "raw", raw}, 2, "want IN and OUT"},
		{nil, []string{"--to", "raw", raw, raw}, 2, "same file"},
		{make([]byte, 4096), []string{"--to", "vmdk", "-", "-"}, 2, "needs --size"},
		{make([]byte, 4096), []string{"--to", "vhd", "-", "-"}, 2, "needs OUT to be a file"},
		{make([]byte, 4096), []string{"--to", "vhd", "-", filepath.Join(dir, "o")}, 2, "needs --size"},
		{make([]byte, 100), []string{"--to", "vmdk", "--size", "4096", "-", "-"}, 1, "ended before the 4096 bytes --size promised: write streamOptimized vmdk: read source at 100: got 100 of 4096"},
		{nil, []string{"--to", "raw", filepath.Join(dir, "missing"), filepath.Join(dir, "o")}, 1, "no such file"},
	}
	for _, c := range cases {
		code, _, stderr := runCLI(t, c.stdin, append([]string{"disk", "convert"}, c.args...)...)
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, stderr, c.code, c.msg)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "o")); !os.IsNotExist(err) {
		t.Errorf("a failed conversion left its output behind (stat: %v)", err)
	}
}

func itoa64(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
