package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
)

// RunProgress is a run's progress in numbers, for `rehost run watch`, the
// API and the metrics. A number the engine does not record yet is zero, and
// Text (the stage's own words) is shown instead.
type RunProgress struct {
	// Step is the step the run is in (replication.Step*), "completed" or
	// "cleanup"; empty before it starts.
	Step  string         `json:"step,omitempty"`
	Text  string         `json:"text,omitempty"`
	Disks []DiskProgress `json:"disks,omitempty"`
	// Steps are the steps the run has finished, in order, with when each
	// ended and how long it took.
	Steps []StepTiming `json:"steps,omitempty"`
	// Failed names the step a failed run failed in.
	Failed string `json:"failedStep,omitempty"`
}

// DiskProgress is the staging of one disk.
type DiskProgress struct {
	Disk     int   `json:"disk"`     // 0-based, boot disk first
	Capacity int64 `json:"capacity"` // virtual size in bytes; 0 if unknown
	// Sent is how many bytes of the disk's image have reached the staging
	// bucket; Staged is set once all have.
	Sent   int64 `json:"sent"`
	Staged bool  `json:"staged,omitempty"`
}

// StepTiming is a finished step.
type StepTiming struct {
	Step     string        `json:"step"`
	Ended    time.Time     `json:"ended"`
	Duration time.Duration `json:"duration"`
}

// RunProgress reads a run's progress from the store.
//
// What the engine records today gives: the step and its text, each disk's
// capacity (from the catalog), its size once staged (the ledger's staged
// object) and step end times (step status). Bytes sent while a disk is still
// uploading are not recorded as a number yet: Sent stays 0 until the disk
// is staged. When the engine records numbers, only this function changes.
func (d *Daemon) RunProgress(ctx context.Context, run store.ReplicationRun) (RunProgress, error) {
	p := RunProgress{Step: run.Stage, Text: run.StageProgress}
	job, err := d.Store.GetJob(ctx, run.ReplicationJobID)
	if err != nil {
		return p, fmt.Errorf("progress of run %s: %w", run.ReplicationRunID, err)
	}
	if srv, err := d.Store.GetServer(ctx, job.ServerID); err == nil {
		var vm source.VM
		if json.Unmarshal([]byte(srv.Details), &vm) == nil {
			for i, dk := range vm.Disks {
				p.Disks = append(p.Disks, DiskProgress{Disk: i, Capacity: dk.CapacityBytes})
			}
		}
	}
	ledger, err := d.Store.LedgerForRun(ctx, run.ReplicationRunID)
	if err != nil {
		return p, fmt.Errorf("progress of run %s: %w", run.ReplicationRunID, err)
	}
	for _, le := range ledger {
		if le.Kind != store.KindS3Object || le.State == store.LedgerIntent {
			continue
		}
		var obj struct {
			replication.Staged
			Disk int `json:"disk"`
		}
		if json.Unmarshal(le.Data, &obj) != nil {
			continue
		}
		for len(p.Disks) <= obj.Disk {
			p.Disks = append(p.Disks, DiskProgress{Disk: len(p.Disks)})
		}
		p.Disks[obj.Disk].Sent, p.Disks[obj.Disk].Staged = obj.Size, true
	}
	steps, err := d.Store.Steps(ctx, run.ReplicationRunID)
	if err != nil {
		return p, fmt.Errorf("progress of run %s: %w", run.ReplicationRunID, err)
	}
	prev := run.StartedAt
	for _, s := range steps {
		if s.State == store.StepFailed {
			p.Failed = s.Step
		}
		if s.State != store.StepDone {
			continue
		}
		t := StepTiming{Step: s.Step, Ended: s.UpdatedAt}
		if !prev.IsZero() && s.UpdatedAt.After(prev) {
			t.Duration = s.UpdatedAt.Sub(prev)
		}
		p.Steps = append(p.Steps, t)
		prev = s.UpdatedAt
	}
	return p, nil
}
