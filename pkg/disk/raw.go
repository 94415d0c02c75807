package disk

import (
	"fmt"
	"io"
	"os"
)

// holeFile is what the raw writers need of a destination to leave holes
// instead of writing zeros; an *os.File (or a type embedding one) has it.
type holeFile interface {
	io.WriteSeeker
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
}

// WriteRaw writes the virtual content of src to w. When w is a regular file
// it seeks over the holes between src's extents (leaving a sparse file) and
// sets the file's length; otherwise it writes zeros for them. It returns the
// virtual bytes produced (src.Size()).
func WriteRaw(w io.Writer, src Sparse) (int64, error) {
	seek := false
	if f, ok := w.(holeFile); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			seek = true
		}
	}
	n, err := writeRawTo(w, src, src.Size(), seek)
	if err != nil {
		return n, fmt.Errorf("write raw disk: %w", err)
	}
	return n, nil
}

// writeRawTo writes src's content padded with zeros to size bytes.
func writeRawTo(w io.Writer, src Sparse, size int64, seek bool) (int64, error) {
	var f holeFile
	var base int64
	if seek {
		f = w.(holeFile)
		var err error
		if base, err = f.Seek(0, io.SeekCurrent); err != nil {
			seek = false
		}
	}
	buf := make([]byte, 1<<20)
	var pos int64
	hole := func(to int64) error {
		if seek {
			if _, err := f.Seek(base+to, io.SeekStart); err != nil {
				return err
			}
			pos = to
			return nil
		}
		for pos < to {
			n := int(min(int64(len(zeroBlock)), to-pos))
			m, err := w.Write(zeroBlock[:n])
			pos += int64(m)
			if err != nil {
				return err
			}
		}
		return nil
	}
	for _, e := range src.Extents() {
		if e.Offset < pos || e.End() > src.Size() || e.Length <= 0 {
			return pos, fmt.Errorf("source extent %+v is out of order or outside the %d-byte disk", e, src.Size())
		}
		if err := hole(e.Offset); err != nil {
			return pos, err
		}
		for pos < e.End() {
			chunk := buf[:min(int64(len(buf)), e.End()-pos)]
			n, err := src.ReadAt(chunk, pos)
			if n < len(chunk) {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return pos, fmt.Errorf("read source at %d: %w", pos+int64(n), err)
			}
			m, err := w.Write(chunk)
			pos += int64(m)
			if err != nil {
				return pos, err
			}
		}
	}
	if err := hole(size); err != nil {
		return pos, err
	}
	if seek {
		st, err := f.Stat()
		if err != nil {
			return pos, err
		}
		if st.Size() < base+size {
			if err := f.Truncate(base + size); err != nil {
				return pos, err
			}
		}
	}
	return pos, nil
}

// rawReader reads a Sparse's virtual content in order: its extents by
// ReadAt straight into the caller's buffer, its holes as zeros cleared
// there. A consumer that reads into buffers of its own (a multipart
// upload's parts, through io.ReaderFrom) so gets a raw disk with no copy
// between the source and its buffers.
type rawReader struct {
	src       Sparse
	ext       []Extent
	pos, size int64
}

func newRawReader(src Sparse) (*rawReader, error) {
	ext, size := src.Extents(), src.Size()
	var end int64
	for _, e := range ext {
		if e.Offset < end || e.End() > size || e.Length <= 0 {
			return nil, fmt.Errorf("source extent %+v is out of order or outside the %d-byte disk", e, size)
		}
		end = e.End()
	}
	return &rawReader{src: src, ext: ext, size: size}, nil
}

func (r *rawReader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if len(r.ext) > 0 && r.ext[0].End() <= r.pos {
		r.ext = r.ext[1:]
	}
	p = p[:min(int64(len(p)), r.size-r.pos)]
	if len(r.ext) == 0 || r.ext[0].Offset > r.pos {
		end := r.size
		if len(r.ext) > 0 {
			end = r.ext[0].Offset
		}
		n := int(min(int64(len(p)), end-r.pos))
		clear(p[:n])
		r.pos += int64(n)
		return n, nil
	}
	n := int(min(int64(len(p)), r.ext[0].End()-r.pos))
	m, err := r.src.ReadAt(p[:n], r.pos)
	r.pos += int64(m)
	if m < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return m, fmt.Errorf("read source at %d: %w", r.pos, err)
	}
	return n, nil
}

// WriteRawFrom copies a raw disk stream from r to w until EOF. When w is a
// regular file it seeks over all-zero 64 KiB chunks (leaving a sparse file)
// and sets the file's length at the end. It returns the bytes copied.
func WriteRawFrom(w io.Writer, r io.Reader) (int64, error) {
	var f holeFile
	var base int64
	if ff, ok := w.(holeFile); ok {
		if st, err := ff.Stat(); err == nil && st.Mode().IsRegular() {
			if b, err := ff.Seek(0, io.SeekCurrent); err == nil {
				f, base = ff, b
			}
		}
	}
	buf := make([]byte, scanGranularity)
	var pos int64
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			chunk := buf[:n]
			var err error
			if f != nil && isZero(chunk) {
				_, err = f.Seek(base+pos+int64(n), io.SeekStart)
			} else {
				_, err = w.Write(chunk)
			}
			if err != nil {
				return pos, fmt.Errorf("write raw disk at %d: %w", pos, err)
			}
			pos += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return pos, fmt.Errorf("read raw disk at %d: %w", pos, rerr)
		}
	}
	if f != nil {
		st, err := f.Stat()
		if err == nil && st.Size() < base+pos {
			err = f.Truncate(base + pos)
		}
		if err != nil {
			return pos, fmt.Errorf("write raw disk: set length: %w", err)
		}
	}
	return pos, nil
}
