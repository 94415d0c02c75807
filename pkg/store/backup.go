package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"modernc.org/sqlite"
)

// Backuper copies a store while it is in use.
type Backuper interface {
	// Backup writes a consistent copy of the whole store into a new file
	// at path (which must not exist) while other connections and
	// processes keep reading and writing: what a transaction committed
	// before the copy began is in it, nothing after. The copy is a
	// database OpenSQLite opens. On error no file is left at path.
	Backup(ctx context.Context, path string) error
}

var _ Backuper = (*SQLite)(nil)

// Backup copies the database with SQLite's online backup API in one step,
// which holds a read transaction for its duration: writers in WAL mode go
// on meanwhile, and the copy is of one moment. Not a file copy, which could
// take the database mid-transaction or miss what is still in the WAL.
func (s *SQLite) Backup(ctx context.Context, path string) (err error) {
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("back up the store to %s: %w: the file exists", path, ErrInvalid)
	}
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("back up the store: %w", err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		b, ok := dc.(interface {
			NewBackup(string) (*sqlite.Backup, error)
		})
		if !ok {
			return fmt.Errorf("the SQLite driver (%T) has no online backup", dc)
		}
		bk, err := b.NewBackup(path)
		if err != nil {
			return err
		}
		for {
			more, err := bk.Step(-1)
			if err != nil {
				bk.Finish()
				return err
			}
			if !more {
				break
			}
		}
		return bk.Finish()
	})
	if err != nil {
		return fmt.Errorf("back up the store to %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}
