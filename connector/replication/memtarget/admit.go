package memtarget

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// ImportAdmitted imports the staged disks one ImportSnapshot task per disk,
// as the AWS target does: a disk's task starts only once adm admits its
// slot (adm.Slot, else adm.Limit at once), holds the slot while it runs and
// frees it when it completes; known disks (task ids from before a restart)
// take a slot back only while their task still runs, and a disk started
// again finds its task by its client token (awstarget.DiskToken). Tasks
// complete one at a time whenever no further slot is free at once, the
// oldest first; a task whose object has gone fails and cancels the others.
// When every disk is imported the AMI is registered from their snapshots,
// idempotent by name. The hook sees "ImportAdmitted", "ImportSnapshot"
// (each start) and "RegisterImage".
func (t *Target) ImportAdmitted(ctx context.Context, in awstarget.ImportInput, known []string, adm awstarget.Admission, progress func(awstarget.ImportStatus)) (awstarget.Import, awstarget.Result, error) {
	if err := t.at(ctx, "ImportAdmitted", "before"); err != nil {
		return awstarget.Import{}, awstarget.Result{}, err
	}
	if in.ClientToken == "" || len(in.Disks) == 0 || len(in.Snapshots) > 0 || (in.Mode != "" && in.Mode != awstarget.ModeImportSnapshot) {
		return awstarget.Import{}, awstarget.Result{}, apiErr("InvalidParameter", "admission takes staged disks imported as snapshots, with a client token")
	}
	in.Mode = awstarget.ModeImportSnapshot
	in.Name = cmp.Or(in.Name, "rehost-"+in.ClientToken)
	n := len(in.Disks)
	ids := make([]string, n)
	copy(ids, known)
	imp := awstarget.Import{Mode: awstarget.ModeImportSnapshot, ClientToken: in.ClientToken, Name: in.Name,
		Description: in.Description, Platform: in.Platform, BootMode: in.BootMode, Tags: maps.Clone(in.Tags)}
	started := func() awstarget.Import {
		out := imp
		for _, id := range ids {
			if id != "" {
				out.TaskIDs = append(out.TaskIDs, id)
			}
		}
		return out
	}
	slot := adm.Slot
	if slot == nil {
		slot = awstarget.LimitSlot(adm.Limit)
	}
	type grant struct {
		release func()
		err     error
	}
	actx, cancel := context.WithCancel(ctx)
	var grants chan grant
	held := map[int]func(){} // disk → the slot its running task holds
	var running []int        // disks whose task runs, oldest first
	defer func() {
		cancel()
		if grants != nil {
			if g := <-grants; g.err == nil {
				g.release()
			}
		}
		for _, r := range held {
			r()
		}
	}()

	// Tasks started before a restart: those still running take their
	// slot back before any new task is admitted.
	for i, id := range ids {
		if id == "" {
			continue
		}
		state, err := t.taskState(id, in.ClientToken, i)
		if err != nil {
			return started(), awstarget.Result{}, err
		}
		if state == "active" {
			r, err := slot(ctx)
			if err != nil {
				return started(), awstarget.Result{}, fmt.Errorf("import: wait for the slot of disk %d's task %s: %w", i, id, err)
			}
			held[i] = r
			running = append(running, i)
		}
	}
	next := func() int { return slices.Index(ids, "") }
	start := func(g grant) error {
		i := next()
		held[i] = g.release
		token := awstarget.DiskToken(in.ClientToken, i)
		if adm.Intend != nil {
			if err := adm.Intend(ctx, i, token); err != nil {
				return fmt.Errorf("import: record the intent of disk %d's task: %w", i, err)
			}
		}
		id, state, err := t.startSnapshotTask(ctx, in, i, token)
		if err != nil {
			return err
		}
		ids[i] = id
		if state == "active" {
			running = append(running, i)
		} else {
			// Started before a restart and ended since.
			g.release()
			delete(held, i)
		}
		if adm.Started != nil {
			if err := adm.Started(ctx, i, id); err != nil {
				return fmt.Errorf("import: record disk %d's task %s: %w", i, id, err)
			}
		}
		return nil
	}
	for {
		if next() >= 0 && grants == nil {
			grants = make(chan grant, 1)
			go func(ch chan grant) {
				r, err := slot(actx)
				ch <- grant{r, err}
			}(grants)
		}
		var g *grant
		select {
		case x := <-grants:
			g = &x
		case <-ctx.Done():
			return started(), awstarget.Result{}, fmt.Errorf("import: %w", context.Cause(ctx))
		default:
			if len(running) == 0 && next() >= 0 {
				// Nothing of this import runs: its next slot is held by
				// others, wait for it.
				select {
				case x := <-grants:
					g = &x
				case <-ctx.Done():
					return started(), awstarget.Result{}, fmt.Errorf("import: %w", context.Cause(ctx))
				}
			}
		}
		if g != nil {
			grants = nil
			if g.err != nil {
				return started(), awstarget.Result{}, fmt.Errorf("import: wait for a VM Import snapshot slot: %w", g.err)
			}
			if err := start(*g); err != nil {
				return started(), awstarget.Result{}, err
			}
			continue
		}
		if len(running) > 0 {
			// No slot is free at once: the oldest task completes.
			i := running[0]
			running = running[1:]
			if err := t.completeSnapshotTask(ids[i], started()); err != nil {
				return started(), awstarget.Result{}, err
			}
			held[i]()
			delete(held, i)
			if progress != nil {
				done := 0
				for _, id := range ids {
					if st, _ := t.taskState(id, "", 0); st == "completed" {
						done++
					}
				}
				progress(awstarget.ImportStatus{Status: "active", Progress: done * 100 / n})
			}
			continue
		}
		// Every disk's task has completed.
		res, err := t.registerSnapshots(ctx, started())
		if err != nil {
			return started(), awstarget.Result{}, err
		}
		if progress != nil {
			progress(awstarget.ImportStatus{Status: "completed", Progress: 100})
		}
		return started(), res, nil
	}
}

// taskState is the state of ImportSnapshot task id; with a base token, the
// task must be disk i's of that import.
func (t *Target) taskState(id, base string, i int) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	im, ok := t.imports[id]
	if !ok || im.input.Mode != awstarget.ModeImportSnapshot {
		return "", apiErr("InvalidConversionTaskId", "The import task %s does not exist", id)
	}
	if base != "" && (im.base != base || im.disk != i) {
		return "", apiErr("InvalidConversionTaskId", "The import task %s is not disk %d's of import %s", id, i, base)
	}
	return im.state, nil
}

// startSnapshotTask starts disk i's ImportSnapshot task, idempotent by its
// client token, and returns its id and state.
func (t *Target) startSnapshotTask(ctx context.Context, in awstarget.ImportInput, i int, token string) (string, string, error) {
	if err := t.at(ctx, "ImportSnapshot", "before"); err != nil {
		return "", "", err
	}
	d := in.Disks[i]
	t.mu.Lock()
	id, ok := t.tokens[token]
	if !ok {
		if _, ok := t.objects[d.Key]; !ok || d.Bucket != Bucket {
			t.mu.Unlock()
			return "", "", apiErr("InvalidParameter", "ClientError: the object s3://%s/%s does not exist", d.Bucket, d.Key)
		}
		id = t.id("import-snap")
		t.tokens[token] = id
		one := in
		one.Disks, one.Tags = []awstarget.Object{d}, maps.Clone(in.Tags)
		t.imports[id] = &imp{id: id, token: token, state: "active", input: one, disk: i, base: in.ClientToken, name: in.Name}
	}
	state := t.imports[id].state
	t.mu.Unlock()
	return id, state, t.at(ctx, "ImportSnapshot", "after")
}

// completeSnapshotTask converts task id's object into a snapshot; an object
// that has gone fails the task and cancels the others of imp.
func (t *Target) completeSnapshotTask(id string, imp awstarget.Import) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	im := t.imports[id]
	if im.state != "active" {
		if im.state == "completed" {
			return nil
		}
		return &awstarget.ImportError{TaskID: im.id, Status: im.state, StatusMessage: im.msg}
	}
	d := im.input.Disks[0]
	obj, ok := t.objects[d.Key]
	if !ok {
		im.state, im.msg = "deleted", fmt.Sprintf("ClientError: Unable to read the disk s3://%s/%s", d.Bucket, d.Key)
		for _, other := range imp.TaskIDs {
			if o := t.imports[other]; o != nil && o.state == "active" {
				o.state, o.msg = "deleted", "User cancelled"
			}
		}
		return &awstarget.ImportError{TaskID: im.id, Status: im.state, StatusMessage: im.msg}
	}
	s := &Snapshot{ID: t.id("snap"), Content: bytes.Clone(obj), Tags: map[string]string{}}
	t.snapshots[s.ID] = s
	im.state, im.result = "completed", awstarget.Result{SnapshotIDs: []string{s.ID}}
	return nil
}

// registerSnapshots registers the AMI of an import's completed tasks (in
// disk order), or finds the one registered under its name before.
func (t *Target) registerSnapshots(ctx context.Context, imp awstarget.Import) (awstarget.Result, error) {
	if err := t.at(ctx, "RegisterImage", "before"); err != nil {
		return awstarget.Result{}, err
	}
	t.mu.Lock()
	var snaps []string
	for _, id := range imp.TaskIDs {
		snaps = append(snaps, t.imports[id].result.SnapshotIDs...)
	}
	img := t.imageNamedLocked(imp.Name)
	if img == nil {
		t.clock = t.clock.Add(time.Second)
		img = &Image{ID: t.id("ami"), Name: imp.Name, Tags: map[string]string{}, Snapshots: slices.Clone(snaps), Created: t.clock}
		t.images[img.ID] = img
	}
	res := awstarget.Result{ImageID: img.ID, SnapshotIDs: slices.Clone(img.Snapshots)}
	t.mu.Unlock()
	return res, t.at(ctx, "RegisterImage", "after")
}

func (t *Target) imageNamedLocked(name string) *Image {
	for _, id := range slices.Sorted(maps.Keys(t.images)) {
		if t.images[id].Name == name {
			return t.images[id]
		}
	}
	return nil
}

// cancelSnapshotsLocked cancels an import of snapshots: its tasks still
// running, handing back the snapshots of those completed and the image
// registered under its name.
func (t *Target) cancelSnapshotsLocked(ref awstarget.Import) (awstarget.Result, error) {
	var res awstarget.Result
	for _, id := range ref.TaskIDs {
		im, ok := t.imports[id]
		if !ok || im.input.Mode != awstarget.ModeImportSnapshot {
			return res, apiErr("InvalidConversionTaskId", "The import task %s does not exist", id)
		}
		switch im.state {
		case "active":
			im.state, im.msg = "deleted", "User cancelled"
		case "completed":
			res.SnapshotIDs = append(res.SnapshotIDs, im.result.SnapshotIDs...)
		}
	}
	if ref.Name != "" {
		if img := t.imageNamedLocked(ref.Name); img != nil {
			res.ImageID = img.ID
		}
	}
	return res, nil
}

// findSnapshotImportsLocked lists the imports of snapshots whose tasks
// match in, one Import per import's client token, its tasks in disk order.
func (t *Target) findSnapshotImportsLocked(in awstarget.FindImportsInput) []awstarget.Import {
	groups := map[string][]*imp{}
	for _, im := range t.imports {
		if im.input.Mode != awstarget.ModeImportSnapshot {
			continue
		}
		if in.ClientToken != "" && im.base != in.ClientToken {
			continue
		}
		if v, ok := im.input.Tags[in.TagKey]; in.TagKey != "" && (!ok || v != in.TagValue) {
			continue
		}
		groups[im.base] = append(groups[im.base], im)
	}
	var out []awstarget.Import
	for _, base := range slices.Sorted(maps.Keys(groups)) {
		g := groups[base]
		slices.SortFunc(g, func(a, b *imp) int { return cmp.Compare(a.disk, b.disk) })
		x := awstarget.Import{Mode: awstarget.ModeImportSnapshot, ClientToken: base, Name: g[0].name, Tags: maps.Clone(g[0].input.Tags)}
		for _, im := range g {
			x.TaskIDs = append(x.TaskIDs, im.id)
		}
		out = append(out, x)
	}
	return out
}
