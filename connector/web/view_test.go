package web

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/a-h/templ"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/replication"
)

// A run's live part shows each disk's bytes and percent while it stages,
// and a failed run's reason, step and what to do.
func TestRunFragment(t *testing.T) {
	render := func(v *runView) string { return renderHTML(t, runLive(v)) }
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

func renderHTML(t *testing.T, c templ.Component) string {
	t.Helper()
	var buf bytes.Buffer
	if err := c.Render(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// The jobs table (the jobs page and the overview) names a live run's step
// by its title from the step table, as the run page does.
func TestJobsTableStepTitles(t *testing.T) {
	run := api.ReplicationRun{ReplicationRunID: "sms-run-1", State: "ACTIVE",
		StageDetails: &api.ReplicationRunStageDetails{Stage: "wait-import", StageProgress: "2% validating"}}
	html := renderHTML(t, jobsTable([]api.ReplicationJob{{ReplicationJobID: "sms-job-1", State: "ACTIVE", Frequency: 12,
		ReplicationRunList: []api.ReplicationRun{run}}}))
	if !strings.Contains(html, "VM Import · 2% validating") || strings.Contains(html, "wait-import") {
		t.Errorf("the jobs table names the step by its internal name:\n%s", html)
	}
}

// A run queued for VM Import slots says where it stands in the queue, in
// the jobs table and on its page.
func TestStageTextSlotWait(t *testing.T) {
	run := api.ReplicationRun{ReplicationRunID: "sms-run-2", State: "ACTIVE",
		StageDetails: &api.ReplicationRunStageDetails{Stage: "import", StageProgress: "waiting for an import slot"},
		Rehost: &api.ReplicationRunEx{ReplicationJobID: "sms-job-2", Progress: &daemon.RunProgress{Step: "import",
			SlotWait: &daemon.SlotWait{Since: time.Now(), Region: "us-east-1", Kind: "image", Slots: 1, Ahead: 1}}}}
	got := stageText(run)
	if !strings.HasPrefix(got, "Start VM Import · waiting for a VM Import slot in us-east-1 since ") || !strings.HasSuffix(got, " (1 run ahead)") {
		t.Errorf("a run waiting for a slot: %q", got)
	}
}

// Times a message carries are shown as every other time of the console.
func TestMessageTimes(t *testing.T) {
	html := renderHTML(t, withTimes("job resumed; next run at 2026-12-07T09:00:00Z, then 2026-12-07T10:00:00+01:00."))
	want := `job resumed; next run at <time datetime="2026-12-07T09:00:00Z">2026-12-07 09:00:00 UTC</time>, then ` +
		`<time datetime="2026-12-07T09:00:00Z">2026-12-07 09:00:00 UTC</time>.`
	if html != want {
		t.Errorf("got\n%s\nwant\n%s", html, want)
	}
}
