package build

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// An initramfs entry: a directory, a regular file (from Src or Data) or a
// symbolic link (Link).
type cpioEntry struct {
	Path string // absolute, in the image
	Mode fs.FileMode
	Src  string // host file to copy
	Data []byte
	Link string
}

// writeCPIO writes entries as a "newc" cpio archive, the format the kernel
// unpacks into its root file system. Everything that varies between builds
// is fixed: owner root, mtime mtime, inode numbers in path order, no device
// numbers. Parent directories missing from entries are added.
func writeCPIO(w io.Writer, entries []cpioEntry, mtime int64) error {
	byPath := map[string]cpioEntry{}
	for _, e := range entries {
		byPath[e.Path] = e
		for d := path.Dir(e.Path); d != "/"; d = path.Dir(d) {
			if _, ok := byPath[d]; !ok {
				byPath[d] = cpioEntry{Path: d, Mode: fs.ModeDir | 0o755}
			}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths) // a directory sorts before what it holds
	cw := &countWriter{w: w}
	for i, p := range paths {
		if err := cpioEntryRecord(cw, byPath[p], uint32(i+1), mtime); err != nil {
			return fmt.Errorf("initramfs %s: %w", p, err)
		}
	}
	if err := cpioRecord(cw, "TRAILER!!!", 0, 0, 1, 0, nil, 0); err != nil {
		return err
	}
	// Pad the archive to a whole 512-byte block, as cpio(1) does.
	if r := cw.n % 512; r != 0 {
		if _, err := cw.Write(make([]byte, 512-r)); err != nil {
			return err
		}
	}
	return nil
}

func cpioEntryRecord(cw *countWriter, e cpioEntry, ino uint32, mtime int64) error {
	var data io.Reader = bytes.NewReader(e.Data)
	size := int64(len(e.Data))
	mode := uint32(e.Mode.Perm())
	nlink := uint32(1)
	switch {
	case e.Mode.IsDir():
		mode |= 0o040000
		nlink = 2
	case e.Link != "":
		mode |= 0o120000
		data, size = strings.NewReader(e.Link), int64(len(e.Link))
	default:
		mode |= 0o100000
		if e.Src != "" {
			f, err := os.Open(e.Src)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			data, size = f, st.Size()
		}
	}
	return cpioRecord(cw, strings.TrimPrefix(e.Path, "/"), ino, mode, nlink, mtime, data, size)
}

func cpioRecord(w *countWriter, name string, ino, mode, nlink uint32, mtime int64, data io.Reader, size int64) error {
	if size > 0xffffffff {
		return fmt.Errorf("%d bytes: newc cpio holds at most 4 GiB per file", size)
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, uint32(mtime), size, 0, 0, 0, 0, len(name)+1, 0)
	if _, err := io.WriteString(w, hdr+name+"\x00"); err != nil {
		return err
	}
	if err := pad4(w); err != nil {
		return err
	}
	if data != nil {
		if n, err := io.Copy(w, io.LimitReader(data, size)); err != nil || n != size {
			return fmt.Errorf("copied %d of %d bytes: %v", n, size, err)
		}
	}
	return pad4(w)
}

func pad4(w *countWriter) error {
	if r := w.n % 4; r != 0 {
		_, err := w.Write(make([]byte, 4-r))
		return err
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
