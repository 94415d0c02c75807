package disk

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func testVHDXOptions(blockSize int64) VHDXOptions {
	return VHDXOptions{
		FileWrite: msGUID("11111111-2222-3333-4444-555555555555"),
		DataWrite: msGUID("66666666-7777-8888-9999-AAAAAAAAAAAA"),
		Page83:    msGUID("BBBBBBBB-CCCC-DDDD-EEEE-FFFFFFFFFFFF"),
		BlockSize: blockSize,
	}
}

// qemu-img must read our VHDX as the raw disk it came from, find nothing to
// repair, and our reader must agree; a second write gives the same bytes.
func TestQemuReadsOurVHDX(t *testing.T) {
	qemuImg(t)
	dir := t.TempDir()
	for _, fx := range fixtures() {
		for _, bs := range []int64{1 << 20, 2 << 20, 32 << 20} {
			t.Run(fx.name+"-"+itoa(int(bs>>20))+"M", func(t *testing.T) {
				raw := filepath.Join(dir, fx.name+".raw")
				writeFile(t, raw, fx.data)
				var buf bytes.Buffer
				n, err := WriteVHDX(&buf, NewRaw(bytes.NewReader(fx.data), int64(len(fx.data))), testVHDXOptions(bs))
				if err != nil {
					t.Fatal(err)
				}
				if n != int64(buf.Len()) {
					t.Fatalf("returned %d, wrote %d", n, buf.Len())
				}
				out := filepath.Join(dir, fx.name+".vhdx")
				writeFile(t, out, buf.Bytes())
				info := runQemu(t, "info", "-f", "vhdx", "--output=json", out)
				if !strings.Contains(info, `"virtual-size": `+itoa(len(fx.data))+",") {
					t.Fatalf("qemu-img sees another virtual size:\n%s", info)
				}
				runQemu(t, "check", "-f", "vhdx", out)
				runQemu(t, "compare", "-f", "vhdx", "-F", "raw", out, raw)
				img, err := Open(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
				if err != nil {
					t.Fatal(err)
				}
				if got := img.Info(); got.Format != VHDX || got.Subformat != "dynamic" || got.VirtualSize != int64(len(fx.data)) {
					t.Fatalf("info %+v", got)
				}
				mustEqual(t, "read", readAll(t, img), fx.data)
				checkExtents(t, img, fx.data)
				if strings.HasPrefix(fx.name, "zero-") && img.Info().AllocatedBytes != 0 {
					t.Fatalf("all-zero vhdx allocates %d bytes", img.Info().AllocatedBytes)
				}
				var again bytes.Buffer
				if _, err := WriteVHDX(&again, NewRaw(bytes.NewReader(fx.data), int64(len(fx.data))), testVHDXOptions(bs)); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(again.Bytes(), buf.Bytes()) {
					t.Fatal("a second write with the same options gave other bytes")
				}
			})
		}
	}
}

// A disk large enough for a sector-bitmap entry in the BAT (more than one
// chunk of blocks) keeps the payload entries where readers look for them.
func TestVHDXPastOneChunk(t *testing.T) {
	qemuImg(t)
	const bs = 1 << 20
	size := int64(8192+5) * bs // chunk ratio 4096 at 1 MiB blocks: three chunks
	marks := []int64{0, 4095 * bs, 4096 * bs, 8192*bs + 3, size - 512}
	src := &markDisk{size: size, marks: marks}
	dir := t.TempDir()
	out := filepath.Join(dir, "big.vhdx")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteVHDX(f, src, testVHDXOptions(bs)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	runQemu(t, "check", "-f", "vhdx", out)
	img, c, err := OpenFile(out)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range marks {
		b := make([]byte, 1)
		if _, err := img.ReadAt(b, m); err != nil || b[0] != 0xa5 {
			t.Errorf("byte at %d: %x, %v", m, b[0], err)
		}
	}
	// qemu-io reads each mark back through qemu's own VHDX driver.
	for _, m := range marks {
		out, err := exec.Command("qemu-io", "-f", "vhdx", "-r", "-c", fmt.Sprintf("read -P 0xa5 %d 1", m), out).CombinedOutput()
		if err != nil || strings.Contains(string(out), "Pattern verification failed") {
			t.Errorf("qemu-io at %d: %v\n%s", m, err, out)
		}
	}
}

// markDisk is a large disk of zeros with 0xa5 at a few offsets.
type markDisk struct {
	size  int64
	marks []int64
}

func (m *markDisk) Size() int64 { return m.size }
func (m *markDisk) Info() Info  { return infoOf(m, Raw, "") }
func (m *markDisk) Extents() []Extent {
	var e []Extent
	for _, o := range m.marks {
		e = appendExtent(e, Extent{o, 1})
	}
	return e
}
func (m *markDisk) ReadAt(p []byte, off int64) (int, error) {
	n, err := readClipped(readerAtFunc(func(p []byte, off int64) (int, error) { clear(p); return len(p), nil }), p, off, m.size)
	for _, o := range m.marks {
		if o >= off && o < off+int64(n) {
			p[o-off] = 0xa5
		}
	}
	return n, err
}
