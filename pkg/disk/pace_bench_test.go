package disk

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/guestdisk"
)

// linkWriter is an upload at rate bytes/s (0: as fast as the caller
// writes) behind buffers of absorb bytes, as the staging's part buffers
// are: a write returns once its bytes fit.
type linkWriter struct {
	rate   float64
	absorb int64
	start  time.Time
	n      int64
}

func (w *linkWriter) Write(p []byte) (int, error) {
	if w.start.IsZero() {
		w.start = time.Now()
	}
	w.n += int64(len(p))
	if w.rate > 0 {
		if due := w.start.Add(time.Duration(float64(w.n-w.absorb) / w.rate * float64(time.Second))); time.Until(due) > 0 {
			time.Sleep(time.Until(due))
		}
	}
	return len(p), nil
}

// BenchmarkPacedStream writes 64 MiB of text (guestdisk.WordText) as a
// streamOptimized VMDK into a link of 8 MB/s and into one as fast as the
// writer, with the adaptive pacer and with each fixed encoding: the
// adaptive one should run about as fast as deflate on the slow link and as
// the fastest fixed encoding on the fast one.
func BenchmarkPacedStream(b *testing.B) {
	data := guestdisk.WordText(64<<20, 5)
	for _, link := range []struct {
		name string
		rate float64
	}{{"link=8MBps", 8e6}, {"link=unlimited", 0}} {
		for _, c := range []struct {
			name string
			c    Compression
		}{{"adaptive", CompressAdaptive}, {"deflate", CompressSmall}, {"huffman", CompressFast}, {"store", CompressStore}} {
			b.Run(fmt.Sprintf("%s/%s", link.name, c.name), func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				var out int64
				var pace Pacing
				cpu0 := cpuTime()
				for range b.N {
					enc := NewEncoder(NewRaw(bytes.NewReader(data), int64(len(data))), VMDK, EncodeOptions{Compression: c.c})
					n, err := enc.WriteTo(&linkWriter{rate: link.rate, absorb: 16 << 20})
					if err != nil {
						b.Fatal(err)
					}
					out, pace = n, enc.Pacing()
				}
				b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N)*float64(1<<30)/float64(len(data)), "cpu-s/GiB")
				b.ReportMetric(float64(out)/float64(len(data))*100, "out-%")
				b.ReportMetric(float64(pace.Deflated), "deflated")
				b.ReportMetric(float64(pace.Huffman), "huffman")
				b.ReportMetric(float64(pace.Stored), "stored")
			})
		}
	}
}
