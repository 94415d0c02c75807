package emulator

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/rehost/rehost/pkg/disk"
)

func TestWriteSnapshotFileSparse(t *testing.T) {
	raw := rawDisk(diskSize, 21)
	path := filepath.Join(t.TempDir(), "s.img")
	blocks, sum, err := writeSnapshotFile(path, disk.NewRaw(bytes.NewReader(raw), int64(len(raw))))
	if err != nil {
		t.Fatal(err)
	}
	if sum != sha(raw) {
		t.Fatalf("hash %s, want %s", sum, sha(raw))
	}
	// rawDisk fills [0,70K), [size/3, +600K) and the last 4 KiB.
	want := []int32{0, int32(diskSize / 3 / BlockSize), int32(diskSize/3/BlockSize) + 1, int32((diskSize - 1) / BlockSize)}
	if len(blocks) != len(want) {
		t.Fatalf("blocks %v, want %v", blocks, want)
	}
	for i := range want {
		if blocks[i] != want[i] {
			t.Fatalf("blocks %v, want %v", blocks, want)
		}
	}
	stored, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := sha(stored[:diskSize]); got != sum {
		t.Fatalf("file hashes to %s, want %s", got, sum)
	}
}

func BenchmarkWriteSnapshotFile(b *testing.B) {
	const size = 64 << 20
	raw := make([]byte, size)
	for i := 0; i < size; i += 2 * BlockSize {
		copy(raw[i:i+BlockSize], rawDisk(BlockSize, int64(i))) // half the blocks hold data
	}
	path := filepath.Join(b.TempDir(), "s.img")
	b.SetBytes(size)
	for b.Loop() {
		if _, _, err := writeSnapshotFile(path, disk.NewRaw(bytes.NewReader(raw), size)); err != nil {
			b.Fatal(err)
		}
	}
}
