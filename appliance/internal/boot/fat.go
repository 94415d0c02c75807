package boot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Extent is where a file's bytes lie on its partition.
type Extent struct {
	Offset, Size int64
}

// LocateFAT finds the file at path (components separated by '/', matched
// against 8.3 short names without regard to case) on the FAT32 file
// system read through r, and returns where its bytes lie. The file must
// be contiguous, as mtools and GRUB's save_env leave grubenv: the init
// rewrites it in place, never moving or resizing it, so the file system's
// tables are never written.
func LocateFAT(r io.ReaderAt, path string) (Extent, error) {
	bs := make([]byte, 512)
	if _, err := r.ReadAt(bs, 0); err != nil {
		return Extent{}, fmt.Errorf("read the FAT boot sector: %w", err)
	}
	le := binary.LittleEndian
	f := fat{
		r:           r,
		bytesPerSec: int64(le.Uint16(bs[11:])),
		secPerClus:  int64(bs[13]),
		reserved:    int64(le.Uint16(bs[14:])),
		numFATs:     int64(bs[16]),
		fatSize:     int64(le.Uint32(bs[36:])),
	}
	if bs[510] != 0x55 || bs[511] != 0xaa || le.Uint16(bs[22:]) != 0 || f.fatSize == 0 ||
		f.bytesPerSec < 512 || f.secPerClus == 0 || !strings.HasPrefix(string(bs[82:90]), "FAT32") {
		return Extent{}, errors.New("not a FAT32 file system")
	}
	f.clusterBytes = f.bytesPerSec * f.secPerClus
	f.dataStart = (f.reserved + f.numFATs*f.fatSize) * f.bytesPerSec
	cluster := le.Uint32(bs[44:]) // the root directory's
	var size int64
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, name := range parts {
		e, err := f.lookup(cluster, name)
		if err != nil {
			return Extent{}, fmt.Errorf("%s: %w", strings.Join(parts[:i+1], "/"), err)
		}
		dir := e.attr&0x10 != 0
		if dir != (i < len(parts)-1) {
			return Extent{}, fmt.Errorf("%s: not a %s", strings.Join(parts[:i+1], "/"), map[bool]string{true: "directory", false: "file"}[i < len(parts)-1])
		}
		cluster, size = e.cluster, e.size
	}
	chain, err := f.chain(cluster, (size+f.clusterBytes-1)/f.clusterBytes)
	if err != nil {
		return Extent{}, fmt.Errorf("%s: %w", path, err)
	}
	for i := 1; i < len(chain); i++ {
		if chain[i] != chain[i-1]+1 {
			return Extent{}, fmt.Errorf("%s: not contiguous on the file system", path)
		}
	}
	return Extent{Offset: f.clusterOffset(cluster), Size: size}, nil
}

type fat struct {
	r                                         io.ReaderAt
	bytesPerSec, secPerClus, reserved         int64
	numFATs, fatSize, clusterBytes, dataStart int64
}

type dirent struct {
	attr    byte
	cluster uint32
	size    int64
}

func (f *fat) clusterOffset(c uint32) int64 { return f.dataStart + int64(c-2)*f.clusterBytes }

// chain follows the FAT from cluster c: n clusters, or to the end of the
// chain when n is 0 (a directory).
func (f *fat) chain(c uint32, n int64) ([]uint32, error) {
	var out []uint32
	b := make([]byte, 4)
	for c >= 2 && c < 0x0ffffff8 {
		out = append(out, c)
		if n > 0 && int64(len(out)) == n {
			return out, nil
		}
		if len(out) > 1<<22 {
			return nil, errors.New("cluster chain loops")
		}
		if _, err := f.r.ReadAt(b, f.reserved*f.bytesPerSec+int64(c)*4); err != nil {
			return nil, fmt.Errorf("read the FAT: %w", err)
		}
		c = binary.LittleEndian.Uint32(b) & 0x0fffffff
	}
	if n > 0 && int64(len(out)) < n {
		return nil, errors.New("cluster chain ends before the file does")
	}
	return out, nil
}

// lookup finds name in the directory starting at cluster dir.
func (f *fat) lookup(dir uint32, name string) (dirent, error) {
	want, err := shortName(name)
	if err != nil {
		return dirent{}, err
	}
	clusters, err := f.chain(dir, 0)
	if err != nil {
		return dirent{}, err
	}
	buf := make([]byte, f.clusterBytes)
	le := binary.LittleEndian
	for _, c := range clusters {
		if _, err := f.r.ReadAt(buf, f.clusterOffset(c)); err != nil {
			return dirent{}, fmt.Errorf("read a directory: %w", err)
		}
		for off := 0; off+32 <= len(buf); off += 32 {
			e := buf[off : off+32]
			switch {
			case e[0] == 0:
				return dirent{}, errors.New("no such file")
			case e[0] == 0xe5 || e[11]&0x0f == 0x0f || e[11]&0x08 != 0: // deleted, long name, volume label
				continue
			}
			if strings.EqualFold(string(e[:11]), want) {
				return dirent{attr: e[11], cluster: uint32(le.Uint16(e[20:]))<<16 | uint32(le.Uint16(e[26:])), size: int64(le.Uint32(e[28:]))}, nil
			}
		}
	}
	return dirent{}, errors.New("no such file")
}

// shortName is name as an 8.3 directory entry: name and extension padded
// with spaces, upper case.
func shortName(name string) (string, error) {
	base, ext, _ := strings.Cut(name, ".")
	if base == "" || len(base) > 8 || len(ext) > 3 || strings.ContainsAny(name, " /\\") {
		return "", fmt.Errorf("%q has no 8.3 short name this reader can match", name)
	}
	return strings.ToUpper(fmt.Sprintf("%-8s%-3s", base, ext)), nil
}
