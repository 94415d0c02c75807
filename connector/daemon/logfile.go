package daemon

import (
	"os"
	"path/filepath"
	"sync"
)

// LogFile is where `rehost serve` keeps its recent logs (besides stderr),
// for the support bundle: dir/log/rehost.log, and rehost.log.1 before it.
func LogFile(dir string) string { return filepath.Join(dir, "log", "rehost.log") }

// maxLogFile is the size at which the log file is rotated (one old file is
// kept), so the appliance's disk never fills with logs.
const maxLogFile = 8 << 20

// RotatingFile is an io.Writer appending to a log file, rotated at 8 MiB.
// Writes are serialized; a write error is returned to the caller (slog
// drops the line) and the next write tries again.
type RotatingFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
	size int64
}

// OpenLogFile opens (creating) the log file of state directory dir.
func OpenLogFile(dir string) (*RotatingFile, error) {
	p := LogFile(dir)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	r := &RotatingFile{path: p}
	return r, r.open()
}

func (r *RotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, st.Size()
	return nil
}

func (r *RotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil || r.size+int64(len(p)) > maxLogFile {
		if r.f != nil {
			r.f.Close()
			r.f = nil
			os.Rename(r.path, r.path+".1")
		}
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

// Close closes the file.
func (r *RotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
