package disk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress"
	"github.com/klauspost/compress/flate"
)

// StreamCompressionLevel is the deflate level the streamOptimized writer
// compresses grains with when the output is what bounds the stream (see
// Compression). Level 1 is several times faster than zlib's default on real
// disks and costs a few percent of size; VMware and qemu read any level.
var StreamCompressionLevel = flate.BestSpeed

// Compression says how the streamOptimized writer encodes each grain that
// holds data (all-zero grains are always left out).
type Compression int

const (
	// CompressAdaptive (the default) chooses per window of grains between
	// deflate at StreamCompressionLevel, Huffman coding and storing, by
	// what the stream waits on, measured as it is written (see pacer and
	// Pacing): deflate where the link is the bottleneck, less or no
	// compression where the CPU or the source is. Grains that will not
	// compress are stored whatever the choice.
	CompressAdaptive Compression = iota
	// CompressSmall always deflates at StreamCompressionLevel.
	CompressSmall
	// CompressFast always Huffman-codes (no match search): about a third
	// of the CPU, a larger output.
	CompressFast
	// CompressStore stores every grain uncompressed (deflate's stored
	// blocks): the least CPU, a VMDK the size of the data.
	CompressStore
)

// StreamOptions tune WriteStreamOptimizedOpts.
type StreamOptions struct {
	Compression Compression
	// Stats, when set, is kept up to date with what the writer did.
	Stats *StreamStats
}

// StreamStats counts what a streamOptimized writer did with the grains.
// Its fields are read atomically while the writer runs.
type StreamStats struct {
	// Grains by encoding: left out (all zero), stored, Huffman-coded,
	// deflated.
	Zero, Stored, Huffman, Deflated atomic.Int64
	// In and Out are the bytes of the grains that hold data, before and
	// after encoding.
	In, Out atomic.Int64

	pace atomic.Pointer[pacer]
}

// Pacing is what the writer chose for the grains and the rates it chose
// on, so far; the zero Pacing before the writer started.
func (s *StreamStats) Pacing() Pacing {
	p := s.pace.Load()
	if p == nil {
		return Pacing{}
	}
	return p.report(s)
}

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
	return WriteStreamOptimizedOpts(w, src, StreamOptions{})
}

// WriteStreamOptimizedOpts is WriteStreamOptimized with options.
func WriteStreamOptimizedOpts(w io.Writer, src Sparse, o StreamOptions) (int64, error) {
	size := src.Size()
	var ext []Extent
	if r, ok := src.(*rawImage); ok && r.format == "" && !r.known {
		// Scanning raw content for extents would read it twice; the
		// writer's own zero-grain test finds the holes in one pass.
		if size > 0 {
			ext = []Extent{{0, size}}
		}
	} else {
		ext = src.Extents()
	}
	produce := func(feed *grainFeed) error {
		last := int64(-1)
		for _, e := range ext {
			if e.Offset < 0 || e.End() > size || e.Length <= 0 {
				return fmt.Errorf("source extent %+v outside the %d-byte disk", e, size)
			}
			for gi := max(e.Offset/vmdkGrainSize, last+1); gi*vmdkGrainSize < e.End(); gi++ {
				last = gi
				off := gi * vmdkGrainSize
				err := feed.grain(gi, func(buf []byte) error {
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
	return writeStream(w, size, soOverhead, o, produce)
}

// WriteStreamOptimizedFrom writes the raw disk of the given size read
// sequentially from r as a streamOptimized VMDK, detecting zero grains on
// the fly. r must yield exactly size bytes. Every byte of a stream has to
// be read, holes too, so the reading is what a stream of holes costs: r is
// read straight into the grain buffers, readGrains at a time (with one
// readv when r is a file or pipe), and the zero grains are found and
// dropped here, never reaching the compressors.
func WriteStreamOptimizedFrom(w io.Writer, r io.Reader, size int64) (int64, error) {
	if size < 0 || size > MaxVirtualSize {
		return 0, fmt.Errorf("write streamOptimized vmdk: size %d out of range", size)
	}
	read := newGrainReader(r)
	produce := func(feed *grainFeed) error {
		grains := (size + vmdkGrainSize - 1) / vmdkGrainSize
		bufs := make([]*[]byte, 0, readGrains)
		for gi := int64(0); gi < grains; {
			k := int(min(readGrains, grains-gi))
			bufs = bufs[:0]
			for range k {
				bufs = append(bufs, rawGrainPool.Get().(*[]byte))
			}
			// The last grain may be partial: only size's bytes are read.
			last := int(min(vmdkGrainSize, size-(gi+int64(k)-1)*vmdkGrainSize))
			t0 := time.Now()
			if err := read(bufs, last); err != nil {
				for _, bp := range bufs {
					rawGrainPool.Put(bp)
				}
				return fmt.Errorf("read source at %d: %w", gi*vmdkGrainSize+err.at, err.err)
			}
			zeroFill((*bufs[k-1])[last:])
			fill := time.Since(t0) / time.Duration(k)
			zeros := int64(0)
			for i, bp := range bufs {
				if isZero(*bp) {
					rawGrainPool.Put(bp)
					zeros++
					continue
				}
				if zeros > 0 {
					if err := feed.zeros(gi+int64(i)-zeros, zeros, fill); err != nil {
						return err
					}
					zeros = 0
				}
				if err := feed.data(gi+int64(i), bp, fill); err != nil {
					for _, bp := range bufs[i+1:] {
						rawGrainPool.Put(bp)
					}
					return err
				}
			}
			if zeros > 0 {
				if err := feed.zeros(gi+int64(k)-zeros, zeros, fill); err != nil {
					return err
				}
			}
			gi += int64(k)
		}
		return nil
	}
	return writeStream(w, size, soOverhead, StreamOptions{}, produce)
}

// readGrains is how many grains WriteStreamOptimizedFrom reads at once:
// 1 MiB, what a pipe widened by WidenPipe holds.
const readGrains = 16

// Prefixed reads Head, then R: the bytes a caller has already taken from R
// (to look at a header), handed back in front of the rest. Unlike a
// bufio.Reader it leaves R's file descriptor in view, so
// WriteStreamOptimizedFrom still reads a pipe or file behind it with readv
// straight into its grain buffers, with no copy between.
type Prefixed struct {
	Head []byte
	R    io.Reader
}

func (p *Prefixed) Read(b []byte) (int, error) {
	if len(p.Head) > 0 {
		n := copy(b, p.Head)
		p.Head = p.Head[n:]
		return n, nil
	}
	return p.R.Read(b)
}

// readError is a failed read of grains: the error and the offset, from the
// first grain's, at which it happened.
type readError struct {
	at  int64
	err error
}

// newGrainReader returns the function that fills the grain buffers from r
// in order, the last of them only to last bytes: one readv per call when r
// is a file (or anything else with a file descriptor), io.ReadFull into
// each buffer otherwise.
func newGrainReader(r io.Reader) func(bufs []*[]byte, last int) *readError {
	if rv := vectorReader(r); rv != nil {
		return rv
	}
	return func(bufs []*[]byte, last int) *readError {
		at := int64(0)
		for i, bp := range bufs {
			b := *bp
			if i == len(bufs)-1 {
				b = b[:last]
			}
			if m, err := io.ReadFull(r, b); err != nil {
				return &readError{at + int64(m), fmt.Errorf("got %d of %d bytes: %w", m, len(b), err)}
			}
			at += int64(len(b))
		}
		return nil
	}
}

// grainJob is one grain moving through the compression pipeline.
type grainJob struct {
	gi    int64
	raw   []byte
	level int           // what the worker is to do with it: a flate level, or storeGrain
	fill  time.Duration // the producer's time reading it (each grain's, for a run of zeros)
	busy  time.Duration // the worker's time on it
	// zeros, when above 0, makes the job a run of that many all-zero
	// grains from gi, found by the producer: no worker sees it and it has
	// no raw buffer. nonzero says the producer found raw not all zero.
	zeros   int64
	nonzero bool
	// Set by the worker: the grain is all zero, or stored (raw is written
	// as deflate's stored blocks), or out holds its zlib stream.
	zero, stored bool
	adler        uint32
	out          *bytes.Buffer
	err          error
	done         chan struct{}
}

// storeGrain is a grainJob level: store the grain uncompressed.
const storeGrain = 100

var (
	rawGrainPool = sync.Pool{New: func() any { b := make([]byte, vmdkGrainSize); return &b }}
	outGrainPool = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, vmdkGrainSize+1024)) }}
)

// writeStream runs the pipeline: produce reads grains in order (one
// goroutine), a pool of workers tests and compresses them, and this
// goroutine writes them in order. At most inflight grains exist at once.
func writeStream(w io.Writer, size int64, overhead uint64, o StreamOptions, produce func(*grainFeed) error) (int64, error) {
	if size < 0 || size > MaxVirtualSize {
		return 0, fmt.Errorf("write streamOptimized vmdk: size %d out of range", size)
	}
	sw := newStreamWriter(w, size, overhead)
	if err := sw.begin(); err != nil {
		return sw.n, fmt.Errorf("write streamOptimized vmdk: %w", err)
	}
	stats := o.Stats
	if stats == nil {
		stats = new(StreamStats)
	}
	workers := max(1, runtime.GOMAXPROCS(0))
	pace := newPacer(o.Compression)
	pace.workers = workers
	stats.pace.Store(pace)
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
		prodErr = produce(&grainFeed{pace: pace, order: order, work: work, stop: stop})
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
		if j.zeros > 0 {
			stats.Zero.Add(j.zeros)
			for range j.zeros {
				pace.observe(grainTiming{zero: true, fill: j.fill})
			}
			continue
		}
		t0 := time.Now()
		<-j.done
		t1 := time.Now()
		err := j.err
		before := sw.n
		switch {
		case err != nil:
		case j.zero:
			stats.Zero.Add(1)
		case j.stored:
			stats.Stored.Add(1)
			err = sw.storedGrain(j.gi, j.raw, j.adler)
			stats.In.Add(vmdkGrainSize)
			stats.Out.Add(sw.n - before)
		default:
			if j.level == flate.HuffmanOnly {
				stats.Huffman.Add(1)
			} else {
				stats.Deflated.Add(1)
			}
			err = sw.grain(j.gi, j.out.Bytes())
			stats.In.Add(vmdkGrainSize)
			stats.Out.Add(sw.n - before)
		}
		g := grainTiming{level: j.level, zero: j.zero, fill: j.fill, busy: j.busy, wait: t1.Sub(t0), writeTime: time.Since(t1)}
		if !j.zero {
			g.in, g.out = vmdkGrainSize, sw.n-before
		}
		pace.observe(g)
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

// grainFeed is what a producer hands the grains to, in order (its
// goroutine only).
type grainFeed struct {
	pace        *pacer
	order, work chan<- *grainJob
	stop        <-chan struct{}
}

// grain reads grain gi with fill into a buffer of the pool and queues it.
func (f *grainFeed) grain(gi int64, fill func([]byte) error) error {
	bp := rawGrainPool.Get().(*[]byte)
	t0 := time.Now()
	if err := fill(*bp); err != nil {
		rawGrainPool.Put(bp)
		return err
	}
	return f.queue(&grainJob{gi: gi, raw: *bp, fill: time.Since(t0)})
}

// data queues grain gi, read already into bp (a buffer of the pool, which
// it takes) in fill and found not all zero.
func (f *grainFeed) data(gi int64, bp *[]byte, fill time.Duration) error {
	return f.queue(&grainJob{gi: gi, raw: *bp, fill: fill, nonzero: true})
}

// zeros queues the n all-zero grains from gi, each read in fill.
func (f *grainFeed) zeros(gi, n int64, fill time.Duration) error {
	j := &grainJob{gi: gi, zeros: n, fill: fill, done: closedDone}
	select {
	case f.order <- j:
		return nil
	case <-f.stop:
		return errStopped
	}
}

// closedDone is the done of a job no worker sees.
var closedDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (f *grainFeed) queue(j *grainJob) error {
	j.level, j.done = f.pace.level(), make(chan struct{})
	select {
	case f.order <- j:
	case <-f.stop:
		rawGrainPool.Put(&j.raw)
		return errStopped
	}
	f.work <- j
	return nil
}

// incompressible is the compress.Estimate of a grain's first 4 KiB below
// which it is stored: such grains deflate to about 94 % of their size (a
// tar of /usr measured), not worth the CPU.
const incompressible = 0.1

func compressWorker(work <-chan *grainJob) {
	writers := map[int]*flate.Writer{}
	for j := range work {
		start := time.Now()
		j.encode(writers)
		j.busy = time.Since(start)
		close(j.done)
	}
}

// encode tests and compresses one grain (see grainJob), with one flate
// writer per level, reused.
func (j *grainJob) encode(writers map[int]*flate.Writer) {
	if !j.nonzero && isZero(j.raw) {
		j.zero = true
		return
	}
	j.adler = adler32Update(1, j.raw)
	if j.level == storeGrain || compress.Estimate(j.raw[:4096]) < incompressible {
		j.stored = true
		return
	}
	j.out = outGrainPool.Get().(*bytes.Buffer)
	j.out.Write(zlibHeader[:])
	fw := writers[j.level]
	if fw == nil {
		var err error
		if fw, err = flate.NewWriter(j.out, j.level); err != nil {
			j.err = fmt.Errorf("compress grain: %w", err)
			return
		}
		writers[j.level] = fw
	} else {
		fw.Reset(j.out)
	}
	if _, err := fw.Write(j.raw); err != nil {
		j.err = fmt.Errorf("compress grain %d: %w", j.gi, err)
	} else if err := fw.Close(); err != nil {
		j.err = fmt.Errorf("compress grain %d: %w", j.gi, err)
	}
	if j.out.Len()+4 >= storedGrainSize {
		// Deflate made it no smaller than storing would.
		j.stored = true
	} else {
		j.out.Write(binary.BigEndian.AppendUint32(nil, j.adler))
	}
}

// zlibHeader begins every grain's zlib stream: deflate, 32 KiB window,
// "fastest" level, no dictionary (RFC 1950).
var zlibHeader = [2]byte{0x78, 0x01}

// storedGrainSize is the zlib stream of a stored 64 KiB grain: the header,
// two stored blocks (65535 and 1 bytes, each behind 5 bytes), the Adler-32.
const storedGrainSize = 2 + 5 + 65535 + 5 + 1 + 4

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

// entry records grain gi at the current offset in its grain table, first
// writing out the previous table when gi starts another.
func (s *streamWriter) entry(gi int64) error {
	if t := gi / vmdkGTEntries; t != s.curGT {
		if err := s.flushGT(); err != nil {
			return err
		}
		s.curGT = t
	}
	binary.LittleEndian.PutUint32(s.gt[(gi%vmdkGTEntries)*4:], uint32(s.n/sectorSize))
	s.gtUsed = true
	return nil
}

func (s *streamWriter) grain(gi int64, comp []byte) error {
	if err := s.entry(gi); err != nil {
		return err
	}
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

// storedGrain writes grain gi (64 KiB of raw data) as a zlib stream of
// stored blocks, straight from raw, with its Adler-32 computed before.
func (s *streamWriter) storedGrain(gi int64, raw []byte, adler uint32) error {
	if err := s.entry(gi); err != nil {
		return err
	}
	var head [12 + 2 + 5]byte
	binary.LittleEndian.PutUint64(head[0:], uint64(gi)*vmdkGrainSectors)
	binary.LittleEndian.PutUint32(head[8:], storedGrainSize)
	copy(head[12:], zlibHeader[:])
	head[14] = 0 // not final, stored
	binary.LittleEndian.PutUint16(head[15:], 0xffff)
	binary.LittleEndian.PutUint16(head[17:], 0)
	if err := s.write(head[:]); err != nil {
		return err
	}
	if err := s.write(raw[:0xffff]); err != nil {
		return err
	}
	// The last block (1 byte), the checksum and the padding of the sector.
	tail := make([]byte, 0, sectorSize)
	tail = append(tail, 1, 1, 0, 0xfe, 0xff, raw[0xffff])
	tail = binary.BigEndian.AppendUint32(tail, adler)
	if r := (12 + storedGrainSize) % sectorSize; r != 0 {
		tail = append(tail, s.pad[:sectorSize-r]...)
	}
	return s.write(tail)
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
