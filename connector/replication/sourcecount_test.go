package replication

import (
	"bytes"
	"io"
	"testing"

	"github.com/rehost/rehost/pkg/disk"
)

// sparseFile is a disk stream with every capability a stager looks for:
// Read, WriteTo, ReadAt and a sparse disk's extents.
type sparseFile struct {
	*bytes.Reader
	ext []disk.Extent
}

func (s sparseFile) Close() error           { return nil }
func (s sparseFile) Extents() []disk.Extent { return s.ext }

type selfCounting struct {
	io.ReadCloser
	n int64
}

func (s *selfCounting) BytesRead() int64 { return s.n }

// TestCountReadKeepsCapabilities: the wrapper counts the bytes leaving the
// stream by whichever way the stager takes them, has exactly the
// capabilities of what it wraps (no WriteTo or ReadAt it cannot serve),
// keeps a writer's ReadFrom, and a stream counting its own reads of the
// disk is staged unwrapped, its count used.
func TestCountReadKeepsCapabilities(t *testing.T) {
	data := bytes.Repeat([]byte("rehost"), 10000)
	full := sparseFile{bytes.NewReader(data), []disk.Extent{{Offset: 0, Length: 4096}}}

	body, read := countRead(full)
	if _, ok := body.(io.WriterTo); !ok {
		t.Error("the wrapper of a WriterTo lost WriteTo")
	}
	ra, ok := body.(io.ReaderAt)
	if !ok {
		t.Fatal("the wrapper of a ReaderAt lost ReadAt")
	}
	sp, ok := body.(disk.Sparse)
	if !ok || sp.Size() != int64(len(data)) || len(sp.Extents()) != 1 {
		t.Fatalf("the wrapper of a sparse disk lost its shape: %v", ok)
	}
	buf := make([]byte, 4096)
	if n, err := ra.ReadAt(buf, 100); n != 4096 || err != nil || !bytes.Equal(buf, data[100:4196]) {
		t.Fatalf("ReadAt: %d %v", n, err)
	}
	if got := read(); got != 4096 {
		t.Errorf("after a ReadAt of 4096 bytes, read = %d", got)
	}

	// WriteTo into a plain writer, and into one that reads for itself.
	for _, into := range []struct {
		name string
		w    func(*bytes.Buffer) io.Writer
	}{
		{"writer", func(b *bytes.Buffer) io.Writer { return struct{ io.Writer }{b} }},
		{"reader-from", func(b *bytes.Buffer) io.Writer { return b }},
	} {
		body, read := countRead(sparseFile{bytes.NewReader(data), nil})
		var out bytes.Buffer
		w := into.w(&out)
		if _, err := body.(io.WriterTo).WriteTo(w); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), data) || read() != int64(len(data)) {
			t.Errorf("WriteTo a %s: %d bytes out, %d counted, want %d", into.name, out.Len(), read(), len(data))
		}
	}

	// A plain reader stays one.
	body, read = countRead(io.NopCloser(struct{ io.Reader }{bytes.NewReader(data)}))
	if _, ok := body.(io.WriterTo); ok {
		t.Error("the wrapper of a plain reader claims WriteTo")
	}
	if _, ok := body.(io.ReaderAt); ok {
		t.Error("the wrapper of a plain reader claims ReadAt")
	}
	if n, _ := io.Copy(io.Discard, body); n != int64(len(data)) || read() != n {
		t.Errorf("read %d bytes, counted %d", n, read())
	}

	sc := &selfCounting{ReadCloser: io.NopCloser(bytes.NewReader(data)), n: 42}
	body, read = countRead(sc)
	if body != io.ReadCloser(sc) || read() != 42 {
		t.Errorf("a stream counting its own reads was wrapped (%T) or its count not used (%d)", body, read())
	}
}
