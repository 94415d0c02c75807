package emulator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"math/rand"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/rehost/rehost/internal/lab/guestdisk"
)

// startBlocks makes a snapshot (child of parent when not "") holding blocks
// and completes it with the aggregate checksum.
func (e *env) startBlocks(parent string, size int64, blocks map[int32][]byte) string {
	e.t.Helper()
	ctx := context.Background()
	in := &ebs.StartSnapshotInput{VolumeSize: aws.Int64(size)}
	if parent != "" {
		in.ParentSnapshotId = aws.String(parent)
	}
	s, err := e.ebs.StartSnapshot(ctx, in)
	if err != nil {
		e.t.Fatal(err)
	}
	id := aws.ToString(s.SnapshotId)
	var order []int32
	for i := range int32(size * gib / BlockSize) {
		if _, ok := blocks[i]; ok {
			order = append(order, i)
		}
	}
	agg := putBlocks(e.t, e.ebs, id, blocks, order)
	if _, err := e.ebs.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{SnapshotId: aws.String(id), ChangedBlocksCount: aws.Int32(int32(len(order))),
		Checksum: aws.String(agg), ChecksumAlgorithm: "SHA256", ChecksumAggregationMethod: "LINEAR"}); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// getBlock reads a block with GetSnapshotBlock, by the token
// ListSnapshotBlocks gives, and returns its data and answered checksum.
func (e *env) getBlock(snap string, idx int32) ([]byte, string) {
	e.t.Helper()
	ctx := context.Background()
	lb, err := e.ebs.ListSnapshotBlocks(ctx, &ebs.ListSnapshotBlocksInput{SnapshotId: aws.String(snap), StartingBlockIndex: aws.Int32(idx), MaxResults: aws.Int32(100)})
	if err != nil || len(lb.Blocks) == 0 || aws.ToInt32(lb.Blocks[0].BlockIndex) != idx {
		e.t.Fatalf("list block %d of %s: %v %+v", idx, snap, err, lb)
	}
	gb, err := e.ebs.GetSnapshotBlock(ctx, &ebs.GetSnapshotBlockInput{SnapshotId: aws.String(snap), BlockIndex: aws.Int32(idx), BlockToken: lb.Blocks[0].BlockToken})
	if err != nil {
		e.t.Fatal(err)
	}
	defer gb.BlockData.Close()
	b, err := io.ReadAll(gb.BlockData)
	if err != nil {
		e.t.Fatal(err)
	}
	return b, aws.ToString(gb.Checksum)
}

func b64sum(b []byte) string {
	s := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

// A child shares its parent's blocks: it reads them after the parent is
// deleted, ListChangedBlocks tells its own writes from inherited ones, a
// larger child reads the new tail as zeros, and the shared files go only
// with the last snapshot using them.
func TestLineageSharesBlocks(t *testing.T) {
	e := newBare(t, nil)
	ctx := context.Background()
	r := rand.New(rand.NewSource(3))
	b0, b1, b2 := randomBlock(r), randomBlock(r), randomBlock(r)
	seed := e.startBlocks("", 1, map[int32][]byte{0: b0, 1: b1})
	child := e.startBlocks(seed, 2, map[int32][]byte{1: b2, 2100: b2})

	_, err := e.ebs.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), ParentSnapshotId: aws.String(child)})
	wantCode(t, err, "ValidationException") // smaller than its parent
	_, err = e.ebs.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(2), ParentSnapshotId: aws.String(child), Encrypted: aws.Bool(true)})
	wantCode(t, err, "ValidationException") // a child takes its parent's encryption

	ch, err := e.ebs.ListChangedBlocks(ctx, &ebs.ListChangedBlocksInput{FirstSnapshotId: aws.String(seed), SecondSnapshotId: aws.String(child)})
	if err != nil || len(ch.ChangedBlocks) != 2 || aws.ToInt32(ch.ChangedBlocks[0].BlockIndex) != 1 || aws.ToInt32(ch.ChangedBlocks[1].BlockIndex) != 2100 {
		t.Fatalf("changed blocks: %v %+v", err, ch)
	}
	if _, err := e.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(seed)}); err != nil {
		t.Fatal(err)
	}
	for i, want := range map[int32][]byte{0: b0, 1: b2, 2100: b2} {
		got, sum := e.getBlock(child, i)
		if !bytes.Equal(got, want) || sum != b64sum(want) {
			t.Fatalf("block %d of the child after its parent's deletion: content equal %v, checksum %s", i, bytes.Equal(got, want), sum)
		}
	}
	c, size, err := e.em.SnapshotContent(child)
	if err != nil || size != 2*gib {
		t.Fatalf("content of the child: %v, size %d", err, size)
	}
	tail := make([]byte, BlockSize)
	if _, err := c.ReadAt(tail, 1500*BlockSize); err != nil || !bytes.Equal(tail, zeroBlock) {
		t.Fatalf("the grown tail: %v", err)
	}
	c.Close()
	if _, err := e.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(child)}); err != nil {
		t.Fatal(err)
	}
	e.em.mu.Lock()
	retained := len(e.em.st.Retained)
	e.em.mu.Unlock()
	if retained != 0 {
		t.Fatalf("%d deleted snapshots' files kept after the last user went", retained)
	}
}

// A tampered block reads back changed while GetSnapshotBlock still
// answers the checksum it was put with, in the snapshot and in the
// children sharing it.
func TestTamperBlock(t *testing.T) {
	e := newBare(t, nil)
	r := rand.New(rand.NewSource(4))
	b := randomBlock(r)
	seed := e.startBlocks("", 1, map[int32][]byte{7: b})
	child := e.startBlocks(seed, 1, map[int32][]byte{8: randomBlock(r)})
	if err := e.em.TamperBlock(child, 7); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{seed, child} {
		got, sum := e.getBlock(s, 7)
		if bytes.Equal(got, b) || sum != b64sum(b) || b64sum(got) == sum {
			t.Fatalf("%s: tampered block equal %v, checksum answered %s (of the data: %s)", s, bytes.Equal(got, b), sum, b64sum(got))
		}
	}
	if err := e.em.TamperBlock(child, 9); err == nil {
		t.Fatal("tampering with a block holding no data succeeded")
	}
}

// ImportImage takes EBS snapshots as its disks (SnapshotId instead of an
// S3 object): the AMI's snapshots are new ones with the same content, and
// deleting the source leaves them whole.
func TestImportImageFromSnapshots(t *testing.T) {
	e := newBare(t, nil)
	e.role("vmimport", trustPolicy, rolePolicy("none"))
	ctx := context.Background()
	raw := guestDisk(t, guestdisk.BIOS)
	blocks := map[int32][]byte{}
	for off := 0; off < len(raw); off += BlockSize {
		b := make([]byte, BlockSize)
		copy(b, raw[off:])
		if !bytes.Equal(b, zeroBlock) {
			blocks[int32(off/BlockSize)] = b
		}
	}
	boot := e.startBlocks("", 1, blocks)
	data := e.startBlocks("", 1, map[int32][]byte{3: randomBlock(rand.New(rand.NewSource(5)))})
	out, err := e.ec2.ImportImage(ctx, &ec2.ImportImageInput{DiskContainers: []ec2types.ImageDiskContainer{
		{SnapshotId: aws.String(boot)}, {SnapshotId: aws.String(data)}}, BootMode: "legacy-bios"})
	if err != nil {
		t.Fatal(err)
	}
	task := e.waitImage(aws.ToString(out.ImportTaskId))
	if aws.ToString(task.Status) != "completed" || len(task.SnapshotDetails) != 2 {
		t.Fatalf("import of snapshots: %s: %s (%d disks)", aws.ToString(task.Status), aws.ToString(task.StatusMessage), len(task.SnapshotDetails))
	}
	for i, src := range []string{boot, data} {
		made := aws.ToString(task.SnapshotDetails[i].SnapshotId)
		if made == src {
			t.Fatalf("disk %d: the AMI uses the source snapshot itself", i)
		}
		want, _, _ := e.em.SnapshotSHA256(src)
		if _, err := e.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(src)}); err != nil {
			t.Fatal(err)
		}
		got, _, err := e.em.SnapshotSHA256(made)
		if err != nil || got != want {
			t.Fatalf("disk %d: the imported snapshot hashes %s (%v), its source %s", i, got, err, want)
		}
	}

	// A snapshot that does not exist fails the task as VM Import words it.
	out, err = e.ec2.ImportImage(ctx, &ec2.ImportImageInput{DiskContainers: []ec2types.ImageDiskContainer{{SnapshotId: aws.String("snap-0123456789abcdef0")}}})
	if err != nil {
		t.Fatal(err)
	}
	if task := e.waitImage(aws.ToString(out.ImportTaskId)); aws.ToString(task.Status) != "deleted" {
		t.Fatalf("import of a missing snapshot: %s", aws.ToString(task.Status))
	}
}
