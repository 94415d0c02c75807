package aws

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/smithy-go"

	"github.com/rehost/rehost/internal/lab/emulator"
	"github.com/rehost/rehost/internal/lab/guestdisk"
)

// ebsAccount is the emulator alone (EC2, IAM, EBS direct; no S3) with a
// target on it. wrap, when set, decorates the EBS client.
func ebsAccount(t *testing.T, wrap func(EBSAPI) EBSAPI) (*emulator.Emulator, *Target) {
	t.Helper()
	emu, err := emulator.New(emulator.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	base, err := emu.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	ak, sk := emu.Credentials()
	tg, err := New(context.Background(), Config{Region: emu.Region(), AccessKeyID: ak, SecretAccessKey: sk,
		Endpoints: Endpoints{EC2: base, IAM: base, STS: base, EBS: base}, RetryBaseDelay: 5 * time.Millisecond,
		PollInitial: 20 * time.Millisecond, PollMax: 100 * time.Millisecond, IAMPropagation: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		tg.ebs = wrap(tg.ebs)
	}
	return emu, tg
}

func randomBlocks(seed uint64, n int) [][]byte {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, BlockSize)
		for j := range out[i] {
			out[i][j] = byte(r.Uint32())
		}
	}
	return out
}

// writeReplica writes blocks (index → data) into a new replica, in order,
// and completes it with the LINEAR aggregate of their checksums.
func writeReplica(t *testing.T, tg *Target, token, parent string, gib int64, blocks map[int64][]byte) Replica {
	t.Helper()
	ctx := context.Background()
	rep, err := tg.StartReplica(ctx, ReplicaInput{VolumeGiB: gib, Parent: parent, ClientToken: token, Tags: map[string]string{"rehost:job": "j-1"}})
	if err != nil {
		t.Fatal(err)
	}
	agg := sha256.New()
	for i := range gib * GiB / BlockSize {
		if b, ok := blocks[i]; ok {
			sum := sha256.Sum256(b)
			if err := tg.PutBlock(ctx, rep.SnapshotID, i, b, sum); err != nil {
				t.Fatal(err)
			}
			agg.Write(sum[:])
		}
	}
	if err := tg.CompleteReplica(ctx, rep.SnapshotID, int64(len(blocks)), agg.Sum(nil)); err != nil {
		t.Fatal(err)
	}
	return rep
}

// readBack reads every block of snapshot id holding data, by ListBlocks
// and BlockReader, checking EBS's answered checksum against the data.
func readBack(t *testing.T, tg *Target, id string) map[int64][]byte {
	t.Helper()
	ctx := context.Background()
	got := map[int64][]byte{}
	err := tg.ListBlocks(ctx, id, 0, func(page []Block) error {
		for _, b := range page {
			buf := make([]byte, BlockSize)
			sum, err := tg.GetBlock(ctx, id, b, buf)
			if err != nil {
				return err
			}
			if h := sha256.Sum256(buf); sum != b64(h[:]) {
				t.Errorf("block %d: EBS answered checksum %s for data hashing %s", b.Index, sum, b64(h[:]))
			}
			got[b.Index] = buf
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// A chain of two replicas: the seed holds its blocks, the child only its
// changes on top of them, ListChangedBlocks names those, and both read
// back exactly what was written. StartReplica is idempotent by token.
func TestReplicaChain(t *testing.T) {
	emu, tg := ebsAccount(t, nil)
	ctx := context.Background()
	b := randomBlocks(1, 4)
	seed := writeReplica(t, tg, "rehost-run-1-d0", "", 1, map[int64][]byte{0: b[0], 9: b[1], 2047: b[2]})
	again, err := tg.StartReplica(ctx, ReplicaInput{VolumeGiB: 1, ClientToken: "rehost-run-1-d0"})
	if err != nil || again.SnapshotID != seed.SnapshotID {
		t.Fatalf("start again by the same token: %v %+v, first %s", err, again, seed.SnapshotID)
	}
	child := writeReplica(t, tg, "rehost-run-2-d0", seed.SnapshotID, 2, map[int64][]byte{9: b[3], 3000: b[0]})
	if child.Parent != seed.SnapshotID || child.VolumeGiB != 2 {
		t.Fatalf("child %+v", child)
	}
	got := readBack(t, tg, child.SnapshotID)
	want := map[int64][]byte{0: b[0], 9: b[3], 2047: b[2], 3000: b[0]}
	if len(got) != len(want) {
		t.Fatalf("child holds blocks %v", keys(got))
	}
	for i, w := range want {
		if !bytes.Equal(got[i], w) {
			t.Errorf("child block %d differs", i)
		}
	}
	var changed []int64
	if err := tg.ChangedBlocks(ctx, seed.SnapshotID, child.SnapshotID, func(page []Block) error {
		for _, b := range page {
			changed = append(changed, b.Index)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(changed) != 2 || changed[0] != 9 || changed[1] != 3000 {
		t.Fatalf("changed blocks %v", changed)
	}
	if st, err := tg.SnapshotState(ctx, child.SnapshotID); err != nil || st != "completed" {
		t.Fatalf("state of the child: %q %v", st, err)
	}
	if st, err := tg.SnapshotState(ctx, "snap-0123456789abcdef0"); err != nil || st != "" {
		t.Fatalf("state of a snapshot that does not exist: %q %v", st, err)
	}
	var tagged bool
	for _, s := range emu.Snapshots() {
		for _, tag := range s.Tags {
			tagged = tagged || s.ID == child.SnapshotID && tag.Key == "rehost:job" && tag.Value == "j-1"
		}
	}
	if !tagged {
		t.Error("the replica does not carry its tags")
	}
}

func keys(m map[int64][]byte) []int64 {
	var out []int64
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A completion whose aggregate checksum is not that of the blocks put
// leaves the snapshot in error, and CompleteReplica says so.
func TestCompleteChecksAggregate(t *testing.T) {
	_, tg := ebsAccount(t, nil)
	ctx := context.Background()
	b := randomBlocks(2, 1)[0]
	bad, err := tg.StartReplica(ctx, ReplicaInput{VolumeGiB: 1, ClientToken: "rehost-run-4-d0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.PutBlock(ctx, bad.SnapshotID, 1, b, sha256.Sum256(b)); err != nil {
		t.Fatal(err)
	}
	var re *ReplicaError
	if err := tg.CompleteReplica(ctx, bad.SnapshotID, 1, make([]byte, 32)); !errors.As(err, &re) {
		t.Fatalf("completing with a wrong aggregate: %v", err)
	}
	if st, _ := tg.SnapshotState(ctx, bad.SnapshotID); st != "error" {
		t.Errorf("the snapshot is %q", st)
	}
}

// throttlingEBS answers every other PutSnapshotBlock and GetSnapshotBlock
// with EBS's throttling errors.
type throttlingEBS struct {
	EBSAPI
	n atomic.Int64
}

func (c *throttlingEBS) throttle() error {
	switch c.n.Add(1) % 4 {
	case 1:
		return &smithy.GenericAPIError{Code: "RequestThrottledException", Message: "rate exceeded"}
	case 3:
		return &smithy.GenericAPIError{Code: "ThrottlingException", Message: "slow down"}
	}
	return nil
}

func (c *throttlingEBS) PutSnapshotBlock(ctx context.Context, id string, index int64, data io.Reader, length int64, checksum string) error {
	if err := c.throttle(); err != nil {
		return err
	}
	return c.EBSAPI.PutSnapshotBlock(ctx, id, index, data, length, checksum)
}

func (c *throttlingEBS) GetSnapshotBlock(ctx context.Context, id string, b Block) (io.ReadCloser, int64, string, error) {
	if err := c.throttle(); err != nil {
		return nil, 0, "", err
	}
	return c.EBSAPI.GetSnapshotBlock(ctx, id, b)
}

// Throttling (RequestThrottledException, ThrottlingException) of puts and
// reads is retried by the one policy, and the replica still holds every
// block, read back whole.
func TestThrottlingIsRetried(t *testing.T) {
	th := &throttlingEBS{}
	_, tg := ebsAccount(t, func(c EBSAPI) EBSAPI { th.EBSAPI = c; return th })
	b := randomBlocks(3, 12)
	blocks := map[int64][]byte{}
	for i, d := range b {
		blocks[int64(i*3)] = d
	}
	rep := writeReplica(t, tg, "rehost-run-5-d0", "", 1, blocks)
	got := readBack(t, tg, rep.SnapshotID)
	for i, d := range blocks {
		if !bytes.Equal(got[i], d) {
			t.Errorf("block %d differs after throttling", i)
		}
	}
	if th.n.Load() < int64(2*len(b)) {
		t.Errorf("only %d calls: throttling was not exercised", th.n.Load())
	}
}

// EBS direct is found where the endpoint serves it, and refused with the
// reason where it cannot be reached.
func TestCheckEBSDirect(t *testing.T) {
	_, tg := ebsAccount(t, nil)
	if err := tg.CheckEBSDirect(context.Background()); err != nil {
		t.Fatalf("the emulator's EBS direct: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	closed, err := New(context.Background(), Config{Region: "eu-west-1", AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "x",
		Endpoints: Endpoints{EBS: "http://" + addr}, RetryAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := closed.CheckEBSDirect(context.Background()); err == nil || !strings.Contains(err.Error(), "cannot be reached") {
		t.Fatalf("a closed endpoint: %v", err)
	}
}

// The AMI of a replica chain is built both ways: VM Import converts the
// replicas into new snapshots (ImportImage naming them), or RegisterImage
// takes them as they are; cancelling a registration hands back only the
// image, never the caller's snapshots.
func TestImageFromReplicas(t *testing.T) {
	emu, tg := ebsAccount(t, nil)
	ctx := context.Background()
	trust, policy := PolicyDocuments("unused", "")
	if _, err := tg.createRole(ctx, ImportRoleName, trust, "the VM Import role of a test"); err != nil {
		t.Fatal(err)
	}
	if err := tg.putRolePolicy(ctx, ImportRoleName, ImportRoleName, policy); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "guest.raw")
	if _, err := guestdisk.Build(ctx, path, guestdisk.Options{Size: 32 << 20, Firmware: guestdisk.BIOS, DataBytes: 1 << 20, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[int64][]byte{}
	for off := 0; off < len(raw); off += BlockSize {
		b := make([]byte, BlockSize)
		copy(b, raw[off:])
		if !bytes.Equal(b, make([]byte, BlockSize)) {
			blocks[int64(off/BlockSize)] = b
		}
	}
	boot := writeReplica(t, tg, "rehost-run-6-d0", "", 1, blocks)
	for _, mode := range []ImportMode{ModeImportImage, ModeRegister} {
		t.Run(string(mode), func(t *testing.T) {
			imp, err := tg.StartImport(ctx, ImportInput{Snapshots: []string{boot.SnapshotID}, Mode: mode, BootMode: "legacy-bios",
				Platform: "Linux", ClientToken: "rehost-run-6-" + string(mode), Tags: map[string]string{"rehost:run": "r-6"}})
			if err != nil {
				t.Fatal(err)
			}
			res, err := tg.Wait(ctx, imp, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.SnapshotIDs) != 1 {
				t.Fatalf("result %+v", res)
			}
			converted := res.SnapshotIDs[0] != boot.SnapshotID
			if converted != (mode == ModeImportImage) {
				t.Fatalf("mode %s: the AMI's snapshot is %s, the replica %s", mode, res.SnapshotIDs[0], boot.SnapshotID)
			}
			want, _, _ := emu.SnapshotSHA256(boot.SnapshotID)
			if got, _, err := emu.SnapshotSHA256(res.SnapshotIDs[0]); err != nil || got != want {
				t.Fatalf("the AMI's snapshot hashes %s (%v), the replica %s", got, err, want)
			}
			if mode == ModeRegister {
				rem, err := tg.CancelImport(ctx, imp)
				if err != nil || rem.ImageID != res.ImageID || len(rem.SnapshotIDs) != 0 {
					t.Fatalf("remains of a registration: %+v %v", rem, err)
				}
			}
		})
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
