package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// fileExtents asks the file system where f's data lies (SEEK_DATA and
// SEEK_HOLE), so the holes of a sparse raw image are never read; ok is
// false when it cannot say (the file system does not know holes from data).
// Regions it reports as data may still hold zeros.
func fileExtents(f *os.File, size int64) (ext []Extent, ok bool) {
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data after off
		}
		if err != nil {
			return nil, false
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, false
		}
		hole = min(hole, size)
		if hole > data {
			ext = append(ext, Extent{data, hole - data})
		}
		off = hole
	}
	return ext, true
}

// pipeSize is the capacity WidenPipe asks for: the unprivileged maximum
// (/proc/sys/fs/pipe-max-size) by default.
const pipeSize = 1 << 20

// WidenPipe grows the kernel buffer of f when it is a pipe, so a disk read
// from it arrives in 1 MiB reads rather than 64 KiB ones: a sixteenth of
// the reads and wake-ups, most of the cost of reading holes from a pipe.
// It does nothing when f is no pipe or the kernel refuses.
func WidenPipe(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize)
	})
}

// vectorReader is the grain reader (see newGrainReader) of a reader with a
// file descriptor (a file, a pipe, os.Stdin): one readv fills all the
// buffers while the data is there, with no copy between; nil for any other
// reader.
func vectorReader(r io.Reader) func(bufs []*[]byte, last int) *readError {
	pre, _ := r.(*Prefixed)
	if pre != nil {
		r = pre.R
	}
	sc, ok := r.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var iov [][]byte
	return func(bufs []*[]byte, last int) *readError {
		iov = iov[:0]
		want := 0
		for i, bp := range bufs {
			b := *bp
			if i == len(bufs)-1 {
				b = b[:last]
			}
			iov = append(iov, b)
			want += len(b)
		}
		got := 0
		advance := func(n int) {
			for n > 0 {
				if n < len(iov[0]) {
					iov[0] = iov[0][n:]
					return
				}
				n -= len(iov[0])
				iov = iov[1:]
			}
		}
		for pre != nil && len(pre.Head) > 0 && got < want {
			n := copy(iov[0], pre.Head)
			pre.Head = pre.Head[n:]
			got += n
			advance(n)
		}
		for got < want {
			var n int
			var rerr error
			if err := rc.Read(func(fd uintptr) bool {
				n, rerr = unix.Readv(int(fd), iov)
				return rerr != unix.EAGAIN
			}); err != nil {
				rerr = err
			}
			if rerr == unix.EINTR {
				continue
			}
			if n == 0 && rerr == nil {
				rerr = io.ErrUnexpectedEOF
			}
			if rerr != nil {
				return &readError{int64(got), fmt.Errorf("got %d of %d bytes: %w", got, want, rerr)}
			}
			got += n
			advance(n)
		}
		return nil
	}
}
