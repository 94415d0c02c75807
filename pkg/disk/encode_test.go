package disk

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// mixedDisk is 8 MiB of what a real disk holds: text that deflates well,
// random bytes that do not, and zeros, in runs of various lengths that do
// not line up with grains.
func mixedDisk() []byte {
	words := strings.Fields("the quick brown fox jumps over a lazy dog while kernel modules load and " +
		"systemd starts journald sshd cron and nginx listening on port 443 with tls")
	r := rand.New(rand.NewPCG(3, 4))
	out := make([]byte, 0, 8<<20)
	for len(out) < 8<<20 {
		n := int(r.Uint32N(300<<10)) + 1000
		switch r.Uint32N(3) {
		case 0:
			for k := len(out); len(out) < k+n; {
				out = append(out, words[r.IntN(len(words))]...)
				out = append(out, ' ')
			}
		case 1:
			for range n {
				out = append(out, byte(r.Uint32()))
			}
		default:
			out = append(out, make([]byte, n)...)
		}
	}
	return out[:8<<20]
}

// Every grain encoding (deflated, Huffman-coded, stored, left out) is read
// back by qemu-img and by this package's readers as the bytes written.
func TestEveryGrainEncodingReadBack(t *testing.T) {
	data := mixedDisk()
	dir := t.TempDir()
	raw := filepath.Join(dir, "mixed.raw")
	writeFile(t, raw, data)
	for _, c := range []struct {
		name string
		c    Compression
		want func(s *StreamStats) bool
	}{
		{"adaptive", CompressAdaptive, func(s *StreamStats) bool { return s.Deflated.Load()+s.Huffman.Load() > 0 && s.Stored.Load() > 0 }},
		{"small", CompressSmall, func(s *StreamStats) bool {
			return s.Deflated.Load() > 0 && s.Huffman.Load() == 0 && s.Stored.Load() > 0
		}},
		{"fast", CompressFast, func(s *StreamStats) bool { return s.Huffman.Load() > 0 && s.Deflated.Load() == 0 }},
		{"store", CompressStore, func(s *StreamStats) bool {
			return s.Stored.Load() > 0 && s.Huffman.Load()+s.Deflated.Load() == 0
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			enc := NewEncoder(NewRaw(bytes.NewReader(data), int64(len(data))), VMDK, EncodeOptions{Compression: c.c})
			var buf bytes.Buffer
			n, err := enc.WriteTo(&buf)
			if err != nil || n != int64(buf.Len()) {
				t.Fatalf("write: %d of %d bytes, %v", n, buf.Len(), err)
			}
			st := enc.Stats()
			if !c.want(st) || st.Zero.Load() == 0 {
				t.Errorf("grains: %d deflated, %d huffman, %d stored, %d zero", st.Deflated.Load(), st.Huffman.Load(), st.Stored.Load(), st.Zero.Load())
			}
			if st.Out.Load() > int64(buf.Len()) || st.In.Load() != (st.Deflated.Load()+st.Huffman.Load()+st.Stored.Load())*vmdkGrainSize {
				t.Errorf("stats in %d out %d of a %d-byte image", st.In.Load(), st.Out.Load(), buf.Len())
			}
			if qemuAvailable() {
				out := filepath.Join(dir, c.name+".vmdk")
				writeFile(t, out, buf.Bytes())
				runQemu(t, "check", "-f", "vmdk", out)
				runQemu(t, "compare", "-f", "vmdk", "-F", "raw", out, raw)
			}
			img, err := Open(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "random-access read", readAll(t, img), data)
			sr, err := NewStreamOptimizedReader(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(sr)
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "stream read", got, data)
		})
	}
}

// An Encoder read through Read gives the bytes WriteTo writes, for every
// format; Close stops a read half done.
func TestEncoderReadAndWriteTo(t *testing.T) {
	data := mixedDisk()[:3<<20]
	src := func() Sparse { return NewRaw(bytes.NewReader(data), int64(len(data))) }
	for _, f := range []struct {
		format  Format
		dynamic bool
	}{{VMDK, false}, {VHD, true}, {VHD, false}, {Raw, false}} {
		var pushed bytes.Buffer
		e := NewEncoder(src(), f.format, EncodeOptions{Dynamic: f.dynamic, Compression: CompressSmall})
		if _, err := e.WriteTo(&pushed); err != nil {
			t.Fatalf("%s: %v", f.format, err)
		}
		if _, err := e.Read(make([]byte, 1)); err == nil {
			t.Errorf("%s: an encoder read twice", f.format)
		}
		pulled, err := io.ReadAll(NewEncoder(src(), f.format, EncodeOptions{Dynamic: f.dynamic, Compression: CompressSmall}))
		if err != nil {
			t.Fatalf("%s: %v", f.format, err)
		}
		if f.format == VHD {
			// A VHD carries a random unique id and its creation time.
			if len(pulled) != pushed.Len() {
				t.Fatalf("%s: read %d bytes, WriteTo wrote %d", f.format, len(pulled), pushed.Len())
			}
		} else if !bytes.Equal(pulled, pushed.Bytes()) {
			t.Fatalf("%s: Read and WriteTo differ (%d and %d bytes)", f.format, len(pulled), pushed.Len())
		}
		img, err := Open(bytes.NewReader(pulled), int64(len(pulled)))
		if err != nil {
			t.Fatalf("%s: %v", f.format, err)
		}
		mustEqual(t, string(f.format), readAll(t, img), data)
	}
	e := NewEncoder(src(), VMDK, EncodeOptions{})
	if _, err := e.Read(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Read(make([]byte, 100)); err == nil {
		t.Error("read after Close succeeded")
	}
}

// qemuAvailable reports whether qemu-img is there (required under CI).
func qemuAvailable() bool {
	_, err := exec.LookPath("qemu-img")
	return err == nil || os.Getenv("CI") == "true"
}

// A sparse raw file's holes come from the file system: WriteStreamOptimized
// reads only its data.
func TestSparseRawFileHolesNotRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sparse.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const size = 1 << 30
	island := bytes.Repeat([]byte("data"), 64<<10/4)
	for _, off := range []int64{0, 300 << 20, size - 64<<10} {
		if _, err := f.WriteAt(island, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	img, closer, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	r := img.(*rawImage)
	if !r.known {
		t.Skip("the file system does not report holes")
	}
	var alloc int64
	for _, e := range img.Extents() {
		alloc += e.Length
	}
	if alloc > 16<<20 {
		t.Fatalf("%d bytes reported allocated of a file with 192 KiB of data", alloc)
	}
	rec := &recordingSparse{Sparse: img}
	var buf bytes.Buffer
	if _, err := WriteStreamOptimized(&buf, rec); err != nil {
		t.Fatal(err)
	}
	if rec.read > alloc {
		t.Fatalf("read %d bytes of %d allocated", rec.read, alloc)
	}
	back, err := Open(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(island))
	if _, err := back.ReadAt(got, 300<<20); err != nil || !bytes.Equal(got, island) {
		t.Fatalf("the island at 300 MiB reads back wrong: %v", err)
	}
}

// readerFromOnly is a destination that only reads: what a multipart
// upload's feeder is to a raw Encoder.
type readerFromOnly struct {
	buf   bytes.Buffer
	reads int
}

func (d *readerFromOnly) Write([]byte) (int, error) { return 0, errors.New("Write called") }

func (d *readerFromOnly) ReadFrom(r io.Reader) (int64, error) {
	p := make([]byte, 5<<20)
	var n int64
	for {
		m, err := r.Read(p)
		d.buf.Write(p[:m])
		d.reads++
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// A raw Encoder writing into an io.ReaderFrom hands it the disk to read
// into its own buffers: holes as zeros, extents read in place, the same
// bytes as a plain writer gets; bad extents and a short source fail.
func TestRawEncoderReadsIntoReaderFrom(t *testing.T) {
	const size = 12<<20 + 512
	data := make([]byte, size)
	for _, e := range []Extent{{1 << 20, 3 << 20}, {6<<20 + 512, 1 << 20}, {9 << 20, 64 << 10}} {
		for i := e.Offset; i < e.End(); i++ {
			data[i] = byte(i*7 + 1)
		}
	}
	src := NewRaw(bytes.NewReader(data), size)
	var want bytes.Buffer
	if _, err := writeRawTo(&want, src, size, false); err != nil {
		t.Fatal(err)
	}
	var dst readerFromOnly
	n, err := NewEncoder(src, Raw, EncodeOptions{}).WriteTo(&dst)
	if err != nil || n != size {
		t.Fatalf("WriteTo: %d bytes, %v", n, err)
	}
	if !bytes.Equal(dst.buf.Bytes(), want.Bytes()) || !bytes.Equal(dst.buf.Bytes(), data) {
		t.Fatal("the raw disk read into the ReaderFrom differs from its content")
	}
	// Reads go up to a region's end, not in small pieces.
	if dst.reads > 16 {
		t.Errorf("%d reads for %d bytes in 5 MiB buffers", dst.reads, size)
	}
	bad := fakeSparse{size: 1 << 20, ext: []Extent{{512 << 10, 4096}, {0, 4096}}, ra: bytes.NewReader(make([]byte, 1<<20))}
	if _, err := NewEncoder(bad, Raw, EncodeOptions{}).WriteTo(&readerFromOnly{}); err == nil || !strings.Contains(err.Error(), "out of order") {
		t.Errorf("extents out of order: %v", err)
	}
	short := fakeSparse{size: 1 << 20, ext: []Extent{{0, 1 << 20}}, ra: bytes.NewReader(make([]byte, 4096))}
	if _, err := NewEncoder(short, Raw, EncodeOptions{}).WriteTo(&readerFromOnly{}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a short source: %v, want io.ErrUnexpectedEOF", err)
	}
}

type fakeSparse struct {
	size int64
	ext  []Extent
	ra   io.ReaderAt
}

func (f fakeSparse) ReadAt(p []byte, off int64) (int, error) { return f.ra.ReadAt(p, off) }
func (f fakeSparse) Size() int64                             { return f.size }
func (f fakeSparse) Extents() []Extent                       { return f.ext }
