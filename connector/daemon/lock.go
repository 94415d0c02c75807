package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// serveLockFile is held locked by the one `rehost serve` of a state
// directory; it holds that daemon's ServeInfo.
const serveLockFile = "serve.lock"

// ServeInfo describes the daemon serving a state directory, as it wrote it
// into the lock file when it started.
type ServeInfo struct {
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Listen  string    `json:"listen,omitempty"`
	Version string    `json:"version,omitempty"`
	// Config is the daemon's effective configuration (no secrets in it).
	Config json.RawMessage `json:"config,omitempty"`
}

// ErrInUse is returned by LockServe when another daemon serves the state
// directory.
var ErrInUse = errors.New("state directory in use")

// ServeLock is the held lock of a state directory.
type ServeLock struct{ f *os.File }

// LockServe makes the calling process the one daemon of dir: it takes an
// exclusive lock on dir/serve.lock (released by Release, or when the
// process dies, however it dies) and writes info into it. A second daemon
// is refused with an error wrapping ErrInUse that names the first one's pid.
func LockServe(dir string, info ServeInfo) (*ServeLock, error) {
	f, err := os.OpenFile(filepath.Join(dir, serveLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock state directory %s: %w", dir, err)
	}
	if err := lockFile(f, true, false); err != nil {
		defer f.Close()
		// Each writer truncates, then writes: the content may be read
		// half-written only while the other daemon starts.
		if errors.Is(err, errLocked) {
			other, _ := readServeInfo(f)
			return nil, fmt.Errorf("%w: %s is served by another 'rehost serve' (pid %d, since %s): stop it first, or give another --state-dir",
				ErrInUse, dir, other.PID, other.Started.Format(time.RFC3339))
		}
		return nil, fmt.Errorf("lock state directory %s: %w", dir, err)
	}
	l := &ServeLock{f}
	if err := l.Update(info); err != nil {
		l.Release()
		return nil, fmt.Errorf("lock state directory %s: write %s: %w", dir, serveLockFile, err)
	}
	return l, nil
}

// Update rewrites the daemon's description (its address once it listens).
func (l *ServeLock) Update(info ServeInfo) error {
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	// Written over the old content, then cut to length: the file is never
	// empty, and a reader that meets a half-written one reads it again.
	if _, err := l.f.WriteAt(b, 0); err != nil {
		return err
	}
	return l.f.Truncate(int64(len(b)))
}

// Release unlocks the state directory.
func (l *ServeLock) Release() {
	unlockFile(l.f)
	l.f.Close()
}

// Serving reports the daemon serving dir, if one does.
func Serving(dir string) (ServeInfo, bool, error) {
	f, err := os.Open(filepath.Join(dir, serveLockFile))
	if errors.Is(err, fs.ErrNotExist) {
		return ServeInfo{}, false, nil
	}
	if err != nil {
		return ServeInfo{}, false, err
	}
	defer f.Close()
	if err := lockFile(f, false, false); err == nil {
		unlockFile(f)
		return ServeInfo{}, false, nil
	} else if !errors.Is(err, errLocked) {
		return ServeInfo{}, false, err
	}
	info, err := readServeInfo(f)
	return info, true, err
}

// readServeInfo reads the daemon's description, again for a moment if it
// meets one being rewritten.
func readServeInfo(f *os.File) (ServeInfo, error) {
	var err error
	for range 20 {
		var info ServeInfo
		var b []byte
		if b, err = readAllAt(f); err != nil {
			return info, err
		}
		if err = json.Unmarshal(b, &info); err == nil {
			return info, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return ServeInfo{}, fmt.Errorf("read %s: %w", serveLockFile, err)
}

func readAllAt(f *os.File) ([]byte, error) {
	buf := make([]byte, 64<<10)
	n, err := f.ReadAt(buf, 0)
	if n > 0 {
		err = nil
	}
	return buf[:n], err
}

// errLocked: another process holds the lock.
var errLocked = errors.New("locked by another process")

// withFileLock runs fn holding an exclusive lock on path (waiting for it):
// read-modify-write of a setting by concurrent CLI processes.
func withFileLock(path string, fn func() error) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := lockFile(f, true, true); err != nil {
		return err
	}
	defer unlockFile(f)
	return fn()
}
