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
	"github.com/rehost/rehost/pkg/disk"
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

// A run's page says how each disk the connector encoded was, and on what
// measured rates: the choice, what the stream waited on, the link, the
// source and each encoding's rate and ratio; a VHD its plan.
func TestRunEncodings(t *testing.T) {
	pc := disk.Pacing{Format: "vmdk", Choice: disk.EncodeDeflate, Bottleneck: disk.BottleneckLink, Decisions: 6, Switches: 2,
		LinkBps: 4_000_000, SourceBps: 300_000_000, Deflated: 500, Stored: 140, Zero: 900,
		Encodings: []disk.EncodingRate{{Encoding: disk.EncodeStore, CPUBps: 2_000_000_000, Ratio: 1}, {Encoding: disk.EncodeDeflate, CPUBps: 180_000_000, Ratio: 0.19}}}
	vhd := disk.Pacing{Format: "vhd", Plan: "dense, incompressible data"}
	rep := &api.RunReplication{Mode: "full", Encodings: []api.DiskEncoding{{Disk: 0, Pacing: pc, Summary: pc.Summary()}, {Disk: 1, Pacing: vhd, Summary: vhd.Summary()}}}
	html := renderHTML(t, runLive(&runView{Run: api.ReplicationRun{ReplicationRunID: "sms-run-1", State: "COMPLETED",
		Rehost: &api.ReplicationRunEx{Replication: rep}}, Final: true}))
	for _, want := range []string{`id="encodings"`, `data-choice="deflate"`, "<td>deflated</td>", "<td>link</td>", "<td>32 Mbit/s</td>", "<td>2.4 Gbit/s</td>",
		"store: 16 Gbit/s to 100%", "deflate: 1.44 Gbit/s to 19%", "500 deflated, 0 Huffman-coded, 140 stored, 900 empty; 6 decisions, 2 switches",
		"Disk 2 <span class=\"sub\">vhd</span>", "sent as vhd: dense, incompressible data"} {
		if !strings.Contains(html, want) {
			t.Errorf("no %q in\n%s", want, html)
		}
	}
}
