package disk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zlib"
)

// StreamCompressionLevel is the zlib level the streamOptimized writer uses.
// Level 1 is several times faster than zlib's default on real disks and
// costs a few percent of size; VMware and qemu read any level.
var StreamCompressionLevel = zlib.BestSpeed

const (
	soDescSectors = 20  // room for the embedded descriptor
	soOverhead    = 128 // first grain starts 64 KiB in, as VMware writes it
)

// WriteStreamOptimized writes src as a streamOptimized VMDK: a header whose
// grain directory is "at end", the embedded descriptor, zlib-compressed
// 64 KiB grains each behind a grain marker, each grain table behind its
// marker once its 32 MiB span is done, the grain directory, the footer and
// the end-of-stream marker. Only the grains that src's extents touch are
// read (a raw source made by NewRaw is read once, whole, instead of being
// scanned first); grains that are all zero are omitted. A size that is not a multiple of 512 is padded with
// zeros to the next sector. Grains are compressed in parallel; memory stays
// bounded (a few MiB plus 4 bytes per 32 MiB of capacity for the grain
// directory) whatever the size. It returns the number of bytes written.
func WriteStreamOptimized(w io.Writer, src Sparse) (int64, error) {
	size := src.Size()
	var ext []Extent
	if r, ok := src.(*rawImage); ok && r.format == "" {
		// Scanning raw content for extents would read it twice; the
		// writer's own zero-grain test finds the holes in one pass.
		if size > 0 {
			ext = []Extent{{0, size}}
		}
	} else {
		ext = src.Extents()
	}
	produce := func(emit func(gi int64, fill func([]byte) error) error) error {
		last := int64(-1)
		for _, e := range ext {
			if e.Offset < 0 || e.End() > size || e.Length <= 0 {
				return fmt.Errorf("source extent %+v outside the %d-byte disk", e, size)
			}
			for gi := max(e.Offset/vmdkGrainSize, last+1); gi*vmdkGrainSize < e.End(); gi++ {
				last = gi
				off := gi * vmdkGrainSize
				err := emit(gi, func(buf []byte) error {
					n, err := src.ReadAt(buf, off)
					if n == len(buf) || (err == io.EOF && off+int64(n) == size) {
						zeroFill(buf[n:])
						return nil
					}
					if err == nil || err == io.EOF {
						err = io.ErrUnexpectedEOF
					}
					return fmt.Errorf("read source at %d: %w", off, err)
				})
				if err != nil {
					return err
				}
			}
		}
		return nil
	}
	return writeStream(w, size, soOverhead, produce)
}

// WriteStreamOptimizedFrom writes the raw disk of the given size read
// sequentially from r as a streamOptimized VMDK, detecting zero grains on
// the fly. r must yield exactly size bytes.
func WriteStreamOptimizedFrom(w io.Writer, r io.Reader, size int64) (int64, error) {
	if size < 0 || size > MaxVirtualSize {
		return 0, fmt.Errorf("write streamOptimized vmdk: size %d out of range", size)
	}
	produce := func(emit func(gi int64, fill func([]byte) error) error) error {
		for gi := int64(0); gi*vmdkGrainSize < size; gi++ {
			off := gi * vmdkGrainSize
			err := emit(gi, func(buf []byte) error {
				n := int(min(int64(len(buf)), size-off))
				if m, err := io.ReadFull(r, buf[:n]); err != nil {
					return fmt.Errorf("read source at %d: got %d of %d bytes: %w", off+int64(m), m, n, err)
				}
				zeroFill(buf[n:])
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	return writeStream(w, size, soOverhead, produce)
}

// grainJob is one grain moving through the compression pipeline.
type grainJob struct {
	gi   int64
	raw  []byte
	out  *bytes.Buffer
	zero bool
	err  error
	done chan struct{}
}

var (
	rawGrainPool = sync.Pool{New: func() any { b := make([]byte, vmdkGrainSize); return &b }}
	outGrainPool = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, vmdkGrainSize+1024)) }}
)

// writeStream runs the pipeline: produce reads grains in order (one
// goroutine), a pool of workers tests and compresses them, and this
// goroutine writes them in order. At most inflight grains exist at once.
func writeStream(w io.Writer, size int64, overhead uint64, produce func(emit func(gi int64, fill func([]byte) error) error) error) (int64, error) {
	if size < 0 || size > MaxVirtualSize {
		return 0, fmt.Errorf("write streamOptimized vmdk: size %d out of range", size)
	}
	sw := newStreamWriter(w, size, overhead)
	if err := sw.begin(); err != nil {
		return sw.n, fmt.Errorf("write streamOptimized vmdk: %w", err)
	}
	workers := max(1, runtime.GOMAXPROCS(0))
	inflight := 4 * workers
	order := make(chan *grainJob, inflight)
	work := make(chan *grainJob, inflight)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			compressWorker(work)
		}()
	}
	var prodErr error
	go func() {
		defer close(order)
		defer close(work)
		prodErr = produce(func(gi int64, fill func([]byte) error) error {
			bp := rawGrainPool.Get().(*[]byte)
			j := &grainJob{gi: gi, raw: *bp, done: make(chan struct{})}
			if err := fill(j.raw); err != nil {
				rawGrainPool.Put(bp)
				return err
			}
			select {
			case order <- j:
			case <-stop:
				return errStopped
			}
			work <- j
			return nil
		})
	}()
	fail := func(err error) (int64, error) {
		close(stop)
		for j := range order { // let the producer and workers finish
			<-j.done
		}
		wg.Wait()
		return sw.n, fmt.Errorf("write streamOptimized vmdk: %w", err)
	}
	for j := range order {
		<-j.done
		err := j.err
		if err == nil && !j.zero {
			err = sw.grain(j.gi, j.out.Bytes())
		}
		buf := j.raw
		rawGrainPool.Put(&buf)
		if j.out != nil {
			j.out.Reset()
			outGrainPool.Put(j.out)
		}
		if err != nil {
			return fail(err)
		}
	}
	wg.Wait()
	if prodErr != nil {
		return sw.n, fmt.Errorf("write streamOptimized vmdk: %w", prodErr)
	}
	if err := sw.finish(); err != nil {
		return sw.n, fmt.Errorf("write streamOptimized vmdk: %w", err)
	}
	return sw.n, nil
}

var errStopped = fmt.Errorf("stopped")

func compressWorker(work <-chan *grainJob) {
	var zw *zlib.Writer
	for j := range work {
		if isZero(j.raw) {
			j.zero = true
			close(j.done)
			continue
		}
		j.out = outGrainPool.Get().(*bytes.Buffer)
		if zw == nil {
			var err error
			zw, err = zlib.NewWriterLevel(j.out, StreamCompressionLevel)
			if err != nil {
				j.err = fmt.Errorf("compress grain: %w", err)
				close(j.done)
				continue
			}
		} else {
			zw.Reset(j.out)
		}
		if _, err := zw.Write(j.raw); err != nil {
			j.err = fmt.Errorf("compress grain %d: %w", j.gi, err)
		} else if err := zw.Close(); err != nil {
			j.err = fmt.Errorf("compress grain %d: %w", j.gi, err)
		}
		close(j.done)
	}
}

// streamWriter lays out a streamOptimized VMDK as grains arrive in order.
type streamWriter struct {
	w        io.Writer
	n        int64 // bytes written; always a multiple of 512 between calls
	capacity uint64
	overhead uint64
	gd       []uint32
	curGT    int64
	gt       []byte // current grain table, little-endian entries
	gtUsed   bool
	pad      [sectorSize]byte
}

// newStreamWriter lays out a stream whose first grain starts at sector
// overhead (at least 3: the header and a 2-sector descriptor).
func newStreamWriter(w io.Writer, size int64, overhead uint64) *streamWriter {
	capSectors := uint64((size + sectorSize - 1) / sectorSize)
	grains := (capSectors + vmdkGrainSectors - 1) / vmdkGrainSectors
	ngt := (grains + vmdkGTEntries - 1) / vmdkGTEntries
	return &streamWriter{w: w, capacity: capSectors, overhead: max(overhead, 3), gd: make([]uint32, ngt), curGT: -1, gt: make([]byte, vmdkGTEntries*4)}
}

func (s *streamWriter) header(gdOffset uint64) *vmdkHeader {
	return &vmdkHeader{Version: 3, Flags: vmdkFlagNLTest | vmdkFlagCompressed | vmdkFlagMarkers,
		Capacity: s.capacity, Granularity: vmdkGrainSectors, DescOffset: 1, DescSize: min(soDescSectors, s.overhead-1),
		GTEntries: vmdkGTEntries, GDOffset: gdOffset, Overhead: s.overhead, Compression: vmdkCompressDeflate}
}

func (s *streamWriter) write(b []byte) error {
	m, err := s.w.Write(b)
	s.n += int64(m)
	return err
}

// writePadded writes b followed by zeros up to the next sector boundary.
func (s *streamWriter) writePadded(b []byte) error {
	if err := s.write(b); err != nil {
		return err
	}
	if r := len(b) % sectorSize; r != 0 {
		return s.write(s.pad[:sectorSize-r])
	}
	return nil
}

func (s *streamWriter) begin() error {
	if err := s.write(s.header(vmdkGDAtEnd).marshal()); err != nil {
		return err
	}
	desc := make([]byte, (s.overhead-1)*sectorSize)
	copy(desc, streamDescriptor(s.capacity))
	return s.write(desc)
}

func (s *streamWriter) marker(val uint64, typ uint32) error {
	var m [sectorSize]byte
	binary.LittleEndian.PutUint64(m[0:], val)
	binary.LittleEndian.PutUint32(m[12:], typ)
	return s.write(m[:])
}

func (s *streamWriter) grain(gi int64, comp []byte) error {
	if t := gi / vmdkGTEntries; t != s.curGT {
		if err := s.flushGT(); err != nil {
			return err
		}
		s.curGT = t
	}
	binary.LittleEndian.PutUint32(s.gt[(gi%vmdkGTEntries)*4:], uint32(s.n/sectorSize))
	s.gtUsed = true
	var mk [12]byte
	binary.LittleEndian.PutUint64(mk[0:], uint64(gi)*vmdkGrainSectors)
	binary.LittleEndian.PutUint32(mk[8:], uint32(len(comp)))
	if err := s.write(mk[:]); err != nil {
		return err
	}
	if err := s.write(comp); err != nil {
		return err
	}
	if r := (12 + len(comp)) % sectorSize; r != 0 {
		return s.write(s.pad[:sectorSize-r])
	}
	return nil
}

func (s *streamWriter) flushGT() error {
	if !s.gtUsed {
		return nil
	}
	if err := s.marker(uint64(len(s.gt)/sectorSize), markerGT); err != nil {
		return err
	}
	s.gd[s.curGT] = uint32(s.n / sectorSize)
	if err := s.write(s.gt); err != nil {
		return err
	}
	clear(s.gt)
	s.gtUsed = false
	return nil
}

func (s *streamWriter) finish() error {
	if err := s.flushGT(); err != nil {
		return err
	}
	gdBytes := make([]byte, len(s.gd)*4)
	for i, v := range s.gd {
		binary.LittleEndian.PutUint32(gdBytes[i*4:], v)
	}
	if err := s.marker(uint64((len(gdBytes)+sectorSize-1)/sectorSize), markerGD); err != nil {
		return err
	}
	gdSector := uint64(s.n / sectorSize)
	if err := s.writePadded(gdBytes); err != nil {
		return err
	}
	if err := s.marker(1, markerFooter); err != nil {
		return err
	}
	if err := s.write(s.header(gdSector).marshal()); err != nil {
		return err
	}
	return s.marker(0, markerEOS)
}

// streamDescriptor is the embedded descriptor of a streamOptimized VMDK.
// The CID is derived from the capacity so output is reproducible.
func streamDescriptor(capSectors uint64) string {
	var c [8]byte
	binary.LittleEndian.PutUint64(c[:], capSectors)
	cid := crc32.ChecksumIEEE(c[:])
	if cid == 0xffffffff {
		cid = 0xfffffffe
	}
	cyl := min(capSectors/(255*63), 65535)
	return fmt.Sprintf(`# Disk DescriptorFile
version=1
CID=%08x
parentCID=ffffffff
createType="streamOptimized"

# Extent description
RW %d SPARSE "disk.vmdk"

# The Disk Data Base
#DDB

ddb.adapterType = "lsilogic"
ddb.geometry.cylinders = "%d"
ddb.geometry.heads = "255"
ddb.geometry.sectors = "63"
ddb.virtualHWVersion = "4"
ddb.toolsVersion = "0"
`, cid, capSectors, cyl)
}
