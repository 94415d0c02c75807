//go:build linux

package cli

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rehost/rehost/pkg/disk"
)

// TestDiskConvertFromPipe: raw data on a real pipe, written in odd sizes,
// becomes the same VMDK as from a file. The header disk convert reads to
// tell the format is handed back in front of the pipe (disk.Prefixed), so
// the writer reads the pipe's descriptor itself; qemu-img checks the result
// and compares it with the raw data.
func TestDiskConvertFromPipe(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatal("qemu-img is needed (make deps installs it)")
	}
	dir := t.TempDir()
	data := diskTestData()
	raw := filepath.Join(dir, "in.raw")
	if err := os.WriteFile(raw, data, 0o600); err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	rng := rand.New(rand.NewPCG(3, 5))
	go func() {
		defer pw.Close()
		for off, n := 0, 0; off < len(data); off += n {
			n = min(len(data)-off, 1+rng.IntN(200000)) // the first write shorter than the header, maybe
			if _, err := pw.Write(data[off : off+n]); err != nil {
				return
			}
		}
	}()
	out := filepath.Join(dir, "out.vmdk")
	var stdout, stderr bytes.Buffer
	env := Env{Stdin: pr, Stdout: &stdout, Stderr: &stderr}
	if code := Main(context.Background(), env, []string{"disk", "convert", "--to", "vmdk", "--size", itoa64(int64(len(data))), "-", out}); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, args := range [][]string{{"check", "-f", "vmdk", out}, {"compare", "-f", "vmdk", "-F", "raw", out, raw}} {
		if b, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v\n%s", args, err, b)
		}
	}
	fromFile := filepath.Join(dir, "file.vmdk")
	if code, _, stderr := runCLI(t, nil, "disk", "convert", "--to", "vmdk", raw, fromFile); code != 0 {
		t.Fatalf("from the file: exit %d: %s", code, stderr)
	}
	a, _ := os.ReadFile(fromFile)
	b, _ := os.ReadFile(out)
	ia, _ := disk.Open(bytes.NewReader(a), int64(len(a)))
	ib, _ := disk.Open(bytes.NewReader(b), int64(len(b)))
	if ia == nil || ib == nil || len(ia.Extents()) != len(ib.Extents()) {
		t.Fatalf("grains from the pipe differ from the file's")
	}
	for i, e := range ia.Extents() {
		if ib.Extents()[i] != e {
			t.Fatalf("grain extent %d: pipe %v, file %v", i, ib.Extents()[i], e)
		}
	}
}
