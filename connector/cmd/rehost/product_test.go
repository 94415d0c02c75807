package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The product binary links no test peer: nothing under internal/lab, no
// shared fixture, no simulator of a client library.
func TestProductLinksNoTestPeer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(dep, "github.com/rehost/rehost/internal/"),
			dep == "github.com/rehost/rehost/testdata",
			strings.HasPrefix(dep, "github.com/vmware/govmomi/simulator"),
			strings.HasSuffix(dep, "/fake") && !strings.Contains(dep, "/internal/"):
			t.Errorf("the product links %s, which is for tests only", dep)
		}
	}
}

// The bounds of the product binary, in bytes (MB = 10⁶): as `make build`
// makes it (with its symbols and DWARF), and stripped as the appliance
// ships it.
const (
	maxUnstripped = 40_000_000
	maxStripped   = 35_000_000
)

// The product binary stays small: no reflection that reaches
// reflect.Value.Method or MethodByName (text/template's field evaluation
// is one: once it is reachable the linker keeps every exported method of
// every type in an interface — 803 EC2 client methods for the 11 called),
// and within its bounds, built as `make build` and the appliance build do.
func TestProductBinaryIsSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the product three times")
	}
	dir := t.TempDir()
	build := func(out string, ldflags ...string) (int64, string) {
		t.Helper()
		args := append([]string{"build", "-trimpath", "-o", out}, ldflags...)
		cmd := exec.Command("go", append(args, ".")...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%.2000s", strings.Join(args, " "), err, b)
		}
		if out == os.DevNull {
			return 0, string(b)
		}
		fi, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size(), string(b)
	}

	// -dumpdep prints the linker's reachability graph; it marks a
	// function that calls reflect's Method or MethodByName <ReflectMethod>.
	_, dump := build(os.DevNull, "-ldflags=-dumpdep")
	if !strings.Contains(dump, " -> ") {
		t.Fatalf("-dumpdep printed no graph:\n%.500s", dump)
	}
	sc := bufio.NewScanner(strings.NewReader(dump))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	reported := map[string]bool{}
	for sc.Scan() {
		line := sc.Text()
		caller, callee, ok := strings.Cut(line, " -> ")
		if !ok {
			continue
		}
		switch {
		case strings.Contains(caller, "<ReflectMethod>") && !reported[caller]:
			reported[caller] = true
			t.Errorf("%s is reachable and calls reflect's Method or MethodByName: the linker then keeps every exported method", caller)
		case (callee == "reflect.Value.MethodByName" || callee == "reflect.Value.Method") && !reported[line]:
			reported[line] = true
			t.Errorf("reachable: %s", line)
		}
	}

	size, _ := build(filepath.Join(dir, "rehost"))
	stripped, _ := build(filepath.Join(dir, "rehost-stripped"), "-buildvcs=false", "-ldflags=-s -w -buildid=")
	t.Logf("rehost: %.1f MB, %.1f MB stripped (bounds %d and %d MB)", float64(size)/1e6, float64(stripped)/1e6, maxUnstripped/1_000_000, maxStripped/1_000_000)
	if size > maxUnstripped {
		t.Errorf("rehost is %d bytes, over its bound of %d: see what grew with 'go tool nm -size -sort size bin/rehost'", size, maxUnstripped)
	}
	if stripped > maxStripped {
		t.Errorf("rehost stripped (as the appliance ships it) is %d bytes, over its bound of %d", stripped, maxStripped)
	}
}
