package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
)

// TestRenderRunShowsSlotWaits: `rehost run watch` says why a run is not
// moving: PENDING runs wait for a run slot, and a run queued in its import
// step for one of the region's VM Import slots says that.
func TestRenderRunShowsSlotWaits(t *testing.T) {
	pending := renderRun(api.ReplicationRun{ReplicationRunID: "sms-run-1", State: "PENDING", Rehost: &api.ReplicationRunEx{ReplicationJobID: "sms-job-1"}})
	if got := strings.Join(pending, "\n"); !strings.Contains(got, "PENDING (waiting for a run slot)") {
		t.Errorf("pending run rendered as %q", got)
	}
	queued := renderRun(api.ReplicationRun{ReplicationRunID: "sms-run-2", State: "ACTIVE", Rehost: &api.ReplicationRunEx{ReplicationJobID: "sms-job-2",
		Progress: &daemon.RunProgress{Step: "import", Title: "Start VM Import", Percent: 60, Text: "waiting for an import slot"}}})
	got := strings.Join(queued, "\n")
	if !strings.Contains(got, "step: Start VM Import") || !strings.Contains(got, "Start VM Import: waiting for an import slot") {
		t.Errorf("run queued for an import slot rendered as %q", got)
	}
	// Where the daemon knows the queue, the run says where it stands in it.
	since := time.Date(2026, 12, 7, 12, 0, 5, 0, time.Local)
	for _, c := range []struct {
		w    daemon.SlotWait
		want string
	}{
		{daemon.SlotWait{Since: since, Region: "us-east-1", Kind: "image", Slots: 1, Ahead: 1}, "waiting for a VM Import slot in us-east-1 since 12:00:05 (1 run ahead)"},
		{daemon.SlotWait{Since: since, Region: "us-east-1", Kind: "image", Slots: 1, Ahead: 0}, "waiting for a VM Import slot in us-east-1 since 12:00:05 (next in line)"},
		{daemon.SlotWait{Since: since, Region: "eu-west-1", Kind: "snapshot", Slots: 3, Ahead: 2}, "waiting for 3 VM Import snapshot slots in eu-west-1 since 12:00:05 (2 runs ahead)"},
		{daemon.SlotWait{Since: since, Ahead: -1}, "waiting for a VM Import slot since 12:00:05"},
		{daemon.SlotWait{Since: since, Region: "us-east-1", Kind: "snapshot", Slots: 1, Ahead: 1, InLine: 3}, "waiting for a VM Import slot in us-east-1 since 12:00:05 (2nd of 3 in line)"},
		{daemon.SlotWait{Since: since, Region: "us-east-1", Kind: "snapshot", Slots: 1, Ahead: 0, InLine: 1}, "waiting for a VM Import slot in us-east-1 since 12:00:05 (next in line)"},
	} {
		w := c.w
		lines := renderRun(api.ReplicationRun{ReplicationRunID: "sms-run-3", State: "ACTIVE", Rehost: &api.ReplicationRunEx{ReplicationJobID: "sms-job-3",
			Progress: &daemon.RunProgress{Step: "import", Title: "Start VM Import", Text: "waiting for an import slot", SlotWait: &w}}})
		if got := strings.Join(lines, "\n"); !strings.HasSuffix(got, "\n  "+c.want) || strings.Contains(got, "Start VM Import: waiting") {
			t.Errorf("wait %+v rendered as %q, want it to end in %q", w, got, c.want)
		}
	}
}
