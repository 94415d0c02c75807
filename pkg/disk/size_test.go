package disk

import (
	"bytes"
	"crypto/rand"
	"testing"
)

// The bound holds for the worst case each writer can produce: incompressible
// data in every grain or block, at sizes that are not sector-aligned.
func TestMaxImageSizeBoundsTheWriters(t *testing.T) {
	for _, size := range []int64{0, 511, 1 << 20, 33<<20 + 7, 70 << 20} {
		data := make([]byte, size)
		rand.Read(data)
		var b bytes.Buffer
		if _, err := WriteStreamOptimizedFrom(&b, bytes.NewReader(data), size); err != nil {
			t.Fatal(err)
		}
		if max := MaxImageSize(VMDK, size); int64(b.Len()) > max {
			t.Errorf("vmdk of %d random bytes is %d bytes, bound %d", size, b.Len(), max)
		}
		for _, dynamic := range []bool{false, true} {
			b.Reset()
			if _, err := WriteVHD(&b, NewRaw(bytes.NewReader(data), size), dynamic); err != nil {
				t.Fatal(err)
			}
			if max := MaxImageSize(VHD, size); int64(b.Len()) > max {
				t.Errorf("vhd (dynamic %v) of %d bytes is %d bytes, bound %d", dynamic, size, b.Len(), max)
			}
		}
		if MaxImageSize(Raw, size) != size {
			t.Errorf("raw bound of %d is %d", size, MaxImageSize(Raw, size))
		}
	}
	if MaxImageSize(VHDX, 1<<30) < 1<<30 || MaxImageSize(VMDK, -1) < 0 {
		t.Error("bounds below the capacity")
	}
}
