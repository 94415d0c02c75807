package aws

import (
	"bytes"
	"context"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"testing"
)

// The feeder's CRC32C of each part, computed as the part is filled by
// Write (an encoder) or ReadFrom (a reader, in reads of at most fillChunk),
// is the CRC32C of the part's bytes.
func TestFeederChecksumsPartsAsTheyFill(t *testing.T) {
	data := make([]byte, 3*MinPartSize+fillChunk/3)
	rand.NewChaCha8([32]byte{3}).Read(data)
	for _, how := range []string{"write", "readfrom"} {
		st := &stager{up: Upload{PartSize: MinPartSize}}
		f := &feeder{st: st, ctx: context.Background(), jobs: make(chan job), bufs: NewBuffers(0), tokens: make(chan struct{}, 2), slots: 2}
		f.tokens <- struct{}{}
		f.tokens <- struct{}{}
		done := make(chan error, 1)
		go func() {
			var err error
			if how == "write" {
				for off := 0; off < len(data) && err == nil; off += 777 << 10 {
					_, err = f.Write(data[off:min(off+777<<10, len(data))])
				}
			} else {
				_, err = f.ReadFrom(io.MultiReader(bytes.NewReader(data[:1000]), bytes.NewReader(data[1000:])))
			}
			if err == nil {
				err = f.finish()
			}
			close(f.jobs)
			done <- err
		}()
		var got []byte
		for j := range f.jobs {
			if want := crc32.Checksum(j.buf, castagnoli); j.crc != want {
				t.Errorf("%s: part %d: crc %08x, want %08x", how, j.n, j.crc, want)
			}
			got = append(got, j.buf...)
			f.release(j.buf)
		}
		if err := <-done; err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: the parts do not hold the stream", how)
		}
	}
}
