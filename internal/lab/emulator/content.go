package emulator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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

// hashFile returns the SHA-256 of the first size bytes of path.
func hashFile(path string, size int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
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
	s, ok := e.st.Snapshots[id]
	var size int64
	if ok {
		size = s.SourceSize
	}
	e.mu.Unlock()
	if !ok {
		return nil, 0, fmt.Errorf("open content of %s: %w", id, ErrNotFound)
	}
	f, err := os.Open(e.snapPath(id))
	if err != nil {
		return nil, 0, fmt.Errorf("open content of %s: %w", id, err)
	}
	return f, size, nil
}

// SnapshotSHA256 reads the snapshot's stored content back and returns the
// hex SHA-256 of its first SourceSize bytes, and SourceSize: for an
// imported snapshot, the hash of exactly the source disk's virtual content.
// (Snapshot.SHA256, recorded while importing, is not trusted for this.)
func (e *Emulator) SnapshotSHA256(id string) (string, int64, error) {
	e.mu.Lock()
	s, ok := e.st.Snapshots[id]
	var size int64
	if ok {
		size = s.SourceSize
	}
	e.mu.Unlock()
	if !ok {
		return "", 0, fmt.Errorf("hash content of %s: %w", id, ErrNotFound)
	}
	sum, err := hashFile(e.snapPath(id), size)
	if err != nil {
		return "", 0, fmt.Errorf("hash content of %s: %w", id, err)
	}
	return sum, size, nil
}
