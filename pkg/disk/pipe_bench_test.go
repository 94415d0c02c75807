//go:build linux

package disk

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// pipeFeed starts dd writing size bytes of zeros into a pipe, widened by
// WidenPipe, in writes of feed bytes, and returns its read end in blocking
// mode, as a child's os.Stdin is. The feeder is another process, so the
// benchmark's CPU (cpuTime, RUSAGE_SELF) is the reader's alone, as the
// staging benchmark measures its pipe child (whose feeder, exec's copy,
// writes 32 KiB at a time).
func pipeFeed(b *testing.B, size int64, feed int) (*os.File, func()) {
	p := make([]int, 2)
	if err := syscall.Pipe2(p, syscall.O_CLOEXEC); err != nil {
		b.Fatal(err)
	}
	pr, pw := os.NewFile(uintptr(p[0]), "pipe"), os.NewFile(uintptr(p[1]), "pipe")
	WidenPipe(pw)
	cmd := exec.Command("dd", "if=/dev/zero", fmt.Sprintf("bs=%d", feed), fmt.Sprintf("count=%d", size/int64(feed)), "status=none")
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
		feed, read int
		scan       bool
	}{{1 << 20, 64 << 10, false}, {1 << 20, 1 << 20, false}, {1 << 20, 1 << 20, true}, {32 << 10, 1 << 20, true}} {
		b.Run(fmt.Sprintf("feed=%dKiB/read=%dKiB/scan=%v", c.feed>>10, c.read>>10, c.scan), func(b *testing.B) {
			b.SetBytes(size)
			buf := make([]byte, c.read)
			cpu0 := cpuTime()
			for b.Loop() {
				pr, done := pipeFeed(b, size, c.feed)
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
// reading a GiB of holes from a widened pipe fed by another process in
// 1 MiB or 32 KiB writes, read directly and through a 1 MiB bufio.Reader
// (as `rehost disk convert` reads stdin).
func BenchmarkWriteStreamOptimizedFromPipeFed(b *testing.B) {
	const size = 1 << 30
	for _, c := range []struct {
		feed     int
		buffered bool
	}{{1 << 20, false}, {1 << 20, true}, {32 << 10, false}, {32 << 10, true}} {
		b.Run(fmt.Sprintf("feed=%dKiB/bufio=%v", c.feed>>10, c.buffered), func(b *testing.B) {
			b.SetBytes(size)
			cpu0 := cpuTime()
			for b.Loop() {
				pr, done := pipeFeed(b, size, c.feed)
				var r io.Reader = pr
				if c.buffered {
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
