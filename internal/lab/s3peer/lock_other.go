//go:build !unix

package s3peer

import (
	"errors"
	"os"
	"time"
)

// lockFile emulates an exclusive lock with an O_EXCL lock file where flock is
// unavailable. A lock older than ten minutes is treated as abandoned.
func lockFile(path string) (unlock func(), err error) {
	deadline := time.Now().Add(15 * time.Minute)
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			f.Close()
			return func() { os.Remove(path) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		if st, serr := os.Stat(path); serr == nil && time.Since(st.ModTime()) > 10*time.Minute {
			os.Remove(path)
			continue
		}
		if time.Now().After(deadline) {
			return nil, errors.New("timed out waiting for " + path)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
