//go:build !windows

package secret

import (
	"fmt"
	"os"
)

func checkPrivate(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("key file %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("key file %s is readable by others (mode %v): run 'chmod 600 %s'", path, fi.Mode().Perm(), path)
	}
	return nil
}
