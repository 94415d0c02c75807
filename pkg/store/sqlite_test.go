package store_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
	"github.com/rehost/rehost/pkg/store/storetest"
)

func openTemp(t *testing.T) store.Store {
	s, err := store.OpenSQLite(filepath.Join(t.TempDir(), "rehost.db"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, openTemp)
}

func TestSQLiteReopenKeepsDataAndSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rehost.db")
	s, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := s.SchemaVersion(ctx)
	if err != nil || v1 < 1 {
		t.Fatalf("schema version %d, %v", v1, err)
	}
	if err := s.PutSetting(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		s, err = store.OpenSQLite(path)
		if err != nil {
			t.Fatalf("reopen %d: %v", i, err)
		}
		if v, err := s.SchemaVersion(ctx); err != nil || v != v1 {
			t.Errorf("reopen %d: schema version %d (%v), want %d", i, v, err, v1)
		}
		if v, err := s.GetSetting(ctx, "k"); err != nil || string(v) != "v" {
			t.Errorf("reopen %d: setting = %q, %v", i, v, err)
		}
		s.Close()
	}
	// Each migration is recorded exactly once.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows, distinct int
	if err := db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_version`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != v1 || distinct != v1 {
		t.Errorf("schema_version has %d rows (%d distinct), want %d", rows, distinct, v1)
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal mode %q, %v; want wal", mode, err)
	}
}

func TestSQLiteRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rehost.db")
	s, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_version (version, name, applied_at) VALUES (9999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = store.OpenSQLite(path)
	if err == nil || !contains(err.Error(), "9999") || !errors.Is(err, store.ErrSchemaNewer) {
		t.Fatalf("open with newer schema: %v", err)
	}
}

func TestSQLiteClock(t *testing.T) {
	s, err := store.OpenSQLite(filepath.Join(t.TempDir(), "rehost.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	s.SetClock(func() time.Time { return at })
	src, err := s.CreateSource(context.Background(), store.Source{Kind: store.SourceAzure, Name: "sub"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSource(context.Background(), src.ID)
	if err != nil || !got.CreatedAt.Equal(at) {
		t.Errorf("created at %v (%v), want %v", got.CreatedAt, err, at)
	}
}

func TestOpenSQLiteBadPath(t *testing.T) {
	_, err := store.OpenSQLite(filepath.Join(t.TempDir(), "missing-dir", "sub", "rehost.db"))
	if err == nil {
		t.Fatal("opening a database in a missing directory succeeded")
	}
	if _, err := store.OpenSQLite(""); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("empty path: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
