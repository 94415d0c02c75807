package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf16"
)

// Differencing disks (a Hyper-V checkpoint's AVHDX and AVHD files) hold
// only the sectors written since their parent was frozen; the rest reads
// from the parent. OpenChain stacks such files over their base disk so the
// chain reads as one virtual disk, the point-in-time content of its top
// file. Each link is verified (the child's record of its parent's identity
// against the parent's), so a parent modified after the child was made is
// refused rather than read as a silently corrupt disk.

// ChainFile is one file of a differencing chain.
type ChainFile struct {
	// Name identifies the file in errors (its path).
	Name string
	R    io.ReaderAt
	Size int64
}

// Link is what a disk file says of its place in a differencing chain.
type Link struct {
	Format Format `json:"format"`
	// ID is the identity a child records of this file: a VHDX's data
	// write GUID, a VHD's unique id, as lower-case GUID text.
	ID string `json:"id"`
	// ParentID is the identity of the parent the file was made against;
	// empty for a disk that has no parent.
	ParentID string `json:"parentId,omitempty"`
	// ParentPaths are where the file says its parent is, in the order the
	// formats say to try them (relative path first).
	ParentPaths []string `json:"parentPaths,omitempty"`
}

// ReadLink reads the identity and parent link of a VHD or VHDX file (any
// other format has neither and yields a Link with only Format set).
func ReadLink(ra io.ReaderAt, size int64) (Link, error) {
	p, err := parseLinked(ra, size)
	if err != nil {
		return p.link, fmt.Errorf("read disk link: %w", err)
	}
	return p.link, nil
}

// linked is a chain file parsed once: its link and the parsed VHDX, or the
// parsed differencing VHD.
type linked struct {
	link Link
	vx   *vhdxImage
	vh   *vhdDynamic
}

func parseLinked(ra io.ReaderAt, size int64) (linked, error) {
	var head [8]byte
	if n, _ := ra.ReadAt(head[:], 0); n == len(head) && string(head[:]) == vhdxSignature {
		v, err := parseVHDX(ra, size)
		if err != nil {
			return linked{link: Link{Format: VHDX}}, err
		}
		l, err := v.link()
		return linked{link: l, vx: v}, err
	}
	if size >= vhdFooterSize {
		fb := make([]byte, vhdFooterSize)
		if _, err := readFull(ra, fb, size-vhdFooterSize, size); err == nil && string(fb[:8]) == vhdCookie {
			f, err := parseVHDFooter(fb)
			if err != nil {
				return linked{link: Link{Format: VHD}}, err
			}
			p := linked{link: Link{Format: VHD, ID: guidText([16]byte(fb[68:84]))}}
			if f.DiskType != vhdTypeDiff {
				return p, nil
			}
			d, err := parseVHDDiff(ra, size, f)
			if err != nil {
				return p, err
			}
			p.link.ParentID, p.link.ParentPaths = guidText(d.parentID), d.parentPaths
			p.vh, err = openVHDDynamic(ra, size, f)
			return p, err
		}
	}
	img, err := Open(ra, size)
	if err != nil {
		return linked{}, err
	}
	return linked{link: Link{Format: img.Info().Format}}, nil
}

// OpenChain opens a differencing chain: files[0] is the base disk (any
// format Open reads), each next file a VHD or VHDX differencing disk made
// from the one before it. The image reads as the last file's virtual disk;
// its Extents are the union of every file's allocated ranges, so a reader
// of the extents reads only what some file of the chain holds. A fixed
// base counts as wholly allocated: finding its zeros would read it all
// once more. Each file is parsed once.
//
// The chain is refused (ErrFormat) when a link does not hold: a file that
// is not a differencing disk above the base, a parent of another format or
// size, or a parent whose identity is not the one the child was made
// against (the parent changed since).
func OpenChain(files []ChainFile) (Image, error) {
	if len(files) == 0 {
		return nil, errors.New("open disk chain: no files")
	}
	prev, err := parseLinked(files[0].R, files[0].Size)
	if err != nil {
		return nil, fmt.Errorf("open disk chain: base %s: %w", files[0].Name, err)
	}
	var img Image
	switch {
	case prev.vx != nil && prev.vx.diff, prev.vh != nil:
		return nil, fmt.Errorf("open disk chain: base %s is a differencing disk; its parent is missing from the chain: %w", files[0].Name, ErrFormat)
	case prev.vx != nil:
		img = prev.vx
		if prev.vx.fixed {
			img = wholeImage{img}
		}
	default:
		if img, err = Open(files[0].R, files[0].Size); err != nil {
			return nil, fmt.Errorf("open disk chain: base %s: %w", files[0].Name, err)
		}
		if r, ok := img.(*rawImage); ok && r.format != "" {
			img = wholeImage{img}
		}
	}
	for i, f := range files[1:] {
		parent := files[i]
		p, err := parseLinked(f.R, f.Size)
		if err != nil {
			return nil, fmt.Errorf("open disk chain: %s: %w", f.Name, err)
		}
		l := p.link
		switch {
		case l.ParentID == "":
			return nil, fmt.Errorf("open disk chain: %s is not a differencing disk, yet it is listed above %s: %w", f.Name, parent.Name, ErrFormat)
		case l.Format != prev.link.Format:
			return nil, fmt.Errorf("open disk chain: %s is a %s differencing disk but its parent %s is a %s: %w", f.Name, l.Format, parent.Name, prev.link.Format, ErrFormat)
		case l.ParentID != prev.link.ID:
			return nil, fmt.Errorf("open disk chain: %s was made against parent %s but %s is %s: the parent changed since (a merge or an edit); take a new checkpoint: %w",
				f.Name, l.ParentID, parent.Name, prev.link.ID, ErrFormat)
		}
		d, err := openDiff(f, img, p)
		if err != nil {
			return nil, fmt.Errorf("open disk chain: %s: %w", f.Name, err)
		}
		img, prev = d, p
	}
	return img, nil
}

// wholeImage reports a fixed disk as wholly allocated.
type wholeImage struct{ Image }

func (w wholeImage) Extents() []Extent {
	if w.Size() == 0 {
		return nil
	}
	return []Extent{{0, w.Size()}}
}

func (w wholeImage) Info() Info {
	i := w.Image.Info()
	i.AllocatedBytes, i.ExtentCount = w.Size(), len(w.Extents())
	return i
}

// diffImage is a differencing disk over its parent.
type diffImage struct {
	parent Image
	name   string
	format Format
	size   int64
	bs     int64 // block size
	sector int64
	// entry returns the state of block b: own (wholly in this file, at
	// file offset at), partial (bitmap needed), or neither (parent, or
	// zero when zero is set).
	entry func(b int64) (state diffState, at int64)
	// bitmapAt locates block b's sector bitmap: its bytes at off, n long;
	// msb says bit 7 of byte 0 is the block's first sector (VHD) rather
	// than bit 0 (VHDX).
	bitmapAt func(b int64) (off int64, n int, msb bool)
	ra       io.ReaderAt
	fileSize int64

	ext []Extent

	mu      sync.Mutex
	bitmaps map[int64][]byte // a few recent blocks' sector bitmaps
}

type diffState int

const (
	diffParent diffState = iota
	diffZero
	diffOwn
	diffPartial
)

// maxCachedBitmaps bounds the sector bitmaps kept (each a few KiB).
const maxCachedBitmaps = 64

func openDiff(f ChainFile, parent Image, p linked) (*diffImage, error) {
	d := &diffImage{parent: parent, name: f.Name, ra: f.R, fileSize: f.Size, bitmaps: map[int64][]byte{}}
	switch {
	case p.vx != nil:
		v := p.vx
		d.format, d.size, d.bs, d.sector = VHDX, v.size, v.blockSize, v.sector
		d.entry = func(b int64) (diffState, int64) {
			e := v.bat[b]
			switch e & 7 {
			case vhdxBlockFullPresent:
				return diffOwn, int64(e>>20) << 20
			case vhdxBlockPartPresent:
				return diffPartial, int64(e>>20) << 20
			case vhdxBlockZero, vhdxBlockUnmapped:
				return diffZero, 0
			}
			return diffParent, 0
		}
		d.bitmapAt = func(b int64) (int64, int, bool) {
			sb := v.sbBAT[b/v.chunkRatio]
			first := (b % v.chunkRatio) * (v.blockSize / v.sector) / 8
			return int64(sb>>20)<<20 + first, int(v.blockSize / v.sector / 8), false
		}
		for b, e := range v.bat {
			if s := e & 7; s == vhdxBlockPartPresent && v.sbBAT[int64(b)/v.chunkRatio]&7 != vhdxSBPresent {
				return nil, fmt.Errorf("block %d is partially present but its sector bitmap is not: %w", b, ErrFormat)
			}
		}
	case p.vh != nil:
		v := p.vh
		d.format, d.size, d.bs, d.sector = VHD, v.size, v.blockSize, sectorSize
		d.entry = func(b int64) (diffState, int64) {
			if s := v.bat[b]; s != 0xffffffff {
				return diffPartial, int64(s)*sectorSize + v.bitmap
			}
			return diffParent, 0
		}
		d.bitmapAt = func(b int64) (int64, int, bool) {
			return int64(v.bat[b]) * sectorSize, int((v.blockSize/sectorSize + 7) / 8), true
		}
	default:
		return nil, fmt.Errorf("%s has no differencing disks: %w", p.link.Format, ErrFormat)
	}
	if d.size != parent.Size() {
		return nil, fmt.Errorf("virtual size %d differs from its parent's %d: %w", d.size, parent.Size(), ErrFormat)
	}
	// Own extents are whole blocks; a partially present block may also
	// hold parent data, which the union covers anyway.
	var own []Extent
	for b := int64(0); b*d.bs < d.size; b++ {
		if s, _ := d.entry(b); s == diffOwn || s == diffPartial {
			own = appendExtent(own, Extent{b * d.bs, min(d.bs, d.size-b*d.bs)})
		}
	}
	d.ext = unionExtents(parent.Extents(), own)
	return d, nil
}

func (d *diffImage) Size() int64       { return d.size }
func (d *diffImage) Extents() []Extent { return d.ext }
func (d *diffImage) Info() Info        { return infoOf(d, d.format, "differencing") }

func (d *diffImage) ReadAt(p []byte, off int64) (int, error) {
	return readBlocks(p, off, d.size, d.bs, d.name, d.readBlock)
}

// readBlock reads dst from block b at in, sector run by sector run.
func (d *diffImage) readBlock(dst []byte, b, in int64) error {
	state, at := d.entry(b)
	switch state {
	case diffZero:
		zeroFill(dst)
		return nil
	case diffParent:
		return d.readParent(dst, b*d.bs+in)
	case diffOwn:
		_, err := readFull(d.ra, dst, at+in, d.fileSize)
		return err
	}
	bm, msb, err := d.bitmap(b)
	if err != nil {
		return err
	}
	present := func(s int64) bool {
		if msb {
			return bm[s/8]&(0x80>>(s%8)) != 0
		}
		return bm[s/8]&(1<<(s%8)) != 0
	}
	for done := int64(0); done < int64(len(dst)); {
		s := (in + done) / d.sector
		own := present(s)
		// Extend the run over sectors of the same presence.
		end := (s + 1) * d.sector
		for end-in < int64(len(dst)) && present(end/d.sector) == own {
			end += d.sector
		}
		run := dst[done:min(end-in, int64(len(dst)))]
		if own {
			_, err = readFull(d.ra, run, at+in+done, d.fileSize)
		} else {
			err = d.readParent(run, b*d.bs+in+done)
		}
		if err != nil {
			return err
		}
		done += int64(len(run))
	}
	return nil
}

func (d *diffImage) readParent(p []byte, off int64) error {
	n, err := d.parent.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read parent at %d: %w", off, err)
}

func (d *diffImage) bitmap(b int64) ([]byte, bool, error) {
	off, n, msb := d.bitmapAt(b)
	d.mu.Lock()
	bm, ok := d.bitmaps[b]
	d.mu.Unlock()
	if ok {
		return bm, msb, nil
	}
	bm = make([]byte, n)
	if _, err := readFull(d.ra, bm, off, d.fileSize); err != nil {
		return nil, msb, fmt.Errorf("read sector bitmap: %w", err)
	}
	d.mu.Lock()
	if len(d.bitmaps) >= maxCachedBitmaps {
		clear(d.bitmaps)
	}
	d.bitmaps[b] = bm
	d.mu.Unlock()
	return bm, msb, nil
}

// unionExtents merges two sorted extent lists.
func unionExtents(a, b []Extent) []Extent {
	var out []Extent
	for len(a) > 0 || len(b) > 0 {
		var e Extent
		if len(b) == 0 || (len(a) > 0 && a[0].Offset <= b[0].Offset) {
			e, a = a[0], a[1:]
		} else {
			e, b = b[0], b[1:]
		}
		if n := len(out); n > 0 && out[n-1].End() >= e.Offset {
			if e.End() > out[n-1].End() {
				out[n-1].Length = e.End() - out[n-1].Offset
			}
			continue
		}
		out = append(out, e)
	}
	return out
}

// link reads a VHDX's identity and, for a differencing disk, its parent
// locator.
func (v *vhdxImage) link() (Link, error) {
	l := Link{Format: VHDX, ID: guidText(v.dataWrite)}
	if !v.diff {
		return l, nil
	}
	if len(v.locator) < 20 {
		return l, fmt.Errorf("differencing disk without a parent locator: %w", ErrFormat)
	}
	le := binary.LittleEndian
	loc := v.locator
	if [16]byte(loc[:16]) != vhdxGUIDLocatorType {
		return l, fmt.Errorf("parent locator of unknown type %x: %w", loc[:16], ErrFormat)
	}
	n := int(le.Uint16(loc[18:]))
	if 20+12*n > len(loc) {
		return l, fmt.Errorf("parent locator claims %d entries: %w", n, ErrFormat)
	}
	kv := map[string]string{}
	for i := range n {
		e := loc[20+12*i:]
		ko, vo := int(le.Uint32(e)), int(le.Uint32(e[4:]))
		kl, vl := int(le.Uint16(e[8:])), int(le.Uint16(e[10:]))
		if ko+kl > len(loc) || vo+vl > len(loc) || kl%2 != 0 || vl%2 != 0 {
			return l, fmt.Errorf("parent locator entry %d lies outside the item: %w", i, ErrFormat)
		}
		kv[utf16Text(loc[ko:ko+kl], false)] = utf16Text(loc[vo:vo+vl], false)
	}
	id, ok := parseGUIDText(kv["parent_linkage"])
	if !ok {
		return l, fmt.Errorf("parent locator has no valid parent_linkage (%q): %w", kv["parent_linkage"], ErrFormat)
	}
	l.ParentID = guidText(id)
	for _, k := range []string{"relative_path", "volume_path", "absolute_win32_path"} {
		if p := kv[k]; p != "" {
			l.ParentPaths = append(l.ParentPaths, strings.TrimPrefix(p, `\\?\`))
		}
	}
	return l, nil
}

var vhdxGUIDLocatorType = msGUID("B04AEFB7-D19E-4A81-B789-25B8E9445913")

// vhdDiff is the parent link of a VHD differencing disk.
type vhdDiff struct {
	parentID    [16]byte
	parentPaths []string
}

// parseVHDDiff reads a differencing VHD's parent id, name and locators.
func parseVHDDiff(ra io.ReaderAt, fileSize int64, f vhdFooter) (vhdDiff, error) {
	var d vhdDiff
	if f.DataOffset > uint64(fileSize) {
		return d, fmt.Errorf("dynamic header offset %d beyond the %d-byte file: %w", f.DataOffset, fileSize, ErrFormat)
	}
	h := make([]byte, vhdDynHdrSize)
	if _, err := readFull(ra, h, int64(f.DataOffset), fileSize); err != nil {
		return d, fmt.Errorf("read dynamic header: %w", err)
	}
	if string(h[:8]) != vhdDynCookie {
		return d, fmt.Errorf("dynamic header: no %q cookie: %w", vhdDynCookie, ErrFormat)
	}
	be := binary.BigEndian
	copy(d.parentID[:], h[40:56])
	for i := range 8 {
		e := h[576+24*i:]
		code := string(e[:4])
		if code != "W2ru" && code != "W2ku" {
			continue
		}
		n, off := int64(be.Uint32(e[8:])), be.Uint64(e[16:])
		if n <= 0 || n > 64<<10 || off > uint64(fileSize) || n%2 != 0 {
			continue
		}
		b := make([]byte, n)
		if _, err := readFull(ra, b, int64(off), fileSize); err != nil {
			continue
		}
		p := utf16Text(b, false)
		if code == "W2ru" {
			d.parentPaths = append([]string{p}, d.parentPaths...)
		} else {
			d.parentPaths = append(d.parentPaths, p)
		}
	}
	if len(d.parentPaths) == 0 {
		if name := utf16Text(h[64:576], true); name != "" {
			d.parentPaths = []string{name}
		}
	}
	return d, nil
}

func utf16Text(b []byte, bigEndian bool) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		var c uint16
		if bigEndian {
			c = binary.BigEndian.Uint16(b[i:])
		} else {
			c = binary.LittleEndian.Uint16(b[i:])
		}
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// guidText is the lower-case text form of a GUID stored in Microsoft's
// mixed-endian layout.
func guidText(g [16]byte) string {
	return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%x-%x",
		g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8:10], g[10:16])
}

// parseGUIDText reads "{xxxxxxxx-…}" (braces optional) into Microsoft's
// layout.
func parseGUIDText(s string) ([16]byte, bool) {
	s = strings.Trim(strings.TrimSpace(s), "{}")
	if len(s) != 36 || strings.Count(s, "-") != 4 {
		return [16]byte{}, false
	}
	for _, c := range strings.ReplaceAll(s, "-", "") {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return [16]byte{}, false
		}
	}
	return msGUID(s), true
}
