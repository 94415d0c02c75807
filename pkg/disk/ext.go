package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// A reader of just enough of ext2/3/4 to find a file by path: the
// superblock, the group descriptors, inodes, extent trees (and the block
// maps of ext2/3), directories (linear entries, which htree directories
// keep readable) and symlinks. Every number read from the disk is checked
// against the file system's bounds before use: the disk is the user's.
// Memory is bounded by the read budget, not by what the disk claims.

const (
	extMagic         = 0xEF53
	extRootInode     = 2
	extMaxFileSize   = 1 << 20 // files read whole: os-release and the like
	extMaxDirSize    = 16 << 20
	extMaxSymlinks   = 8
	extIncompatType  = 0x2
	extIncompatExt   = 0x40
	extIncompat64    = 0x80
	extIncompatFlex  = 0x200
	extIncompatInl   = 0x8000
	extCompatJournal = 0x4
	extExtentsFlag   = 0x80000
	extInlineFlag    = 0x10000000
	extExtentMagic   = 0xF30A
)

// extVariant names ext2, ext3 or ext4 from a superblock.
func extVariant(sb []byte) string {
	incompat := binary.LittleEndian.Uint32(sb[0x60:])
	compat := binary.LittleEndian.Uint32(sb[0x5C:])
	switch {
	case incompat&(extIncompatExt|extIncompat64|extIncompatFlex) != 0:
		return FSExt4
	case compat&extCompatJournal != 0:
		return FSExt3
	}
	return FSExt2
}

type extFS struct {
	r              io.ReaderAt
	blockSize      int64
	blocks         int64
	inodesPerGroup uint32
	inodes         uint32
	inodeSize      int64
	descSize       int64
	firstDataBlock int64
	groups         int64
	incompat       uint32
	// budget bounds the bytes one lookup may read: a damaged extent tree
	// can point at the same blocks many times over.
	budget int64
}

// maxReadBytes is the read budget of one ReadExtFile.
const maxReadBytes = 64 << 20

func openExt(r io.ReaderAt) (*extFS, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, 1024); err != nil {
		return nil, fmt.Errorf("read ext superblock: %w", err)
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != extMagic {
		return nil, errors.New("no ext superblock")
	}
	fs := &extFS{r: r, budget: maxReadBytes}
	logBS := binary.LittleEndian.Uint32(sb[0x18:])
	if logBS > 6 {
		return nil, errors.New("ext block size out of range")
	}
	fs.blockSize = 1024 << logBS
	fs.blocks = int64(binary.LittleEndian.Uint32(sb[0x04:]))
	fs.inodes = binary.LittleEndian.Uint32(sb[0x00:])
	fs.firstDataBlock = int64(binary.LittleEndian.Uint32(sb[0x14:]))
	blocksPerGroup := int64(binary.LittleEndian.Uint32(sb[0x20:]))
	fs.inodesPerGroup = binary.LittleEndian.Uint32(sb[0x28:])
	fs.incompat = binary.LittleEndian.Uint32(sb[0x60:])
	fs.inodeSize = 128
	if binary.LittleEndian.Uint32(sb[0x4C:]) >= 1 {
		fs.inodeSize = int64(binary.LittleEndian.Uint16(sb[0x58:]))
	}
	fs.descSize = 32
	if fs.incompat&extIncompat64 != 0 {
		fs.blocks |= int64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
		if ds := int64(binary.LittleEndian.Uint16(sb[0xFE:])); ds >= 64 {
			fs.descSize = ds
		}
	}
	if blocksPerGroup == 0 || fs.inodesPerGroup == 0 || fs.inodeSize < 128 || fs.inodeSize > fs.blockSize || fs.descSize > 1024 {
		return nil, errors.New("ext superblock geometry out of range")
	}
	fs.groups = (fs.blocks - fs.firstDataBlock + blocksPerGroup - 1) / blocksPerGroup
	if fs.groups <= 0 || int64(fs.inodesPerGroup)*fs.groups < int64(fs.inodes) {
		return nil, errors.New("ext superblock group count out of range")
	}
	return fs, nil
}

func (fs *extFS) readBlock(n int64) ([]byte, error) {
	if n <= 0 || n >= fs.blocks {
		return nil, fmt.Errorf("block %d outside the file system", n)
	}
	if fs.budget -= fs.blockSize; fs.budget < 0 {
		return nil, errors.New("too many blocks to read: the file system is damaged")
	}
	b := make([]byte, fs.blockSize)
	if _, err := fs.r.ReadAt(b, n*fs.blockSize); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}

type extInode struct {
	mode  uint16
	size  int64
	flags uint32
	block []byte // i_block, 60 bytes
}

func (i extInode) isDir() bool     { return i.mode&0xF000 == 0x4000 }
func (i extInode) isSymlink() bool { return i.mode&0xF000 == 0xA000 }
func (i extInode) isFile() bool    { return i.mode&0xF000 == 0x8000 }

func (fs *extFS) inode(n uint32) (extInode, error) {
	if n == 0 || n > fs.inodes {
		return extInode{}, fmt.Errorf("inode %d out of range", n)
	}
	group := int64((n - 1) / fs.inodesPerGroup)
	index := int64((n - 1) % fs.inodesPerGroup)
	descBlock := fs.firstDataBlock + 1
	off := descBlock*fs.blockSize + group*fs.descSize
	desc := make([]byte, fs.descSize)
	if _, err := fs.r.ReadAt(desc, off); err != nil {
		return extInode{}, fmt.Errorf("read group descriptor %d: %w", group, err)
	}
	table := int64(binary.LittleEndian.Uint32(desc[8:]))
	if fs.descSize >= 64 {
		table |= int64(binary.LittleEndian.Uint32(desc[0x28:])) << 32
	}
	if table <= 0 || table >= fs.blocks {
		return extInode{}, fmt.Errorf("inode table of group %d out of range", group)
	}
	raw := make([]byte, 128)
	if _, err := fs.r.ReadAt(raw, table*fs.blockSize+index*fs.inodeSize); err != nil {
		return extInode{}, fmt.Errorf("read inode %d: %w", n, err)
	}
	in := extInode{
		mode:  binary.LittleEndian.Uint16(raw[0:]),
		size:  int64(binary.LittleEndian.Uint32(raw[4:])) | int64(binary.LittleEndian.Uint32(raw[0x6C:]))<<32,
		flags: binary.LittleEndian.Uint32(raw[0x20:]),
		block: raw[0x28 : 0x28+60],
	}
	return in, nil
}

// read returns the first min(size, limit) bytes of an inode's data.
func (fs *extFS) read(in extInode, limit int64) ([]byte, error) {
	// A file cannot hold more than the file system: no allocation grows
	// with a size a damaged inode claims.
	size := min(in.size, limit, fs.blocks*fs.blockSize)
	if size < 0 {
		return nil, errors.New("negative file size")
	}
	if in.flags&extInlineFlag != 0 {
		return nil, errors.New("inline data is not read by this importer")
	}
	out := make([]byte, size)
	nblocks := (size + fs.blockSize - 1) / fs.blockSize
	put := func(logical, physical, count int64) error {
		for k := int64(0); k < count; k++ {
			lb := logical + k
			if lb >= nblocks {
				return nil
			}
			b, err := fs.readBlock(physical + k)
			if err != nil {
				return err
			}
			copy(out[lb*fs.blockSize:], b)
		}
		return nil
	}
	if in.flags&extExtentsFlag != 0 {
		if err := fs.walkExtents(in.block, 0, put); err != nil {
			return nil, err
		}
		return out, nil
	}
	if err := fs.walkBlockMap(in.block, nblocks, put); err != nil {
		return nil, err
	}
	return out, nil
}

func (fs *extFS) walkExtents(node []byte, depth int, put func(logical, physical, count int64) error) error {
	if depth > 5 {
		return errors.New("extent tree too deep")
	}
	if len(node) < 12 || binary.LittleEndian.Uint16(node) != extExtentMagic {
		return errors.New("bad extent header")
	}
	entries := int(binary.LittleEndian.Uint16(node[2:]))
	treeDepth := binary.LittleEndian.Uint16(node[6:])
	if 12+entries*12 > len(node) {
		return errors.New("extent entries overflow their node")
	}
	for i := 0; i < entries; i++ {
		e := node[12+i*12:]
		if treeDepth == 0 {
			logical := int64(binary.LittleEndian.Uint32(e[0:]))
			n := int64(binary.LittleEndian.Uint16(e[4:]))
			start := int64(binary.LittleEndian.Uint16(e[6:]))<<32 | int64(binary.LittleEndian.Uint32(e[8:]))
			if n > 32768 {
				continue // uninitialized: reads as zeros
			}
			if err := put(logical, start, n); err != nil {
				return err
			}
			continue
		}
		leaf := int64(binary.LittleEndian.Uint16(e[8:]))<<32 | int64(binary.LittleEndian.Uint32(e[4:]))
		b, err := fs.readBlock(leaf)
		if err != nil {
			return err
		}
		if err := fs.walkExtents(b, depth+1, put); err != nil {
			return err
		}
	}
	return nil
}

// walkBlockMap reads ext2/3's direct and (double, triple) indirect blocks.
func (fs *extFS) walkBlockMap(iblock []byte, nblocks int64, put func(logical, physical, count int64) error) error {
	logical := int64(0)
	var walk func(ptr int64, level int) error
	walk = func(ptr int64, level int) error {
		if logical >= nblocks {
			return nil
		}
		if level == 0 {
			if ptr != 0 {
				if err := put(logical, ptr, 1); err != nil {
					return err
				}
			}
			logical++
			return nil
		}
		per := fs.blockSize / 4
		if ptr == 0 {
			span := int64(1)
			for range level {
				span *= per
			}
			logical += span
			return nil
		}
		b, err := fs.readBlock(ptr)
		if err != nil {
			return err
		}
		for i := int64(0); i < per && logical < nblocks; i++ {
			if err := walk(int64(binary.LittleEndian.Uint32(b[i*4:])), level-1); err != nil {
				return err
			}
		}
		return nil
	}
	for i := 0; i < 15 && logical < nblocks; i++ {
		level := 0
		if i >= 12 {
			level = i - 11
		}
		if err := walk(int64(binary.LittleEndian.Uint32(iblock[i*4:])), level); err != nil {
			return err
		}
	}
	return nil
}

// lookup finds name in a directory inode.
func (fs *extFS) lookup(dir extInode, name string) (uint32, error) {
	data, err := fs.read(dir, extMaxDirSize)
	if err != nil {
		return 0, err
	}
	withType := fs.incompat&extIncompatType != 0
	for blk := int64(0); blk < int64(len(data)); blk += fs.blockSize {
		b := data[blk:min(blk+fs.blockSize, int64(len(data)))]
		for off := 0; off+8 <= len(b); {
			ino := binary.LittleEndian.Uint32(b[off:])
			recLen := int(binary.LittleEndian.Uint16(b[off+4:]))
			nameLen := int(b[off+6])
			if !withType {
				nameLen = int(binary.LittleEndian.Uint16(b[off+6:]))
			}
			if recLen < 8 || off+recLen > len(b) || 8+nameLen > recLen {
				break // corrupt or the end of this block's entries
			}
			if ino != 0 && string(b[off+8:off+8+nameLen]) == name {
				return ino, nil
			}
			off += recLen
		}
	}
	return 0, fmt.Errorf("%s: not found", name)
}

// ReadExtFile reads a regular file of the ext2/3/4 file system r holds (a
// partition, from its first byte) by absolute path, following symlinks as
// a guest would (many distributions link /etc/os-release to
// /usr/lib/os-release). It reads at most 1 MiB of the file and at most
// 64 MiB of the file system in all, whatever the file system claims.
func ReadExtFile(r io.ReaderAt, p string) ([]byte, error) {
	fs, err := openExt(r)
	if err != nil {
		return nil, err
	}
	links := 0
	parts := strings.Split(strings.Trim(path.Clean(p), "/"), "/")
	var stack []uint32 // inodes of the directories walked, for ".."
	cur := uint32(extRootInode)
	for i := 0; i < len(parts); i++ {
		dir, err := fs.inode(cur)
		if err != nil {
			return nil, err
		}
		if !dir.isDir() {
			return nil, fmt.Errorf("%s: not a directory", strings.Join(parts[:i], "/"))
		}
		name := parts[i]
		switch name {
		case ".", "":
			continue
		case "..":
			if len(stack) > 0 {
				cur, stack = stack[len(stack)-1], stack[:len(stack)-1]
			}
			continue
		}
		ino, err := fs.lookup(dir, name)
		if err != nil {
			return nil, err
		}
		in, err := fs.inode(ino)
		if err != nil {
			return nil, err
		}
		if in.isSymlink() {
			if links++; links > extMaxSymlinks {
				return nil, errors.New("too many symlinks")
			}
			target, err := fs.symlink(in)
			if err != nil {
				return nil, err
			}
			rest := parts[i+1:]
			if strings.HasPrefix(target, "/") {
				stack, cur = nil, extRootInode
			}
			parts = append(strings.Split(strings.Trim(target, "/"), "/"), rest...)
			i = -1
			continue
		}
		stack = append(stack, cur)
		cur = ino
		if i == len(parts)-1 {
			if !in.isFile() {
				return nil, fmt.Errorf("%s: not a regular file", p)
			}
			return fs.read(in, extMaxFileSize)
		}
	}
	return nil, fmt.Errorf("%s: not a regular file", p)
}

func (fs *extFS) symlink(in extInode) (string, error) {
	if in.size < 60 && in.flags&extExtentsFlag == 0 {
		return string(in.block[:in.size]), nil
	}
	b, err := fs.read(in, 4096)
	return string(b), err
}
