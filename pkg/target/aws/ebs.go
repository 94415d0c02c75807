package aws

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// EBS direct: a replica is an EBS snapshot written block by block
// (StartSnapshot, PutSnapshotBlock, CompleteSnapshot), a child of the
// previous replica of the same disk so that it holds only what changed, and
// read back block by block (ListSnapshotBlocks, ListChangedBlocks,
// GetSnapshotBlock) to prove it equals the source.

// BlockSize is the EBS direct block size: every block is put and read
// whole.
const BlockSize = 512 << 10

// GiB is the unit of an EBS volume's size.
const GiB = 1 << 30

// VolumeGiB is the smallest EBS volume holding size bytes.
func VolumeGiB(size int64) int64 { return max(1, (size+GiB-1)/GiB) }

// ReplicaInput starts a replica snapshot.
type ReplicaInput struct {
	// VolumeGiB is the volume's size, at least its parent's.
	VolumeGiB int64
	// Parent is the previous replica of the disk; "" starts a chain.
	Parent string
	// ClientToken makes the start idempotent: derive it from the run and
	// the disk. Required.
	ClientToken string
	Description string
	Tags        map[string]string
	// Encrypted and KMSKeyID encrypt a chain's first snapshot; a child
	// keeps its parent's encryption (EBS refuses Encrypted with a parent).
	Encrypted bool
	KMSKeyID  string
}

// Replica is a started replica snapshot; it is plain data to persist.
type Replica struct {
	SnapshotID string `json:"snapshotId"`
	VolumeGiB  int64  `json:"volumeGiB"`
	Parent     string `json:"parent,omitempty"`
}

// StartReplica starts a pending snapshot to put blocks into. Idempotent
// through the client token: a repeated call returns the snapshot the first
// one started. A pending snapshot with nothing written for a day is
// cancelled by EBS.
func (t *Target) StartReplica(ctx context.Context, in ReplicaInput) (Replica, error) {
	if in.ClientToken == "" {
		return Replica{}, errors.New("start replica snapshot: a client token (derived from the run and disk) is required")
	}
	if in.VolumeGiB < 1 {
		return Replica{}, fmt.Errorf("start replica snapshot: volume size %d GiB", in.VolumeGiB)
	}
	if t.ebs == nil {
		return Replica{}, errors.New("start replica snapshot: no EBS direct client configured")
	}
	req := in
	if in.Parent != "" {
		req.Encrypted, req.KMSKeyID = false, ""
	} else if in.KMSKeyID != "" {
		req.Encrypted = true
	}
	var out Replica
	err := t.call(ctx, "StartSnapshot", func(ctx context.Context) (err error) {
		out, err = t.ebs.StartSnapshot(ctx, req)
		return err
	})
	if err != nil {
		what := "a new chain"
		if in.Parent != "" {
			what = "a child of " + in.Parent
		}
		return Replica{}, fmt.Errorf("start replica snapshot (%d GiB, %s): %w", in.VolumeGiB, what, err)
	}
	return out, nil
}

// PutBlock stores block index of pending snapshot id: data is BlockSize
// bytes and sum their SHA-256, which EBS checks. One call under the retry
// policy (throttling is retried); putting a block again replaces it.
func (t *Target) PutBlock(ctx context.Context, id string, index int64, data []byte, sum [sha256.Size]byte) error {
	if len(data) != BlockSize {
		return fmt.Errorf("put block %d of %s: %d bytes, not %d", index, id, len(data), BlockSize)
	}
	b64 := base64.StdEncoding.EncodeToString(sum[:])
	err := t.call(ctx, "PutSnapshotBlock", func(ctx context.Context) error {
		return t.ebs.PutSnapshotBlock(ctx, id, index, bytes.NewReader(data), BlockSize, b64)
	})
	if err != nil {
		return fmt.Errorf("put block %d of %s: %w", index, id, err)
	}
	return nil
}

// ReplicaError is a snapshot EBS refused to complete: the aggregate
// checksum or the block count did not match what it stored (the snapshot
// is then in state error and must be deleted).
type ReplicaError struct {
	SnapshotID string
	Status     string
}

func (e *ReplicaError) Error() string {
	return fmt.Sprintf("replica snapshot %s ended %s: EBS did not accept its blocks' aggregate checksum", e.SnapshotID, e.Status)
}

// CompleteReplica completes a pending snapshot into which changed blocks
// were put; aggregate is the SHA-256 of their checksums in block order
// (EBS's LINEAR aggregate; nil when no block was put). Completing a
// completed snapshot succeeds; one EBS refuses is a *ReplicaError.
func (t *Target) CompleteReplica(ctx context.Context, id string, changed int64, aggregate []byte) error {
	var agg string
	if changed > 0 {
		agg = base64.StdEncoding.EncodeToString(aggregate)
	}
	var status string
	err := t.call(ctx, "CompleteSnapshot", func(ctx context.Context) (err error) {
		status, err = t.ebs.CompleteSnapshot(ctx, id, changed, agg)
		return err
	})
	if err != nil {
		return fmt.Errorf("complete replica snapshot %s (%d blocks): %w", id, changed, err)
	}
	switch status {
	case "completed", "pending":
		// Pending: EBS completes it in the background; it is usable once
		// DescribeSnapshots says completed.
		return nil
	}
	return &ReplicaError{SnapshotID: id, Status: status}
}

// SnapshotState is the state of an EBS snapshot (pending, completed,
// error), or "" when it does not exist (any more).
func (t *Target) SnapshotState(ctx context.Context, id string) (string, error) {
	var out snapshotsPage
	err := t.ec2Call(ctx, "DescribeSnapshots", url.Values{"SnapshotId.1": {id}, "Owner.1": {"self"}}, &out)
	if notFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up snapshot %s: %w", id, err)
	}
	for _, s := range out.Snapshots {
		if s.SnapshotID == id {
			return s.State, nil
		}
	}
	return "", nil
}

// Block is a block of a snapshot that holds data, with the token that
// reads it.
type Block struct {
	Index int64
	Token string
}

// ListBlocks calls fn with the blocks of completed snapshot id that hold
// data, from index start, a page at a time in ascending order; fn returning
// an error stops the listing with it.
func (t *Target) ListBlocks(ctx context.Context, id string, start int64, fn func([]Block) error) error {
	return t.blockPages(ctx, "ListSnapshotBlocks", fmt.Sprintf("list the blocks of snapshot %s from %d", id, start),
		func(ctx context.Context, token string) ([]Block, string, error) {
			return t.ebs.ListSnapshotBlocks(ctx, id, start, 10000, token)
		}, fn)
}

// ChangedBlocks calls fn with the blocks of completed snapshot second that
// differ from completed snapshot first of its lineage (every block holding
// data when first is ""), a page at a time in ascending order. A block
// that holds data only in first has no Token.
func (t *Target) ChangedBlocks(ctx context.Context, first, second string, fn func([]Block) error) error {
	return t.blockPages(ctx, "ListChangedBlocks", fmt.Sprintf("list the blocks of snapshot %s changed since %s", second, cmp.Or(first, "its start")),
		func(ctx context.Context, token string) ([]Block, string, error) {
			return t.ebs.ListChangedBlocks(ctx, first, second, 10000, token)
		}, fn)
}

// blockPages fetches pages of blocks, each under the retry policy, and
// hands each to fn until the last, or until fn returns an error (returned
// as it is; the listing's own errors are prefixed with what).
func (t *Target) blockPages(ctx context.Context, op, what string, page func(context.Context, string) ([]Block, string, error), fn func([]Block) error) error {
	if t.ebs == nil {
		return fmt.Errorf("%s: no EBS direct client configured", what)
	}
	var token string
	for {
		var blocks []Block
		var next string
		err := t.call(ctx, op, func(ctx context.Context) (err error) {
			blocks, next, err = page(ctx, token)
			return err
		})
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if err := fn(blocks); err != nil {
			return err
		}
		if next == "" || next == token {
			return nil
		}
		token = next
	}
}

// GetBlock reads block b of completed snapshot id into buf (BlockSize
// bytes) and returns the checksum EBS answered with it (base64 SHA-256 of
// the block as it was put). Callers compare the data's own hash: the
// answered one says what was sent, not what is stored.
func (t *Target) GetBlock(ctx context.Context, id string, b Block, buf []byte) (string, error) {
	if len(buf) != BlockSize {
		return "", fmt.Errorf("get block %d of %s: buffer of %d bytes", b.Index, id, len(buf))
	}
	var sum string
	err := t.call(ctx, "GetSnapshotBlock", func(ctx context.Context) error {
		data, n, checksum, err := t.ebs.GetSnapshotBlock(ctx, id, b)
		if err != nil {
			return err
		}
		defer data.Close()
		if n != BlockSize {
			return fmt.Errorf("EBS answered %d bytes", n)
		}
		if _, err := io.ReadFull(data, buf); err != nil {
			return fmt.Errorf("read the block: %w", err)
		}
		sum = checksum
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("get block %d of %s: %w", b.Index, id, err)
	}
	return sum, nil
}

// CheckEBSDirect tells whether the connector can use EBS direct in its
// region: an error says why not (no endpoint in the region, or no
// permission), and replication then goes through S3 and VM Import.
func (t *Target) CheckEBSDirect(ctx context.Context) error {
	if t.ebs == nil {
		return errors.New("EBS direct: no client configured")
	}
	// A well-formed id of no snapshot: an endpoint that answers "not
	// found" serves the API.
	err := t.call(ctx, "ListSnapshotBlocks", func(ctx context.Context) error {
		_, _, err := t.ebs.ListSnapshotBlocks(ctx, "snap-00000000000000000", 0, 100, "")
		return err
	})
	switch code := apiCode(err); {
	case err == nil, code == "ResourceNotFoundException", code == "ValidationException":
		return nil
	case code == "AccessDeniedException", code == "UnauthorizedOperation", strings.Contains(code, "AccessDenied"):
		return fmt.Errorf("EBS direct in %s: the connector's credentials may not use it (allow ebs:StartSnapshot, ebs:PutSnapshotBlock, ebs:CompleteSnapshot, ebs:ListSnapshotBlocks, ebs:ListChangedBlocks and ebs:GetSnapshotBlock): %w", t.cfg.Region, err)
	case code != "":
		return fmt.Errorf("EBS direct in %s: %w", t.cfg.Region, err)
	}
	return fmt.Errorf("EBS direct in %s: its endpoint cannot be reached (the region may not offer it): %w", t.cfg.Region, err)
}
