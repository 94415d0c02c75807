//go:build linux

package disk

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
)

// pipeFeed starts dd writing size bytes of zeros into a pipe, widened by
// WidenPipe, and returns its read end. The feeder is another process, so
// the benchmark's CPU (cpuTime, RUSAGE_SELF) is the reader's alone, as the
// staging benchmark's pipe child measures it.
func pipeFeed(b *testing.B, size int64) (*os.File, func()) {
	pr, pw, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	WidenPipe(pw)
	cmd := exec.Command("dd", "if=/dev/zero", "bs=1M", fmt.Sprintf("count=%d", size>>20), "status=none")
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	pw.Close()
	return pr, func() {
		pr.Close()
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPipeFloor is the least a GiB of holes from a pipe can cost on
// this machine: the kernel's copy out of the (widened) pipe into one reused
// buffer, and with scan the zero test of every byte; nothing else. Compare
// BenchmarkWriteStreamOptimizedFromPipe's cpu-s/GiB with it.
func BenchmarkPipeFloor(b *testing.B) {
	const size = 1 << 30
	for _, c := range []struct {
		read int
		scan bool
	}{{64 << 10, false}, {1 << 20, false}, {64 << 10, true}, {1 << 20, true}} {
		b.Run(fmt.Sprintf("read=%dKiB/scan=%v", c.read>>10, c.scan), func(b *testing.B) {
			b.SetBytes(size)
			buf := make([]byte, c.read)
			cpu0 := cpuTime()
			for b.Loop() {
				pr, done := pipeFeed(b, size)
				for n := int64(0); n < size; {
					m, err := io.ReadFull(pr, buf)
					if err != nil {
						b.Fatal(err)
					}
					if c.scan && !isZero(buf[:m]) {
						b.Fatal("not zero")
					}
					n += int64(m)
				}
				done()
			}
			b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/GiB")
		})
	}
}

// BenchmarkWriteStreamOptimizedFromPipeFed is WriteStreamOptimizedFrom
// reading a GiB of holes from a widened pipe fed by another process, read
// directly and through a 1 MiB bufio.Reader (as the staging benchmark's
// child and `rehost disk convert` from stdin read it).
func BenchmarkWriteStreamOptimizedFromPipeFed(b *testing.B) {
	const size = 1 << 30
	for _, buffered := range []bool{false, true} {
		b.Run(fmt.Sprintf("bufio=%v", buffered), func(b *testing.B) {
			b.SetBytes(size)
			cpu0 := cpuTime()
			for b.Loop() {
				pr, done := pipeFeed(b, size)
				var r io.Reader = pr
				if buffered {
					r = bufio.NewReaderSize(pr, 1<<20)
				}
				if _, err := WriteStreamOptimizedFrom(io.Discard, r, size); err != nil {
					b.Fatal(err)
				}
				done()
			}
			b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/GiB")
		})
	}
}
