package build

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// cpio(1) unpacks what writeCPIO writes: files with their content and
// mode, directories (also the implied parents) and symbolic links; two
// writes give the same bytes.
func TestCPIOUnpacks(t *testing.T) {
	src := filepath.Join(t.TempDir(), "big")
	big := bytes.Repeat([]byte("rehost "), 100000)
	if err := os.WriteFile(src, big, 0o600); err != nil {
		t.Fatal(err)
	}
	entries := []cpioEntry{
		{Path: "/init", Mode: 0o755, Data: []byte("#!/bin/sh\n")},
		{Path: "/lib/modules/6.1/kernel/x.ko", Mode: 0o644, Src: src},
		{Path: "/sbin/poweroff", Link: "/init"},
		{Path: "/dev", Mode: fs.ModeDir | 0o755},
	}
	var a, b bytes.Buffer
	if err := writeCPIO(&a, entries, 1767225600); err != nil {
		t.Fatal(err)
	}
	writeCPIO(&b, entries, 1767225600)
	if !bytes.Equal(a.Bytes(), b.Bytes()) || a.Len()%512 != 0 {
		t.Fatalf("two writes differ, or %d bytes is not whole blocks", a.Len())
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-id", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = &a
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "lib/modules/6.1/kernel/x.ko")); !bytes.Equal(got, big) {
		t.Errorf("module content: %d bytes, want %d", len(got), len(big))
	}
	if st, err := os.Stat(filepath.Join(dir, "init")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("init: %v, %v", st, err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "sbin/poweroff")); err != nil || l != "/init" {
		t.Errorf("poweroff -> %q, %v", l, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "dev")); err != nil || !st.IsDir() {
		t.Errorf("dev: %v, %v", st, err)
	}
}
