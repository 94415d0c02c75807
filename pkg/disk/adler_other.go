//go:build !amd64

package disk

// adlerAVX2 is never set here: the portable loop does the work.
var adlerAVX2 = false

func adlerFast(s1, s2 uint32, p []byte) (uint32, uint32, []byte) { return s1, s2, p }
