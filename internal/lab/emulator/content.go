package emulator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"

	"github.com/rehost/rehost/pkg/disk"
)

const (
	// BlockSize is the EBS direct block size.
	BlockSize = 512 << 10
	gib       = 1 << 30
)

// ErrNotFound is returned by the content accessors for an unknown snapshot.
var ErrNotFound = errors.New("emulator: no such snapshot")

func (e *Emulator) snapPath(id string) string { return filepath.Join(e.snapDir(), id+".img") }

// volumeGiB is size rounded up to whole GiB, at least 1.
func volumeGiB(size int64) int64 {
	g := (size + gib - 1) / gib
	if g < 1 {
		g = 1
	}
	return g
}

var zeroBlock = make([]byte, BlockSize)

// readError marks a failure to read the source image (as opposed to writing
// the snapshot file), so the caller can word it as VM Import does.
type readError struct{ err error }

func (r *readError) Error() string { return r.err.Error() }
func (r *readError) Unwrap() error { return r.err }

// writeSnapshotFile copies the virtual disk of src into a new sparse file at
// path, VolumeSize GiB long, writing only the 512 KiB blocks that hold data.
// It returns the indexes of those blocks and the SHA-256 of the first
// src.Size() bytes.
func writeSnapshotFile(path string, src disk.Sparse) ([]int32, string, error) {
	size := src.Size()
	f, err := os.Create(path)
	if err != nil {
		return nil, "", err
	}
	ok := false
	defer func() {
		f.Close()
		if !ok {
			os.Remove(path)
		}
	}()
	if err := f.Truncate(volumeGiB(size) * gib); err != nil {
		return nil, "", err
	}
	ext := src.Extents()
	h := sha256.New()
	buf := make([]byte, BlockSize)
	var blocks []int32
	xi := 0
	for off := int64(0); off < size; off += BlockSize {
		n := min(int64(BlockSize), size-off)
		end := off + n
		for xi < len(ext) && ext[xi].End() <= off {
			xi++
		}
		if xi >= len(ext) || ext[xi].Offset >= end {
			h.Write(zeroBlock[:n])
			continue
		}
		b := buf[:n]
		if _, err := src.ReadAt(b, off); err != nil && !(errors.Is(err, io.EOF) && off+n >= size) {
			return nil, "", &readError{fmt.Errorf("read virtual disk at %d: %w", off, err)}
		}
		h.Write(b)
		if bytes.Equal(b, zeroBlock[:n]) {
			continue
		}
		if _, err := f.WriteAt(b, off); err != nil {
			return nil, "", err
		}
		blocks = append(blocks, int32(off/BlockSize))
	}
	if err := f.Sync(); err != nil {
		return nil, "", err
	}
	ok = true
	return blocks, hex.EncodeToString(h.Sum(nil)), nil
}

// ContentReader reads a snapshot's content.
type ContentReader interface {
	io.ReaderAt
	io.Closer
}

// SnapshotContent opens the content of a snapshot: the reader sees
// VolumeSize GiB, of which the first size bytes are the imported virtual
// disk (size is Snapshot.SourceSize). The caller closes it.
func (e *Emulator) SnapshotContent(id string) (ContentReader, int64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.st.Snapshots[id]
	if !ok {
		return nil, 0, fmt.Errorf("open content of %s: %w", id, ErrNotFound)
	}
	return e.contentLocked(s), s.SourceSize, nil
}

// contentLocked reads s's blocks where they are stored: a snapshot's file
// holds the blocks it wrote (an EBS direct put, an import), and a child
// made by StartSnapshot, CopyImage or an import of a snapshot refers to
// its ancestors' blocks instead of copying them (Snapshot.Blocks names the
// writer of each), as EBS shares the blocks of a lineage.
func (e *Emulator) contentLocked(s *Snapshot) *blockReader {
	return &blockReader{dir: e.snapDir(), blocks: maps.Clone(s.Blocks), size: s.VolumeSize * gib, files: map[string]*os.File{}}
}

// blockReader is a snapshot's content read through its block map.
type blockReader struct {
	dir    string
	blocks map[int32]string
	size   int64
	files  map[string]*os.File
}

func (c *blockReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= c.size {
			return n, io.EOF
		}
		idx, in := int32(pos/BlockSize), pos%BlockSize
		chunk := int(min(int64(len(p)-n), BlockSize-in, c.size-pos))
		if w, ok := c.blocks[idx]; !ok {
			clear(p[n : n+chunk])
		} else {
			f := c.files[w]
			if f == nil {
				var err error
				if f, err = os.Open(filepath.Join(c.dir, w+".img")); err != nil {
					return n, fmt.Errorf("block %d: %w", idx, err)
				}
				c.files[w] = f
			}
			m, err := f.ReadAt(p[n:n+chunk], int64(idx)*BlockSize+in)
			if err != nil && !errors.Is(err, io.EOF) {
				return n, fmt.Errorf("block %d: %w", idx, err)
			}
			clear(p[n+m : n+chunk])
		}
		n += chunk
	}
	return n, nil
}

func (c *blockReader) Close() error {
	for _, f := range c.files {
		f.Close()
	}
	clear(c.files)
	return nil
}

// SnapshotSHA256 reads the snapshot's stored content back and returns the
// hex SHA-256 of its first SourceSize bytes, and SourceSize: for an
// imported snapshot, the hash of exactly the source disk's virtual content.
// (Snapshot.SHA256, recorded while importing, is not trusted for this.)
func (e *Emulator) SnapshotSHA256(id string) (string, int64, error) {
	r, size, err := e.SnapshotContent(id)
	if err != nil {
		return "", 0, fmt.Errorf("hash content of %s: %w", id, err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
		return "", 0, fmt.Errorf("hash content of %s: %w", id, err)
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

// TamperBlock flips one byte of block index as it is stored for snapshot
// id, leaving the checksum recorded when it was written: what a storage
// fault would do. Every snapshot sharing the block (its descendants) sees
// the change, and GetSnapshotBlock keeps answering the recorded checksum,
// so only a client that hashes what it reads notices. For tests.
func (e *Emulator) TamperBlock(id string, index int32) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.st.Snapshots[id]
	if !ok {
		return fmt.Errorf("tamper with %s: %w", id, ErrNotFound)
	}
	w, ok := s.Blocks[index]
	if !ok {
		return fmt.Errorf("tamper with block %d of %s: the block holds no data", index, id)
	}
	f, err := os.OpenFile(e.snapPath(w), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("tamper with block %d of %s: %w", index, id, err)
	}
	defer f.Close()
	off := int64(index)*BlockSize + BlockSize/3
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		return fmt.Errorf("tamper with block %d of %s: %w", index, id, err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		return fmt.Errorf("tamper with block %d of %s: %w", index, id, err)
	}
	return nil
}

// removeSnapshotLocked deletes a snapshot. Its file goes too unless a
// snapshot still refers to blocks it wrote (EBS keeps the blocks a later
// snapshot of the lineage needs); such a file is retained until the last
// snapshot using it is deleted.
func (e *Emulator) removeSnapshotLocked(id string) {
	s := e.st.Snapshots[id]
	delete(e.st.Snapshots, id)
	if e.st.Retained == nil {
		e.st.Retained = map[string]map[int32]string{}
	}
	if s != nil {
		e.st.Retained[id] = s.Checksums
	}
	used := map[string]bool{}
	for _, s := range e.st.Snapshots {
		for _, w := range s.Blocks {
			used[w] = true
		}
	}
	for w := range e.st.Retained {
		if !used[w] {
			os.Remove(e.snapPath(w))
			delete(e.st.Retained, w)
		}
	}
}
