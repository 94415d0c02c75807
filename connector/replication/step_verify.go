package replication

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// StepVerify reads each new replica back with GetSnapshotBlock and
// compares every block read with the manifest: the changed blocks (up to
// a budget, beyond it a random sample of them) and a random sample of the
// unchanged ones, or every block on a full verification (weekly, or on
// request). A block that differs is sent again from the checkpoint into a
// child of the replica, which becomes the disk's replica; one that still
// differs fails the run. It runs before the VM snapshot is released, so
// the blocks to send again can still be read.
const StepVerify = "verify"

// kindVerification is one disk's verification (diskVerification),
// recorded released: it holds nothing outside the process.
const kindVerification = "verification"

// maxRepair is the most mismatched blocks of a disk a run sends again;
// beyond it the replica is not worth mending.
const maxRepair = 4096

type verifyStep struct{}

func (verifyStep) info() Info {
	return Info{
		Name: StepVerify, Title: "Verify the replicas", Weight: 10, Metric: "verify", Modes: incrementalOnly,
		Advice:  "A replica's blocks read back differ from what the source holds even after they were sent again: EBS did not store what it acknowledged. Start the job again; if it persists, request a full verification (rehost run verify) and contact AWS support with the run's events.",
		Effects: "each disk's verification (`verification`, released at once: blocks read back, sampled, mismatches, repaired); for mismatched blocks, a repair replica on top of the disk's replica (`replica-snapshot`, client token `rehost-<run>-d<disk>-repair`), deleted on undo",
	}
}

// diskVerification is what the ledger holds of one disk's verification.
type diskVerification struct {
	Disk int `json:"disk"`
	// Head is the replica verified: the disk's replica, or the repair on
	// top of it.
	Head string `json:"head"`
	// Reread is the bytes read from the checkpoint to send blocks again.
	Reread int64 `json:"reread,omitempty"`
	store.Verification
}

func (s verifyStep) do(ctx context.Context, r *run) error {
	if err := r.loadPlans(ctx); err != nil {
		return err
	}
	if err := r.loadPrevious(ctx); err != nil {
		return err
	}
	all, err := r.e.Store.LedgerForRun(ctx, r.run.ReplicationRunID)
	if err != nil {
		return fmt.Errorf("vm %q: read the run's ledger: %w", r.server.Name, err)
	}
	verified := map[int]diskVerification{}
	mains := map[int]replicaData{}
	repairs := map[int][]store.LedgerEntry{}
	for _, le := range all {
		switch {
		case le.Step == s.info().Name && le.Kind == kindVerification:
			var v diskVerification
			if json.Unmarshal(le.Intent, &v) == nil {
				verified[v.Disk] = v
			}
		case le.Kind == kindReplica:
			var in replicaIntent
			var data replicaData
			if json.Unmarshal(le.Intent, &in) != nil {
				continue
			}
			_ = json.Unmarshal(le.Data, &data)
			switch {
			case in.Repair && le.Step == s.info().Name:
				repairs[in.Disk] = append(repairs[in.Disk], le)
			case !in.Repair && data.Done && unreleased(le):
				mains[in.Disk] = data
			}
		}
	}
	full := r.fullVerification()
	r.heads = map[int]string{}
	results := map[int]diskVerification{}
	for _, p := range r.plans {
		if v, ok := verified[p.Disk]; ok {
			r.heads[p.Disk] = v.Head
			results[p.Disk] = v
			continue
		}
		head := mains[p.Disk].SnapshotID
		if head == "" {
			return fmt.Errorf("vm %q disk %d: no replica was written before the verification", r.server.Name, p.Disk+1)
		}
		// A repair that a restart cut short is done again from the start.
		for _, le := range repairs[p.Disk] {
			var data replicaData
			_ = json.Unmarshal(le.Data, &data)
			switch {
			case data.Done && unreleased(le):
				head = data.SnapshotID
			case unreleased(le):
				if err := r.abandon(ctx, le); err != nil {
					return fmt.Errorf("vm %q disk %d: %w", r.server.Name, p.Disk+1, err)
				}
			}
		}
		v, err := r.verifyDisk(ctx, p, head, full, len(repairs[p.Disk]))
		if err != nil {
			return err
		}
		id, err := r.intend(ctx, s, kindVerification, v)
		if err == nil {
			err = r.e.Store.RecordReleased(ctx, id)
		}
		if err != nil {
			return fmt.Errorf("vm %q disk %d: record the verification: %w", r.server.Name, p.Disk+1, err)
		}
		r.heads[p.Disk] = v.Head
		results[p.Disk] = v
		r.event(ctx, store.LevelInfo, "vm %q disk %d: %s", r.server.Name, p.Disk+1, v.Verification)
	}
	total := store.Verification{Full: full, At: time.Now().UTC()}
	for _, v := range results {
		total.Blocks, total.Sampled = total.Blocks+v.Blocks, total.Sampled+v.Sampled
		total.Mismatches, total.Repaired = total.Mismatches+v.Mismatches, total.Repaired+v.Repaired
	}
	r.updateRun(ctx, func(x *store.ReplicationRun) {
		rep := cmp.Or(x.Replication, &store.RunReplication{})
		rep.Verification = &total
		for _, p := range r.plans {
			if p.Disk < len(rep.Disks) {
				// What the write step sent, and what a repair sent again.
				d, v, main := &rep.Disks[p.Disk], results[p.Disk], mains[p.Disk]
				d.SnapshotID, d.BlocksResent = r.heads[p.Disk], v.Repaired
				d.BytesRead = main.BytesRead + v.Reread
				d.BytesSent = (d.BlocksChanged + v.Repaired) * awstarget.BlockSize
			}
		}
		sumDisks(rep)
		x.Replication = rep
	})
	return nil
}

// fullVerification tells whether this run reads every block back: on
// request, or when the last full verification (or the chain's start) is
// FullVerifyEvery ago.
func (r *run) fullVerification() bool {
	if r.job.VerifyRequested {
		return true
	}
	if r.prev == nil {
		return false // a seed: every block is a changed one, sampled within the budget
	}
	last := r.prev.VerifiedAt
	if last.IsZero() {
		last = r.prev.CreatedAt
	}
	return time.Since(last) >= cmp.Or(r.e.FullVerifyEvery, 7*24*time.Hour)
}

// blockCheck is a block to read back and the manifest entry it must match.
type blockCheck struct {
	awstarget.Block
	want [sha256.Size]byte
}

// verifyDisk reads disk p's replica head back and mends what differs.
func (r *run) verifyDisk(ctx context.Context, p diskPlan, head string, full bool, repairs int) (diskVerification, error) {
	what := fmt.Sprintf("vm %q disk %d", r.server.Name, p.Disk+1)
	v := diskVerification{Disk: p.Disk, Head: head, Verification: store.Verification{Full: full, At: time.Now().UTC()}}
	now := &chunkCache{m: &manifest{st: r.e.Store, job: r.job.ReplicationJobID, disk: p.Key, readSeq: p.Seq}}
	var bad []int64
	var err error
	if full {
		bad, err = r.verifyAll(ctx, p, head, now, &v)
	} else {
		bad, err = r.verifySample(ctx, p, head, now, &v)
	}
	if err != nil {
		return v, fmt.Errorf("%s: verify replica %s: %w", what, head, err)
	}
	v.Mismatches = int64(len(bad))
	if len(bad) == 0 {
		return v, nil
	}
	r.log.Warn("replica blocks differ from the manifest", "disk", p.Disk, "replica", head, "blocks", len(bad))
	r.event(ctx, store.LevelWarn, "%s: %d blocks of replica %s read back differ from the source (first at block %d); sending them again", what, len(bad), head, bad[0])
	if len(bad) > maxRepair {
		return v, fmt.Errorf("%s: %d blocks of replica %s read back differ from what was sent (more than the %d a run sends again): the replica cannot be trusted; start the job again, and request a full verification (rehost run verify)", what, len(bad), head, maxRepair)
	}
	repaired, reread, err := r.repair(ctx, p, head, bad, now, repairs)
	if err != nil {
		return v, fmt.Errorf("%s: %w", what, err)
	}
	v.Head, v.Repaired, v.Reread = repaired, int64(len(bad)), reread
	return v, nil
}

// checkBlocks reads blocks back, a few at a time at a bounded rate, and
// returns those whose data does not hash to the manifest's entry.
func (r *run) checkBlocks(ctx context.Context, snap string, checks []blockCheck, limit *rate.Limiter) ([]int64, error) {
	var mu sync.Mutex
	var bad []int64
	var firstErr error
	work := make(chan blockCheck)
	var wg sync.WaitGroup
	for range min(len(checks), cmp.Or(r.e.BlockConcurrency, 8)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, awstarget.BlockSize)
			for c := range work {
				err := limit.Wait(ctx)
				if err == nil {
					_, err = r.target.GetBlock(ctx, snap, c.Block, buf)
				}
				mu.Lock()
				switch {
				case err != nil:
					firstErr = cmp.Or(firstErr, err)
				case entryOf(buf) != c.want:
					bad = append(bad, c.Index)
				}
				mu.Unlock()
			}
		}()
	}
	for _, c := range checks {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		work <- c
	}
	close(work)
	wg.Wait()
	slices.Sort(bad)
	return bad, firstErr
}

func newReadLimit() *rate.Limiter { return rate.NewLimiter(defaultBlockRate, 8) }

// verifyAll reads back every block the replica holds, and checks that
// every block it does not hold reads as zeros in the manifest.
func (r *run) verifyAll(ctx context.Context, p diskPlan, head string, now *chunkCache, v *diskVerification) ([]int64, error) {
	limit := newReadLimit()
	var bad []int64
	next := int64(0)
	gap := func(to int64) error {
		for b := next; b < to; b++ {
			e, err := now.entry(ctx, b)
			if err != nil {
				return err
			}
			if e != zeroEntry {
				bad = append(bad, b) // the source holds data the replica lacks
			}
		}
		return nil
	}
	err := r.target.ListBlocks(ctx, head, 0, func(page []awstarget.Block) error {
		checks := make([]blockCheck, 0, len(page))
		for _, b := range page {
			if err := gap(b.Index); err != nil {
				return err
			}
			e, err := now.entry(ctx, b.Index)
			if err != nil {
				return err
			}
			checks = append(checks, blockCheck{b, e})
			next = b.Index + 1
		}
		got, err := r.checkBlocks(ctx, head, checks, limit)
		v.Blocks += int64(len(checks))
		bad = append(bad, got...)
		return err
	})
	if err == nil {
		err = gap(p.blocks())
	}
	slices.Sort(bad)
	return bad, err
}

// verifySample reads back the changed blocks (a random sample of at most
// VerifyBudget of them) and VerifySample unchanged blocks found at random.
func (r *run) verifySample(ctx context.Context, p diskPlan, head string, now *chunkCache, v *diskVerification) ([]int64, error) {
	budget := cmp.Or(r.e.VerifyBudget, 1024)
	var sample []awstarget.Block
	seen := 0
	err := r.target.ChangedBlocks(ctx, p.Parent, head, func(page []awstarget.Block) error {
		for _, b := range page {
			if b.Token == "" {
				continue
			}
			// Reservoir sampling: every changed block is as likely to be
			// read back, in bounded memory.
			seen++
			if len(sample) < budget {
				sample = append(sample, b)
			} else if k := rand.IntN(seen); k < budget {
				sample[k] = b
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var checks []blockCheck
	changed := map[int64]bool{}
	for _, b := range sample {
		e, err := now.entry(ctx, b.Index)
		if err != nil {
			return nil, err
		}
		checks = append(checks, blockCheck{b, e})
		changed[b.Index] = true
	}
	unchanged, err := r.unchangedSample(ctx, p, head, now, changed)
	if err != nil {
		return nil, err
	}
	checks = append(checks, unchanged...)
	bad, err := r.checkBlocks(ctx, head, checks, newReadLimit())
	v.Blocks, v.Sampled = int64(len(checks)), int64(len(unchanged))
	return bad, err
}

// errStop ends a listing early.
var errStop = errors.New("stop")

// unchangedSample finds VerifySample blocks the replica holds that did not
// change in this run, at random places of the disk: from a random block,
// the first such block the replica lists.
func (r *run) unchangedSample(ctx context.Context, p diskPlan, head string, now *chunkCache, skip map[int64]bool) ([]blockCheck, error) {
	want := cmp.Or(r.e.VerifySample, 64)
	if p.Parent == "" || p.blocks() == 0 {
		return nil, nil // a new chain: every block it holds changed
	}
	before := &chunkCache{m: &manifest{st: r.e.Store, job: r.job.ReplicationJobID, disk: p.Key, readSeq: p.ReadSeq}}
	unchanged := func(b awstarget.Block) (blockCheck, bool, error) {
		if skip[b.Index] {
			return blockCheck{}, false, nil
		}
		was, err := before.entry(ctx, b.Index)
		if err != nil {
			return blockCheck{}, false, err
		}
		is, err := now.entry(ctx, b.Index)
		return blockCheck{b, is}, err == nil && was == is, err
	}
	// A replica whose blocks fit one page is sampled from that page.
	var candidates []blockCheck
	more := false
	err := r.target.ListBlocks(ctx, head, 0, func(page []awstarget.Block) error {
		if candidates != nil || more {
			more = true
			return errStop
		}
		candidates = []blockCheck{}
		for _, b := range page {
			c, ok, err := unchanged(b)
			if err != nil {
				return err
			}
			if ok {
				candidates = append(candidates, c)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	if !more {
		rand.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
		return candidates[:min(want, len(candidates))], nil
	}
	var out []blockCheck
	taken := map[int64]bool{}
	for try := 0; len(out) < want && try < 4*want; try++ {
		from := rand.Int64N(p.blocks())
		err := r.target.ListBlocks(ctx, head, from, func(page []awstarget.Block) error {
			for _, b := range page {
				if taken[b.Index] {
					continue
				}
				c, ok, err := unchanged(b)
				if err != nil {
					return err
				}
				if ok {
					taken[b.Index] = true
					out = append(out, c)
					return errStop
				}
			}
			return errStop // one page from each random place
		})
		if err != nil && !errors.Is(err, errStop) {
			return nil, err
		}
	}
	return out, nil
}

// repair sends the blocks again from the checkpoint into a child of head,
// reads them back from it and returns it, the disk's replica from now on.
func (r *run) repair(ctx context.Context, p diskPlan, head string, blocks []int64, now *chunkCache, attempt int) (_ string, read int64, err error) {
	in := replicaIntent{Disk: p.Disk, Key: p.Key, Token: replicaToken(r.run.ReplicationRunID, p.Disk, attempt, true),
		Parent: head, VolumeGiB: p.VolumeGiB, Seq: p.Seq, Attempt: attempt, Repair: true}
	id, err := r.intend(ctx, verifyStep{}, kindReplica, in)
	if err != nil {
		return "", 0, fmt.Errorf("record the repair's intent: %w", err)
	}
	rep, err := r.target.StartReplica(ctx, awstarget.ReplicaInput{VolumeGiB: p.VolumeGiB, Parent: head, ClientToken: in.Token,
		Tags: r.replicaTags(p.Key), Description: fmt.Sprintf("rehost repair of disk %d of vm %s, run %s", p.Disk+1, r.server.Name, r.run.ReplicationRunID)})
	if err != nil {
		return "", 0, err
	}
	data := replicaData{Replica: rep}
	if err := r.e.Store.RecordCreated(ctx, id, rep.SnapshotID, mustJSON(data)); err != nil {
		return "", 0, fmt.Errorf("record repair replica %s: %w", rep.SnapshotID, err)
	}
	dd, err := r.src.(source.CheckpointReader).OpenDisk(ctx, r.cp, p.Key)
	if err != nil {
		return "", 0, fmt.Errorf("open the disk of checkpoint %q: %w", r.cp.Name, err)
	}
	defer dd.Close()
	w, err := newBlockWriter(ctx, r.target, rep.SnapshotID, writerOptions{concurrency: r.e.BlockConcurrency, bandwidth: r.e.Bandwidth})
	if err != nil {
		return "", 0, err
	}
	fixed := &manifest{st: r.e.Store, job: r.job.ReplicationJobID, disk: p.Key, readSeq: p.Seq, seq: p.Seq}
	var corrected []*chunk
	buf := make([]byte, awstarget.BlockSize)
	for _, b := range blocks {
		off := b * awstarget.BlockSize
		n := min(int64(len(buf)), p.Capacity-off)
		clear(buf)
		got, err := dd.ReadAt(buf[:n], off)
		read += int64(got)
		if err != nil && !(errors.Is(err, io.EOF) && int64(got) == n) {
			w.close()
			return "", 0, fmt.Errorf("read block %d from the checkpoint: %w", b, err)
		}
		e := entryOf(buf)
		if want, _ := now.entry(ctx, b); want != e {
			// The source is the truth: the manifest had it wrong.
			ch, err := fixed.load(ctx, b/chunkBlocks)
			if err != nil {
				w.close()
				return "", 0, err
			}
			ch.set(b, e)
			corrected = append(corrected, ch)
			r.log.Warn("manifest entry corrected from the source", "disk", p.Disk, "block", b)
		}
		sum := zeroBlockSum
		if e != zeroEntry {
			sum = e
		}
		if err := w.put(ctx, b, buf, sum); err != nil {
			w.close()
			return "", 0, err
		}
	}
	st, err := w.close()
	if err != nil {
		return "", 0, err
	}
	for _, ch := range corrected {
		if err := fixed.save(ctx, ch); err != nil {
			return "", 0, err
		}
	}
	sum, err := st.sum()
	if err == nil {
		err = r.target.CompleteReplica(ctx, rep.SnapshotID, st.Count, sum)
	}
	if err != nil {
		return "", 0, err
	}
	data.State, data.Flushed, data.Done = st, true, true
	if err := r.e.Store.UpdateData(ctx, id, mustJSON(data)); err != nil {
		return "", 0, fmt.Errorf("record repair replica %s complete: %w", rep.SnapshotID, err)
	}
	// Read the blocks back from the repair.
	check := &chunkCache{m: fixed}
	var checks []blockCheck
	if err := r.target.ChangedBlocks(ctx, head, rep.SnapshotID, func(page []awstarget.Block) error {
		for _, b := range page {
			e, err := check.entry(ctx, b.Index)
			if err != nil {
				return err
			}
			checks = append(checks, blockCheck{b, e})
		}
		return nil
	}); err != nil {
		return "", 0, err
	}
	still, err := r.checkBlocks(ctx, rep.SnapshotID, checks, newReadLimit())
	if err != nil {
		return "", 0, err
	}
	if len(checks) != len(blocks) || len(still) > 0 {
		return "", 0, fmt.Errorf("%d of %d blocks sent again still read back wrong from repair replica %s (%d listed): EBS did not store what it acknowledged; start the job again, and contact AWS support if it persists",
			len(still), len(blocks), rep.SnapshotID, len(checks))
	}
	r.event(ctx, store.LevelInfo, "vm %q disk %d: %d blocks sent again into %s and read back equal", r.server.Name, p.Disk+1, len(blocks), rep.SnapshotID)
	return rep.SnapshotID, read, nil
}

// abandon deletes the snapshot of a replica entry the run gives up, found
// by its client token when its start was cut off before its id was
// recorded, and releases the entry.
func (r *run) abandon(ctx context.Context, le store.LedgerEntry) error {
	id := le.ResourceID
	if id == "" {
		var in replicaIntent
		if err := json.Unmarshal(le.Intent, &in); err != nil {
			return fmt.Errorf("read the recorded replica: %w", err)
		}
		rep, err := r.target.StartReplica(ctx, awstarget.ReplicaInput{VolumeGiB: in.VolumeGiB, Parent: in.Parent, ClientToken: in.Token})
		if err != nil {
			return fmt.Errorf("look for the replica of token %s: %w", in.Token, err)
		}
		id = rep.SnapshotID
	}
	return r.dropReplica(ctx, le.ID, id)
}

func (verifyStep) undo(ctx context.Context, u *undoer, le store.LedgerEntry) error {
	return undoReplica(ctx, u, le)
}
