//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// upgradeStaging is where the image waits, on the data partition, until
// its checksum is known good: the system partition is only written with
// verified bytes.
const upgradeStaging = "/data/upgrade-system.img"

// menuUpgrade replaces the system partition with a new release's
// rehost-connector-system.img: the state on the data partition is not
// touched, and the new version runs after a reboot.
func (a *appliance) menuUpgrade(ctx context.Context, c *console, ask func(string) (string, bool)) {
	url, _ := ask("URL of rehost-connector-system.img (https://…, or http:// with its SHA-256 typed next): ")
	if url == "" {
		return
	}
	var want string
	switch {
	case strings.HasPrefix(url, "https://"):
		b, err := fetchSmall(ctx, url+".sha256")
		if err != nil {
			c.printf("Could not read %s.sha256: %v\n", url, err)
			return
		}
		want = strings.Fields(string(b) + " ")[0]
	case strings.HasPrefix(url, "http://"):
		want, _ = ask("SHA-256 of the image (from rehost-connector-system.img.sha256): ")
	default:
		c.printf("Want an http:// or https:// URL.\n")
		return
	}
	want = strings.ToLower(strings.TrimSpace(want))
	if len(want) != 64 {
		c.printf("%q is not a SHA-256 (64 hex digits).\n", want)
		return
	}
	c.printf("Downloading…\n")
	if err := a.upgrade(ctx, url, want); err != nil {
		c.printf("Upgrade failed, nothing was changed: %v\n", err)
		a.logf("upgrade from %s failed: %v", url, err)
		return
	}
	a.logf("system partition upgraded from %s (sha256 %s)", url, want)
	if v, _ := ask("The system partition is upgraded; the new version runs after a reboot. Reboot now? [y/N] "); strings.EqualFold(v, "y") {
		select {
		case a.power <- true:
		default:
		}
	}
}

func (a *appliance) upgrade(ctx context.Context, url, want string) error {
	part, _, err := findPartition(ctx, systemName, time.Second)
	if err != nil {
		return err
	}
	psize, err := partSize(part)
	if err != nil {
		return err
	}
	defer os.Remove(upgradeStaging)
	got, n, err := download(ctx, url, upgradeStaging, psize)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("the download's SHA-256 is %s, not %s", got, want)
	}
	img, err := os.Open(upgradeStaging)
	if err != nil {
		return err
	}
	defer img.Close()
	boot := make([]byte, 512)
	if _, err := img.ReadAt(boot, 0); err != nil {
		return fmt.Errorf("read the image: %w", err)
	}
	// A FAT32 boot sector whose volume label is the build's.
	if boot[510] != 0x55 || boot[511] != 0xaa || !bytes.Equal(boot[0x47:0x47+10], []byte("REHOST-SYS")) {
		return fmt.Errorf("this is not a rehost system partition image (want the REHOST-SYS FAT volume of rehost-connector-system.img)")
	}
	if n != psize {
		return fmt.Errorf("the image has %d bytes, the system partition %d: use the system image of a release with the same layout, or redeploy", n, psize)
	}
	dev, err := os.OpenFile(part, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer dev.Close()
	if _, err := io.Copy(dev, img); err != nil {
		return fmt.Errorf("write %s: %w (the system partition may be damaged: run the upgrade again before rebooting)", part, err)
	}
	if err := dev.Sync(); err != nil {
		return err
	}
	unix.IoctlSetInt(int(dev.Fd()), unix.BLKFLSBUF, 0)
	return nil
}

// download streams url into path, at most max bytes, and returns the
// SHA-256 and the length.
func download(ctx context.Context, url, path string, max int64) (string, int64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := (&http.Client{Timeout: 30 * time.Minute}).Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, max+1))
	if err != nil {
		return "", n, fmt.Errorf("download %s: %w", url, err)
	}
	if n > max {
		return "", n, fmt.Errorf("the image is larger than the system partition (%d bytes)", max)
	}
	return hex.EncodeToString(h.Sum(nil)), n, f.Close()
}

func fetchSmall(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 4096))
}
