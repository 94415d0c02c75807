package web

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/replication"
)

// A run's live part shows each disk's bytes and percent while it stages,
// and a failed run's reason, step and what to do.
func TestRunFragment(t *testing.T) {
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	render := func(v *runView) string {
		var buf bytes.Buffer
		if err := pages["run-fragment"].ExecuteTemplate(&buf, "fragment", &view{D: v}); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	live := &runView{Run: api.ReplicationRun{ReplicationRunID: "sms-run-1", State: "ACTIVE"}, Current: "stage", CurrentTitle: "Export and upload the disks",
		Disks: []daemon.DiskProgress{{Disk: 0, Capacity: 40 << 20, Sent: 10 << 20, Total: 40 << 20}, {Disk: 1, Capacity: 8 << 20, Sent: 3 << 20, Total: 3 << 20, Staged: true}}}
	html := render(live)
	for _, want := range []string{"step: <strong>Export and upload the disks</strong>", "Disk 1 (40 MiB): 25% — 10 MiB of 40 MiB",
		`value="25"`, "Disk 2 (8.0 MiB): uploaded, a 3.0 MiB image", `value="100"`} {
		if !strings.Contains(html, want) {
			t.Errorf("live run: no %q in\n%s", want, html)
		}
	}
	if strings.Contains(html, "data-final") {
		t.Error("a live run's fragment says it is final")
	}
	failed := &runView{Run: api.ReplicationRun{ReplicationRunID: "sms-run-2", State: "FAILED", StatusMessage: "VM Import: ClientError: Unsupported kernel"},
		Final: true, Failed: "wait-import", FailedTitle: "VM Import", Advice: replication.Advice("wait-import", "VM Import: ClientError: Unsupported kernel")}
	html = render(failed)
	for _, want := range []string{"data-final", "Why it failed", "In the step “VM Import”: VM Import: ClientError: Unsupported kernel", "What to do", "operating system"} {
		if !strings.Contains(html, want) {
			t.Errorf("failed run: no %q in\n%s", want, html)
		}
	}
}
