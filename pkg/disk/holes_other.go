//go:build !linux

package disk

import (
	"io"
	"os"
)

// fileExtents cannot ask the file system here: the content is scanned.
func fileExtents(*os.File, int64) ([]Extent, bool) { return nil, false }

// WidenPipe does nothing here (pipe buffers cannot be grown).
func WidenPipe(*os.File) {}

// vectorReader has no readv to offer here: grains are read one by one.
func vectorReader(io.Reader) func(bufs []*[]byte, last int) *readError { return nil }
