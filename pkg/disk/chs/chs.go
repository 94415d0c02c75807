// Package chs derives the cylinder/head/sector geometry a VHD footer
// records for a disk size. It stands apart from package disk so the lab's
// VHD writer (internal/lab/hvdisk), which package disk's tests import, uses
// the same derivation without an import cycle.
package chs

// VHD is the geometry the VHD specification derives from a size in bytes
// (appendix "CHS calculation"); sizes past 65535×16×255 sectors are capped.
func VHD(size int64) (cyl uint16, heads, spt uint8) {
	ts := min(size/512, 65535*16*255)
	var s, h, cth int64
	if ts >= 65535*16*63 {
		s, h = 255, 16
		cth = ts / s
	} else {
		s = 17
		cth = ts / s
		h = max((cth+1023)/1024, 4)
		if cth >= h*1024 || h > 16 {
			s, h = 31, 16
			cth = ts / s
		}
		if cth >= h*1024 {
			s, h = 63, 16
			cth = ts / s
		}
	}
	return uint16(cth / h), uint8(h), uint8(s)
}
