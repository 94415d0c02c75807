package disk

import (
	"bytes"
	"io"
	"testing"
)

// Seeds are small valid images made in code; the fuzzer mutates them into
// malformed headers, truncations and absurd sizes. Every parser must answer
// with an error or a consistent image, never a panic, a hang, or an
// allocation proportional to a size the input claims.

func seedStreamOptimized(tb testing.TB) []byte {
	return buildCompactStream(tb, sparseData(256<<10+512, 11, 0, 100000, 256<<10-3000))
}

func seedVHD(tb testing.TB, dynamic bool) []byte {
	// A dynamic disk's seed holds no block, to stay small (blocks are 2 MiB).
	data := make([]byte, 8192)
	if !dynamic {
		data = sparseData(8192, 12, 0)
	}
	var buf bytes.Buffer
	if _, err := WriteVHD(&buf, NewRaw(bytes.NewReader(data), int64(len(data))), dynamic); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// exercise checks an opened image's invariants and reads a bounded sample
// of it.
func exercise(t *testing.T, img Image) {
	info := img.Info()
	if info.VirtualSize != img.Size() || info.VirtualSize < 0 || info.VirtualSize > MaxVirtualSize {
		t.Fatalf("inconsistent info %+v for size %d", info, img.Size())
	}
	var prev int64
	for _, e := range img.Extents() {
		if e.Offset < prev || e.Length <= 0 || e.End() > img.Size() {
			t.Fatalf("bad extent %+v (previous end %d, size %d)", e, prev, img.Size())
		}
		prev = e.End()
	}
	buf := make([]byte, 70000)
	offs := []int64{0, img.Size() - int64(len(buf)), img.Size() / 2}
	for i, e := range img.Extents() {
		if i == 4 {
			break
		}
		offs = append(offs, e.Offset)
	}
	for _, off := range offs {
		if off < 0 {
			continue
		}
		n, err := img.ReadAt(buf, off)
		if n > len(buf) || (n < len(buf) && err == nil) {
			t.Fatalf("ReadAt(%d) = %d, nil", off, n)
		}
	}
}

func FuzzOpen(f *testing.F) {
	f.Add(seedStreamOptimized(f))
	f.Add(buildMonolithicSparse(sparseData(300<<10, 13, 0, 200000)))
	f.Add(seedVHD(f, false))
	f.Add(seedVHD(f, true))
	f.Add([]byte("vhdxfile\x00\x00"))
	f.Add([]byte("plain raw bytes"))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		exercise(t, img)
	})
}

func FuzzVMDKSparse(f *testing.F) {
	f.Add(seedStreamOptimized(f))
	f.Add(buildMonolithicSparse(sparseData(300<<10, 14, 0, 200000)))
	f.Add(buildMonolithicSparse(make([]byte, 40<<20)))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := openVMDKSparse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		exercise(t, img)
	})
}

func FuzzVMDKStream(f *testing.F) {
	f.Add(seedStreamOptimized(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		sr, err := NewStreamOptimizedReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		// A stream may rightly claim a huge, empty disk; read a bounded
		// amount, which must come without error or with a clean one.
		n, err := io.CopyN(io.Discard, sr, 16<<20)
		if err == io.EOF && n != min(sr.Size(), 16<<20) {
			t.Fatalf("EOF after %d of %d bytes", n, sr.Size())
		}
		if sr.AllocatedBytes() > n+sr.grainBytes {
			t.Fatalf("allocated %d after reading %d", sr.AllocatedBytes(), n)
		}
	})
}

func FuzzVHD(f *testing.F) {
	f.Add(seedVHD(f, false))
	f.Add(seedVHD(f, true))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < vhdFooterSize {
			return
		}
		img, err := openVHD(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		exercise(t, img)
	})
}

// FuzzVHDX mutates the structures of a VHDX rather than the whole file:
// the fixed layout puts its first byte of interest 64 KiB in, and the Go
// fuzzer crawls on inputs of hundreds of KiB. The body places header, region
// table, metadata region and the rest (BAT and blocks) at the offsets a
// VHDX has them, and, when fixCRC is set, repairs their checksums so the
// fuzzer also reaches the code behind them.
func FuzzVHDX(f *testing.F) {
	const metaOff, batOff = 320 << 10, 384 << 10
	for _, img := range [][]byte{
		buildVHDX(make([]byte, 4<<20), 1<<20, 512, false),
		buildVHDX(sparseData(1<<20, 15, 0), 1<<20, 512, false),
		buildVHDX(make([]byte, 64<<20), 32<<20, 4096, true),
	} {
		tail := img[batOff:]
		tail = tail[:min(len(tail), 8192)]
		f.Add(img[vhdxHeader1:vhdxHeader1+vhdxHeaderSize], img[vhdxRegion1:vhdxRegion1+512], img[metaOff:metaOff+4096+5*64], tail, true)
	}
	f.Fuzz(func(t *testing.T, head, region, meta, tail []byte, fixCRC bool) {
		if len(head) > vhdxHeaderSize || len(region) > vhdxRegionSize || len(meta) > batOff-metaOff {
			return
		}
		b := make([]byte, batOff+len(tail))
		copy(b, vhdxSignature)
		for _, off := range []int{vhdxHeader1, vhdxHeader2} {
			copy(b[off:], head)
			if fixCRC {
				putCRC32C(b[off : off+vhdxHeaderSize])
			}
		}
		for _, off := range []int{vhdxRegion1, vhdxRegion2} {
			copy(b[off:], region)
			if fixCRC {
				putCRC32C(b[off : off+vhdxRegionSize])
			}
		}
		copy(b[metaOff:], meta)
		copy(b[batOff:], tail)
		img, err := openVHDX(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		exercise(t, img)
	})
}

func FuzzDescriptor(f *testing.F) {
	f.Add([]byte(streamDescriptor(2048)))
	f.Add([]byte("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n" +
		"RW 2048 FLAT \"a-flat.vmdk\" 0\nRW 100 ZERO\nRDONLY 8 VMFS \"b c.vmdk\" 2\n"))
	f.Add([]byte("# Disk DescriptorFile\nparentCID=12345678\nRW 1 SPARSE \"x\"\x00\x00garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseDescriptor(b)
		if err != nil {
			return
		}
		var total int64
		for _, e := range d.Extents {
			if e.Sectors < 0 || e.Offset < 0 {
				t.Fatalf("negative extent %+v", e)
			}
			total += e.Sectors
		}
		if total > MaxVirtualSize/sectorSize || len(d.Extents) > maxDescriptorExtent {
			t.Fatalf("descriptor beyond limits: %d sectors in %d extents", total, len(d.Extents))
		}
	})
}
