package web

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The generated *_templ.go files are what `go tool templ generate` makes of
// the *.templ files now: the templ generator (pinned by go.mod's tool
// directive, so offline) is run over copies in a temporary directory and
// its output compared with the committed files.
func TestGeneratedTemplIsCurrent(t *testing.T) {
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
	cmd := exec.Command("go", "tool", "templ", "generate", "-path", dir)
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=readonly -trimpath")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go tool templ generate (offline: scripts/deps.sh downloads the generator's modules): %v\n%s", err, out)
	}
	committed, _ := filepath.Glob("*_templ.go")
	if len(committed) != len(sources) {
		t.Errorf("%d .templ files but %d generated files committed: run 'go tool templ generate -path connector/web'", len(sources), len(committed))
	}
	for _, s := range sources {
		gen := strings.TrimSuffix(s, ".templ") + "_templ.go"
		want, err := os.ReadFile(filepath.Join(dir, gen))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(gen)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not what %s generates (%v): run 'go tool templ generate -path connector/web' and commit the result", gen, s, err)
		}
	}
}
