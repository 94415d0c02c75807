package build

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Pin is one Debian package of pins.txt.
type Pin struct {
	Name, Version, SHA256 string
}

// ReadPins parses pins.txt: "name version sha256" per line, # comments.
func ReadPins(path string) ([]Pin, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read pinned packages: %w", err)
	}
	defer f.Close()
	var pins []Pin
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fs := strings.Fields(line)
		if len(fs) != 3 || len(fs[2]) != 64 {
			return nil, fmt.Errorf("%s:%d: want \"name version sha256\", got %q", path, n, line)
		}
		pins = append(pins, Pin{fs[0], fs[1], fs[2]})
	}
	return pins, sc.Err()
}

// debFile is the file name apt-get download gives a package (the epoch's
// colon escaped as %3a).
func debFile(p Pin, arch string) string {
	return fmt.Sprintf("%s_%s_%s.deb", p.Name, strings.ReplaceAll(p.Version, ":", "%3a"), arch)
}

// fetchDeb returns the path of the pinned package in cache, downloading it
// with apt-get when absent, and checks its SHA-256.
func fetchDeb(ctx context.Context, cache string, p Pin) (string, error) {
	var path string
	for _, arch := range []string{"amd64", "all"} {
		if c := filepath.Join(cache, debFile(p, arch)); fileExists(c) {
			path = c
		}
	}
	if path == "" {
		if err := os.MkdirAll(cache, 0o755); err != nil {
			return "", err
		}
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", p.Name+"="+p.Version)
		cmd.Dir = cache
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("download pinned package %s=%s: %w: %s\n(the archive may have dropped this version: "+
				"run 'apt-get update'; if it is still missing, update appliance/pins.txt to the version 'apt-cache policy %s' offers)",
				p.Name, p.Version, err, strings.TrimSpace(out.String()), p.Name)
		}
		for _, arch := range []string{"amd64", "all"} {
			if c := filepath.Join(cache, debFile(p, arch)); fileExists(c) {
				path = c
			}
		}
		if path == "" {
			return "", fmt.Errorf("download pinned package %s=%s: apt-get left no %s in %s", p.Name, p.Version, debFile(p, "amd64"), cache)
		}
	}
	sum, err := fileSHA256(path)
	if err != nil {
		return "", err
	}
	if sum != p.SHA256 {
		os.Remove(path)
		return "", fmt.Errorf("pinned package %s=%s: SHA-256 %s, want %s from appliance/pins.txt (file removed; a re-run downloads it again)", p.Name, p.Version, sum, p.SHA256)
	}
	return path, nil
}

// extractDeb unpacks a package's files into dir.
func extractDeb(ctx context.Context, deb, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, dir).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w: %s", deb, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
