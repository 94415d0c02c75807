package guestdisk

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// LookPath finds a tool on PATH, or in /usr/sbin and /sbin where Debian
// keeps sfdisk and the mkfs tools off a user's PATH.
func LookPath(name string) (string, error) { return lookPath(name) }

// Partitioned is a zeroed (sparse) disk of size bytes in t's temporary
// directory, with the partition table of sfdisk's script on it: a table
// without file systems, for tests of what a prober makes of one.
func Partitioned(t testing.TB, size int64, script string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.raw")
	if err := partitioned(context.Background(), path, size, script); err != nil {
		t.Fatal(err)
	}
	return path
}

func partitioned(ctx context.Context, path string, size int64, script string) error {
	if err := sparseFile(path, size); err != nil {
		return err
	}
	p, err := lookPath("sfdisk")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, p, "--no-reread", "--no-tell-kernel", "-q", path)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("sfdisk %s: %w: %s", path, err, bytes.TrimSpace(out))
	}
	return nil
}

// FileSystem runs a mkfs tool (with args, then the image's path) on a
// zeroed image of size bytes and returns the image.
func FileSystem(t testing.TB, size int64, tool string, args ...string) []byte {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := sparseFile(img, size); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), nil, tool, append(args, img)...); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Patch writes b into the file at path at offset off.
func Patch(t testing.TB, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatalf("patch %s at %d: %v", path, off, err)
	}
}
