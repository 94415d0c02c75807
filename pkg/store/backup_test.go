package store_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/rehost/rehost/pkg/store"
)

// A backup taken while another handle keeps committing is one moment of
// the store: a database that opens, passes SQLite's integrity check, and
// holds a counter value between the last one committed before the backup
// began and the first after it ended, with everything written earlier.
func TestSQLiteBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "rehost.db")
	s, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	src, err := s.CreateSource(ctx, store.Source{Kind: store.SourceVSphere, Name: "vc1", Endpoint: "https://vc1", Secret: []byte("sealed")})
	if err != nil {
		t.Fatal(err)
	}
	// The writer is another handle on the file, as the CLI is beside the
	// daemon.
	w, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var committed atomic.Int64
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := int64(1); ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := w.PutSetting(ctx, "counter", []byte(strconv.FormatInt(i, 10))); err != nil {
				done <- err
				return
			}
			committed.Store(i)
		}
	}()
	for committed.Load() < 50 {
	}
	before := committed.Load()
	copyPath := filepath.Join(dir, "copy.db")
	if err := s.Backup(ctx, copyPath); err != nil {
		t.Fatal(err)
	}
	after := committed.Load() + 1
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	db, err := sql.Open("sqlite", copyPath)
	if err != nil {
		t.Fatal(err)
	}
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity check of the copy: %q, %v", check, err)
	}
	db.Close()
	c, err := store.OpenSQLite(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v, err := c.GetSetting(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.ParseInt(string(v), 10, 64)
	if n < before || n > after {
		t.Errorf("the copy holds counter %d: want between %d (committed before) and %d (after)", n, before, after)
	}
	if got, err := c.GetSource(ctx, src.ID); err != nil || string(got.Secret) != "sealed" {
		t.Errorf("the copy's source: %+v, %v", got, err)
	}
	if st, err := os.Stat(copyPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the copy's mode: %v, %v", st.Mode(), err)
	}
	if err := s.Backup(ctx, copyPath); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a backup over an existing file: %v, want ErrInvalid", err)
	}
}
