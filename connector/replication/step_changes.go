package replication

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/dustin/go-humanize"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// StepChanges works out, for each disk, what the run copies and onto what:
// the areas that changed since the previous run's change id, on top of the
// disk's previous replica. A disk whose change id the source refuses (a
// reset, a storage vMotion), whose replica was deleted behind rehost's
// back, that has no change id, or that shrank, is read whole (a full
// resync, recorded in the run); one that grew gets a larger replica.
const StepChanges = "changes"

// kindDiskPlan is one disk's plan (diskPlan), recorded already released: it
// holds nothing outside the process, and a resumed run reads it back.
const kindDiskPlan = "disk-plan"

type changesStep struct{ noEffects }

func (changesStep) info() Info {
	return Info{
		Name: StepChanges, Title: "Find the changed blocks", Weight: 5, Metric: "changes", Modes: incrementalOnly,
		Advice:  "The connector could not ask the source what changed: test the source and start the job again. A change id the source no longer knows is not an error: the disk is read whole and the run says so.",
		Effects: "nothing outside the process: each disk's plan (`disk-plan`, released at once: the parent replica, the change id, a full resync's reason, the capacity and blocks to read), read back by a resumed run",
	}
}

// diskPlan is what a run copies of one disk.
type diskPlan struct {
	Disk int    `json:"disk"`
	Key  string `json:"key"`
	// Parent is the replica the new one is a child of ("" starts a new
	// chain); ReadSeq the seq its manifest is read at (-1: none).
	Parent  string `json:"parent,omitempty"`
	ReadSeq int64  `json:"readSeq"`
	// Seq is the new replica's seq in the chain.
	Seq int64 `json:"seq"`
	// Since is the change id the areas are asked since ("": every
	// allocated area).
	Since string `json:"since,omitempty"`
	// Resync says why the disk is read whole though it has a chain.
	Resync string `json:"resync,omitempty"`
	// Capacity is the disk's size at the checkpoint, PrevCapacity at the
	// parent; VolumeGiB the new replica's size.
	Capacity      int64 `json:"capacity"`
	PrevCapacity  int64 `json:"prevCapacity,omitempty"`
	VolumeGiB     int64 `json:"volumeGiB"`
	PrevVolumeGiB int64 `json:"prevVolumeGiB,omitempty"`
	// ReadBlocks is how many blocks the areas touch.
	ReadBlocks int64  `json:"readBlocks"`
	Encrypted  bool   `json:"encrypted,omitempty"`
	KMSKeyID   string `json:"kmsKeyId,omitempty"`
}

// fullPass tells a resync on top of a parent: every block is compared with
// the manifest (the parent's), and one the source no longer holds is
// written with zeros.
func (p diskPlan) fullPass() bool { return p.Since == "" && p.Parent != "" }

func (p diskPlan) blocks() int64 { return (p.Capacity + awstarget.BlockSize - 1) / awstarget.BlockSize }

// errTurnFull is the finding that the run cannot be incremental.
type errTurnFull struct{ why string }

func (e *errTurnFull) Error() string { return e.why }

func (s changesStep) do(ctx context.Context, r *run) error {
	es, err := r.entries(ctx, s, kindDiskPlan)
	if err != nil {
		return err
	}
	planned := map[int]diskPlan{}
	for _, le := range es {
		var p diskPlan
		if err := json.Unmarshal(le.Intent, &p); err != nil {
			return fmt.Errorf("vm %q: read the recorded plan: %w", r.server.Name, err)
		}
		planned[p.Disk] = p
	}
	if err := r.loadPrevious(ctx); err != nil {
		return err
	}
	for i, d := range r.vm.Disks {
		if _, ok := planned[i]; ok {
			continue
		}
		p, err := r.planDisk(ctx, i, d)
		var full *errTurnFull
		if errors.As(err, &full) {
			return r.turnFull(ctx, full.why)
		}
		if err != nil {
			return err
		}
		id, err := r.intend(ctx, s, kindDiskPlan, p)
		if err == nil {
			err = r.e.Store.RecordReleased(ctx, id)
		}
		if err != nil {
			return fmt.Errorf("vm %q: record the plan of disk %d: %w", r.server.Name, i+1, err)
		}
		planned[i] = p
		r.announce(ctx, p)
	}
	r.plans = make([]diskPlan, len(r.vm.Disks))
	for i := range r.vm.Disks {
		r.plans[i] = planned[i]
	}
	r.recordPlans(ctx)
	return nil
}

// loadPrevious reads the job's replica set (none before its first
// incremental copy).
func (r *run) loadPrevious(ctx context.Context) error {
	set, err := r.e.Store.GetReplicaSet(ctx, r.job.ReplicationJobID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		r.prev = nil
	case err != nil:
		return fmt.Errorf("vm %q: read the job's replicas: %w", r.server.Name, err)
	default:
		r.prev = &set
	}
	return nil
}

// planDisk decides what the run copies of disk i.
func (r *run) planDisk(ctx context.Context, i int, d source.Disk) (diskPlan, error) {
	ct := r.src.(source.ChangeTracker)
	what := fmt.Sprintf("vm %q disk %d", r.server.Name, i+1)
	p := diskPlan{Disk: i, Key: d.Key, ReadSeq: -1, Seq: 1, Encrypted: r.job.Encrypted || r.run.Encrypted,
		KMSKeyID: cmp.Or(r.run.KmsKeyID, r.job.KmsKeyID)}
	var prev store.ReplicaDisk
	hasPrev := false
	if r.prev != nil {
		prev, hasPrev = r.prev.Disk(d.Key)
	}
	if hasPrev {
		p.Seq = prev.Seq + 1
		state, err := r.target.SnapshotState(ctx, prev.SnapshotID)
		switch {
		case err != nil:
			return p, fmt.Errorf("%s: look up its replica %s: %w", what, prev.SnapshotID, err)
		case state == "":
			p.Resync = fmt.Sprintf("its replica %s was deleted behind rehost's back", prev.SnapshotID)
		case state != "completed":
			p.Resync = fmt.Sprintf("its replica %s is %s", prev.SnapshotID, state)
		case prev.Encrypted != p.Encrypted || p.KMSKeyID != "" && prev.KMSKeyID != p.KMSKeyID:
			p.Resync = "the job's encryption changed since its replica was written"
		default:
			p.Parent, p.ReadSeq, p.Since, p.PrevCapacity = prev.SnapshotID, prev.Seq, prev.ChangeID, prev.Capacity
			p.Encrypted, p.KMSKeyID = prev.Encrypted, prev.KMSKeyID
			if prev.ChangeID == "" {
				p.Resync = "the source kept no change id of it at the last run"
			}
		}
	}
	ch, err := ct.ChangedAreas(ctx, r.cp, source.ChangeQuery{Disk: d.Key, Since: p.Since})
	var re *source.ResyncError
	if errors.As(err, &re) {
		p.Resync, p.Since = re.Reason, ""
		ch, err = ct.ChangedAreas(ctx, r.cp, source.ChangeQuery{Disk: d.Key})
	}
	if errors.Is(err, source.ErrNoTracking) {
		return p, &errTurnFull{err.Error()}
	}
	if err != nil {
		return p, fmt.Errorf("%s: ask the source what changed: %w", what, err)
	}
	p.Capacity = ch.Capacity
	if p.Parent != "" && ch.Capacity < p.PrevCapacity {
		// An EBS volume does not shrink: a new chain, read whole.
		p.Resync = fmt.Sprintf("the disk shrank from %s to %s", humanize.IBytes(uint64(p.PrevCapacity)), humanize.IBytes(uint64(ch.Capacity)))
		p.Parent, p.ReadSeq, p.Since = "", -1, ""
		if ch, err = ct.ChangedAreas(ctx, r.cp, source.ChangeQuery{Disk: d.Key}); err != nil {
			return p, fmt.Errorf("%s: ask the source for its allocated areas: %w", what, err)
		}
	}
	p.VolumeGiB = awstarget.VolumeGiB(p.Capacity)
	if p.Parent != "" {
		p.VolumeGiB, p.PrevVolumeGiB = max(p.VolumeGiB, prev.VolumeGiB), prev.VolumeGiB
	}
	if p.ReadBlocks, err = countBlocks(ctx, ch.Areas); err != nil {
		return p, fmt.Errorf("%s: %w", what, err)
	}
	if dr, ok := r.src.(source.CheckpointReader); ok {
		dd, err := dr.OpenDisk(ctx, r.cp, d.Key)
		if errors.Is(err, errors.ErrUnsupported) {
			return p, &errTurnFull{err.Error()}
		}
		if err != nil {
			return p, fmt.Errorf("%s: open it for reading: %w", what, err)
		}
		dd.Close()
	}
	return p, nil
}

// countBlocks counts the 512 KiB blocks a stream of areas touches.
func countBlocks(ctx context.Context, areas source.Areas) (int64, error) {
	var n int64
	last := int64(-1)
	for {
		page, err := areas.Next(ctx)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		for _, a := range page {
			first, end := a.Offset/awstarget.BlockSize, (a.End()-1)/awstarget.BlockSize
			first = max(first, last+1)
			if end >= first {
				n += end - first + 1
				last = end
			}
		}
	}
}

// announce says in the run's events what is special about a disk's copy.
func (r *run) announce(ctx context.Context, p diskPlan) {
	switch {
	case p.Resync != "":
		r.event(ctx, store.LevelWarn, "vm %q disk %d is read whole (a full resync): %s", r.server.Name, p.Disk+1, p.Resync)
	case p.Parent == "":
		r.event(ctx, store.LevelInfo, "vm %q disk %d: the first copy of the disk (a seed): %d blocks to read", r.server.Name, p.Disk+1, p.ReadBlocks)
	default:
		r.event(ctx, store.LevelInfo, "vm %q disk %d: %d blocks changed since the last run", r.server.Name, p.Disk+1, p.ReadBlocks)
	}
	if p.Parent != "" && p.Capacity > p.PrevCapacity {
		grows := fmt.Sprintf("its replica grows from %d to %d GiB", p.PrevVolumeGiB, p.VolumeGiB)
		if p.VolumeGiB == p.PrevVolumeGiB {
			grows = fmt.Sprintf("its replica grows within its %d GiB volume", p.VolumeGiB)
		}
		r.event(ctx, store.LevelInfo, "vm %q disk %d grew from %s to %s: %s", r.server.Name, p.Disk+1,
			humanize.IBytes(uint64(p.PrevCapacity)), humanize.IBytes(uint64(p.Capacity)), grows)
	}
}

// recordPlans puts the plans in the run's record of what it replicated.
func (r *run) recordPlans(ctx context.Context) {
	r.updateRun(ctx, func(x *store.ReplicationRun) {
		rep := cmp.Or(x.Replication, &store.RunReplication{})
		for _, p := range r.plans {
			for len(rep.Disks) <= p.Disk {
				rep.Disks = append(rep.Disks, store.DiskReplication{Disk: len(rep.Disks)})
			}
			d := &rep.Disks[p.Disk]
			d.Key, d.Parent, d.Capacity, d.PreviousCapacity, d.Resync = p.Key, p.Parent, p.Capacity, p.PrevCapacity, p.Resync
		}
		x.Replication = rep
	})
}

// plansOf reads the disks' plans from the ledger (a resumed run).
func (r *run) loadPlans(ctx context.Context) error {
	if len(r.plans) == len(r.vm.Disks) {
		return nil
	}
	es, err := r.entries(ctx, changesStep{}, kindDiskPlan)
	if err != nil {
		return err
	}
	r.plans = make([]diskPlan, len(r.vm.Disks))
	seen := 0
	for _, le := range es {
		var p diskPlan
		if err := json.Unmarshal(le.Intent, &p); err != nil || p.Disk < 0 || p.Disk >= len(r.vm.Disks) {
			return fmt.Errorf("vm %q: read the recorded plans: %v", r.server.Name, err)
		}
		r.plans[p.Disk] = p
		seen++
	}
	if seen != len(r.vm.Disks) {
		return fmt.Errorf("vm %q: %d of %d disks have a recorded plan", r.server.Name, seen, len(r.vm.Disks))
	}
	return nil
}
