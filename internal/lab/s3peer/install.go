package s3peer

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Module and Version pin the versitygw release the harness runs.
const (
	Module  = "github.com/versity/versitygw"
	Version = "v1.8.0"
)

// BinaryEnv names an environment variable that, when set, points at a
// versitygw binary to use instead of the repo-local pinned install.
const BinaryEnv = "REHOST_VERSITYGW"

// Binary returns the path of a versitygw binary of the pinned version,
// installing it with `go install` into <repo root>/.tools/bin when missing.
// Concurrent test processes serialize the install with a file lock. Outside
// a Go module it falls back to versitygw on PATH; $REHOST_VERSITYGW wins
// over both.
func Binary(ctx context.Context) (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		return p, nil
	}
	root, err := repoRoot(ctx)
	if err != nil {
		// Outside the source tree (an installed rehost running the demo):
		// use one on PATH.
		if p, lerr := exec.LookPath("versitygw"); lerr == nil {
			return p, nil
		}
		return "", fmt.Errorf("locate versitygw: %w; install %s@%s or set %s", err, Module, Version, BinaryEnv)
	}
	binDir := filepath.Join(root, ".tools", "bin")
	name := "versitygw"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	bin := filepath.Join(binDir, name)
	if pinned(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", fmt.Errorf("install versitygw: %w", err)
	}
	unlock, err := lockFile(filepath.Join(root, ".tools", "versitygw.lock"))
	if err != nil {
		return "", fmt.Errorf("install versitygw: lock: %w", err)
	}
	defer unlock()
	// Another process may have installed it while we waited for the lock.
	if pinned(bin) {
		return bin, nil
	}
	cmd := exec.CommandContext(ctx, goTool(), "install", Module+"/cmd/versitygw@"+Version)
	cmd.Env = append(os.Environ(), "GOBIN="+binDir, "GOFLAGS=-buildvcs=false")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("install versitygw %s: %w: %s", Version, err, strings.TrimSpace(out.String()))
	}
	if !pinned(bin) {
		return "", fmt.Errorf("install versitygw %s: %s is not the pinned version after go install", Version, bin)
	}
	return bin, nil
}

// pinned reports whether bin exists and was built from the pinned module version.
func pinned(bin string) bool {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return false
	}
	return info.Main.Path == Module && info.Main.Version == Version
}

func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// repoRoot finds the main module's directory through `go env GOMOD`, so the
// tools dir is shared by every package's tests regardless of working dir.
func repoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module (go env GOMOD is empty)")
	}
	return filepath.Dir(gomod), nil
}
