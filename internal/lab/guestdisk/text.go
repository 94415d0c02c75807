package guestdisk

import "math/rand/v2"

// WordText is n bytes of words drawn at random from a vocabulary of 500
// made-up ones (fixed by seed): text that deflate takes to about 37 % of
// its size and Huffman coding to 58 %, where deflating costs about five
// times the CPU of Huffman coding (klauspost/compress on a 2-vCPU EPYC:
// 101 against 527 MB/s a core). Data whose compression the CPU feels, for
// a file of a guest (Options.Files) or a disk of its own.
func WordText(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	words := make([][]byte, 500)
	for i := range words {
		w := make([]byte, 2+r.IntN(7))
		for j := range w {
			w[j] = byte('a' + r.IntN(26))
		}
		words[i] = append(w, ' ')
	}
	b := make([]byte, 0, n+16)
	for len(b) < n {
		b = append(b, words[r.IntN(len(words))]...)
	}
	return b[:n]
}
