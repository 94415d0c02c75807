package disk

import (
	"hash/adler32"
	"math/rand/v2"
	"testing"
)

func TestAdler32(t *testing.T) {
	// Both the vector and the portable loop, where the CPU has both.
	defer func(v bool) { adlerAVX2 = v }(adlerAVX2)
	for _, vector := range []bool{adlerAVX2, false} {
		adlerAVX2 = vector
		testAdler32(t)
	}
}

func testAdler32(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20+100)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	ff := make([]byte, 70000)
	for i := range ff {
		ff[i] = 0xff
	}
	for _, n := range []int{0, 1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 5551, 5552, 5553, 5536, 65536, 65536 + 12, 200000, 1<<20 + 40, 1<<20 + 96} {
		for _, b := range [][]byte{buf[:n], ff[:min(n, len(ff))], make([]byte, n)} {
			if got, want := adler32Update(1, b), adler32.Checksum(b); got != want {
				t.Fatalf("adler32 of %d bytes (first %x) = %08x, want %08x", len(b), b[:min(1, len(b))], got, want)
			}
		}
	}
	// Continued over pieces, as a grain written in parts is.
	a := adler32Update(1, buf[:1000])
	a = adler32Update(a, buf[1000:70001])
	if want := adler32.Checksum(buf[:70001]); a != want {
		t.Fatalf("continued adler32 = %08x, want %08x", a, want)
	}
}

func FuzzAdler32(f *testing.F) {
	f.Add([]byte("hello, world"), uint32(1))
	f.Fuzz(func(t *testing.T, b []byte, start uint32) {
		start = start%adlerMod | (start>>16%adlerMod)<<16
		// Reference: the plain definition from the given start.
		s1, s2 := start&0xffff, start>>16
		for _, c := range b {
			s1 = (s1 + uint32(c)) % adlerMod
			s2 = (s2 + s1) % adlerMod
		}
		if got, want := adler32Update(start, b), s2<<16|s1; got != want {
			t.Fatalf("adler32(%08x, %d bytes) = %08x, want %08x", start, len(b), got, want)
		}
	})
}

func BenchmarkAdler32(b *testing.B) {
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	b.Run("rehost", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for range b.N {
			adler32Update(1, buf)
		}
	})
	b.Run("stdlib", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for range b.N {
			adler32.Checksum(buf)
		}
	})
}
