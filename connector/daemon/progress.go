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
// API and the metrics.
type RunProgress struct {
	// Step is the step the run is in (replication.Step*), "completed" or
	// "cleanup"; empty before it starts. Title says it in words, from the
	// step table.
	Step  string `json:"step,omitempty"`
	Title string `json:"title,omitempty"`
	// Percent is the share of the whole run done, from the steps' weights.
	Percent int            `json:"percent"`
	Text    string         `json:"text,omitempty"`
	Disks   []DiskProgress `json:"disks,omitempty"`
	// ImportPercent is VM Import's own progress.
	ImportPercent int `json:"importPercent,omitempty"`
	// Steps are the steps the run has finished, in order, with when each
	// ended and how long it took.
	Steps []StepTiming `json:"steps,omitempty"`
	// Failed names the step a failed run failed in.
	Failed string `json:"failedStep,omitempty"`
	// SlotWait is set while the run waits for VM Import slots.
	SlotWait *SlotWait `json:"slotWait,omitempty"`
}

// SlotWait says a run waits for VM Import slots (the region's quota of
// concurrent import tasks is taken), since when and where it stands.
type SlotWait struct {
	Since time.Time `json:"since"`
	// Region and Kind (image or snapshot) name the pool waited for, Slots
	// how many of its slots the run's import needs (one per ImportSnapshot
	// task); Ahead is how many runs asked before it and still wait: slots
	// are granted oldest first. Ahead is -1 and the rest empty when the
	// queue is not this connector's (a fleet's slots are in the store).
	Region string `json:"region,omitempty"`
	Kind   string `json:"kind,omitempty"`
	Slots  int    `json:"slots,omitempty"`
	Ahead  int    `json:"ahead"`
	// InLine is how many runs wait in that queue, this one included (0
	// when unknown): the run is Ahead+1st of InLine.
	InLine int `json:"inLine,omitempty"`
}

// DiskProgress is the staging of one disk.
type DiskProgress struct {
	Disk     int   `json:"disk"`     // 0-based, boot disk first
	Capacity int64 `json:"capacity"` // virtual size in bytes; 0 if unknown
	// Sent is how many bytes of the disk's image have reached the staging
	// bucket; Total is the image's size when known (else the capacity), and
	// Staged is set once all have.
	Sent   int64 `json:"sent"`
	Total  int64 `json:"total,omitempty"`
	Staged bool  `json:"staged,omitempty"`
}

// StepTiming is a finished step.
type StepTiming struct {
	Step     string        `json:"step"`
	Ended    time.Time     `json:"ended"`
	Duration time.Duration `json:"duration"`
}

// String says where the run stands: "waiting for a VM Import slot in
// us-east-1 since 12:00:05 (2nd of 3 in line)", in local time.
func (w SlotWait) String() string {
	what := "a VM Import slot"
	if w.Slots > 1 {
		what = fmt.Sprintf("%d VM Import %s slots", w.Slots, w.Kind)
	}
	s := "waiting for " + what
	if w.Region != "" {
		s += " in " + w.Region
	}
	s += " since " + w.Since.Local().Format(time.TimeOnly)
	switch {
	case w.InLine > 1 && w.Ahead >= 0:
		s += fmt.Sprintf(" (%s of %d in line)", ordinal(w.Ahead+1), w.InLine)
	case w.Ahead == 0:
		s += " (next in line)"
	case w.Ahead == 1:
		s += " (1 run ahead)"
	case w.Ahead > 1:
		s += fmt.Sprintf(" (%d runs ahead)", w.Ahead)
	}
	return s
}

// ordinal is n as "1st", "2nd", "3rd", "4th", …
func ordinal(n int) string {
	suffix := "th"
	if n%100 < 11 || n%100 > 13 {
		switch n % 10 {
		case 1:
			suffix = "st"
		case 2:
			suffix = "nd"
		case 3:
			suffix = "rd"
		}
	}
	return fmt.Sprintf("%d%s", n, suffix)
}

// RunProgress reads a run's progress: the numbers the engine records on the
// run (bytes per disk, VM Import's percent, step times), with each disk's
// capacity from the catalog.
func (d *Daemon) RunProgress(ctx context.Context, run store.ReplicationRun) (RunProgress, error) {
	rp := run.Progress
	p := RunProgress{Step: rp.Step, Text: run.StageProgress, ImportPercent: rp.ImportPercent, Failed: rp.FailedStep}
	if p.Step == "" {
		p.Step = run.Stage
	}
	if p.Step != "" {
		p.Title = replication.StepInfo(p.Step).Title
	}
	if !rp.SlotWaitSince.IsZero() && run.State == store.RunActive {
		p.SlotWait = &SlotWait{Since: rp.SlotWaitSince, Ahead: -1}
		if w, ok := d.Sched.ImportSlotWait(run.ReplicationRunID); ok {
			p.SlotWait.Region, p.SlotWait.Kind, p.SlotWait.Slots, p.SlotWait.Ahead, p.SlotWait.InLine = w.Region, w.Kind, w.Slots, w.Ahead, w.InLine
		}
	}
	p.Percent = replication.Overall(rp)
	if run.State == store.RunCompleted {
		p.Percent = 100
	}
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
	for _, dp := range rp.Disks {
		for len(p.Disks) <= dp.Disk {
			p.Disks = append(p.Disks, DiskProgress{Disk: len(p.Disks)})
		}
		x := &p.Disks[dp.Disk]
		x.Sent, x.Total = dp.BytesDone, dp.BytesTotal
		x.Staged = dp.BytesTotal > 0 && dp.BytesDone == dp.BytesTotal
	}
	for _, s := range rp.Steps {
		if s.Ended.IsZero() {
			continue
		}
		p.Steps = append(p.Steps, StepTiming{Step: s.Step, Ended: s.Ended, Duration: s.Ended.Sub(s.Started)})
	}
	return p, nil
}
