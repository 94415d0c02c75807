package replication

import (
	"io"
	"sync/atomic"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
)

// countRead returns the disk stream to stage in place of body and how to
// ask how many bytes have been read from the source so far: a stream that
// counts its own reads of the disk (source.ReadCounter) is staged as it
// is; any other is wrapped so that the bytes leaving it are counted,
// however the stager takes them (Read, WriteTo, ReadAt), and the wrapper
// keeps exactly the capabilities body has: the stager picks its path by
// them (a WriteTo into the part buffers, preads of a ReaderAt with its
// extents).
func countRead(body io.ReadCloser) (io.ReadCloser, func() int64) {
	if rc, ok := body.(source.ReadCounter); ok {
		return body, rc.BytesRead
	}
	n := new(atomic.Int64)
	c := readCounter{body, n}
	wt, isWT := body.(io.WriterTo)
	ra, isRA := body.(io.ReaderAt)
	sp, isSparse := body.(sparseShape)
	w := writeToCounter{wt, n}
	a := readAtCounter{ra, n}
	switch {
	case isRA && isWT && isSparse:
		return struct {
			readCounter
			writeToCounter
			readAtCounter
			sparseShape
		}{c, w, a, sp}, n.Load
	case isRA && isSparse:
		return struct {
			readCounter
			readAtCounter
			sparseShape
		}{c, a, sp}, n.Load
	case isRA && isWT:
		return struct {
			readCounter
			writeToCounter
			readAtCounter
		}{c, w, a}, n.Load
	case isRA:
		return struct {
			readCounter
			readAtCounter
		}{c, a}, n.Load
	case isWT:
		return struct {
			readCounter
			writeToCounter
		}{c, w}, n.Load
	}
	return c, n.Load
}

// sparseShape is what a disk.Sparse has beyond io.ReaderAt.
type sparseShape interface {
	Size() int64
	Extents() []disk.Extent
}

type readCounter struct {
	rc io.ReadCloser
	n  *atomic.Int64
}

func (c readCounter) Read(p []byte) (int, error) {
	k, err := c.rc.Read(p)
	c.n.Add(int64(k))
	return k, err
}

func (c readCounter) Close() error { return c.rc.Close() }

type readAtCounter struct {
	ra io.ReaderAt
	n  *atomic.Int64
}

func (c readAtCounter) ReadAt(p []byte, off int64) (int, error) {
	k, err := c.ra.ReadAt(p, off)
	c.n.Add(int64(k))
	return k, err
}

type writeToCounter struct {
	wt io.WriterTo
	n  *atomic.Int64
}

// WriteTo counts what the stream writes into w as it goes; a w that reads
// into buffers of its own (io.ReaderFrom) keeps doing so, its reads
// counted.
func (c writeToCounter) WriteTo(w io.Writer) (int64, error) {
	if rf, ok := w.(io.ReaderFrom); ok {
		return c.wt.WriteTo(fromCounter{countingWriter{w, c.n}, rf})
	}
	return c.wt.WriteTo(countingWriter{w, c.n})
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	k, err := c.w.Write(p)
	c.n.Add(int64(k))
	return k, err
}

type fromCounter struct {
	countingWriter
	rf io.ReaderFrom
}

func (c fromCounter) ReadFrom(r io.Reader) (int64, error) {
	return c.rf.ReadFrom(readCounter{io.NopCloser(r), c.n})
}
