package cli

import (
	"strings"
	"testing"

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
}
