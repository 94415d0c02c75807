package disk

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// EncodeOptions say how an Encoder writes its image.
type EncodeOptions struct {
	// Dynamic makes a VHD dynamic (only the blocks the extents touch),
	// not fixed.
	Dynamic bool
	// Compression is how a VMDK's grains are encoded.
	Compression Compression
}

// Encoder is a disk image being written from a Sparse, in one of the
// formats VM Import reads: a streamOptimized VMDK, a VHD (fixed or
// dynamic) or raw. WriteTo writes it straight into a writer, so a consumer
// that fills buffers of its own (a multipart upload's parts) gets the bytes
// with no pipe between; Read serves consumers that pull, through a pipe
// fed by a goroutine. Use one or the other, once.
type Encoder struct {
	src    Sparse
	format Format
	opts   EncodeOptions
	stats  StreamStats

	mu      sync.Mutex
	used    bool
	pr      *io.PipeReader
	done    chan struct{}
	written int64
}

// NewEncoder prepares src to be written as format f (VMDK, VHD or Raw).
func NewEncoder(src Sparse, f Format, o EncodeOptions) *Encoder {
	return &Encoder{src: src, format: f, opts: o}
}

// Format is the format the encoder writes.
func (e *Encoder) Format() Format { return e.format }

// Stats counts what the VMDK writer did with the grains (zero for other
// formats); it may be read while the image is written.
func (e *Encoder) Stats() *StreamStats { return &e.stats }

// Pacing is how the image's grains are being encoded and the rates the
// choice was made on (see Pacing); for a VHD or raw image only its format.
// It may be called while the image is written.
func (e *Encoder) Pacing() Pacing {
	if e.format != VMDK {
		return Pacing{Format: string(e.format)}
	}
	p := e.stats.Pacing()
	p.Format = string(VMDK)
	return p
}

// Written is the number of bytes written so far.
func (e *Encoder) Written() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.written
}

var errEncoderUsed = errors.New("encode disk image: the encoder has already been read")

// WriteTo writes the whole image to w and returns its size.
func (e *Encoder) WriteTo(w io.Writer) (int64, error) {
	e.mu.Lock()
	if e.used {
		e.mu.Unlock()
		return 0, errEncoderUsed
	}
	e.used = true
	e.mu.Unlock()
	return e.encode(w)
}

func (e *Encoder) encode(w io.Writer) (int64, error) {
	var n int64
	var err error
	switch e.format {
	case VMDK:
		n, err = WriteStreamOptimizedOpts(w, e.src, StreamOptions{Compression: e.opts.Compression, Stats: &e.stats})
	case VHD:
		n, err = WriteVHD(w, e.src, e.opts.Dynamic)
	case Raw:
		// A writer that fills buffers of its own reads the disk into them.
		if rf, ok := w.(io.ReaderFrom); ok {
			var rr *rawReader
			if rr, err = newRawReader(e.src); err == nil {
				n, err = rf.ReadFrom(rr)
			}
		} else {
			n, err = writeRawTo(w, e.src, e.src.Size(), false)
		}
	default:
		err = fmt.Errorf("encode disk image: cannot write format %q (want vmdk, vhd or raw)", e.format)
	}
	e.mu.Lock()
	e.written = n
	e.mu.Unlock()
	return n, err
}

// Read reads the image, encoded by a goroutine started at the first call.
func (e *Encoder) Read(p []byte) (int, error) {
	e.mu.Lock()
	if e.pr == nil {
		if e.used {
			e.mu.Unlock()
			return 0, errEncoderUsed
		}
		e.used = true
		pr, pw := io.Pipe()
		e.pr, e.done = pr, make(chan struct{})
		go func() {
			defer close(e.done)
			_, err := e.encode(pw)
			pw.CloseWithError(err)
		}()
	}
	pr := e.pr
	e.mu.Unlock()
	return pr.Read(p)
}

// Close stops an encoding that Read started and waits for it. The Sparse
// must let a read in progress end (the caller's own cancellation).
func (e *Encoder) Close() error {
	e.mu.Lock()
	pr, done := e.pr, e.done
	e.mu.Unlock()
	if pr != nil {
		pr.CloseWithError(errors.New("encode disk image: closed"))
		<-done
	}
	return nil
}
