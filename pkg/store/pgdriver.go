package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// The store's database/sql driver for PostgreSQL, over pgx's wire-protocol
// layer (pgconn) alone: pgx's own driver links its type system, statement
// cache and pool, megabytes the product does not need, for the few types
// the schema has (BIGINT, INTEGER, TEXT, BYTEA). Parameters go in text
// form, typed by the server from where they stand (as a prepared statement
// would have them), []byte in binary form (raw bytes, for BYTEA and TEXT
// alike); results come back in text form and are converted by their type.

// PostgreSQL type OIDs the driver converts (pg_type.dat).
const (
	oidBool   = 16
	oidBytea  = 17
	oidInt8   = 20
	oidInt2   = 21
	oidInt4   = 23
	oidOID    = 26
	oidFloat4 = 700
	oidFloat8 = 701
)

// errCommitRollback: COMMIT answered ROLLBACK (the transaction had failed).
var errCommitRollback = errors.New("commit unexpectedly resulted in rollback")

// pgConnector makes connections from one configuration (TLS and password
// already set in it).
type pgConnector struct{ cfg *pgconn.Config }

func (c pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	pc, err := pgconn.ConnectConfig(ctx, c.cfg)
	if err != nil {
		return nil, err
	}
	return &pgConn{pc: pc}, nil
}

func (pgConnector) Driver() driver.Driver { return pgDriver{} }

type pgDriver struct{}

func (pgDriver) Open(string) (driver.Conn, error) {
	return nil, errors.New("store: the PostgreSQL driver opens connections only through its connector")
}

// pgConn is one connection; database/sql never uses it from two goroutines
// at once.
type pgConn struct {
	pc        *pgconn.PgConn
	lastReset time.Time
}

var (
	_ driver.ConnBeginTx        = (*pgConn)(nil)
	_ driver.ExecerContext      = (*pgConn)(nil)
	_ driver.QueryerContext     = (*pgConn)(nil)
	_ driver.ConnPrepareContext = (*pgConn)(nil)
	_ driver.Pinger             = (*pgConn)(nil)
	_ driver.SessionResetter    = (*pgConn)(nil)
	_ driver.Validator          = (*pgConn)(nil)
)

func (c *pgConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// PrepareContext returns a statement that sends its text with each
// execution: the server parses it each time, as for any other query.
func (c *pgConn) PrepareContext(_ context.Context, query string) (driver.Stmt, error) {
	if c.pc.IsClosed() {
		return nil, driver.ErrBadConn
	}
	return &pgStmt{c: c, query: query}, nil
}

func (c *pgConn) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.pc.Close(ctx)
}

func (c *pgConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *pgConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if c.pc.IsClosed() {
		return nil, driver.ErrBadConn
	}
	begin := "begin"
	switch sql.IsolationLevel(opts.Isolation) {
	case sql.LevelDefault:
	case sql.LevelReadUncommitted:
		begin += " isolation level read uncommitted"
	case sql.LevelReadCommitted:
		begin += " isolation level read committed"
	case sql.LevelRepeatableRead, sql.LevelSnapshot:
		begin += " isolation level repeatable read"
	case sql.LevelSerializable:
		begin += " isolation level serializable"
	default:
		return nil, fmt.Errorf("begin transaction: isolation level %v is not supported by PostgreSQL", sql.IsolationLevel(opts.Isolation))
	}
	if opts.ReadOnly {
		begin += " read only"
	}
	if _, err := c.simple(ctx, begin); err != nil {
		// A refusal leaves the connection usable; anything else (the
		// connection failed, a fatal error) does not.
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Severity == "FATAL" || pe.Severity == "PANIC" {
			c.Close()
		}
		return nil, err
	}
	return &pgTx{c: c, ctx: ctx}, nil
}

// simple runs sql (one or more statements, no parameters) with the simple
// query protocol and returns the last statement's command tag.
func (c *pgConn) simple(ctx context.Context, sql string) (pgconn.CommandTag, error) {
	results, err := c.pc.Exec(ctx, sql).ReadAll()
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	if len(results) == 0 {
		return pgconn.CommandTag{}, nil
	}
	return results[len(results)-1].CommandTag, nil
}

func (c *pgConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if c.pc.IsClosed() {
		return nil, driver.ErrBadConn
	}
	var tag pgconn.CommandTag
	var err error
	if len(args) == 0 {
		tag, err = c.simple(ctx, query)
	} else {
		values, formats, aerr := pgArgs(args)
		if aerr != nil {
			return nil, aerr
		}
		tag, err = c.pc.ExecParams(ctx, query, values, nil, formats, nil).Close()
	}
	if err != nil {
		// Nothing reached the server: database/sql tries another connection.
		if pgconn.SafeToRetry(err) {
			return nil, driver.ErrBadConn
		}
		return nil, err
	}
	return driver.RowsAffected(tag.RowsAffected()), nil
}

func (c *pgConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if c.pc.IsClosed() {
		return nil, driver.ErrBadConn
	}
	values, formats, err := pgArgs(args)
	if err != nil {
		return nil, err
	}
	rr := c.pc.ExecParams(ctx, query, values, nil, formats, nil)
	// The first row is read now, so a statement the server refuses fails
	// here rather than at the first Next.
	r := &pgRows{rr: rr, fields: rr.FieldDescriptions()}
	r.ahead = rr.NextRow()
	if !r.ahead {
		if _, err := rr.Close(); err != nil {
			if pgconn.SafeToRetry(err) {
				return nil, driver.ErrBadConn
			}
			return nil, err
		}
	}
	r.first = true
	return r, nil
}

// Ping checks the connection with an empty query; a connection that fails
// it is closed.
func (c *pgConn) Ping(ctx context.Context) error {
	if c.pc.IsClosed() {
		return driver.ErrBadConn
	}
	if err := c.pc.Ping(ctx); err != nil {
		c.Close()
		return driver.ErrBadConn
	}
	return nil
}

// ResetSession runs before a pooled connection is reused: one left inside
// a transaction is dropped, and one idle for over a second is pinged first,
// so a connection the network lost is found here rather than by a write.
func (c *pgConn) ResetSession(ctx context.Context) error {
	if c.pc.IsClosed() || c.pc.TxStatus() != 'I' {
		return driver.ErrBadConn
	}
	now := time.Now()
	if now.Sub(c.lastReset) > time.Second {
		if err := c.pc.Ping(ctx); err != nil {
			return driver.ErrBadConn
		}
	}
	c.lastReset = now
	return nil
}

// IsValid reports whether the connection may go back to the pool.
func (c *pgConn) IsValid() bool { return !c.pc.IsClosed() }

type pgTx struct {
	c   *pgConn
	ctx context.Context
}

// Commit sends COMMIT with the simple query protocol (the lost-commit test
// recognises it on the wire). A failed COMMIT outside an idle state closes
// the connection, whose state is then unknown.
func (t *pgTx) Commit() error {
	tag, err := t.c.simple(t.ctx, "commit")
	if err != nil {
		if t.c.pc.TxStatus() != 'I' {
			t.c.Close()
		}
		return err
	}
	if tag.String() == "ROLLBACK" {
		return errCommitRollback
	}
	return nil
}

func (t *pgTx) Rollback() error {
	if _, err := t.c.simple(t.ctx, "rollback"); err != nil {
		t.c.Close()
		return err
	}
	return nil
}

type pgStmt struct {
	c     *pgConn
	query string
}

func (s *pgStmt) Close() error  { return nil }
func (s *pgStmt) NumInput() int { return -1 }

func (s *pgStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), named(args))
}

func (s *pgStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), named(args))
}

func (s *pgStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.c.ExecContext(ctx, s.query, args)
}

func (s *pgStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.c.QueryContext(ctx, s.query, args)
}

func named(args []driver.Value) []driver.NamedValue {
	nv := make([]driver.NamedValue, len(args))
	for i, a := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	return nv
}

// pgArgs encodes the parameters database/sql has already reduced to
// driver.Values. Only []byte goes in binary form.
func pgArgs(args []driver.NamedValue) ([][]byte, []int16, error) {
	if len(args) == 0 {
		return nil, nil, nil
	}
	values := make([][]byte, len(args))
	formats := make([]int16, len(args))
	for i, a := range args {
		if a.Name != "" {
			return nil, nil, fmt.Errorf("parameter %s: named parameters are not supported: use $%d", a.Name, a.Ordinal)
		}
		switch v := a.Value.(type) {
		case nil:
		case int64:
			values[i] = strconv.AppendInt(nil, v, 10)
		case float64:
			values[i] = []byte(pgFloat(v))
		case bool:
			values[i] = strconv.AppendBool(nil, v)
		case string:
			values[i] = []byte(v)
		case []byte:
			if v != nil { // nil is NULL
				values[i], formats[i] = v, 1
			}
		case time.Time:
			values[i] = []byte(v.Format("2006-01-02 15:04:05.999999999Z07:00"))
		default:
			return nil, nil, fmt.Errorf("parameter $%d: values of type %T are not supported", a.Ordinal, a.Value)
		}
	}
	return values, formats, nil
}

func pgFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "Infinity"
	case math.IsInf(v, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// pgRows reads a result in text form.
type pgRows struct {
	rr     *pgconn.ResultReader
	fields []pgconn.FieldDescription
	first  bool // the row read ahead by QueryContext is still to be returned
	ahead  bool // whether there was one
}

func (r *pgRows) Columns() []string {
	names := make([]string, len(r.fields))
	for i, f := range r.fields {
		names[i] = f.Name
	}
	return names
}

func (r *pgRows) Close() error {
	_, err := r.rr.Close()
	return err
}

func (r *pgRows) Next(dest []driver.Value) error {
	more := r.ahead
	if r.first {
		r.first = false
	} else {
		more = r.rr.NextRow()
	}
	if !more {
		if _, err := r.rr.Close(); err != nil {
			return err
		}
		return io.EOF
	}
	for i, raw := range r.rr.Values() {
		v, err := pgValue(r.fields[i].DataTypeOID, raw)
		if err != nil {
			return fmt.Errorf("column %s: %w", r.fields[i].Name, err)
		}
		dest[i] = v
	}
	return nil
}

// pgValue converts a value in PostgreSQL's text form to the Go type
// database/sql expects of its column type; other types (text, varchar,
// name, numeric…) are strings.
func pgValue(oid uint32, raw []byte) (driver.Value, error) {
	if raw == nil {
		return nil, nil
	}
	switch oid {
	case oidInt8, oidInt4, oidInt2, oidOID:
		return strconv.ParseInt(string(raw), 10, 64)
	case oidBool:
		return len(raw) == 1 && raw[0] == 't', nil
	case oidFloat4, oidFloat8:
		return strconv.ParseFloat(string(raw), 64)
	case oidBytea:
		s := string(raw)
		if !strings.HasPrefix(s, `\x`) {
			return nil, errors.New("bytea not in hex form: set bytea_output to hex (the server's default)")
		}
		return hex.DecodeString(s[2:])
	}
	return string(raw), nil
}
