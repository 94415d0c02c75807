package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// qemuImg returns the qemu-img path, skipping the test when it is missing
// (failing instead under CI, where the Makefile installs qemu-utils).
func qemuImg(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("qemu-img")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("qemu-img not found; CI must install qemu-utils: %v", err)
		}
		t.Skip("qemu-img not found; install qemu-utils to run the qemu compatibility tests")
	}
	return p
}

func runQemu(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(qemuImg(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// fixture is a raw disk content made deterministically.
type fixture struct {
	name string
	data []byte
}

func fixtures() []fixture {
	var out []fixture
	for _, size := range []int{1<<20 + 512, 3<<20 + 4096, 5 << 20} {
		full := make([]byte, size)
		r := rand.New(rand.NewPCG(uint64(size), 1))
		for i := range full {
			full[i] = byte(r.Uint32())
		}
		sparse := make([]byte, size)
		// Islands: at the start, straddling a grain edge, a lone sector, in
		// the middle of a 2 MiB block, and the very last bytes.
		for _, isl := range [][2]int{{0, 4096}, {64<<10 - 100, 300}, {200 << 10, 512}, {size / 2, 70000}, {size - 700, 700}} {
			copy(sparse[isl[0]:isl[0]+isl[1]], full[isl[0]:isl[0]+isl[1]])
		}
		out = append(out,
			fixture{name: "full-" + itoa(size), data: full},
			fixture{name: "sparse-" + itoa(size), data: sparse},
			fixture{name: "zero-" + itoa(size), data: make([]byte, size)})
	}
	return out
}

func itoa(n int) string {
	var b []byte
	for n > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readAll reads every byte of s through ReadAt in odd-sized pieces.
func readAll(t testing.TB, s Sparse) []byte {
	t.Helper()
	out := make([]byte, s.Size())
	const piece = 100003
	for off := 0; off < len(out); off += piece {
		end := min(off+piece, len(out))
		n, err := s.ReadAt(out[off:end], int64(off))
		if n != end-off || (err != nil && err != io.EOF) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", off, end-off, n, err)
		}
	}
	return out
}

// checkExtents proves that every non-zero byte of want lies inside s's
// extents and that the extents are sorted, disjoint and in range.
func checkExtents(t testing.TB, s Sparse, want []byte) {
	t.Helper()
	var prev int64
	covered := make([]bool, len(want))
	for _, e := range s.Extents() {
		if e.Offset < prev || e.Length <= 0 || e.End() > s.Size() {
			t.Fatalf("bad extent %+v (previous end %d, size %d)", e, prev, s.Size())
		}
		prev = e.End()
		for i := e.Offset; i < e.End() && i < int64(len(want)); i++ {
			covered[i] = true
		}
	}
	for i, b := range want {
		if b != 0 && !covered[i] {
			t.Fatalf("non-zero byte at %d lies outside the extents %v", i, s.Extents())
		}
	}
}

func mustEqual(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: first difference at byte %d: %#x, want %#x", what, i, got[i], want[i])
			}
		}
	}
}

func TestQemuReadsOurStreamOptimized(t *testing.T) {
	qemuImg(t)
	dir := t.TempDir()
	for _, fx := range fixtures() {
		t.Run(fx.name, func(t *testing.T) {
			raw := filepath.Join(dir, fx.name+".raw")
			writeFile(t, raw, fx.data)
			for _, mode := range []string{"sparse", "stream"} {
				var buf bytes.Buffer
				var n int64
				var err error
				if mode == "sparse" {
					n, err = WriteStreamOptimized(&buf, NewRaw(bytes.NewReader(fx.data), int64(len(fx.data))))
				} else {
					n, err = WriteStreamOptimizedFrom(&buf, bytes.NewReader(fx.data), int64(len(fx.data)))
				}
				if err != nil {
					t.Fatal(err)
				}
				if n != int64(buf.Len()) {
					t.Fatalf("returned %d, wrote %d", n, buf.Len())
				}
				out := filepath.Join(dir, fx.name+"-"+mode+".vmdk")
				writeFile(t, out, buf.Bytes())
				runQemu(t, "check", "-f", "vmdk", out)
				runQemu(t, "compare", "-f", "vmdk", "-F", "raw", out, raw)
				info := runQemu(t, "info", "-f", "vmdk", out)
				if !strings.Contains(info, "create type: streamOptimized") {
					t.Fatalf("qemu-img info does not see streamOptimized:\n%s", info)
				}
				// Our own readers, random access and sequential.
				img, err := Open(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
				if err != nil {
					t.Fatal(err)
				}
				if got := img.Info(); got.Format != VMDK || got.Subformat != "streamOptimized" || got.VirtualSize != int64(len(fx.data)) {
					t.Fatalf("info %+v", got)
				}
				mustEqual(t, "random-access read", readAll(t, img), fx.data)
				checkExtents(t, img, fx.data)
				sr, err := NewStreamOptimizedReader(bytes.NewReader(buf.Bytes()))
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(sr)
				if err != nil {
					t.Fatal(err)
				}
				mustEqual(t, "stream read", got, fx.data)
			}
		})
	}
}

func TestQemuReadsOurVHD(t *testing.T) {
	qemuImg(t)
	dir := t.TempDir()
	for _, fx := range fixtures() {
		for _, mode := range []string{"fixed", "dynamic", "fixed-stream", "dynamic-stream"} {
			typ, _, stream := strings.Cut(mode, "-")
			dynamic := typ == "dynamic"
			t.Run(fx.name+"-"+mode, func(t *testing.T) {
				raw := filepath.Join(dir, fx.name+".raw")
				writeFile(t, raw, fx.data)
				out := filepath.Join(dir, fx.name+"-"+mode+".vhd")
				f, err := os.Create(out)
				if err != nil {
					t.Fatal(err)
				}
				src := bytes.NewReader(fx.data)
				var n int64
				switch {
				case !stream:
					n, err = WriteVHD(f, NewRaw(src, int64(len(fx.data))), dynamic)
				case dynamic:
					n, err = WriteVHDDynamicFrom(f, src, int64(len(fx.data)))
				default:
					n, err = WriteVHDFixedFrom(f, src, int64(len(fx.data)))
				}
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				if n != int64(len(b)) {
					t.Fatalf("returned %d, wrote %d", n, len(b))
				}
				buf := bytes.NewBuffer(b)
				info := runQemu(t, "info", "-f", "vpc", "--output=json", out)
				if !strings.Contains(info, `"virtual-size": `+itoa(len(fx.data))+",") {
					t.Fatalf("qemu-img sees another virtual size:\n%s", info)
				}
				// qemu-img check has no VHD support ("does not support checks");
				// the footer and header checksums are verified by openVHD below.
				runQemu(t, "compare", "-f", "vpc", "-F", "raw", out, raw)
				img, err := Open(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
				if err != nil {
					t.Fatal(err)
				}
				if got := img.Info(); got.Format != VHD || got.Subformat != typ || got.VirtualSize != int64(len(fx.data)) {
					t.Fatalf("info %+v", got)
				}
				mustEqual(t, "read", readAll(t, img), fx.data)
				checkExtents(t, img, fx.data)
				if dynamic && strings.HasPrefix(fx.name, "zero-") && img.Info().AllocatedBytes != 0 {
					t.Fatalf("all-zero dynamic vhd allocates %d bytes", img.Info().AllocatedBytes)
				}
			})
		}
	}
}

func TestReadQemuImages(t *testing.T) {
	qemuImg(t)
	dir := t.TempDir()
	cases := []struct {
		name, format, sub string
		args              []string
		sparse            bool // allocation is tracked, so a sparse source stays small
		grain             bool // allocation unit is a 64 KiB grain
	}{
		{"vmdk-stream", "vmdk", "streamOptimized", []string{"-O", "vmdk", "-o", "subformat=streamOptimized"}, true, true},
		{"vmdk-sparse", "vmdk", "monolithicSparse", []string{"-O", "vmdk", "-o", "subformat=monolithicSparse"}, true, true},
		{"vmdk-flat", "vmdk", "monolithicFlat", []string{"-O", "vmdk", "-o", "subformat=monolithicFlat"}, false, false},
		{"vmdk-2gb-flat", "vmdk", "twoGbMaxExtentFlat", []string{"-O", "vmdk", "-o", "subformat=twoGbMaxExtentFlat"}, false, false},
		{"vmdk-2gb-sparse", "vmdk", "twoGbMaxExtentSparse", []string{"-O", "vmdk", "-o", "subformat=twoGbMaxExtentSparse"}, true, true},
		{"vhd-fixed", "vhd", "fixed", []string{"-O", "vpc", "-o", "subformat=fixed,force_size=on"}, false, false},
		{"vhd-dynamic", "vhd", "dynamic", []string{"-O", "vpc", "-o", "subformat=dynamic,force_size=on"}, true, false},
		{"vhdx-fixed", "vhdx", "fixed", []string{"-O", "vhdx", "-o", "subformat=fixed"}, false, false},
		{"vhdx-dynamic", "vhdx", "dynamic", []string{"-O", "vhdx", "-o", "subformat=dynamic"}, true, false},
	}
	for _, fx := range fixtures() {
		raw := filepath.Join(dir, fx.name+".raw")
		writeFile(t, raw, fx.data)
		for _, c := range cases {
			t.Run(fx.name+"/"+c.name, func(t *testing.T) {
				out := filepath.Join(dir, fx.name+"-"+c.name+"."+c.format)
				runQemu(t, append(append([]string{"convert", "-f", "raw"}, c.args...), raw, out)...)
				img, closer, err := OpenFile(out)
				if err != nil {
					t.Fatal(err)
				}
				defer closer.Close()
				info := img.Info()
				if string(info.Format) != c.format || info.Subformat != c.sub || info.VirtualSize != int64(len(fx.data)) {
					t.Fatalf("info %+v, want %s/%s of %d bytes", info, c.format, c.sub, len(fx.data))
				}
				mustEqual(t, "read", readAll(t, img), fx.data)
				checkExtents(t, img, fx.data)
				if strings.HasPrefix(fx.name, "sparse-") && (c.grain || !c.sparse) && info.AllocatedBytes > 1<<20 {
					t.Fatalf("sparse fixture reports %d allocated bytes", info.AllocatedBytes)
				}
				if strings.HasPrefix(fx.name, "zero-") && c.sparse && info.AllocatedBytes != 0 {
					t.Fatalf("all-zero disk reports %d allocated bytes", info.AllocatedBytes)
				}
				if c.sub == "streamOptimized" {
					f, err := os.Open(out)
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					sr, err := NewStreamOptimizedReader(f)
					if err != nil {
						t.Fatal(err)
					}
					got, err := io.ReadAll(sr)
					if err != nil {
						t.Fatal(err)
					}
					mustEqual(t, "stream read", got, fx.data)
				}
			})
		}
	}
}

func TestDifferencingRefused(t *testing.T) {
	qemuImg(t)
	dir := t.TempDir()
	// VMDK: qemu makes a real delta disk.
	base := filepath.Join(dir, "base.vmdk")
	diff := filepath.Join(dir, "diff.vmdk")
	runQemu(t, "create", "-f", "vmdk", base, "4M")
	runQemu(t, "create", "-f", "vmdk", "-b", base, "-F", "vmdk", diff)
	if _, _, err := OpenFile(diff); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "parent") {
		t.Fatalf("vmdk delta disk: err = %v, want ErrFormat naming the parent", err)
	}
	// VHDX: qemu cannot make one, so set HasParent in a dynamic disk's file
	// parameters (the metadata region carries no checksum).
	vx := filepath.Join(dir, "d.vhdx")
	runQemu(t, "create", "-f", "vhdx", vx, "4M")
	b, err := os.ReadFile(vx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("unmodified vhdx: %v", err)
	}
	setVHDXFileParamFlags(t, b, vhdxFlagHasParent)
	if _, err := Open(bytes.NewReader(b), int64(len(b))); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "parent") {
		t.Fatalf("vhdx differencing disk: err = %v, want ErrFormat naming the parent", err)
	}
	// VHD: disk type 4 with a correct checksum.
	var vb bytes.Buffer
	if _, err := WriteVHD(&vb, NewRaw(bytes.NewReader(make([]byte, 1<<20)), 1<<20), true); err != nil {
		t.Fatal(err)
	}
	vh := vb.Bytes()
	for _, at := range []int{0, len(vh) - vhdFooterSize} {
		f := vh[at : at+vhdFooterSize]
		binary.BigEndian.PutUint32(f[60:], vhdTypeDiff)
		binary.BigEndian.PutUint32(f[64:], vhdChecksum(f, 64))
	}
	if _, err := Open(bytes.NewReader(vh), int64(len(vh))); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "parent") {
		t.Fatalf("vhd differencing disk: err = %v, want ErrFormat naming the parent", err)
	}
}

// setVHDXFileParamFlags ORs flags into the file parameters item of the VHDX
// image b, found through the first region table.
func setVHDXFileParamFlags(t testing.TB, b []byte, flags uint32) {
	t.Helper()
	le := binary.LittleEndian
	rt := b[vhdxRegion1:]
	for i := range int(le.Uint32(rt[8:])) {
		e := rt[16+i*32:]
		if [16]byte(e[:16]) != vhdxGUIDMetadata {
			continue
		}
		m := b[le.Uint64(e[16:]):]
		for j := range int(le.Uint16(m[10:])) {
			me := m[32+j*32:]
			if [16]byte(me[:16]) == vhdxGUIDFileParams {
				item := m[le.Uint32(me[16:]):]
				le.PutUint32(item[4:], le.Uint32(item[4:])|flags)
				return
			}
		}
	}
	t.Fatal("no file parameters item in the vhdx")
}
