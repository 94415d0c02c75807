package disk

import "encoding/binary"

// adlerMod is Adler-32's modulus; adlerBlock is how many bytes are summed
// in 64-bit accumulators before they are reduced (far from overflowing).
const (
	adlerMod   = 65521
	adlerBlock = 1 << 20
)

// adler32Update continues the Adler-32 checksum adler (1 for a new one) over p.
// Every grain of a streamOptimized VMDK carries one, so on incompressible
// data it is most of the encoder's work: it sums 32 bytes per step with
// AVX2 where the CPU has it (adler_amd64.s), else 8 bytes per step with a
// few multiplies of packed 16-bit lanes, not one byte at a time.
func adler32Update(adler uint32, p []byte) uint32 {
	s1, s2 := adler&0xffff, adler>>16
	s1, s2, p = adlerFast(s1, s2, p)
	const (
		lanes = 0x00ff00ff00ff00ff
		ones  = 0x0001000100010001
		// Weights of the even bytes (8, 6, 4, 2) and the odd ones (7, 5, 3,
		// 1) of an 8-byte word, reversed so the top lane of the product is
		// their dot product with the word's lanes.
		wEven = 2 | 4<<16 | 6<<32 | 8<<48
		wOdd  = 1 | 3<<16 | 5<<32 | 7<<48
	)
	for len(p) >= 16 {
		n := min(len(p), adlerBlock) &^ 15
		blk := p[:n]
		p = p[n:]
		// Over a block of 8-byte words, with s1 and s2 as they were at its
		// start: s1 gains every word's sum, and s2 gains per word 8·s1 (as
		// it was before the word), plus the word's bytes weighted 8 down to
		// 1. prefix is Σ over words of the sums of the words before.
		var sum, wsum, prefix uint64
		for len(blk) >= 16 {
			a := binary.LittleEndian.Uint64(blk)
			b := binary.LittleEndian.Uint64(blk[8:])
			ae, ao := a&lanes, (a>>8)&lanes
			be, bo := b&lanes, (b>>8)&lanes
			sa := ((ae + ao) * ones) >> 48
			sb := ((be + bo) * ones) >> 48
			wa := (ae*wEven)>>48 + (ao*wOdd)>>48
			wb := (be*wEven)>>48 + (bo*wOdd)>>48
			prefix += 2*sum + sa
			wsum += wa + wb
			sum += sa + sb
			blk = blk[16:]
		}
		words := uint64(n / 8)
		s2 = uint32((uint64(s2) + words*8*uint64(s1) + 8*prefix + wsum) % adlerMod)
		s1 = uint32((uint64(s1) + sum) % adlerMod)
	}
	for _, c := range p {
		s1 += uint32(c)
		s2 += s1
	}
	s1 %= adlerMod
	s2 %= adlerMod
	return s2<<16 | s1
}
