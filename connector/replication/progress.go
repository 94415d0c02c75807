package replication

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/store"
)

// Progress is written off the data path: the workers that move bytes only
// add to counters (aws.Tracker), and a ticker of the step's reads them about
// once every Engine.ProgressEvery to write the store, persist what a resume
// needs and tell the source (vCenter's lease progress). A slow store or
// source delays the next report, never the bytes.

// setStep records the step the run is in (Stage and Progress.Step), and
// when the previous one ended and this one began.
func (r *run) setStep(ctx context.Context, name string) {
	now := time.Now()
	r.updateRun(ctx, func(x *store.ReplicationRun) {
		x.Stage, x.StageProgress, x.Progress.Step = name, "", name
		if name == stageCompleted {
			x.StageProgress = "100%"
		}
		enterStep(&x.Progress, name, now)
	})
}

// enterStep ends the step in progress and begins name, unless name was
// entered before (a resumed or retried run keeps its first timing).
func enterStep(p *store.RunProgress, name string, now time.Time) {
	if n := len(p.Steps); n > 0 && p.Steps[n-1].Step != name && p.Steps[n-1].Ended.IsZero() {
		p.Steps[n-1].Ended = now
	}
	if name == stageCompleted || name == stageCleanup {
		return
	}
	for _, s := range p.Steps {
		if s.Step == name {
			return
		}
	}
	p.Steps = append(p.Steps, store.StepTime{Step: name, Started: now})
}

func (r *run) updateRun(ctx context.Context, fn func(*store.ReplicationRun)) {
	_, err := r.e.Store.UpdateRun(ctx, r.run.ReplicationRunID, func(x *store.ReplicationRun) error {
		fn(x)
		return nil
	})
	if err != nil {
		r.log.Warn("record progress", "err", err)
	}
}

// diskProgress records disk i's bytes staged of its total and the bytes
// read from the source for them, and the stage progress in words ("disk 1
// of 2: 1.2 GiB of 4.0 GiB (30%)"); pace, when set, replaces how the disk
// is being encoded.
func (r *run) diskProgress(ctx context.Context, i int, done, total, read int64, pace *disk.Pacing) {
	pct := 0
	if total > 0 {
		pct = int(min(100, done*100/total))
	}
	text := fmt.Sprintf("disk %d of %d: %s of %s (%d%%)", i+1, len(r.vm.Disks), humanize.IBytes(uint64(done)), humanize.IBytes(uint64(total)), pct)
	r.updateRun(ctx, func(x *store.ReplicationRun) {
		for len(x.Progress.Disks) < len(r.vm.Disks) {
			n := len(x.Progress.Disks)
			x.Progress.Disks = append(x.Progress.Disks, store.DiskProgress{Disk: n, BytesTotal: r.vm.Disks[n].CapacityBytes})
		}
		d := &x.Progress.Disks[i]
		d.Disk, d.BytesDone, d.BytesTotal, d.BytesRead = i, done, total, &read
		if pace != nil {
			d.Pacing = pace
		}
		x.StageProgress = text
	})
}

// importProgress records VM Import's percent and status.
func (r *run) importProgress(ctx context.Context, pct int, status string) {
	text := fmt.Sprintf("%d%%", pct)
	if status != "" {
		text += " " + status
	}
	r.updateRun(ctx, func(x *store.ReplicationRun) {
		x.Progress.ImportPercent, x.StageProgress = pct, text
	})
}

// ticker calls report from a goroutine of its own about once every
// ProgressEvery until stop is called; stop waits for it, then calls report
// one last time with final set. The work being reported on never waits for
// report.
func (r *run) ticker(ctx context.Context, report func(ctx context.Context, final bool)) (stop func()) {
	every := cmp.Or(r.e.ProgressEvery, time.Second)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				report(ctx, false)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			report(context.WithoutCancel(ctx), true)
		})
	}
}
