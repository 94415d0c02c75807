package web

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The *_templ.go files this package compiled with are generated at build
// time (make generate), never committed. The test proves both halves: the
// *.templ sources generate offline with the generator go.mod pins, into
// exactly the files the package was built from (a .templ edited without
// regenerating would otherwise test and ship the old page); and git ignores
// the generated files and tracks none of them.
func TestTemplGeneratedAtBuildTime(t *testing.T) {
	sources, err := filepath.Glob("*.templ")
	if err != nil || len(sources) == 0 {
		t.Fatalf("no .templ files: %v", err)
	}
	dir := t.TempDir()
	for _, s := range sources {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, s), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "tool", "templ", "generate", "-log-level", "warn", "-path", dir)
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=readonly -trimpath")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go tool templ generate (offline: scripts/deps.sh downloads the generator's modules): %v\n%s", err, out)
	}
	generated, _ := filepath.Glob("*_templ.go")
	if len(generated) != len(sources) {
		t.Errorf("%d .templ files but %d *_templ.go here (%v): run 'make generate'", len(sources), len(generated), generated)
	}
	for _, s := range sources {
		gen := strings.TrimSuffix(s, ".templ") + "_templ.go"
		want, err := os.ReadFile(filepath.Join(dir, gen))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(gen); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not what %s generates (%v): run 'make generate'", gen, s, err)
		}
	}

	if err := exec.Command("git", "rev-parse", "--is-inside-work-tree").Run(); err != nil {
		t.Skipf("not a git checkout (%v): whether the generated files are tracked cannot be asked", err)
	}
	tracked, err := exec.Command("git", "ls-files", "--", "*_templ.go").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	if s := strings.TrimSpace(string(tracked)); s != "" {
		t.Errorf("generated files are committed (they are made by 'make generate'): git rm --cached %s", strings.Fields(s))
	}
	for _, g := range generated {
		if err := exec.Command("git", "check-ignore", "-q", g).Run(); err != nil {
			t.Errorf("%s is not ignored by .gitignore (%v): it would be committed by mistake", g, err)
		}
	}
}
