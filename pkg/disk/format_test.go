package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sparseData is size bytes of zeros with random islands at the given
// offsets (each 3000 bytes, clipped).
func sparseData(size int, seed uint64, at ...int) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, seed))
	for _, a := range at {
		for i := a; i < min(a+3000, size); i++ {
			b[i] = byte(r.Uint32() | 1)
		}
	}
	return b
}

func TestMonolithicSparseBuilt(t *testing.T) {
	data := sparseData(5<<20+512, 1, 0, 1<<20-100, 5<<20-2000)
	img := buildMonolithicSparse(data)
	im, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	info := im.Info()
	if info.Format != VMDK || info.Subformat != "monolithicSparse" || info.VirtualSize != int64(len(data)) || info.ExtentCount != 3 {
		t.Fatalf("info %+v", info)
	}
	mustEqual(t, "read", readAll(t, im), data)
	checkExtents(t, im, data)
	// Re-encoding reads only the extents and yields the same disk.
	var so bytes.Buffer
	if _, err := WriteStreamOptimized(&so, im); err != nil {
		t.Fatal(err)
	}
	sr, err := NewStreamOptimizedReader(&so)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(sr)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "stream", got, data)
	if sr.AllocatedBytes() != info.AllocatedBytes {
		t.Fatalf("stream allocated %d, image %d", sr.AllocatedBytes(), info.AllocatedBytes)
	}
}

func TestVHDXBuilt(t *testing.T) {
	data := sparseData(3<<20+4096, 2, 100, 2<<20+5, 3<<20)
	for _, c := range []struct {
		fixed   bool
		logical uint32
		bs      int64
	}{{false, 512, 1 << 20}, {true, 512, 1 << 20}, {false, 4096, 2 << 20}} {
		img := buildVHDX(data, c.bs, c.logical, c.fixed)
		im, err := Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatal(err)
		}
		sub := map[bool]string{true: "fixed", false: "dynamic"}[c.fixed]
		if info := im.Info(); info.Format != VHDX || info.Subformat != sub || info.VirtualSize != int64(len(data)) {
			t.Fatalf("info %+v", info)
		}
		mustEqual(t, "read", readAll(t, im), data)
		checkExtents(t, im, data)
	}
}

func TestVHDXCorruptHeaders(t *testing.T) {
	data := sparseData(1<<20, 3, 0)
	img := buildVHDX(data, 1<<20, 512, false)
	// One damaged header is tolerated: the other one is used.
	one := bytes.Clone(img)
	one[vhdxHeader2+100] ^= 1
	if _, err := Open(bytes.NewReader(one), int64(len(one))); err != nil {
		t.Fatalf("one good header: %v", err)
	}
	both := bytes.Clone(one)
	both[vhdxHeader1+100] ^= 1
	if _, err := Open(bytes.NewReader(both), int64(len(both))); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "header") {
		t.Fatalf("both headers bad: %v", err)
	}
	// A pending log must be replayed first.
	logged := bytes.Clone(img)
	for _, off := range []int{vhdxHeader1, vhdxHeader2} {
		logged[off+48] = 1
		putCRC32C(logged[off : off+vhdxHeaderSize])
	}
	if _, err := Open(bytes.NewReader(logged), int64(len(logged))); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "log") {
		t.Fatalf("pending log: %v", err)
	}
}

func TestStreamReaderTruncated(t *testing.T) {
	data := sparseData(2<<20, 4, 0, 1<<20)
	var buf bytes.Buffer
	if _, err := WriteStreamOptimized(&buf, NewRaw(bytes.NewReader(data), int64(len(data)))); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	for _, cut := range []int{100, 512, 64 << 10, len(full) / 2, len(full) - 512, len(full) - 1} {
		sr, err := NewStreamOptimizedReader(bytes.NewReader(full[:cut]))
		if err == nil {
			_, err = io.ReadAll(sr)
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrFormat) {
			t.Fatalf("stream cut at %d of %d: err = %v, want a truncation error", cut, len(full), err)
		}
		if _, err := Open(bytes.NewReader(full[:cut]), int64(cut)); err == nil && cut >= 512 {
			t.Fatalf("random access to a stream cut at %d: no error", cut)
		}
	}
}

func TestAbsurdHeaders(t *testing.T) {
	h := vmdkHeader{Version: 3, Flags: vmdkFlagNLTest | vmdkFlagCompressed | vmdkFlagMarkers, Capacity: 1 << 50,
		Granularity: 128, GTEntries: 512, GDOffset: 1, Overhead: 1, Compression: 1}
	if _, err := Open(bytes.NewReader(h.marshal()), 512); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("huge capacity: %v", err)
	}
	h.Capacity = 1 << 36 // 32 TiB: allowed, but its grain directory is not in the file
	if _, err := Open(bytes.NewReader(h.marshal()), 512); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "beyond") {
		t.Fatalf("directory beyond the file: %v", err)
	}
	h.Granularity = 3
	if _, err := Open(bytes.NewReader(h.marshal()), 512); !errors.Is(err, ErrFormat) {
		t.Fatalf("odd grain: %v", err)
	}
	// A stream claiming 32 TiB and holding nothing reads as zeros, lazily.
	h.Granularity, h.GDOffset = 128, vmdkGDAtEnd
	sr, err := NewStreamOptimizedReader(io.MultiReader(bytes.NewReader(h.marshal()), bytes.NewReader(make([]byte, 512))))
	if err != nil {
		t.Fatal(err)
	}
	if sr.Size() != 1<<45 {
		t.Fatalf("size %d", sr.Size())
	}
	b := make([]byte, 1<<20)
	if n, err := io.ReadFull(sr, b); n != len(b) || err != nil || !isZero(b) {
		t.Fatalf("read %d, %v", n, err)
	}
	// A VHD footer claiming a huge disk.
	foot := vhdFooterBytes(1<<20, vhdTypeFixed, ^uint64(0), [16]byte{}, vhdEpoch)
	binary.BigEndian.PutUint64(foot[48:], 1<<62)
	binary.BigEndian.PutUint32(foot[64:], vhdChecksum(foot, 64))
	if _, err := Open(bytes.NewReader(foot), 512); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("huge vhd: %v", err)
	}
}

func TestOpenFileDescriptorFlat(t *testing.T) {
	dir := t.TempDir()
	a := sparseData(1<<20, 5, 0, 500000)
	b := sparseData(512<<10, 6, 1000)
	// The second flat file starts 2 sectors in; a ZERO extent sits between.
	if err := os.WriteFile(filepath.Join(dir, "a-flat.vmdk"), a, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "b.bin"), append(make([]byte, 1024), b...), 0o644); err != nil {
		t.Fatal(err)
	}
	desc := "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"vmfs\"\n\n" +
		"RW 2048 FLAT \"a-flat.vmdk\" 0\nRW 100 ZERO\nRW 1024 VMFS \"sub/b.bin\" 2\n\nddb.adapterType = \"lsilogic\"\n"
	p := filepath.Join(dir, "d.vmdk")
	if err := os.WriteFile(p, []byte(desc), 0o644); err != nil {
		t.Fatal(err)
	}
	img, c, err := OpenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := append(append(bytes.Clone(a), make([]byte, 100*512)...), b...)
	if info := img.Info(); info.Format != VMDK || info.Subformat != "vmfs" || info.VirtualSize != int64(len(want)) {
		t.Fatalf("info %+v", info)
	}
	mustEqual(t, "read", readAll(t, img), want)
	checkExtents(t, img, want)
	if _, err := Open(bytes.NewReader([]byte(desc)), int64(len(desc))); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "by path") {
		t.Fatalf("Open of a descriptor: %v", err)
	}
	// A flat file shorter than the descriptor says is refused.
	if err := os.WriteFile(filepath.Join(dir, "a-flat.vmdk"), a[:1000], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenFile(p); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "fewer than") {
		t.Fatalf("short flat file: %v", err)
	}
}

func TestWriteRawSparseFile(t *testing.T) {
	data := sparseData(4<<20+512, 7, 0, 3<<20)
	src := NewRaw(bytes.NewReader(data), int64(len(data)))
	f, err := os.Create(filepath.Join(t.TempDir(), "out.raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := WriteRaw(f, src)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("WriteRaw = %d, %v", n, err)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "file", got, data)
	// Through a pipe-like writer the holes are written as zeros.
	var buf bytes.Buffer
	if _, err := WriteRaw(&buf, src); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "buffer", buf.Bytes(), data)
	// And from a stream.
	g, err := os.Create(filepath.Join(t.TempDir(), "out2.raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if n, err := WriteRawFrom(g, bytes.NewReader(data)); err != nil || n != int64(len(data)) {
		t.Fatalf("WriteRawFrom = %d, %v", n, err)
	}
	got, _ = os.ReadFile(g.Name())
	mustEqual(t, "stream file", got, data)
}

func TestRawExtentsAndEmpty(t *testing.T) {
	data := sparseData(1<<20, 8, 70000)
	r := NewRaw(bytes.NewReader(data), int64(len(data)))
	if got := r.Extents(); len(got) != 1 || got[0] != (Extent{65536, 65536}) {
		t.Fatalf("extents %v", got)
	}
	im, err := Open(bytes.NewReader(nil), 0)
	if err != nil {
		t.Fatal(err)
	}
	if info := im.Info(); info != (Info{Format: Raw}) {
		t.Fatalf("empty image info %+v", info)
	}
	var buf bytes.Buffer
	if _, err := WriteStreamOptimized(&buf, im); err != nil {
		t.Fatal(err)
	}
	back, err := Open(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil || back.Size() != 0 {
		t.Fatalf("empty vmdk: %v", err)
	}
}

func TestWriteVHDFixedFrom(t *testing.T) {
	data := sparseData(1<<20+100, 9, 0, 1<<20) // not a whole number of sectors
	var buf bytes.Buffer
	if _, err := WriteVHDFixedFrom(&buf, bytes.NewReader(data), -1); err != nil {
		t.Fatal(err)
	}
	im, err := Open(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Clone(data), make([]byte, 412)...)
	mustEqual(t, "read", readAll(t, im), want)
	if _, err := WriteVHDFixedFrom(io.Discard, bytes.NewReader(data), int64(len(data))+1); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short source: %v", err)
	}
}

// recordingSparse counts the bytes read through it.
type recordingSparse struct {
	Sparse
	read int64
}

func (r *recordingSparse) ReadAt(p []byte, off int64) (int, error) {
	r.read += int64(len(p))
	return r.Sparse.ReadAt(p, off)
}

func TestWritersReadOnlyExtents(t *testing.T) {
	// 200 MiB virtual, two small islands: the writers must touch only the
	// grains (VMDK) or blocks (VHD) under them, not the whole disk.
	data := buildMonolithicSparse(sparseData(200<<20, 21, 10<<20, 150<<20+65000))
	img, err := Open(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingSparse{Sparse: img}
	if _, err := WriteStreamOptimized(io.Discard, rec); err != nil {
		t.Fatal(err)
	}
	if rec.read != 3*vmdkGrainSize { // one grain, then an island across a grain edge
		t.Fatalf("streamOptimized writer read %d bytes, want %d", rec.read, 3*vmdkGrainSize)
	}
	rec.read = 0
	if _, err := WriteVHD(io.Discard, rec, true); err != nil {
		t.Fatal(err)
	}
	if rec.read != 2*vhdBlockSize {
		t.Fatalf("dynamic VHD writer read %d bytes, want %d", rec.read, 2*vhdBlockSize)
	}
}

func TestConcurrentReadAt(t *testing.T) {
	data := sparseData(4<<20, 22, 0, 1<<20, 3<<20+7)
	var so bytes.Buffer
	if _, err := WriteStreamOptimized(&so, NewRaw(bytes.NewReader(data), int64(len(data)))); err != nil {
		t.Fatal(err)
	}
	img, err := Open(bytes.NewReader(so.Bytes()), int64(so.Len()))
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			buf := make([]byte, 100000)
			for range 200 {
				off := r.Int64N(int64(len(data)) - int64(len(buf)))
				if n, err := img.ReadAt(buf, off); n != len(buf) || err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(buf, data[off:off+int64(len(buf))]) {
					errs <- errors.New("content differs")
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
