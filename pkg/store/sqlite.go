package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the embedded Store: one database file, opened in WAL mode with a
// busy timeout so concurrent writers wait instead of failing, and foreign
// keys enforced. Write transactions begin IMMEDIATE, so a transaction that
// reads then writes cannot deadlock against another one upgrading its lock.
type SQLite struct {
	*sqlStore
	path string
}

var _ Store = (*SQLite)(nil)

// BusyTimeout is how long a connection waits for another writer's lock.
const BusyTimeout = 15 * time.Second

var sqliteDialect = dialect{
	name:     "sqlite",
	autoID:   "INTEGER PRIMARY KEY",
	bytes:    "BLOB",
	classify: classifySQLite,
}

func classifySQLite(err error) constraintKind {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return notConstraint
	}
	switch e.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return uniqueViolation
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return foreignKeyViolation
	}
	return notConstraint
}

// OpenSQLite opens (creating if needed) the database at path and brings its
// schema up to date. Reopening an up-to-date database applies nothing.
func OpenSQLite(path string) (*SQLite, error) {
	if path == "" {
		return nil, fmt.Errorf("open store: %w: database path is empty", ErrInvalid)
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", BusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &SQLite{sqlStore: &sqlStore{db: db, d: sqliteDialect, now: time.Now}, path: path}
	ctx, cancel := context.WithTimeout(context.Background(), 2*BusyTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// Path is the database file.
func (s *SQLite) Path() string { return s.path }

// SetClock replaces the clock that stamps CreatedAt/UpdatedAt, for tests
// with a fake clock. Call it before using the store concurrently.
func (s *SQLite) SetClock(now func() time.Time) { s.now = now }
