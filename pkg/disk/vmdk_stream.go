package disk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/klauspost/compress/zlib"
)

// maxMetadataSectors bounds a metadata block (grain table or directory) a
// stream may ask the reader to skip: the directory of a 64 TiB disk is 16 Ki
// sectors.
const maxMetadataSectors = 1 << 16

// StreamReader reads a streamOptimized VMDK strictly sequentially (as it
// arrives over HTTP from an NFC export lease) and yields the raw virtual
// disk, zero-filling the grains the stream skips.
type StreamReader struct {
	r          io.Reader
	h          vmdkHeader
	size       int64
	grainBytes int64
	pos        int64 // virtual offset of the next byte Read returns
	consumed   int64 // bytes of the stream read so far (multiple of 512)
	grain      []byte
	grainStart int64 // virtual offset of grain; valid while grainEnd > pos
	grainEnd   int64
	comp       []byte
	zr         io.ReadCloser
	zsrc       *bytes.Reader
	eos        bool
	err        error
	footer     bool // the header promised a footer and end-of-stream marker
	allocated  int64
}

// NewStreamOptimizedReader reads the header and skips the descriptor; it
// fails on anything but a compressed, marker-carrying sparse extent.
func NewStreamOptimizedReader(r io.Reader) (*StreamReader, error) {
	s := &StreamReader{r: r}
	hb := make([]byte, sectorSize)
	if err := s.readFull(hb); err != nil {
		return nil, fmt.Errorf("read streamOptimized vmdk header: %w", err)
	}
	h, err := parseVMDKHeader(hb)
	if err != nil {
		return nil, fmt.Errorf("read streamOptimized vmdk: %w", err)
	}
	if !h.compressed() || h.Flags&vmdkFlagMarkers == 0 {
		return nil, fmt.Errorf("read streamOptimized vmdk: header lacks compressed-grain markers (flags %#x); not a streamOptimized disk: %w", h.Flags, ErrFormat)
	}
	if h.Overhead < 1 || h.Overhead > maxMetadataSectors {
		return nil, fmt.Errorf("read streamOptimized vmdk: overhead of %d sectors out of range: %w", h.Overhead, ErrFormat)
	}
	s.h = h
	s.size = int64(h.Capacity) * sectorSize
	s.grainBytes = int64(h.Granularity) * sectorSize
	s.footer = h.GDOffset == vmdkGDAtEnd
	if err := s.skip(int64(h.Overhead-1) * sectorSize); err != nil {
		return nil, fmt.Errorf("read streamOptimized vmdk: skip descriptor: %w", err)
	}
	return s, nil
}

// Size is the virtual disk's capacity in bytes.
func (s *StreamReader) Size() int64 { return s.size }

// AllocatedBytes is the sum of the grains read so far that the stream holds;
// after EOF it is the disk's allocated size.
func (s *StreamReader) AllocatedBytes() int64 { return s.allocated }

// Read returns the virtual disk's bytes in order.
func (s *StreamReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if s.pos >= s.size {
			if n == 0 {
				return 0, io.EOF
			}
			return n, nil
		}
		switch {
		case s.grainEnd > s.pos && s.grainStart <= s.pos:
			c := copy(p[n:], s.grain[s.pos-s.grainStart:s.grainEnd-s.grainStart])
			n += c
			s.pos += int64(c)
		case s.grainEnd > s.pos || s.eos:
			// Zeros up to the next grain (or the end).
			to := s.size
			if !s.eos {
				to = s.grainStart
			}
			c := int(min(int64(len(p)-n), to-s.pos))
			zeroFill(p[n : n+c])
			n += c
			s.pos += int64(c)
		default:
			if s.err != nil {
				return n, s.err
			}
			if err := s.next(); err != nil {
				s.err = fmt.Errorf("read streamOptimized vmdk at stream offset %d: %w", s.consumed, err)
				return n, s.err
			}
		}
	}
	return n, nil
}

func (s *StreamReader) readFull(b []byte) error {
	m, err := io.ReadFull(s.r, b)
	s.consumed += int64(m)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("stream ends early (truncated?): %w", io.ErrUnexpectedEOF)
	}
	return err
}

func (s *StreamReader) skip(n int64) error {
	m, err := io.CopyN(io.Discard, s.r, n)
	s.consumed += m
	if err == io.EOF {
		return fmt.Errorf("stream ends early (truncated?): %w", io.ErrUnexpectedEOF)
	}
	return err
}

// next reads markers until it has loaded a grain or met the end of the
// stream.
func (s *StreamReader) next() error {
	var sec [sectorSize]byte
	for {
		m, err := io.ReadFull(s.r, sec[:])
		s.consumed += int64(m)
		if err == io.EOF && !s.footer {
			// qemu's streamOptimized files have their tables up front and may
			// end after the last grain without an end-of-stream marker.
			s.eos = true
			return nil
		}
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return fmt.Errorf("stream ends before its end-of-stream marker (truncated?): %w", io.ErrUnexpectedEOF)
			}
			return err
		}
		le := binary.LittleEndian
		val := le.Uint64(sec[0:])
		clen := int64(le.Uint32(sec[8:]))
		if clen == 0 {
			switch typ := le.Uint32(sec[12:]); typ {
			case markerEOS:
				s.eos = true
				return nil
			case markerGT, markerGD, markerFooter:
				if val > maxMetadataSectors {
					return fmt.Errorf("metadata marker claims %d sectors: %w", val, ErrFormat)
				}
				if err := s.skip(int64(val) * sectorSize); err != nil {
					return err
				}
				continue
			default:
				return fmt.Errorf("unknown marker type %d: %w", typ, ErrFormat)
			}
		}
		if clen > maxCompressedGrain(s.grainBytes) {
			return fmt.Errorf("grain claims %d compressed bytes: %w", clen, ErrFormat)
		}
		if val > uint64(s.size/sectorSize) {
			return fmt.Errorf("grain at sector %d beyond the %d-byte disk: %w", val, s.size, ErrFormat)
		}
		start := int64(val) * sectorSize
		if start < s.pos || start < s.grainEnd || start%s.grainBytes != 0 || start >= s.size {
			return fmt.Errorf("grain at sector %d out of order or unaligned: %w", val, ErrFormat)
		}
		total := (12 + clen + sectorSize - 1) / sectorSize * sectorSize
		if int64(cap(s.comp)) < total-12 {
			s.comp = make([]byte, maxCompressedGrain(s.grainBytes)+sectorSize)
		}
		comp := s.comp[:total-12]
		copy(comp, sec[12:])
		if total > sectorSize {
			if err := s.readFull(comp[sectorSize-12:]); err != nil {
				return err
			}
		}
		if s.grain == nil {
			s.grain = make([]byte, s.grainBytes)
		}
		if err := s.inflate(comp[:clen]); err != nil {
			return fmt.Errorf("grain at sector %d: %w", val, err)
		}
		s.grainStart = start
		s.grainEnd = min(start+s.grainBytes, s.size)
		s.allocated += s.grainEnd - s.grainStart
		return nil
	}
}

func (s *StreamReader) inflate(comp []byte) error {
	var err error
	if s.zr == nil {
		s.zsrc = bytes.NewReader(comp)
		s.zr, err = zlib.NewReader(s.zsrc)
	} else {
		s.zsrc.Reset(comp)
		err = s.zr.(zlib.Resetter).Reset(s.zsrc, nil)
	}
	if err != nil {
		return fmt.Errorf("inflate: %v: %w", err, ErrFormat)
	}
	return inflateGrain(s.zr, s.grain)
}
