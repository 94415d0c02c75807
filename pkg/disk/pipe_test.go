//go:build linux

package disk

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestStreamOptimizedFromPipeMatchesFile writes a sparse raw disk as a
// streamOptimized VMDK twice: from the file (its holes found with
// SEEK_DATA/SEEK_HOLE) and from a real pipe that a writer fills in odd-sized
// pieces (so the vector reads come back short and straddle grains). The
// two must hold the same grains with the same content, and qemu-img must
// find both equal to the raw file.
func TestStreamOptimizedFromPipeMatchesFile(t *testing.T) {
	qemuImg(t)
	dir := t.TempDir()
	// 40 MiB and a sector: more than one grain table, a partial last
	// grain, runs of zero grains longer and shorter than one read.
	const size = 40<<20 + 512
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(7, 23))
	for _, isl := range [][2]int{
		{0, 4096},                   // the first bytes
		{64<<10 - 1, 1},             // a grain's last byte only
		{3 << 20, 1 << 20},          // a whole read of data
		{(17 << 20) + 300, 70000},   // across a grain edge
		{32<<20 - 512, 1024},        // across the grain-table edge
		{size - 700, 700},           // the last, partial grain
		{(20 << 20) + 65536*5, 512}, // a lone sector mid-read
	} {
		for i := isl[0]; i < isl[0]+isl[1]; i++ {
			data[i] = byte(rng.Uint32() | 1)
		}
	}
	raw := filepath.Join(dir, "disk.raw")
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < size; off += 4096 {
		end := min(off+4096, size)
		if !isZero(data[off:end]) {
			if _, err := f.WriteAt(data[off:end], int64(off)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	img, closer, err := OpenFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	var fromFile bytes.Buffer
	if _, err := WriteStreamOptimized(&fromFile, img); err != nil {
		t.Fatal(err)
	}
	closer.Close()

	// The last pass hands the writer the first 700 bytes already read (as
	// rehost disk convert does after peeking at the header) in a Prefixed
	// in front of the pipe.
	for pass, widen := range []bool{false, true, true} {
		head := 0
		if pass == 2 {
			head = 700
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		if widen {
			WidenPipe(pr)
		}
		go func() {
			defer pw.Close()
			for off, n := head, 0; off < size; off += n {
				n = min(size-off, 4097+rng.IntN(300000))
				if _, err := pw.Write(data[off : off+n]); err != nil {
					return
				}
			}
		}()
		var fromPipe bytes.Buffer
		var src io.Reader = pr
		if head > 0 {
			src = &Prefixed{Head: slices.Clone(data[:head]), R: pr}
			if vectorReader(src) == nil {
				t.Fatal("a Prefixed pipe is read grain by grain, not with readv")
			}
		}
		n, err := WriteStreamOptimizedFrom(&fromPipe, src, size)
		pr.Close()
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(fromPipe.Len()) {
			t.Fatalf("returned %d, wrote %d", n, fromPipe.Len())
		}
		out := filepath.Join(dir, "pipe.vmdk")
		writeFile(t, out, fromPipe.Bytes())
		runQemu(t, "check", "-f", "vmdk", out)
		runQemu(t, "compare", "-f", "vmdk", "-F", "raw", out, raw)

		a, b := openVMDK(t, fromFile.Bytes()), openVMDK(t, fromPipe.Bytes())
		if !slices.Equal(a.Extents(), b.Extents()) {
			t.Fatalf("widen=%v: grains from the pipe %v, from the file %v", widen, b.Extents(), a.Extents())
		}
		mustEqual(t, "from the pipe", readAll(t, b), data)
		mustEqual(t, "from the file", readAll(t, a), data)
	}
}

// TestStreamOptimizedFromShortPipe: a pipe that ends early is an error
// naming where, not a short disk.
func TestStreamOptimizedFromShortPipe(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		pw.Write(make([]byte, 3<<20+100))
		pw.Close()
	}()
	_, err = WriteStreamOptimizedFrom(io.Discard, pr, 8<<20)
	pr.Close()
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("read source at 3145828: got 100 of 1048576 bytes")) {
		t.Fatalf("got %v, want a read error at 3145828, where the pipe ended", err)
	}
}

func openVMDK(t *testing.T, b []byte) Image {
	t.Helper()
	img, err := Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return img
}
