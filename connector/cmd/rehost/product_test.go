package main

import (
	"os/exec"
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
