package disk

import "golang.org/x/sys/cpu"

var adlerAVX2 = cpu.X86.HasAVX2

// adlerWordsAVX2 sums the 32-byte words of p (see adler_amd64.s).
//
//go:noescape
func adlerWordsAVX2(p []byte) (sum, prefix, wsum uint64)

// adlerFast continues s1, s2 over the 32-byte words at the start of p with
// AVX2 where the CPU has it, and returns what it did not consume.
func adlerFast(s1, s2 uint32, p []byte) (uint32, uint32, []byte) {
	if !adlerAVX2 {
		return s1, s2, p
	}
	for len(p) >= 32 {
		n := min(len(p), adlerBlock) &^ 31
		sum, prefix, wsum := adlerWordsAVX2(p[:n])
		words := uint64(n / 32)
		s2 = uint32((uint64(s2) + words*32*uint64(s1) + 32*prefix + wsum) % adlerMod)
		s1 = uint32((uint64(s1) + sum) % adlerMod)
		p = p[n:]
	}
	return s1, s2, p
}
