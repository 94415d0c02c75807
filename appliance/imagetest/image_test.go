package imagetest

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/appliance/build"
)

var (
	imageOnce sync.Once
	imageDir  string
	imageTemp bool // imageDir is ours to remove
	imageErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if imageTemp {
		os.RemoveAll(imageDir)
	}
	os.Exit(code)
}

// repoRoot is the repository's top directory: two up from this package's,
// where go test runs it (runtime.Caller names no real path under -trimpath,
// which the Makefile sets).
func repoRoot() string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return root
}

// image returns the directory holding the built appliance.
func image(t *testing.T) string {
	t.Helper()
	imageOnce.Do(func() {
		if d := os.Getenv("REHOST_APPLIANCE_OUT"); d != "" {
			imageDir = d
			return
		}
		dir, err := os.MkdirTemp("", "rehost-appliance-")
		if err != nil {
			imageErr = err
			return
		}
		imageDir, imageTemp = dir, true
		root := repoRoot()
		if out, err := exec.Command(filepath.Join(root, "appliance", "tools.sh")).CombinedOutput(); err != nil {
			imageErr = fmt.Errorf("appliance/tools.sh: %v\n%s", err, out)
			return
		}
		_, imageErr = build.Build(context.Background(), build.Options{
			Root: root, Out: dir, Cache: filepath.Join(root, "appliance", "cache"),
			Version: "imagetest", Epoch: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			Key: build.DevSigningKey(), DevKey: true,
		})
	})
	if imageErr != nil {
		t.Fatalf("build the appliance: %v", imageErr)
	}
	return imageDir
}

// version is the version the image was built with (the system
// partition's VERSION file, also in the OVF).
func version(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("mtype", "-i", filepath.Join(dir, build.SystemFile), "::/VERSION").CombinedOutput()
	if err != nil {
		t.Fatalf("read VERSION from the system partition: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// copyFile copies a (sparse) image so a test can write to it.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp %s: %v\n%s", src, err, out)
	}
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// buildSystem builds only the system partition image (an upgrade) into
// out, at another version and commit time, signed with key; rehost, when
// set, is the connector binary it carries instead of the real one.
func buildSystem(out, version string, epoch time.Time, key ed25519.PrivateKey, rehost string) (build.Result, error) {
	root := repoRoot()
	return build.Build(context.Background(), build.Options{
		Root: root, Out: out, Cache: filepath.Join(root, "appliance", "cache"),
		Version: version, Epoch: epoch, SystemOnly: true, Key: key, Rehost: rehost,
	})
}
