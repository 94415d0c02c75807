package replication_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/rehost/rehost/connector/replication"
)

// The docs' table of a run's steps is the step table's: a step added,
// renamed or re-described in its own file fails this test until the docs
// say the same (REHOST_UPDATE_DOCS=1 rewrites the block).
func TestDocsListTheSteps(t *testing.T) {
	const path = "../../docs/architecture.md"
	const begin, end = "<!-- steps: generated from replication.Steps(); TestDocsListTheSteps checks it -->\n", "<!-- end of steps -->\n"
	var b strings.Builder
	b.WriteString(begin)
	b.WriteString("| step | title | runs | weight | metric | makes, and finds again after a crash |\n|---|---|---|---|---|---|\n")
	for _, s := range replication.Steps() {
		runs := "both"
		if len(s.Modes) > 0 {
			runs = strings.Join(s.Modes, ", ")
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | `%s` | %s |\n", s.Name, s.Title, runs, s.Weight, s.Metric, s.Effects)
	}
	b.WriteString(end)
	want := b.String()

	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no block %q … %q", path, begin, end)
	}
	if got := text[i : j+len(end)]; got != want {
		if os.Getenv("REHOST_UPDATE_DOCS") != "" {
			if err := os.WriteFile(path, []byte(text[:i]+want+text[j+len(end):]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("%s lists other steps than the step table; run REHOST_UPDATE_DOCS=1 go test -run TestDocsListTheSteps ./connector/replication, or make it:\n%s", path, want)
	}
}
