package chs

import "testing"

func TestVHD(t *testing.T) {
	for _, c := range []struct {
		size    int64
		c       uint16
		h, s    uint8
		minSize int64
	}{
		{1 << 20, 30, 4, 17, 0},       // 2048 sectors: 17 sectors/track, at least 4 heads
		{127 << 20, 1019, 15, 17, 0},  // 15 heads still fit 17 sectors/track
		{136 << 20, 561, 16, 31, 0},   // 16384 cylinder-heads: 31 sectors/track
		{248 << 20, 503, 16, 63, 0},   // and then 63
		{40 << 30, 20560, 16, 255, 0}, // past 65535*16*63 sectors: 255 sectors/track
		{1 << 40, 65535, 16, 255, 0},  // capped
		{3<<20 + 4096, 90, 4, 17, 0},  // 6152 sectors
		{100 << 20, 1003, 12, 17, 0},  // 204800 sectors
	} {
		cy, h, s := VHD(c.size)
		if cy != c.c || h != c.h || s != c.s {
			t.Errorf("geometry(%d) = %d/%d/%d, want %d/%d/%d", c.size, cy, h, s, c.c, c.h, c.s)
		}
		if int64(cy)*int64(h)*int64(s)*512 > c.size {
			t.Errorf("geometry(%d) exceeds the size", c.size)
		}
	}
}
