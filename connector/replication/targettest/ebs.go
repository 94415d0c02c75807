package targettest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"testing"

	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

func block(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, awstarget.BlockSize)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// writeBlocks starts a replica, puts blocks in index order and completes
// it with the LINEAR aggregate.
func writeBlocks(t *testing.T, e Env, token, parent string, gib int64, blocks map[int64][]byte) string {
	t.Helper()
	rep, err := e.Target.StartReplica(ctx, awstarget.ReplicaInput{VolumeGiB: gib, Parent: parent, ClientToken: token, Tags: map[string]string{"rehost:job": "job-t"}})
	if err != nil {
		t.Fatal(err)
	}
	agg := sha256.New()
	var n int64
	for i := range gib * awstarget.GiB / awstarget.BlockSize {
		b, ok := blocks[i]
		if !ok {
			continue
		}
		sum := sha256.Sum256(b)
		if err := e.Target.PutBlock(ctx, rep.SnapshotID, i, b, sum); err != nil {
			t.Fatal(err)
		}
		agg.Write(sum[:])
		n++
	}
	if err := e.Target.CompleteReplica(ctx, rep.SnapshotID, n, agg.Sum(nil)); err != nil {
		t.Fatal(err)
	}
	return rep.SnapshotID
}

// testReplicaLineage: a child holds its parent's blocks and its own,
// ChangedBlocks names its own, every block reads back with the checksum it
// was put with, and the start is idempotent by token.
func testReplicaLineage(t *testing.T, e Env) {
	if err := e.Target.CheckEBSDirect(ctx); err != nil {
		t.Fatal(err)
	}
	b := []([]byte){block(1), block(2), block(3)}
	seed := writeBlocks(t, e, "tt-run-1-d0", "", 1, map[int64][]byte{0: b[0], 5: b[1]})
	again, err := e.Target.StartReplica(ctx, awstarget.ReplicaInput{VolumeGiB: 1, ClientToken: "tt-run-1-d0"})
	if err != nil || again.SnapshotID != seed {
		t.Fatalf("start again with the token: %v %+v, first %s", err, again, seed)
	}
	child := writeBlocks(t, e, "tt-run-2-d0", seed, 2, map[int64][]byte{5: b[2], 2500: b[0]})
	var changed []int64
	if err := e.Target.ChangedBlocks(ctx, seed, child, func(p []awstarget.Block) error {
		for _, x := range p {
			changed = append(changed, x.Index)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(changed) != 2 || changed[0] != 5 || changed[1] != 2500 {
		t.Errorf("changed blocks %v", changed)
	}
	want := map[int64][]byte{0: b[0], 5: b[2], 2500: b[0]}
	got := 0
	buf := make([]byte, awstarget.BlockSize)
	if err := e.Target.ListBlocks(ctx, child, 0, func(p []awstarget.Block) error {
		for _, x := range p {
			sum, err := e.Target.GetBlock(ctx, child, x, buf)
			if err != nil {
				return err
			}
			h := sha256.Sum256(want[x.Index])
			if !bytes.Equal(buf, want[x.Index]) || sum != b64(h[:]) {
				t.Errorf("block %d of the child reads back other data (checksum %s)", x.Index, sum)
			}
			got++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got != len(want) {
		t.Errorf("%d blocks listed, want %d", got, len(want))
	}
	var from []int64
	e.Target.ListBlocks(ctx, child, 3, func(p []awstarget.Block) error {
		for _, x := range p {
			from = append(from, x.Index)
		}
		return nil
	})
	if len(from) != 2 || from[0] != 5 {
		t.Errorf("blocks from index 3: %v", from)
	}
	for id, want := range map[string]string{child: "completed", "snap-0123456789abcdef0": ""} {
		if st, err := e.Target.SnapshotState(ctx, id); err != nil || st != want {
			t.Errorf("state of %s: %q %v, want %q", id, st, err, want)
		}
	}
}

// testReplicaRefusals: a block whose checksum lies, a completion with the
// wrong count or aggregate, and a block put into a completed snapshot are
// refused.
func testReplicaRefusals(t *testing.T, e Env) {
	rep, err := e.Target.StartReplica(ctx, awstarget.ReplicaInput{VolumeGiB: 1, ClientToken: "tt-run-3-d0"})
	if err != nil {
		t.Fatal(err)
	}
	b := block(4)
	if err := e.Target.PutBlock(ctx, rep.SnapshotID, 1, b, sha256.Sum256(block(5))); err == nil {
		t.Error("a block whose checksum lies was accepted")
	}
	sum := sha256.Sum256(b)
	if err := e.Target.PutBlock(ctx, rep.SnapshotID, 1, b, sum); err != nil {
		t.Fatal(err)
	}
	if err := e.Target.CompleteReplica(ctx, rep.SnapshotID, 2, nil); err == nil {
		t.Error("a completion with the wrong block count was accepted")
	}
	var re *awstarget.ReplicaError
	if err := e.Target.CompleteReplica(ctx, rep.SnapshotID, 1, make([]byte, 32)); !errors.As(err, &re) {
		t.Errorf("a completion with a wrong aggregate: %v", err)
	}
	if st, _ := e.Target.SnapshotState(ctx, rep.SnapshotID); st != "error" {
		t.Errorf("after a refused aggregate the snapshot is %q", st)
	}
	ok := writeBlocks(t, e, "tt-run-4-d0", "", 1, map[int64][]byte{2: b})
	if err := e.Target.PutBlock(ctx, ok, 3, b, sum); err == nil {
		t.Error("a block put into a completed snapshot was accepted")
	}
	if err := e.Target.DeleteImage(ctx, "", []string{ok, rep.SnapshotID}); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.Target.SnapshotState(ctx, ok); st != "" {
		t.Errorf("a deleted replica is %q", st)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
