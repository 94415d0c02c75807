package disk

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// genDisk is a deterministic virtual disk computed on demand, so a 1 GiB
// benchmark input needs no 1 GiB buffer. In "random" every byte is
// pseudo-random (incompressible, the writer's worst case); in "mostly-zero"
// one 64 KiB chunk in 16 is. Its single extent covers the whole disk, as a
// raw file's would, so the writer has to find the zero grains itself.
type genDisk struct {
	size  int64
	every int64 // 1 in every chunks holds data
}

const genChunk = 64 << 10

func (g *genDisk) Size() int64       { return g.size }
func (g *genDisk) Extents() []Extent { return []Extent{{0, g.size}} }

func (g *genDisk) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) && off+int64(n) < g.size {
		pos := off + int64(n)
		c := pos / genChunk
		in := pos % genChunk
		m := int(min(int64(len(p)-n), genChunk-in, g.size-pos))
		dst := p[n : n+m]
		if c%g.every != 0 {
			clear(dst)
		} else {
			g.fill(dst, c, in)
		}
		n += m
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// fill writes bytes [in, in+len(dst)) of chunk c's pseudo-random content.
func (g *genDisk) fill(dst []byte, c, in int64) {
	r := rand.New(rand.NewPCG(uint64(c), 0x9e3779b97f4a7c15))
	if in == 0 && len(dst)%8 == 0 { // the writer's whole-grain reads
		for i := 0; i < len(dst); i += 8 {
			binary.LittleEndian.PutUint64(dst[i:], r.Uint64())
		}
		return
	}
	var w [8]byte
	for i := int64(0); i < in+int64(len(dst)); i += 8 {
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		for k := int64(0); k < 8; k++ {
			if j := i + k - in; j >= 0 && j < int64(len(dst)) {
				dst[j] = w[k]
			}
		}
	}
}

// peakHeap samples HeapInuse until stop is closed and returns the peak.
func peakHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var ms runtime.MemStats
		var peak uint64
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// BenchmarkWriteStreamOptimized converts generated raw disks to a
// streamOptimized VMDK written to io.Discard. Run with -benchtime=2x: one
// iteration is a whole disk. Peak heap is the same at 256 MiB and 1 GiB.
func BenchmarkWriteStreamOptimized(b *testing.B) {
	for _, size := range []int64{256 << 20, 1 << 30} {
		for _, kind := range []struct {
			name  string
			every int64
		}{{"random", 1}, {"mostly-zero", 16}} {
			b.Run(fmt.Sprintf("%s-%dMiB", kind.name, size>>20), func(b *testing.B) {
				src := &genDisk{size: size, every: kind.every}
				b.SetBytes(size)
				b.ReportAllocs()
				runtime.GC()
				stop := make(chan struct{})
				peak := peakHeap(stop)
				var out int64
				for b.Loop() {
					n, err := WriteStreamOptimized(io.Discard, src)
					if err != nil {
						b.Fatal(err)
					}
					out = n
				}
				close(stop)
				b.ReportMetric(float64(<-peak)/(1<<20), "peak-heap-MiB")
				b.ReportMetric(float64(out)/float64(size)*100, "out-%")
			})
		}
	}
}

// BenchmarkGenerator is the cost of producing the random input alone, to
// read the writer's figures against.
func BenchmarkGenerator(b *testing.B) {
	src := &genDisk{size: 256 << 20, every: 1}
	buf := make([]byte, genChunk)
	b.SetBytes(src.size)
	for b.Loop() {
		for off := int64(0); off < src.size; off += genChunk {
			src.ReadAt(buf, off)
		}
	}
}

// BenchmarkStreamReader measures reading back a streamOptimized VMDK
// sequentially, as an NFC download is read.
func BenchmarkStreamReader(b *testing.B) {
	const size = 256 << 20
	src := &genDisk{size: size, every: 4}
	pr, pw := io.Pipe()
	var img []byte
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		img, _ = io.ReadAll(pr)
	}()
	if _, err := WriteStreamOptimized(pw, src); err != nil {
		b.Fatal(err)
	}
	pw.Close()
	wg.Wait()
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		sr, err := NewStreamOptimizedReader(&sliceReader{b: img})
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, sr); err != nil || n != size {
			b.Fatalf("read %d, %v", n, err)
		}
	}
}

type sliceReader struct{ b []byte }

func (s *sliceReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

// zeroReader yields zeros, as a pipe carrying a disk's holes would.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// BenchmarkWriteStreamOptimizedFromHoles is the cost of a GiB of holes read
// sequentially (a pipe): every grain must be read and found zero, and none
// of it reaches the output.
func BenchmarkWriteStreamOptimizedFromHoles(b *testing.B) {
	const size = 1 << 30
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := WriteStreamOptimizedFrom(io.Discard, zeroReader{}, size); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteStreamOptimizedFromPipe reads 1 GiB of holes through a real
// pipe (a goroutine writes zeros into it in 1 MiB writes), with the pipe's
// default 64 KiB buffer and widened by WidenPipe. The writer's cost counts
// too; compare the two with -cpuprofile or time.
func BenchmarkWriteStreamOptimizedFromPipe(b *testing.B) {
	const size = 1 << 30
	for _, widen := range []bool{false, true} {
		b.Run(fmt.Sprintf("widen=%v", widen), func(b *testing.B) {
			b.SetBytes(size)
			cpu0 := cpuTime()
			for b.Loop() {
				pr, pw, err := os.Pipe()
				if err != nil {
					b.Fatal(err)
				}
				if widen {
					WidenPipe(pr)
				}
				go func() {
					buf := make([]byte, 1<<20)
					for n := int64(0); n < size; n += int64(len(buf)) {
						if _, err := pw.Write(buf); err != nil {
							break
						}
					}
					pw.Close()
				}()
				_, err = WriteStreamOptimizedFrom(io.Discard, bufio.NewReaderSize(pr, 1<<20), size)
				pr.Close()
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/GiB")
		})
	}
}
