package guestdisk

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// LookPath finds a tool on PATH, or in /usr/sbin and /sbin where Debian
// keeps sfdisk and the mkfs tools off a user's PATH.
func LookPath(name string) (string, error) { return lookPath(name) }

// Partitioned makes path a zeroed (sparse) disk of size bytes and writes
// the partition table of sfdisk's script on it: a table without file
// systems, for tests of what a prober makes of one.
func Partitioned(ctx context.Context, path string, size int64, script string) error {
	if err := sparseFile(path, size); err != nil {
		return err
	}
	p, err := lookPath("sfdisk")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, p, "--no-reread", "--no-tell-kernel", "-q", path)
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("sfdisk %s: %w: %s", path, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// FileSystem runs a mkfs tool (with args, then the image's path) on a
// zeroed image of size bytes and returns the image.
func FileSystem(ctx context.Context, size int64, tool string, args ...string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "guestdisk-fs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "fs.img")
	if err := sparseFile(img, size); err != nil {
		return nil, err
	}
	if err := run(ctx, nil, tool, append(args, img)...); err != nil {
		return nil, err
	}
	return os.ReadFile(img)
}

// Patch writes b into the file at path at offset off.
func Patch(path string, b []byte, off int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, off); err != nil {
		f.Close()
		return fmt.Errorf("patch %s at %d: %w", path, off, err)
	}
	return f.Close()
}
