package replication

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/dustin/go-humanize"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// StepWrite reads the changed blocks of each disk from the checkpoint and
// puts them, with the SHA-256 of each, into a new replica EBS snapshot
// whose parent is the disk's previous replica, then completes it with the
// aggregate checksum. Blocks equal to the manifest (read again by a resync,
// or by a source's coarse tracking) are not sent, nor are a seed's blocks of
// zeros. Progress is persisted off the data path about once a second: a
// resumed run does not send again what was stored before.
const StepWrite = "write"

// kindReplica is a replica snapshot the run writes: its intent is the
// replicaIntent, its data the replicaData (progress, then done).
const kindReplica = "replica-snapshot"

// TagReplica marks a replica snapshot with its job and disk key.
const TagReplica = "rehost:replica"

type writeStep struct{}

func (writeStep) info() Info {
	return Info{
		Name: StepWrite, Title: "Write the changed blocks to EBS", Weight: 50, Metric: "write", Modes: incrementalOnly,
		Advice:  "Writing to EBS direct failed: check AWS (rehost connector status: the connector's ebs: permissions, the network), then start the job again. The pending replica snapshots were deleted.",
		Effects: "one replica EBS snapshot per disk (`replica-snapshot`: started with client token `rehost-<run>-d<disk>` and the previous replica as parent, tagged `rehost:replica`; its blocks stored, the aggregate checksum state and the manifest chunk in progress persisted about once a second), completed; the manifest chunks it changed, at the replica's seq; deleted on undo, pending or not",
	}
}

// progress is the blocks read of every disk's total.
func (writeStep) progress(p store.RunProgress) (done, total int64) { return diskBytes(p) }

// replicaIntent is what the ledger holds of a replica snapshot to write.
type replicaIntent struct {
	Disk      int    `json:"disk"`
	Key       string `json:"key"`
	Token     string `json:"token"`
	Parent    string `json:"parent,omitempty"`
	VolumeGiB int64  `json:"volumeGiB"`
	Seq       int64  `json:"seq"`
	// Attempt counts the snapshots started for the disk in this run (one
	// that EBS cancelled or refused is replaced by the next).
	Attempt int `json:"attempt"`
	// Repair marks a snapshot of the verification: blocks sent again on
	// top of the disk's replica.
	Repair bool `json:"repair,omitempty"`
}

// replicaData is a replica snapshot's record: where its writing is.
type replicaData struct {
	awstarget.Replica
	State writeState `json:"state"`
	// Partial is the manifest chunk holding block State.Next, its entries
	// below it (the chunks before are stored).
	Partial   *partialChunk `json:"partial,omitempty"`
	BytesRead int64         `json:"bytesRead"`
	// Flushed: every block is stored and the manifest written; Done: the
	// snapshot is completed.
	Flushed bool `json:"flushed,omitempty"`
	Done    bool `json:"done,omitempty"`
}

type partialChunk struct {
	Chunk int64  `json:"chunk"`
	Sums  []byte `json:"sums"`
}

func replicaToken(runID string, disk, attempt int, repair bool) string {
	t := fmt.Sprintf("rehost-%s-d%d", runID, disk)
	if repair {
		t += "-repair"
	}
	if attempt > 0 {
		t += fmt.Sprintf("-%d", attempt)
	}
	return t
}

func (s writeStep) do(ctx context.Context, r *run) error {
	if err := r.loadPlans(ctx); err != nil {
		return err
	}
	es, err := r.entries(ctx, s, kindReplica)
	if err != nil {
		return err
	}
	for _, p := range r.plans {
		var last *store.LedgerEntry
		for _, le := range es {
			var in replicaIntent
			if json.Unmarshal(le.Intent, &in) == nil && in.Disk == p.Disk && !in.Repair {
				le := le
				last = &le
			}
		}
		if err := r.writeDisk(ctx, p, last); err != nil {
			return err
		}
	}
	return nil
}

// replicaTags are the tags of a replica snapshot of disk key.
func (r *run) replicaTags(key string) map[string]string {
	t := r.tags()
	t[TagReplica] = r.job.ReplicationJobID + "/" + key
	return t
}

// writeDisk writes one disk's replica, resuming the attempt le records
// (nil: none yet).
func (r *run) writeDisk(ctx context.Context, p diskPlan, le *store.LedgerEntry) error {
	what := fmt.Sprintf("vm %q disk %d", r.server.Name, p.Disk+1)
	attempt := 0
	var data replicaData
	if le != nil {
		var in replicaIntent
		_ = json.Unmarshal(le.Intent, &in)
		attempt = in.Attempt
		if len(le.Data) > 0 {
			if err := json.Unmarshal(le.Data, &data); err != nil {
				return fmt.Errorf("%s: read the recorded replica: %w", what, err)
			}
		}
		if data.Done {
			r.noteDisk(ctx, p, data)
			return nil
		}
		if le.State == store.LedgerCreated {
			state, err := r.target.SnapshotState(ctx, data.SnapshotID)
			if err != nil {
				return fmt.Errorf("%s: look up replica %s: %w", what, data.SnapshotID, err)
			}
			switch {
			case state == "completed" && data.Flushed:
				return r.finishReplica(ctx, p, le.ID, data)
			case state != "pending":
				// EBS cancelled it (a pending snapshot times out) or it was
				// deleted: start the disk over in a new one.
				r.event(ctx, store.LevelWarn, "%s: replica %s is %s; the disk is written again into a new one", what, data.SnapshotID, state)
				if err := r.dropReplica(ctx, le.ID, data.SnapshotID); err != nil {
					return fmt.Errorf("%s: %w", what, err)
				}
				le, data, attempt = nil, replicaData{}, attempt+1
			}
		}
	}
	var id int64
	if le == nil {
		// What an earlier, failed run wrote at this seq is not this one's.
		from := p.Seq
		if p.Parent == "" {
			from = 0 // a new chain: no chunk of an older one applies
		}
		if err := r.e.Store.DropManifest(ctx, r.job.ReplicationJobID, p.Key, from); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		in := replicaIntent{Disk: p.Disk, Key: p.Key, Token: replicaToken(r.run.ReplicationRunID, p.Disk, attempt, false),
			Parent: p.Parent, VolumeGiB: p.VolumeGiB, Seq: p.Seq, Attempt: attempt}
		var err error
		if id, err = r.intend(ctx, writeStep{}, kindReplica, in); err != nil {
			return fmt.Errorf("%s: record the replica's intent: %w", what, err)
		}
	} else {
		id = le.ID
	}
	if data.SnapshotID == "" {
		var in replicaIntent
		if le != nil {
			_ = json.Unmarshal(le.Intent, &in)
		}
		rep, err := r.target.StartReplica(ctx, awstarget.ReplicaInput{VolumeGiB: p.VolumeGiB, Parent: p.Parent,
			ClientToken: replicaToken(r.run.ReplicationRunID, p.Disk, attempt, false), Tags: r.replicaTags(p.Key),
			Description: fmt.Sprintf("rehost replica of disk %d of vm %s, run %s", p.Disk+1, r.server.Name, r.run.ReplicationRunID),
			Encrypted:   p.Encrypted, KMSKeyID: p.KMSKeyID})
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		data = replicaData{Replica: rep}
		if err := r.e.Store.RecordCreated(ctx, id, rep.SnapshotID, mustJSON(data)); err != nil {
			return fmt.Errorf("%s: record replica %s: %w", what, rep.SnapshotID, err)
		}
	}
	if err := r.copyBlocks(ctx, p, id, &data); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return r.finishReplica(ctx, p, id, data)
}

// finishReplica completes a flushed replica and records it done.
func (r *run) finishReplica(ctx context.Context, p diskPlan, id int64, data replicaData) error {
	sum, err := data.State.sum()
	if err == nil {
		err = r.target.CompleteReplica(ctx, data.SnapshotID, data.State.Count, sum)
	}
	if err != nil {
		return fmt.Errorf("vm %q disk %d: %w", r.server.Name, p.Disk+1, err)
	}
	data.Done = true
	if err := r.e.Store.UpdateData(ctx, id, mustJSON(data)); err != nil {
		return fmt.Errorf("vm %q disk %d: record replica %s complete: %w", r.server.Name, p.Disk+1, data.SnapshotID, err)
	}
	r.noteDisk(ctx, p, data)
	r.event(ctx, store.LevelInfo, "wrote replica %s of vm %q disk %d: %d blocks changed (%s sent, %s read)", data.SnapshotID, r.server.Name, p.Disk+1,
		data.State.Count, humanize.IBytes(uint64(data.State.Count*awstarget.BlockSize)), humanize.IBytes(uint64(data.BytesRead)))
	return nil
}

// dropReplica deletes a replica the run gives up and releases its entry.
func (r *run) dropReplica(ctx context.Context, id int64, snap string) error {
	if snap != "" {
		if err := r.target.DeleteImage(ctx, "", []string{snap}); err != nil {
			return fmt.Errorf("delete replica %s: %w", snap, err)
		}
	}
	return r.e.Store.RecordReleased(ctx, id)
}

// noteDisk records a disk's figures in the run.
func (r *run) noteDisk(ctx context.Context, p diskPlan, data replicaData) {
	r.updateRun(ctx, func(x *store.ReplicationRun) {
		rep := x.Replication
		if rep == nil {
			rep = &store.RunReplication{}
		}
		for len(rep.Disks) <= p.Disk {
			rep.Disks = append(rep.Disks, store.DiskReplication{Disk: len(rep.Disks)})
		}
		d := &rep.Disks[p.Disk]
		d.Key, d.Parent, d.Capacity, d.PreviousCapacity, d.Resync = p.Key, p.Parent, p.Capacity, p.PrevCapacity, p.Resync
		d.SnapshotID, d.BytesRead = data.SnapshotID, data.BytesRead
		d.BlocksChanged, d.BytesSent = data.State.Count, data.State.Count*awstarget.BlockSize
		sumDisks(rep)
		x.Replication = rep
	})
}

// sumDisks sets a run's figures to the sums of its disks'.
func sumDisks(rep *store.RunReplication) {
	rep.BytesRead, rep.BytesSent, rep.BlocksChanged = 0, 0, 0
	for _, d := range rep.Disks {
		rep.BytesRead, rep.BytesSent, rep.BlocksChanged = rep.BytesRead+d.BytesRead, rep.BytesSent+d.BytesSent, rep.BlocksChanged+d.BlocksChanged
	}
}

// copyBlocks reads the disk's changed blocks from the checkpoint and puts
// those that differ from the manifest, from where data says it got to.
func (r *run) copyBlocks(ctx context.Context, p diskPlan, id int64, data *replicaData) error {
	if data.Flushed {
		return nil
	}
	dd, err := r.src.(source.CheckpointReader).OpenDisk(ctx, r.cp, p.Key)
	if err != nil {
		return fmt.Errorf("open the disk of checkpoint %q: %w", r.cp.Name, err)
	}
	defer dd.Close()
	m := &manifest{st: r.e.Store, job: r.job.ReplicationJobID, disk: p.Key, readSeq: p.ReadSeq, seq: p.Seq}
	start := data.State.Next
	resume := data.State
	w, err := newBlockWriter(ctx, r.target, data.SnapshotID, writerOptions{concurrency: r.e.BlockConcurrency, bandwidth: r.e.Bandwidth, resume: &resume})
	if err != nil {
		return err
	}
	c := &copier{r: r, p: p, m: m, dd: dd, w: w}
	c.read.Store(data.BytesRead)
	if data.Partial != nil {
		if c.cur, err = m.load(ctx, data.Partial.Chunk); err != nil {
			w.close()
			return err
		}
		for k := 0; k+sha256.Size <= len(data.Partial.Sums) && k/sha256.Size < chunkBlocks; k += sha256.Size {
			copy(c.cur.sums[k/sha256.Size][:], data.Partial.Sums[k:])
		}
		c.cur.changed = true
	}
	total := p.ReadBlocks * awstarget.BlockSize
	var persistMu sync.Mutex
	persist := func(ctx context.Context) {
		persistMu.Lock()
		defer persistMu.Unlock()
		if err := c.persist(ctx, id, data.Replica); err != nil {
			r.log.Warn("replica progress not recorded; a resume reads and sends more", "disk", p.Disk, "err", err)
		}
	}
	stop := r.ticker(ctx, func(ctx context.Context, final bool) {
		if !final {
			persist(ctx)
		}
		r.diskProgress(ctx, p.Disk, min(c.read.Load(), total), total, c.read.Load(), nil)
	})
	err = c.walk(ctx, start)
	st, werr := w.close()
	stop()
	if err == nil {
		err = werr
	}
	if err != nil {
		persist(context.WithoutCancel(ctx))
		return err
	}
	// Every block is stored: the manifest's last chunks, then the record
	// that says so, before the completion.
	if err := c.flush(ctx); err != nil {
		return err
	}
	*data = replicaData{Replica: data.Replica, State: st, BytesRead: c.read.Load(), Flushed: true}
	if err := r.e.Store.UpdateData(ctx, id, mustJSON(*data)); err != nil {
		return fmt.Errorf("record replica %s written: %w", data.SnapshotID, err)
	}
	r.diskProgress(ctx, p.Disk, total, total, c.read.Load(), nil)
	return nil
}

// copier is one disk's copy in progress. The walk (one goroutine) reads
// blocks, keeps the manifest chunk it is in and hands blocks to the
// writer; persist (the ticker) stores the chunks the writer's state has
// passed, then the state.
type copier struct {
	r    *run
	p    diskPlan
	m    *manifest
	dd   source.DiskData
	w    *blockWriter
	read atomic.Int64

	mu   sync.Mutex
	cur  *chunk   // the chunk the walk is in
	done []*chunk // chunks the walk left, not yet stored
}

// spanBlocks is how many consecutive blocks are read from the source at
// once.
const spanBlocks = 16

// walk visits, from block start, every block the areas touch (every block,
// in a full pass) in ascending order.
func (c *copier) walk(ctx context.Context, start int64) error {
	ch, err := c.r.src.(source.ChangeTracker).ChangedAreas(ctx, c.r.cp, source.ChangeQuery{Disk: c.p.Key, Since: c.p.Since, From: start * awstarget.BlockSize})
	if err != nil {
		return fmt.Errorf("ask the source what changed: %w", err)
	}
	if ch.Capacity != c.p.Capacity {
		return fmt.Errorf("the disk holds %d bytes, %d when the run began", ch.Capacity, c.p.Capacity)
	}
	next := start
	span := make([]byte, spanBlocks*awstarget.BlockSize)
	for {
		page, err := ch.Areas.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read what changed: %w", err)
		}
		for _, a := range page {
			first, last := max(a.Offset/awstarget.BlockSize, next), (a.End()-1)/awstarget.BlockSize
			if err := c.gap(ctx, next, first); err != nil {
				return err
			}
			for b := first; b <= last; b += spanBlocks {
				n := min(spanBlocks, last-b+1)
				if err := c.blocks(ctx, b, span[:n*awstarget.BlockSize]); err != nil {
					return err
				}
			}
			next = max(next, last+1)
		}
	}
	if err := c.gap(ctx, next, c.p.blocks()); err != nil {
		return err
	}
	c.w.advance(c.p.blocks())
	return nil
}

// chunkFor makes the chunk holding block b the current one.
func (c *copier) chunkFor(ctx context.Context, b int64) (*chunk, error) {
	idx := b / chunkBlocks
	c.mu.Lock()
	cur := c.cur
	c.mu.Unlock()
	if cur != nil && cur.index == idx {
		return cur, nil
	}
	next, err := c.m.load(ctx, idx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.cur != nil {
		c.done = append(c.done, c.cur)
	}
	c.cur = next
	c.mu.Unlock()
	return next, nil
}

// gap visits blocks [from, to) that no area touches: in a full pass, a
// block the manifest holds data for but the source no longer does is
// written with zeros.
func (c *copier) gap(ctx context.Context, from, to int64) error {
	if !c.p.fullPass() {
		return nil
	}
	for b := from; b < to; b++ {
		ch, err := c.chunkFor(ctx, b)
		if err != nil {
			return err
		}
		if ch.entry(b) != zeroEntry {
			if err := c.w.put(ctx, b, zeroBlock, zeroBlockSum); err != nil {
				return err
			}
			c.mu.Lock()
			ch.set(b, zeroEntry)
			c.mu.Unlock()
		}
		c.w.advance(b + 1)
	}
	return nil
}

// blocks reads the consecutive blocks from b into span and puts those that
// differ from the manifest.
func (c *copier) blocks(ctx context.Context, b int64, span []byte) error {
	off := b * awstarget.BlockSize
	n := min(int64(len(span)), c.p.Capacity-off)
	if n <= 0 {
		return nil
	}
	got, err := c.dd.ReadAt(span[:n], off)
	if err != nil && !(errors.Is(err, io.EOF) && int64(got) == n) {
		return fmt.Errorf("read the disk at %d: %w", off, err)
	}
	clear(span[n:])
	c.read.Add(n)
	for k := int64(0); k*awstarget.BlockSize < int64(len(span)); k++ {
		data := span[k*awstarget.BlockSize : (k+1)*awstarget.BlockSize]
		idx := b + k
		ch, err := c.chunkFor(ctx, idx)
		if err != nil {
			return err
		}
		e := entryOf(data)
		if e != ch.entry(idx) {
			sum := zeroBlockSum
			if e != zeroEntry {
				sum = e
			}
			if err := c.w.put(ctx, idx, data, sum); err != nil {
				return err
			}
			c.mu.Lock()
			ch.set(idx, e)
			c.mu.Unlock()
		}
		c.w.advance(idx + 1)
	}
	return nil
}

// persist stores the manifest chunks the writer's state has passed, then
// the state with the current chunk's entries below it: a resume starts
// there with the manifest it had.
func (c *copier) persist(ctx context.Context, id int64, rep awstarget.Replica) error {
	st := c.w.state()
	c.mu.Lock()
	var ready []*chunk
	keep := c.done[:0:0]
	for _, ch := range c.done {
		if (ch.index+1)*chunkBlocks <= st.Next {
			ready = append(ready, ch)
		} else {
			keep = append(keep, ch)
		}
	}
	var partial *partialChunk
	for _, ch := range append(keep, c.cur) {
		if ch != nil && ch.index == st.Next/chunkBlocks {
			n := st.Next - ch.first()
			sums := make([]byte, 0, n*sha256.Size)
			for i := range n {
				sums = append(sums, ch.sums[i][:]...)
			}
			partial = &partialChunk{Chunk: ch.index, Sums: sums}
		}
	}
	c.mu.Unlock()
	for _, ch := range ready {
		// The walk changes only the chunk it is in, never one it left.
		if err := c.m.save(ctx, ch); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.done = c.done[len(ready):]
	c.mu.Unlock()
	data := replicaData{Replica: rep, State: st, Partial: partial, BytesRead: c.read.Load()}
	return c.r.e.Store.UpdateData(ctx, id, mustJSON(data))
}

// flush stores every chunk left, once the writer has stored every block.
func (c *copier) flush(ctx context.Context) error {
	c.mu.Lock()
	all := append(c.done, c.cur)
	c.done, c.cur = nil, nil
	c.mu.Unlock()
	for _, ch := range all {
		if ch == nil {
			continue
		}
		if err := c.m.save(ctx, ch); err != nil {
			return fmt.Errorf("store the manifest: %w", err)
		}
	}
	return nil
}

func (s writeStep) undo(ctx context.Context, u *undoer, le store.LedgerEntry) error {
	return undoReplica(ctx, u, le)
}

// undoReplica deletes a replica snapshot an entry records, pending or
// not, and what a start cut off before its id was recorded made (found by
// its client token's tags), and the manifest chunks of its seq.
func undoReplica(ctx context.Context, u *undoer, le store.LedgerEntry) error {
	var in replicaIntent
	if err := json.Unmarshal(le.Intent, &in); err != nil {
		return fmt.Errorf("read the recorded replica: %w", err)
	}
	var ids []string
	if le.ResourceID != "" {
		ids = append(ids, le.ResourceID)
	} else {
		found, err := u.target.FindSnapshots(ctx, map[string]string{TagRun: u.rr.ReplicationRunID, TagReplica: u.rr.ReplicationJobID + "/" + in.Key})
		if err != nil {
			return fmt.Errorf("look for the replicas of run %s: %w", u.rr.ReplicationRunID, err)
		}
		for _, s := range found {
			ids = append(ids, s.ID)
		}
	}
	if err := u.target.DeleteImage(ctx, "", ids); err != nil {
		return err
	}
	if !in.Repair {
		return u.e.Store.DropManifest(ctx, u.rr.ReplicationJobID, in.Key, in.Seq)
	}
	return nil
}
