package disk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehost/rehost/internal/lab/hvdisk"
)

// patch is a guest write: sector-aligned data at an offset.
type patch struct {
	off  int64
	data []byte
}

// chainPatches are the writes of two checkpoint generations: partial
// sectors of a block, a whole block, writes straddling block edges, a lone
// sector near the end, and a second generation overwriting part of the
// first.
func chainPatches(size int64) [][]patch {
	p := func(seed uint64, off, n int64) patch {
		r := rand.New(rand.NewPCG(seed, 3))
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32() | 1)
		}
		return patch{off, b}
	}
	return [][]patch{
		{p(21, 4096, 8192), p(22, 2<<20, 2<<20), p(23, 3<<20+512*7, 512*9), p(24, 6<<20-4096, 8192), p(25, size-512, 512)},
		{p(31, 4096+512, 1024), p(32, 2<<20+4096, 512), p(33, 5<<20, 64<<10)},
	}
}

func apply(b []byte, ps []patch) {
	for _, p := range ps {
		copy(b[p.off:], p.data)
	}
}

// TestChainAgainstQemu builds a checkpoint chain as Hyper-V would (base
// made by qemu-img, then two generations of differencing disks) and the
// same writes as qcow2 overlays on the same base through qemu-io; the chain
// read by OpenChain, written back out, must be the disk qemu sees.
func TestChainAgainstQemu(t *testing.T) {
	qemuImg(t)
	const size = 8 << 20
	dir := t.TempDir()
	base := sparseData(size, 20, 0, 1<<20+100, 4<<20, size-3000)
	raw := filepath.Join(dir, "base.raw")
	writeFile(t, raw, base)
	patches := chainPatches(size)

	for _, c := range []struct {
		name, qemuFormat string
		args             []string
	}{
		{"vhdx", "vhdx", []string{"-O", "vhdx", "-o", "subformat=dynamic"}},
		{"vhd", "vpc", []string{"-O", "vpc", "-o", "subformat=fixed,force_size=on"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			basePath := filepath.Join(dir, "base."+c.name)
			runQemu(t, append(append([]string{"convert", "-f", "raw"}, c.args...), raw, basePath)...)

			// The differencing chain, each link made against its parent's
			// identity as read from the parent file.
			files := []string{basePath}
			for gen, ps := range patches {
				parent := files[len(files)-1]
				child := filepath.Join(dir, fmt.Sprintf("gen%d.a%s", gen+1, c.name))
				writeChild(t, c.name, parent, child, size, ps)
				files = append(files, child)
			}
			// The same writes as qcow2 overlays, applied by qemu-io.
			over := basePath
			overFormat := c.qemuFormat
			for gen, ps := range patches {
				next := filepath.Join(dir, fmt.Sprintf("%s-gen%d.qcow2", c.name, gen+1))
				runQemu(t, "create", "-f", "qcow2", "-b", over, "-F", overFormat, next)
				for i, p := range ps {
					src := filepath.Join(dir, fmt.Sprintf("%s-p%d-%d", c.name, gen, i))
					writeFile(t, src, p.data)
					out, err := execQemuIO(next, fmt.Sprintf("write -s %s %d %d", src, p.off, len(p.data)))
					if err != nil {
						t.Fatalf("qemu-io: %v\n%s", err, out)
					}
				}
				over, overFormat = next, "qcow2"
			}

			img, closer := openChainFiles(t, files)
			defer closer()
			want := append([]byte(nil), base...)
			for _, ps := range patches {
				apply(want, ps)
			}
			info := img.Info()
			if info.Subformat != "differencing" || info.VirtualSize != size {
				t.Fatalf("info %+v", info)
			}
			mustEqual(t, "chain read", readAll(t, img), want)
			checkExtents(t, img, want)

			// qemu-img compares our output of the chain with its overlay.
			out := filepath.Join(dir, c.name+"-merged.vmdk")
			f, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := WriteStreamOptimized(f, img); err != nil {
				t.Fatal(err)
			}
			f.Close()
			runQemu(t, "compare", "-f", "vmdk", "-F", "qcow2", out, over)

			// Each generation alone reads as the disk at that checkpoint.
			mid, closer2 := openChainFiles(t, files[:2])
			defer closer2()
			first := append([]byte(nil), base...)
			apply(first, patches[0])
			mustEqual(t, "first generation", readAll(t, mid), first)
		})
	}
}

func execQemuIO(file, cmd string) (string, error) {
	out, err := exec.Command("qemu-io", "-c", cmd, file).CombinedOutput()
	return string(out), err
}

// writeChild makes a differencing disk of parent holding patches.
func writeChild(t testing.TB, format, parent, child string, size int64, ps []patch) {
	t.Helper()
	l := linkOf(t, parent)
	id, err := hvdisk.ParseGUID(l.ID)
	if err != nil {
		t.Fatal(err)
	}
	p := &hvdisk.Parent{ID: id, RelativePath: filepath.Base(parent), AbsolutePath: `C:\VMs\` + filepath.Base(parent)}
	var w interface {
		WriteAt([]byte, int64) (int, error)
		Save(string) error
	}
	if format == "vhdx" {
		w, err = hvdisk.NewVHDX(size, 2<<20, 512, p)
	} else {
		w, err = hvdisk.NewVHD(size, 0, p)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range ps {
		if _, err := w.WriteAt(pt.data, pt.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Save(child); err != nil {
		t.Fatal(err)
	}
}

func linkOf(t testing.TB, path string) Link {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ReadLink(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func openChainFiles(t testing.TB, paths []string) (Image, func()) {
	t.Helper()
	var files []ChainFile
	var closers []io.Closer
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		files = append(files, ChainFile{Name: p, R: f, Size: st.Size()})
		closers = append(closers, f)
	}
	img, err := OpenChain(files)
	if err != nil {
		t.Fatal(err)
	}
	return img, func() { multiCloser(closers).Close() }
}

// TestChainLinks: each file says where its parent is; a broken link (the
// parent changed since the child was made, another format, a base disk
// listed above another) is refused with a reason.
func TestChainLinks(t *testing.T) {
	const size = 4 << 20
	dir := t.TempDir()
	mk := func(name string, parent *hvdisk.Parent, vhd bool) string {
		path := filepath.Join(dir, name)
		var err error
		if vhd {
			var v *hvdisk.VHD
			if v, err = hvdisk.NewVHD(size, 0, parent); err == nil {
				v.WriteAt(bytes.Repeat([]byte{7}, 512), 1<<20)
				err = v.Save(path)
			}
		} else {
			var v *hvdisk.VHDX
			if v, err = hvdisk.NewVHDX(size, 1<<20, 512, parent); err == nil {
				v.WriteAt(bytes.Repeat([]byte{9}, 4096), 0)
				err = v.Save(path)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
	base := mk("base.vhdx", nil, false)
	bl := linkOf(t, base)
	if bl.Format != VHDX || bl.ID == "" || bl.ParentID != "" {
		t.Fatalf("base link %+v", bl)
	}
	id, _ := hvdisk.ParseGUID(bl.ID)
	child := mk("child.avhdx", &hvdisk.Parent{ID: id, RelativePath: "base.vhdx", AbsolutePath: `D:\VMs\base.vhdx`}, false)
	cl := linkOf(t, child)
	if cl.ParentID != bl.ID || strings.Join(cl.ParentPaths, "|") != `base.vhdx|D:\VMs\base.vhdx` {
		t.Fatalf("child link %+v, base id %s", cl, bl.ID)
	}
	img, closer := openChainFiles(t, []string{base, child})
	got := readAll(t, img)
	closer()
	if got[0] != 9 || got[1<<20] != 0 {
		t.Fatal("chain content wrong")
	}

	refused := func(what string, paths []string, want string) {
		t.Helper()
		var files []ChainFile
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, ChainFile{Name: filepath.Base(p), R: bytes.NewReader(b), Size: int64(len(b))})
		}
		_, err := OpenChain(files)
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want ErrFormat saying %q", what, err, want)
		}
	}
	stale := mk("stale.avhdx", &hvdisk.Parent{ID: hvdisk.NewGUID(), RelativePath: "base.vhdx"}, false)
	refused("parent changed", []string{base, stale}, "the parent changed since")
	other := mk("other.vhdx", nil, false)
	refused("base above base", []string{base, other}, "is not a differencing disk")
	vhdChild := mk("child.avhd", &hvdisk.Parent{ID: id, RelativePath: "base.vhdx"}, true)
	refused("format mismatch", []string{base, vhdChild}, "differencing disk but its parent")
	if _, err := Open(bytes.NewReader(mustRead(t, child)), int64(len(mustRead(t, child)))); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "parent") {
		t.Errorf("a differencing disk opened alone: %v", err)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seedVHDDiff is a small VHD chain for fuzzing: a fixed 64 KiB base and a
// differencing child with 4 KiB blocks, partly written.
func seedVHDDiff(tb testing.TB) (base, child []byte) {
	data := sparseData(64<<10, 41, 0, 30000)
	var buf bytes.Buffer
	if _, err := WriteVHD(&buf, NewRaw(bytes.NewReader(data), int64(len(data))), false); err != nil {
		tb.Fatal(err)
	}
	base = buf.Bytes()
	l, err := ReadLink(bytes.NewReader(base), int64(len(base)))
	if err != nil {
		tb.Fatal(err)
	}
	id, _ := hvdisk.ParseGUID(l.ID)
	c, err := hvdisk.NewVHD(64<<10, 4096, &hvdisk.Parent{ID: id, RelativePath: "base.vhd"})
	if err != nil {
		tb.Fatal(err)
	}
	c.WriteAt(bytes.Repeat([]byte{0xab}, 1024), 512)
	c.WriteAt(bytes.Repeat([]byte{0xcd}, 8192), 40960)
	return base, c.Encode()
}

// FuzzChain mutates a differencing VHD over a fixed base: OpenChain must
// refuse it or give a consistent image.
func FuzzChain(f *testing.F) {
	base, child := seedVHDDiff(f)
	f.Add(child)
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := OpenChain([]ChainFile{{"base", bytes.NewReader(base), int64(len(base))}, {"child", bytes.NewReader(b), int64(len(b))}})
		if err != nil {
			return
		}
		exercise(t, img)
	})
}

// FuzzVHDXParentLocator mutates the parent locator of a differencing VHDX.
func FuzzVHDXParentLocator(f *testing.F) {
	v, err := hvdisk.NewVHDX(1<<20, 1<<20, 512, &hvdisk.Parent{ID: hvdisk.NewGUID(), RelativePath: `..\base.vhdx`, AbsolutePath: `C:\VMs\base.vhdx`})
	if err != nil {
		f.Fatal(err)
	}
	b := v.Encode()
	img, err := parseVHDX(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(img.locator)
	f.Fuzz(func(t *testing.T, loc []byte) {
		l, err := (&vhdxImage{diff: true, locator: loc}).link()
		if err == nil && l.ParentID == "" {
			t.Fatalf("a locator without parent linkage accepted: %+v", l)
		}
	})
}
