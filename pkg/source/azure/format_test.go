package azure

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"testing"

	"github.com/rehost/rehost/pkg/disk"
)

// memDisk is a disk held in memory with the given allocated extents.
func memDisk(size int64, ext []disk.Extent, fill func([]byte)) ([]byte, func(context.Context, int64, []byte) error) {
	b := make([]byte, size)
	for _, e := range ext {
		fill(b[e.Offset:e.End()])
	}
	return b, func(_ context.Context, off int64, p []byte) error { copy(p, b[off:]); return nil }
}

func ex(off, n int64) disk.Extent { return disk.Extent{Offset: off, Length: n} }

func random(p []byte) { rand.Read(p) }
func text(p []byte) {
	for i := range p {
		p[i] = "rehost replicates azure disks\n"[i%30]
	}
}

// The sizes choose computes are those the writers produce, and the
// choice follows the data: sparse → VMDK, dense and incompressible → VHD,
// dense and compressible → VMDK, empty → a tiny dynamic VHD.
func TestChooseFormat(t *testing.T) {
	const size = 20 << 20
	cases := []struct {
		name string
		ext  []disk.Extent
		fill func([]byte)
		want disk.Format
	}{
		{"sparse", []disk.Extent{ex(0, 4096), ex(5<<20, 70<<10), ex(17<<20, 512)}, random, disk.VMDK},
		{"dense random", []disk.Extent{ex(0, 6<<20), ex(12<<20, 4<<20)}, random, disk.VHD},
		{"dense text", []disk.Extent{ex(0, 6<<20), ex(12<<20, 4<<20)}, text, disk.VMDK},
		{"full random", []disk.Extent{ex(0, size)}, random, disk.VHD},
		{"empty", nil, random, disk.VHD},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, read := memDisk(size, c.ext, c.fill)
			br := newBlobReader(context.Background(), size, c.ext, 4, 1<<20, read)
			defer br.close()
			p := choose(size, c.ext, func() ([]byte, error) {
				off, n := sampleAt(c.ext, min(sampleBytes, allocated(c.ext)/32))
				b := make([]byte, n)
				return b, read(context.Background(), off, b)
			})
			if p.Format != c.want {
				t.Errorf("chose %s: %s", p.Format, p.Reason)
			}
			var vhd, vmdk bytes.Buffer
			if _, err := disk.WriteVHD(&vhd, br, p.Dynamic); err != nil {
				t.Fatal(err)
			}
			if int64(vhd.Len()) != p.VHD {
				t.Errorf("vhd: computed %d bytes, written %d", p.VHD, vhd.Len())
			}
			br2 := newBlobReader(context.Background(), size, c.ext, 4, 1<<20, read)
			defer br2.close()
			if _, err := disk.WriteStreamOptimized(&vmdk, br2); err != nil {
				t.Fatal(err)
			}
			if int64(vmdk.Len()) > p.VMDKMax {
				t.Errorf("vmdk: bound %d bytes, written %d", p.VMDKMax, vmdk.Len())
			}
			chosen := map[disk.Format]int{disk.VHD: vhd.Len(), disk.VMDK: vmdk.Len()}[p.Format]
			if smaller := min(vhd.Len(), vmdk.Len()); chosen > smaller+smaller/20 {
				t.Errorf("chose %s of %d bytes; vhd %d, vmdk %d", p.Format, chosen, vhd.Len(), vmdk.Len())
			}
			for _, b := range []*bytes.Buffer{&vhd, &vmdk} {
				img, err := disk.Open(bytes.NewReader(b.Bytes()), int64(b.Len()))
				if err != nil {
					t.Fatal(err)
				}
				got := make([]byte, size)
				if _, err := img.ReadAt(got, 0); err != nil && err != io.EOF {
					t.Fatal(err)
				}
				if !bytes.Equal(got, raw) {
					t.Fatal("content differs")
				}
			}
			t.Logf("%s: vhd %d, vmdk %d (bound %d): %s", p.Format, vhd.Len(), vmdk.Len(), p.VMDKMax, p.Reason)
		})
	}
}

// The reader fetches each allocated byte once, whatever the order of
// chunks and the window.
func TestBlobReaderReadsEachByteOnce(t *testing.T) {
	ext := []disk.Extent{ex(512, 3<<20), ex(4<<20, 1<<20), ex(9<<20+512, 100<<10)}
	raw, read := memDisk(16<<20, ext, random)
	br := newBlobReader(context.Background(), 16<<20, ext, 3, 256<<10, read)
	defer br.close()
	var out bytes.Buffer
	if _, err := disk.WriteVHD(&out, br, true); err != nil {
		t.Fatal(err)
	}
	if br.fetched.Load() != allocated(ext) {
		t.Errorf("fetched %d bytes of %d allocated", br.fetched.Load(), allocated(ext))
	}
	img, err := disk.Open(bytes.NewReader(out.Bytes()), int64(out.Len()))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(raw))
	img.ReadAt(got, 0)
	if !bytes.Equal(got, raw) {
		t.Fatal("content differs")
	}
}

// BenchmarkStreamVMDK streams a 256 MiB disk with 64 MiB allocated from
// memory through the prefetching reader and the VMDK writer.
func BenchmarkStreamVMDK(b *testing.B) {
	ext := []disk.Extent{ex(0, 32<<20), ex(100<<20, 32<<20)}
	_, read := memDisk(256<<20, ext, text)
	b.SetBytes(allocated(ext))
	for b.Loop() {
		br := newBlobReader(context.Background(), 256<<20, ext, 4, 4<<20, read)
		if _, err := disk.WriteStreamOptimized(io.Discard, br); err != nil {
			b.Fatal(err)
		}
		br.close()
	}
}
