package diskwrite

import (
	"bytes"
	"testing"
)

// memDisk records writes.
type memDisk struct{ b []byte }

func (m *memDisk) disk() Disk {
	return Disk{Capacity: int64(len(m.b)), Write: func(off int64, p []byte) error { copy(m.b[off:], p); return nil }}
}

func TestApply(t *testing.T) {
	m := &memDisk{b: make([]byte, 1<<20)}
	res, err := Apply(Request{VM: "v", Disk: 1, Blocks: 256}, m.disk())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Offsets) != 256 || res.Bytes != 256*4096 || res.BlockSize != 4096 {
		t.Fatalf("%+v", res)
	}
	seen := map[int64]bool{}
	for i, o := range res.Offsets {
		if o%4096 != 0 || seen[o] || (i > 0 && o < res.Offsets[i-1]) {
			t.Fatalf("offset %d: unaligned, repeated or unsorted", o)
		}
		seen[o] = true
		if bytes.Equal(m.b[o:o+4096], make([]byte, 4096)) {
			t.Fatalf("block at %d was not written", o)
		}
	}
	// Every block of the disk, at random: all distinct.
	if res, err := Apply(Request{Blocks: 256, BlockSize: 4096}, m.disk()); err != nil || len(res.Offsets) != 256 {
		t.Fatalf("all blocks: %+v, %v", res, err)
	}
	res, err = Apply(Request{Offsets: []int64{1 << 19, 0, 0}, BlockSize: 1 << 19}, m.disk())
	if err != nil || len(res.Offsets) != 2 || res.Offsets[0] != 0 || res.Bytes != 1<<20 {
		t.Fatalf("given offsets: %+v, %v", res, err)
	}
	for name, r := range map[string]Request{
		"unaligned offset":   {Offsets: []int64{100}},
		"past the end":       {Offsets: []int64{1 << 20}},
		"odd block size":     {Blocks: 1, BlockSize: 1000},
		"huge block size":    {Blocks: 1, BlockSize: 8 << 20},
		"no blocks":          {},
		"more than the disk": {Blocks: 257},
	} {
		if _, err := Apply(r, m.disk()); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
