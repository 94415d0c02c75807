package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Admission admits an import's ImportSnapshot tasks within the region's
// quota: VM Import refuses a task beyond it rather than queueing it.
type Admission struct {
	// Slot waits for one task's slot and returns the function that frees
	// it. Nil: Limit bounds the tasks instead.
	Slot func(ctx context.Context) (release func(), err error)
	// Limit, when Slot is nil, is how many of the import's tasks run at
	// once; 0 starts them all.
	Limit int
	// Intend, optional, records disk i's client token before its task is
	// started; its error stops the import before the start.
	Intend func(ctx context.Context, disk int, token string) error
	// Started, optional, records the task disk i's start returned.
	Started func(ctx context.Context, disk int, taskID string) error
}

// ImportAdmitted imports in.Disks one ImportSnapshot task per disk, starting
// a task only once adm admits it and the rest as earlier ones complete, then
// registers the AMI. known holds the task ids of disks already started (by
// disk index, "" for none), as a caller's ledger has them after a restart; a
// disk whose intent was recorded but whose id was not is started again under
// the same client token, which EC2 answers with the task already started,
// so no disk gets two tasks. The returned Import names the tasks started,
// also on error, for the caller to cancel. A task that fails cancels the
// others started.
func (t *Target) ImportAdmitted(ctx context.Context, in ImportInput, known []string, adm Admission, onProgress func(ImportStatus)) (Import, Result, error) {
	if err := in.validate(); err != nil {
		return Import{}, Result{}, fmt.Errorf("import: %w", err)
	}
	if len(in.Snapshots) > 0 || (in.Mode != "" && in.Mode != ModeImportSnapshot) {
		return Import{}, Result{}, errors.New("import: admission takes staged disks imported as snapshots")
	}
	in.Mode = ModeImportSnapshot
	in, imp, tags := prepare(in)
	q, err := t.ec2Query()
	if err != nil {
		return imp, Result{}, fmt.Errorf("import: %w", err)
	}
	n := len(in.Disks)
	ids := make([]string, n)
	copy(ids, known)
	slot := adm.Slot
	if slot == nil {
		slot = LimitSlot(adm.Limit)
	}
	actx, cancel := context.WithCancel(ctx)
	releases := map[int]func(){}
	type grant struct {
		release func()
		err     error
	}
	var grants chan grant
	defer func() {
		cancel()
		if grants != nil {
			if g := <-grants; g.err == nil {
				g.release()
			}
		}
		for _, r := range releases {
			r()
		}
	}()
	startedImport := func() Import {
		out := imp
		out.TaskIDs = nil
		for _, id := range ids {
			if id != "" {
				out.TaskIDs = append(out.TaskIDs, id)
			}
		}
		return out
	}
	// A task started before a restart holds a quota place already: it takes
	// its slot back, while it runs, before new tasks are admitted.
	resumed := startedImport()
	var active map[string]bool
	if len(resumed.TaskIDs) > 0 {
		st, err := t.Status(ctx, resumed)
		if err != nil {
			return resumed, Result{}, fmt.Errorf("import: %w", err)
		}
		active = map[string]bool{}
		for _, ts := range st.Tasks {
			active[ts.TaskID] = ts.Status != "completed"
		}
	}
	for i, id := range ids {
		if active[id] {
			r, err := slot(ctx)
			if err != nil {
				return startedImport(), Result{}, fmt.Errorf("import: wait for the slot of disk %d's task %s: %w", i, id, err)
			}
			releases[i] = r
		}
	}
	next := func() int {
		for i, id := range ids {
			if id == "" {
				return i
			}
		}
		return -1
	}
	done := make([]bool, n)
	interval := t.cfg.PollInitial
	lastProgress := -1
	for {
		if i := next(); i >= 0 && grants == nil {
			grants = make(chan grant, 1)
			go func(ch chan grant) {
				r, err := slot(actx)
				ch <- grant{r, err}
			}(grants)
		}
		imp.TaskIDs = nil
		var idx []int
		for i, id := range ids {
			if id != "" {
				imp.TaskIDs = append(imp.TaskIDs, id)
				idx = append(idx, i)
			}
		}
		if len(idx) > 0 {
			st, err := t.Status(ctx, imp)
			if err != nil {
				return imp, Result{}, fmt.Errorf("import: %w", err)
			}
			sum := 0
			for k, ts := range st.Tasks {
				i := idx[k]
				switch ts.Status {
				case "completed":
					sum += 100
					if !done[i] {
						done[i] = true
						if r := releases[i]; r != nil {
							r()
							delete(releases, i)
						}
					}
				case "deleted", "deleting":
					cctx, c := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
					// What completed is the caller's to delete:
					// CancelImport again returns it.
					if _, err := t.CancelImport(cctx, imp); err != nil {
						t.log.Warn("cancel the other snapshot imports", "tasks", imp.TaskIDs, "err", err)
					}
					c()
					return imp, Result{}, &ImportError{TaskID: ts.TaskID, Status: ts.Status, StatusMessage: ts.StatusMessage}
				default:
					sum += ts.Progress
				}
			}
			if p := sum / n; p != lastProgress && onProgress != nil {
				lastProgress = p
				onProgress(ImportStatus{Status: "active", Progress: p, Tasks: st.Tasks})
			}
			if len(idx) == n && !slices.Contains(done, false) {
				res, err := t.finish(ctx, imp, st)
				if err != nil {
					return imp, Result{}, err
				}
				if onProgress != nil {
					onProgress(ImportStatus{Status: "completed", Progress: 100, Tasks: st.Tasks})
				}
				return imp, res, nil
			}
		}
		timer := time.NewTimer(interval)
		select {
		case g := <-grants:
			timer.Stop()
			grants = nil
			if g.err != nil {
				return startedImport(), Result{}, fmt.Errorf("import: wait for a VM Import snapshot slot: %w", g.err)
			}
			i := next()
			releases[i] = g.release
			token := DiskToken(in.ClientToken, i)
			if adm.Intend != nil {
				if err := adm.Intend(ctx, i, token); err != nil {
					return startedImport(), Result{}, fmt.Errorf("import: record the intent of disk %d's task: %w", i, err)
				}
			}
			id, err := t.startDisk(ctx, q, in, tags, i)
			if err != nil {
				return startedImport(), Result{}, fmt.Errorf("import: %w", err)
			}
			ids[i] = id
			if adm.Started != nil {
				if err := adm.Started(ctx, i, id); err != nil {
					return startedImport(), Result{}, fmt.Errorf("import: record disk %d's task %s: %w", i, id, err)
				}
			}
			interval = t.cfg.PollInitial
		case <-timer.C:
			interval = min(t.cfg.PollMax, interval*3/2)
		case <-ctx.Done():
			timer.Stop()
			return startedImport(), Result{}, fmt.Errorf("import: %w", ctx.Err())
		}
	}
}

// LimitSlot is an Admission.Slot admitting limit tasks at once (every
// task when limit is 0).
func LimitSlot(limit int) func(context.Context) (func(), error) {
	if limit <= 0 {
		return func(context.Context) (func(), error) { return func() {}, nil }
	}
	sem := make(chan struct{}, limit)
	return func(ctx context.Context) (func(), error) {
		select {
		case sem <- struct{}{}:
			return func() { <-sem }, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
