package memtarget

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"

	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// EBS direct, as EBS keeps it: a snapshot holds the 512 KiB blocks written
// to it and shares its parent's (by reference, as EBS shares a lineage's
// blocks), checks each block's checksum and the aggregate at completion,
// and answers each block with the checksum it was put with.

// replica is the EBS direct side of a Snapshot.
type replica struct {
	state     string // pending, completed, error
	parent    string
	volumeGiB int64
	token     string
	blocks    map[int64][]byte // block index → data (shared with the lineage)
	sums      map[int64]string // block index → checksum it was put with
	writers   map[int64]string // block index → the snapshot that wrote it
	written   []int64          // blocks this snapshot wrote, for the aggregate
}

// CheckEBSDirect succeeds: the in-memory target always has EBS direct,
// unless NoEBSDirect is set.
func (t *Target) CheckEBSDirect(ctx context.Context) error {
	if err := t.at(ctx, "CheckEBSDirect", "before"); err != nil {
		return err
	}
	if t.NoEBSDirect != nil {
		return t.NoEBSDirect
	}
	return t.at(ctx, "CheckEBSDirect", "after")
}

// StartReplica starts a pending snapshot, idempotent by client token.
func (t *Target) StartReplica(ctx context.Context, in awstarget.ReplicaInput) (awstarget.Replica, error) {
	if err := t.at(ctx, "StartReplica", "before"); err != nil {
		return awstarget.Replica{}, err
	}
	if in.ClientToken == "" || in.VolumeGiB < 1 {
		return awstarget.Replica{}, apiErr("ValidationException", "a client token and a volume size are required")
	}
	t.mu.Lock()
	var s *Snapshot
	for _, x := range t.snapshots {
		if x.ebs != nil && x.ebs.token == in.ClientToken {
			s = x
		}
	}
	if s == nil {
		r := &replica{state: "pending", volumeGiB: in.VolumeGiB, token: in.ClientToken, parent: in.Parent,
			blocks: map[int64][]byte{}, sums: map[int64]string{}, writers: map[int64]string{}}
		if in.Parent != "" {
			p := t.snapshots[in.Parent]
			if p == nil || p.ebs == nil || p.ebs.state != "completed" {
				t.mu.Unlock()
				return awstarget.Replica{}, apiErr("ResourceNotFoundException", "The snapshot '%s' does not exist or is not completed.", in.Parent)
			}
			if in.VolumeGiB < p.ebs.volumeGiB {
				t.mu.Unlock()
				return awstarget.Replica{}, apiErr("ValidationException", "VolumeSize %d is smaller than the parent's %d GiB", in.VolumeGiB, p.ebs.volumeGiB)
			}
			maps.Copy(r.blocks, p.ebs.blocks)
			maps.Copy(r.sums, p.ebs.sums)
			maps.Copy(r.writers, p.ebs.writers)
		}
		s = &Snapshot{ID: t.id("snap"), Tags: maps.Clone(in.Tags), ebs: r}
		if s.Tags == nil {
			s.Tags = map[string]string{}
		}
		t.snapshots[s.ID] = s
	}
	out := awstarget.Replica{SnapshotID: s.ID, VolumeGiB: s.ebs.volumeGiB, Parent: s.ebs.parent}
	t.mu.Unlock()
	return out, t.at(ctx, "StartReplica", "after")
}

func (t *Target) pending(id string) (*replica, error) {
	s := t.snapshots[id]
	if s == nil || s.ebs == nil {
		return nil, apiErr("ResourceNotFoundException", "The snapshot '%s' does not exist.", id)
	}
	if s.ebs.state != "pending" {
		return nil, apiErr("ValidationException", "snapshot %s is %s; blocks can only be written to a pending snapshot", id, s.ebs.state)
	}
	return s.ebs, nil
}

// PutBlock stores a block after checking its checksum.
func (t *Target) PutBlock(ctx context.Context, id string, index int64, data []byte, sum [sha256.Size]byte) error {
	if err := t.at(ctx, "PutBlock", "before"); err != nil {
		return err
	}
	if len(data) != awstarget.BlockSize || sha256.Sum256(data) != sum {
		return apiErr("ValidationException", "the checksum of block %d does not match its data", index)
	}
	t.mu.Lock()
	r, err := t.pending(id)
	if err == nil {
		if index >= r.volumeGiB*awstarget.GiB/awstarget.BlockSize {
			err = apiErr("ValidationException", "block index %d is beyond the %d GiB volume", index, r.volumeGiB)
		} else {
			if r.writers[index] != id {
				r.written = append(r.written, index)
			}
			r.blocks[index], r.sums[index], r.writers[index] = slices.Clone(data), base64.StdEncoding.EncodeToString(sum[:]), id
		}
	}
	t.mu.Unlock()
	if err != nil {
		return err
	}
	return t.at(ctx, "PutBlock", "after")
}

// CompleteReplica checks the block count and the LINEAR aggregate.
func (t *Target) CompleteReplica(ctx context.Context, id string, changed int64, aggregate []byte) error {
	if err := t.at(ctx, "CompleteReplica", "before"); err != nil {
		return err
	}
	t.mu.Lock()
	s := t.snapshots[id]
	var err error
	switch {
	case s == nil || s.ebs == nil:
		err = apiErr("ResourceNotFoundException", "The snapshot '%s' does not exist.", id)
	case s.ebs.state == "completed":
	case s.ebs.state != "pending":
		err = apiErr("ValidationException", "snapshot %s is %s", id, s.ebs.state)
	case int64(len(s.ebs.written)) != changed:
		err = apiErr("ValidationException", "ChangedBlocksCount %d does not match the %d blocks written", changed, len(s.ebs.written))
	default:
		h := sha256.New()
		for _, i := range slices.Sorted(slices.Values(s.ebs.written)) {
			raw, _ := base64.StdEncoding.DecodeString(s.ebs.sums[i])
			h.Write(raw)
		}
		if changed > 0 && string(h.Sum(nil)) != string(aggregate) {
			s.ebs.state = "error"
			err = &awstarget.ReplicaError{SnapshotID: id, Status: "error"}
		} else {
			s.ebs.state = "completed"
		}
	}
	t.mu.Unlock()
	if err != nil {
		return err
	}
	return t.at(ctx, "CompleteReplica", "after")
}

// SnapshotState is a snapshot's state, "" when there is none.
func (t *Target) SnapshotState(ctx context.Context, id string) (string, error) {
	if err := t.at(ctx, "SnapshotState", "before"); err != nil {
		return "", err
	}
	t.mu.Lock()
	state := ""
	if s := t.snapshots[id]; s != nil {
		state = "completed"
		if s.ebs != nil {
			state = s.ebs.state
		}
	}
	t.mu.Unlock()
	return state, t.at(ctx, "SnapshotState", "after")
}

func (t *Target) completed(id string) (*replica, error) {
	s := t.snapshots[id]
	if s == nil || s.ebs == nil {
		return nil, apiErr("ResourceNotFoundException", "The snapshot '%s' does not exist.", id)
	}
	if s.ebs.state != "completed" {
		return nil, apiErr("ValidationException", "snapshot %s is %s, not completed", id, s.ebs.state)
	}
	return s.ebs, nil
}

func token(id string, index int64) string { return fmt.Sprintf("%s/%d", id, index) }

// ListBlocks pages through a completed snapshot's blocks, 100 at a time.
func (t *Target) ListBlocks(ctx context.Context, id string, start int64, fn func([]awstarget.Block) error) error {
	if err := t.at(ctx, "ListBlocks", "before"); err != nil {
		return err
	}
	t.mu.Lock()
	r, err := t.completed(id)
	var idx []int64
	if err == nil {
		for i := range r.blocks {
			if i >= start {
				idx = append(idx, i)
			}
		}
	}
	t.mu.Unlock()
	if err != nil {
		return err
	}
	slices.Sort(idx)
	return t.pages(idx, func(i int64) awstarget.Block { return awstarget.Block{Index: i, Token: token(id, i)} }, fn)
}

func (t *Target) pages(idx []int64, block func(int64) awstarget.Block, fn func([]awstarget.Block) error) error {
	for len(idx) > 0 {
		n := min(len(idx), 100)
		page := make([]awstarget.Block, n)
		for k, i := range idx[:n] {
			page[k] = block(i)
		}
		if err := fn(page); err != nil {
			return err
		}
		idx = idx[n:]
	}
	return nil
}

// ChangedBlocks pages through the blocks second wrote since first.
func (t *Target) ChangedBlocks(ctx context.Context, first, second string, fn func([]awstarget.Block) error) error {
	if err := t.at(ctx, "ChangedBlocks", "before"); err != nil {
		return err
	}
	t.mu.Lock()
	r2, err := t.completed(second)
	var r1 *replica
	if err == nil && first != "" {
		r1, err = t.completed(first)
	}
	var idx []int64
	inSecond := map[int64]bool{}
	if err == nil {
		seen := map[int64]bool{}
		for i, w := range r2.writers {
			if r1 == nil || r1.writers[i] != w {
				seen[i], inSecond[i] = true, true
			}
		}
		if r1 != nil {
			for i := range r1.writers {
				if _, ok := r2.writers[i]; !ok {
					seen[i] = true
				}
			}
		}
		idx = slices.Sorted(maps.Keys(seen))
	}
	t.mu.Unlock()
	if err != nil {
		return err
	}
	return t.pages(idx, func(i int64) awstarget.Block {
		b := awstarget.Block{Index: i}
		if inSecond[i] {
			b.Token = token(second, i)
		}
		return b
	}, fn)
}

// GetBlock reads a block by its token, answering the checksum it was put
// with.
func (t *Target) GetBlock(ctx context.Context, id string, b awstarget.Block, buf []byte) (string, error) {
	if err := t.at(ctx, "GetBlock", "before"); err != nil {
		return "", err
	}
	t.mu.Lock()
	r, err := t.completed(id)
	var sum string
	if err == nil {
		data, ok := r.blocks[b.Index]
		switch {
		case b.Token != token(id, b.Index):
			err = apiErr("ValidationException", "the block token is not valid for block %d of %s", b.Index, id)
		case !ok:
			err = apiErr("ValidationException", "block %d of %s holds no data", b.Index, id)
		default:
			copy(buf, data)
			sum = r.sums[b.Index]
		}
	}
	t.mu.Unlock()
	if err != nil {
		return "", err
	}
	return sum, t.at(ctx, "GetBlock", "after")
}

// Tamper flips a byte of a stored block of snapshot id, in place: every
// snapshot sharing the block sees it, and its checksum stays the one it
// was put with.
func (t *Target) Tamper(id string, index int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.snapshots[id]
	if s == nil || s.ebs == nil || s.ebs.blocks[index] == nil {
		return false
	}
	s.ebs.blocks[index][awstarget.BlockSize/3] ^= 0x5a
	return true
}

// Bytes returns the first size bytes of a snapshot: an imported disk's
// bytes, or a replica's blocks (zeros where none was written).
func (s Snapshot) Bytes(size int64) []byte {
	out := make([]byte, size)
	if s.ebs == nil {
		copy(out, s.Content)
		return out
	}
	for i, b := range s.ebs.blocks {
		if off := i * awstarget.BlockSize; off < size {
			copy(out[off:], b)
		}
	}
	return out
}

// Replica tells whether a snapshot was written with EBS direct, with its
// state and parent.
func (s Snapshot) Replica() (state, parent string, ok bool) {
	if s.ebs == nil {
		return "", "", false
	}
	return s.ebs.state, s.ebs.parent, true
}
