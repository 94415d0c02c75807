package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rehost/rehost/pkg/retry"
)

// constraintKind classifies a backend error.
type constraintKind int

const (
	notConstraint constraintKind = iota
	uniqueViolation
	foreignKeyViolation
)

// dialect is what differs between SQL backends. Queries are written with `?`
// placeholders and rebound when numbered is set (PostgreSQL's $1, $2, …).
type dialect struct {
	name     string
	numbered bool
	autoID   string // DDL of an auto-assigned BIGINT primary key
	bytes    string // DDL type of a byte string
	classify func(error) constraintKind
	// forUpdate is appended to a row read inside a write transaction, so
	// read-modify-write holds the row until commit (PostgreSQL's READ
	// COMMITTED would otherwise lose one of two concurrent updates).
	// SQLite needs none: its write transactions begin IMMEDIATE.
	forUpdate string
	// skipLocked is appended to a claim's candidate rows (%s: the table's
	// alias): rows another transaction holds are passed over, not waited for.
	skipLocked string
	// lockMigrations and unlockMigrations bracket the migrations on one
	// connection, so several processes opening one database apply each
	// migration once.
	lockMigrations, unlockMigrations string
	// retryable reports a failure that left nothing applied and is worth
	// doing again — the connection lost before commit, a serialization
	// failure or deadlock. Nil: never.
	retryable func(error) bool
	// connLost reports a lost or refused connection (a subset of retryable).
	connLost func(error) bool
	// txKeys records a key in tx_keys with each write transaction, so a
	// commit whose answer was lost is found to have happened (or not) once
	// the connection is back, and is never applied twice.
	txKeys bool
}

func (d dialect) expand(ddl string) string {
	return strings.NewReplacer("{{autoid}}", d.autoID, "{{bytes}}", d.bytes).Replace(ddl)
}

// rebind turns `?` placeholders into the dialect's form.
func (d dialect) rebind(q string) string {
	if !d.numbered {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// sqlStore implements Store over database/sql for any dialect.
type sqlStore struct {
	db  *sql.DB
	d   dialect
	now func() time.Time
	// wait makes calls that lose the connection wait for it to come back
	// (until their context ends) instead of failing: the daemon's runs
	// pause at their next write while the database is unreachable.
	wait bool
	// outage, when set, hears when the database becomes unreachable (err
	// set) and reachable again (nil).
	outage  func(err error)
	outMu   sync.Mutex
	down    bool
	commits atomic.Uint64
}

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type scanner interface{ Scan(dest ...any) error }

// waits reports whether a call on q outside a transaction waits out a lost
// connection (calls in a transaction are retried whole by tx).
func (s *sqlStore) waits(q querier) bool {
	return s.wait && s.d.connLost != nil && q == querier(s.db)
}

func (s *sqlStore) exec(ctx context.Context, q querier, query string, args ...any) (sql.Result, error) {
	if !s.waits(q) {
		return q.ExecContext(ctx, s.d.rebind(query), args...)
	}
	var res sql.Result
	err := s.retry(ctx, s.d.connLost, func() error {
		var err error
		res, err = q.ExecContext(ctx, s.d.rebind(query), args...)
		return err
	})
	return res, err
}

func (s *sqlStore) query(ctx context.Context, q querier, query string, args ...any) (*sql.Rows, error) {
	if !s.waits(q) {
		return q.QueryContext(ctx, s.d.rebind(query), args...)
	}
	var rows *sql.Rows
	err := s.retry(ctx, s.d.connLost, func() error {
		var err error
		rows, err = q.QueryContext(ctx, s.d.rebind(query), args...)
		return err
	})
	return rows, err
}

func (s *sqlStore) queryRow(ctx context.Context, q querier, query string, args ...any) scanner {
	if !s.waits(q) {
		return q.QueryRowContext(ctx, s.d.rebind(query), args...)
	}
	rows, err := s.query(ctx, q, query, args...)
	return &firstRow{rows: rows, err: err}
}

// firstRow scans the first row of rows as sql.Row does.
type firstRow struct {
	rows *sql.Rows
	err  error
}

func (r *firstRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	return r.rows.Close()
}

// lock is the clause that holds a row read through q until commit.
func (s *sqlStore) lock(q querier) string {
	if _, inTx := q.(*sql.Tx); inTx {
		return s.d.forUpdate
	}
	return ""
}

// retry calls fn until it succeeds or fails with an error again does not
// accept, under the one retry policy (from 50 ms, doubling to 2 s, for as
// long as ctx lasts). Only a store that waits (s.wait) retries lost
// connections.
func (s *sqlStore) retry(ctx context.Context, again func(error) bool, fn func() error) error {
	if again == nil {
		return fn()
	}
	lost := func(err error) bool { return s.d.connLost != nil && s.d.connLost(err) }
	err := retry.Policy{Attempts: math.MaxInt32, Base: 50 * time.Millisecond, Max: 2 * time.Second,
		Classify: func(err error) (bool, time.Duration) {
			if lost(err) {
				return s.wait, 0
			}
			return again(err), 0
		},
		OnRetry: func(_ int, err error, _ time.Duration) {
			if lost(err) {
				s.unreachable(err)
			}
		},
	}.Do(ctx, func(context.Context) error { return fn() })
	if err == nil {
		s.reachable()
	}
	return err
}

func (s *sqlStore) unreachable(err error) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if !s.down && s.outage != nil {
		s.outage(err)
	}
	s.down = true
}

func (s *sqlStore) reachable() {
	if s.outage == nil {
		return
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if s.down {
		s.outage(nil)
	}
	s.down = false
}

// tx runs fn in a write transaction, committing if it returns nil. On a
// backend that says which failures left nothing applied (lost connection
// before commit, serialization failure, deadlock) fn runs again in a new
// transaction; fn must therefore only set its results, never accumulate.
// A commit whose answer was lost is looked up by its key once the
// connection is back: found, it happened, and fn's results stand.
func (s *sqlStore) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	return s.retry(ctx, s.d.retryable, func() error { return s.tx1(ctx, fn) })
}

func (s *sqlStore) tx1(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	var key string
	if s.d.txKeys {
		key = newID("tx-")
		now := s.now().UnixNano()
		if _, err := s.exec(ctx, tx, `INSERT INTO tx_keys (tx_key, committed_at) VALUES (?, ?)`, key, now); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("record transaction key: %w", err)
		}
		// Keys are only needed across an outage: keep an hour's worth.
		if s.commits.Add(1)%512 == 0 {
			if _, err := s.exec(ctx, tx, `DELETE FROM tx_keys WHERE committed_at < ?`, now-int64(time.Hour)); err != nil {
				_ = tx.Rollback()
				return fmt.Errorf("prune transaction keys: %w", err)
			}
		}
	}
	err = tx.Commit()
	if err == nil {
		return nil
	}
	if key == "" || !s.d.connLost(err) {
		return fmt.Errorf("commit: %w", err)
	}
	// The commit may or may not have happened: ask, waiting for the
	// connection as long as the store waits.
	var n int
	if qerr := s.retry(ctx, s.d.connLost, func() error {
		return s.db.QueryRowContext(ctx, s.d.rebind(`SELECT COUNT(*) FROM tx_keys WHERE tx_key = ?`), key).Scan(&n)
	}); qerr != nil {
		return fmt.Errorf("commit: %w (and whether it happened is unknown: %v)", err, qerr)
	}
	if n > 0 {
		return nil
	}
	return fmt.Errorf("commit: %w", err)
}

func (s *sqlStore) Close() error { return s.db.Close() }

// --- value helpers ---

func timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func timeOf(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.Unix(0, v.Int64).UTC()
}

func boolArg(b bool) int {
	if b {
		return 1
	}
	return 0
}

func jsonArg(m json.RawMessage) string { return string(m) }

func jsonOf(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}

func checkJSON(what string, m json.RawMessage) error {
	if len(m) > 0 && !json.Valid(m) {
		return fmt.Errorf("%w: %s is not valid JSON", ErrInvalid, what)
	}
	return nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// notFound maps sql.ErrNoRows to ErrNotFound naming what was looked up.
func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return fmt.Errorf("read %s: %w", what, err)
}

// --- sources ---

const sourceCols = `id, kind, name, endpoint, username, secret, thumbprint, insecure, options, created_at`

func scanSource(r scanner) (Source, error) {
	var s Source
	var insecure int
	var created sql.NullInt64
	var options string
	if err := r.Scan(&s.ID, &s.Kind, &s.Name, &s.Endpoint, &s.User, &s.Secret, &s.Thumbprint, &insecure, &options, &created); err != nil {
		return Source{}, err
	}
	s.Insecure = insecure != 0
	if options != "" {
		s.Options = json.RawMessage(options)
	}
	s.CreatedAt = timeOf(created)
	return s, nil
}

func (s *sqlStore) CreateSource(ctx context.Context, src Source) (Source, error) {
	if err := validateSource(src); err != nil {
		return Source{}, fmt.Errorf("create source: %w", err)
	}
	src.ID = newID(prefixSource)
	if src.CreatedAt.IsZero() {
		src.CreatedAt = s.now()
	}
	_, err := s.exec(ctx, s.db, `INSERT INTO sources (`+sourceCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		src.ID, src.Kind, src.Name, src.Endpoint, src.User, src.Secret, src.Thumbprint, boolArg(src.Insecure), string(src.Options), timeArg(src.CreatedAt))
	if err != nil {
		if s.d.classify(err) == uniqueViolation {
			return Source{}, fmt.Errorf("create source %q: %w: a source with that name exists", src.Name, ErrConflict)
		}
		return Source{}, fmt.Errorf("create source %q: %w", src.Name, err)
	}
	return src, nil
}

func (s *sqlStore) getSource(ctx context.Context, q querier, id string) (Source, error) {
	src, err := scanSource(s.queryRow(ctx, q, `SELECT `+sourceCols+` FROM sources WHERE id = ?`+s.lock(q), id))
	if err != nil {
		return Source{}, notFound(err, "source "+id)
	}
	return src, nil
}

func (s *sqlStore) GetSource(ctx context.Context, id string) (Source, error) {
	return s.getSource(ctx, s.db, id)
}

func (s *sqlStore) ListSources(ctx context.Context) ([]Source, error) {
	rows, err := s.query(ctx, s.db, `SELECT `+sourceCols+` FROM sources ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list sources: %w", err)
	}
	return collect(rows, scanSource, "list sources")
}

func (s *sqlStore) UpdateSource(ctx context.Context, id string, fn func(*Source) error) (Source, error) {
	var out Source
	err := s.tx(ctx, func(tx *sql.Tx) error {
		src, err := s.getSource(ctx, tx, id)
		if err != nil {
			return err
		}
		created := src.CreatedAt
		if err := fn(&src); err != nil {
			return err
		}
		src.ID, src.CreatedAt = id, created
		if err := validateSource(src); err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `UPDATE sources SET kind = ?, name = ?, endpoint = ?, username = ?, secret = ?, thumbprint = ?, insecure = ?, options = ? WHERE id = ?`,
			src.Kind, src.Name, src.Endpoint, src.User, src.Secret, src.Thumbprint, boolArg(src.Insecure), string(src.Options), id)
		if err != nil {
			if s.d.classify(err) == uniqueViolation {
				return fmt.Errorf("%w: a source named %q exists", ErrConflict, src.Name)
			}
			return err
		}
		out = src
		return nil
	})
	if err != nil {
		return Source{}, fmt.Errorf("update source %s: %w", id, err)
	}
	return out, nil
}

func (s *sqlStore) DeleteSource(ctx context.Context, id string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.getSource(ctx, tx, id); err != nil {
			return err
		}
		var n int
		if err := s.queryRow(ctx, tx, `SELECT COUNT(*) FROM servers WHERE source_id = ?`, id).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: %d servers of it are in the catalog", ErrConflict, n)
		}
		_, err := s.exec(ctx, tx, `DELETE FROM sources WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete source %s: %w", id, err)
	}
	return nil
}

// --- servers ---

const serverCols = `server_id, source_id, vm_id, name, path, guest_os, firmware, cpus, memory_mib, disk_count, details, imported_at`

func scanServer(r scanner) (Server, error) {
	var v Server
	var imported sql.NullInt64
	if err := r.Scan(&v.ServerID, &v.SourceID, &v.VMID, &v.Name, &v.Path, &v.GuestOS, &v.Firmware, &v.CPUs, &v.MemoryMiB, &v.DiskCount, &v.Details, &imported); err != nil {
		return Server{}, err
	}
	v.ImportedAt = timeOf(imported)
	return v, nil
}

func (s *sqlStore) UpsertServer(ctx context.Context, v Server) (Server, error) {
	out, err := s.UpsertServers(ctx, []Server{v})
	if err != nil {
		return Server{}, err
	}
	return out[0], nil
}

func (s *sqlStore) UpsertServers(ctx context.Context, vs []Server) ([]Server, error) {
	out := slices.Clone(vs)
	for i := range out {
		v := &out[i]
		if v.SourceID == "" || v.VMID == "" {
			return nil, fmt.Errorf("upsert server %q: %w: source id and vm id are required", v.Name, ErrInvalid)
		}
		if v.Details != "" && !json.Valid([]byte(v.Details)) {
			return nil, fmt.Errorf("upsert server %q: %w: details are not valid JSON", v.Name, ErrInvalid)
		}
		if v.ImportedAt.IsZero() {
			v.ImportedAt = s.now()
		}
	}
	var failed *Server
	err := s.tx(ctx, func(tx *sql.Tx) error {
		sources := map[string]bool{}
		for i := range out {
			v := &out[i]
			failed = v
			if !sources[v.SourceID] {
				if _, err := s.getSource(ctx, tx, v.SourceID); err != nil {
					return err
				}
				sources[v.SourceID] = true
			}
			var existing string
			err := s.queryRow(ctx, tx, `SELECT server_id FROM servers WHERE source_id = ? AND vm_id = ?`, v.SourceID, v.VMID).Scan(&existing)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				v.ServerID = newID(prefixServer)
				_, err = s.exec(ctx, tx, `INSERT INTO servers (`+serverCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
					v.ServerID, v.SourceID, v.VMID, v.Name, v.Path, v.GuestOS, v.Firmware, v.CPUs, v.MemoryMiB, v.DiskCount, v.Details, timeArg(v.ImportedAt))
			case err == nil:
				v.ServerID = existing
				_, err = s.exec(ctx, tx, `UPDATE servers SET name = ?, path = ?, guest_os = ?, firmware = ?, cpus = ?, memory_mib = ?, disk_count = ?, details = ?, imported_at = ? WHERE server_id = ?`,
					v.Name, v.Path, v.GuestOS, v.Firmware, v.CPUs, v.MemoryMiB, v.DiskCount, v.Details, timeArg(v.ImportedAt), existing)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if failed == nil {
			return nil, fmt.Errorf("upsert %d servers: %w", len(vs), err)
		}
		return nil, fmt.Errorf("upsert server %q (vm %s of source %s): %w", failed.Name, failed.VMID, failed.SourceID, err)
	}
	return out, nil
}

func (s *sqlStore) GetServer(ctx context.Context, id string) (Server, error) {
	return s.getServer(ctx, s.db, id)
}

func (s *sqlStore) getServer(ctx context.Context, q querier, id string) (Server, error) {
	v, err := scanServer(s.queryRow(ctx, q, `SELECT `+serverCols+` FROM servers WHERE server_id = ?`+s.lock(q), id))
	if err != nil {
		return Server{}, notFound(err, "server "+id)
	}
	return v, nil
}

func (s *sqlStore) ListServers(ctx context.Context, f ServerFilter) ([]Server, error) {
	q := `SELECT ` + serverCols + ` FROM servers`
	var args []any
	if f.SourceID != "" {
		q += ` WHERE source_id = ?`
		args = append(args, f.SourceID)
	}
	rows, err := s.query(ctx, s.db, q+` ORDER BY name, server_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list servers: %w", err)
	}
	return collect(rows, scanServer, "list servers")
}

func (s *sqlStore) DeleteServer(ctx context.Context, id string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.getServer(ctx, tx, id); err != nil {
			return err
		}
		var job string
		err := s.queryRow(ctx, tx, `SELECT replication_job_id FROM replication_jobs WHERE server_id = ? ORDER BY created_at DESC`, id).Scan(&job)
		if err == nil {
			return fmt.Errorf("%w: replication job %s refers to it", ErrConflict, job)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var app string
		err = s.queryRow(ctx, tx, `SELECT app_id FROM app_servers WHERE server_id = ?`, id).Scan(&app)
		if err == nil {
			return fmt.Errorf("%w: app %s has it in a server group", ErrConflict, app)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		_, err = s.exec(ctx, tx, `DELETE FROM servers WHERE server_id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete server %s: %w", id, err)
	}
	return nil
}

// --- jobs ---

const jobCols = `replication_job_id, server_id, seed_replication_time, frequency, run_once, license_type, role_name,
	number_of_recent_amis_to_keep, encrypted, kms_key_id, description, state, status_message,
	next_replication_run_start_time, latest_ami_id, consecutive_failures, created_at, updated_at,
	mode, frequency_minutes, no_conversion, verify_requested`

func scanJob(r scanner) (ReplicationJob, error) {
	var j ReplicationJob
	var seed, next, created, updated sql.NullInt64
	var runOnce, encrypted, noConversion, verify int
	if err := r.Scan(&j.ReplicationJobID, &j.ServerID, &seed, &j.Frequency, &runOnce, &j.LicenseType, &j.RoleName,
		&j.NumberOfRecentAmisToKeep, &encrypted, &j.KmsKeyID, &j.Description, &j.State, &j.StatusMessage,
		&next, &j.LatestAmiID, &j.ConsecutiveFailures, &created, &updated,
		&j.Mode, &j.FrequencyMinutes, &noConversion, &verify); err != nil {
		return ReplicationJob{}, err
	}
	j.SeedReplicationTime, j.NextReplicationRunStartTime = timeOf(seed), timeOf(next)
	j.CreatedAt, j.UpdatedAt = timeOf(created), timeOf(updated)
	j.RunOnce, j.Encrypted = runOnce != 0, encrypted != 0
	j.NoConversion, j.VerifyRequested = noConversion != 0, verify != 0
	return j, nil
}

func (s *sqlStore) getJob(ctx context.Context, q querier, id string) (ReplicationJob, error) {
	j, err := scanJob(s.queryRow(ctx, q, `SELECT `+jobCols+` FROM replication_jobs WHERE replication_job_id = ?`+s.lock(q), id))
	if err != nil {
		return ReplicationJob{}, notFound(err, "replication job "+id)
	}
	return j, nil
}

func (s *sqlStore) GetJob(ctx context.Context, id string) (ReplicationJob, error) {
	return s.getJob(ctx, s.db, id)
}

func (s *sqlStore) CreateJob(ctx context.Context, j ReplicationJob) (ReplicationJob, error) {
	if j.State == "" {
		j.State = JobPending
	}
	if j.LicenseType == "" {
		j.LicenseType = LicenseAWS
	}
	if err := ValidateJob(j); err != nil {
		return ReplicationJob{}, fmt.Errorf("create replication job: %w", err)
	}
	j.ReplicationJobID = newID(prefixJob)
	now := s.now()
	if j.CreatedAt.IsZero() {
		j.CreatedAt = now
	}
	j.UpdatedAt = now
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.getServer(ctx, tx, j.ServerID); err != nil {
			return err
		}
		if j.State != JobDeleted {
			if err := s.checkOneJob(ctx, tx, j.ServerID, j.ReplicationJobID); err != nil {
				return err
			}
		}
		_, err := s.exec(ctx, tx, `INSERT INTO replication_jobs (`+jobCols+`) VALUES (`+placeholders(22)+`)`,
			j.ReplicationJobID, j.ServerID, timeArg(j.SeedReplicationTime), j.Frequency, boolArg(j.RunOnce), j.LicenseType, j.RoleName,
			j.NumberOfRecentAmisToKeep, boolArg(j.Encrypted), j.KmsKeyID, j.Description, j.State, j.StatusMessage,
			timeArg(j.NextReplicationRunStartTime), j.LatestAmiID, j.ConsecutiveFailures, timeArg(j.CreatedAt), timeArg(j.UpdatedAt),
			j.Mode, j.FrequencyMinutes, boolArg(j.NoConversion), boolArg(j.VerifyRequested))
		if err != nil && s.d.classify(err) == uniqueViolation {
			return fmt.Errorf("%w: server %s already has a replication job", ErrConflict, j.ServerID)
		}
		return err
	})
	if err != nil {
		return ReplicationJob{}, fmt.Errorf("create replication job for server %s: %w", j.ServerID, err)
	}
	return j, nil
}

// checkOneJob fails with ErrConflict naming the server's other live job.
func (s *sqlStore) checkOneJob(ctx context.Context, q querier, serverID, self string) error {
	var other string
	var state JobState
	err := s.queryRow(ctx, q, `SELECT replication_job_id, state FROM replication_jobs WHERE server_id = ? AND state <> ? AND replication_job_id <> ?`,
		serverID, JobDeleted, self).Scan(&other, &state)
	if err == nil {
		return fmt.Errorf("%w: server %s already has replication job %s (state %s); delete it first", ErrConflict, serverID, other, state)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	return err
}

func (s *sqlStore) ListJobs(ctx context.Context, f JobFilter) ([]ReplicationJob, error) {
	q := `SELECT ` + jobCols + ` FROM replication_jobs`
	var where []string
	var args []any
	if len(f.States) > 0 {
		where = append(where, `state IN (`+placeholders(len(f.States))+`)`)
		for _, st := range f.States {
			args = append(args, st)
		}
	}
	if f.ServerID != "" {
		where = append(where, `server_id = ?`)
		args = append(args, f.ServerID)
	}
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	rows, err := s.query(ctx, s.db, q+` ORDER BY created_at, replication_job_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list replication jobs: %w", err)
	}
	return collect(rows, scanJob, "list replication jobs")
}

// applyJob runs fn on the stored job and writes the result inside tx.
func (s *sqlStore) applyJob(ctx context.Context, tx *sql.Tx, j *ReplicationJob, fn func(*ReplicationJob) error) error {
	orig := *j
	if err := fn(j); err != nil {
		return err
	}
	j.ReplicationJobID, j.ServerID, j.CreatedAt = orig.ReplicationJobID, orig.ServerID, orig.CreatedAt
	j.UpdatedAt = s.now()
	if err := ValidateJob(*j); err != nil {
		return err
	}
	if orig.State == JobDeleted && j.State != JobDeleted {
		if err := s.checkOneJob(ctx, tx, j.ServerID, j.ReplicationJobID); err != nil {
			return err
		}
	}
	_, err := s.exec(ctx, tx, `UPDATE replication_jobs SET seed_replication_time = ?, frequency = ?, run_once = ?, license_type = ?, role_name = ?,
	number_of_recent_amis_to_keep = ?, encrypted = ?, kms_key_id = ?, description = ?, state = ?, status_message = ?,
	next_replication_run_start_time = ?, latest_ami_id = ?, consecutive_failures = ?, updated_at = ?,
	mode = ?, frequency_minutes = ?, no_conversion = ?, verify_requested = ? WHERE replication_job_id = ?`,
		timeArg(j.SeedReplicationTime), j.Frequency, boolArg(j.RunOnce), j.LicenseType, j.RoleName,
		j.NumberOfRecentAmisToKeep, boolArg(j.Encrypted), j.KmsKeyID, j.Description, j.State, j.StatusMessage,
		timeArg(j.NextReplicationRunStartTime), j.LatestAmiID, j.ConsecutiveFailures, timeArg(j.UpdatedAt),
		j.Mode, j.FrequencyMinutes, boolArg(j.NoConversion), boolArg(j.VerifyRequested), j.ReplicationJobID)
	if err != nil && s.d.classify(err) == uniqueViolation {
		return fmt.Errorf("%w: server %s already has a replication job", ErrConflict, j.ServerID)
	}
	return err
}

func (s *sqlStore) UpdateJob(ctx context.Context, id string, fn func(*ReplicationJob) error) (ReplicationJob, error) {
	return update(ctx, s, "replication job", id, s.getJob, s.applyJob, fn)
}

// update is the read-change-write of one record in a transaction: get reads
// it, apply runs fn on it and writes it back; an error names what and id.
func update[T any](ctx context.Context, s *sqlStore, what, id string, get func(context.Context, querier, string) (T, error),
	apply func(context.Context, *sql.Tx, *T, func(*T) error) error, fn func(*T) error) (T, error) {
	var out T
	err := s.tx(ctx, func(tx *sql.Tx) error {
		v, err := get(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := apply(ctx, tx, &v, fn); err != nil {
			return err
		}
		out = v
		return nil
	})
	if err != nil {
		var zero T
		return zero, fmt.Errorf("update %s %s: %w", what, id, err)
	}
	return out, nil
}

// --- runs ---

// progressArg stores a run's progress as JSON text, ” when there is none.
func progressArg(p RunProgress) string {
	if p.Step == "" && p.Mode == "" && len(p.Disks) == 0 && p.ImportPercent == 0 && len(p.Steps) == 0 && p.FailedStep == "" {
		return ""
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err) // numbers and strings only
	}
	return string(b)
}

const runCols = `replication_run_id, replication_job_id, run_type, state, stage, stage_progress, status_message, ami_id,
	scheduled_start_time, started_at, completed_time, description, encrypted, kms_key_id, progress, created_at, replication`

// replicationArg stores what an incremental run moved as JSON text, ”
// for a full run.
func replicationArg(r *RunReplication) string {
	if r == nil {
		return ""
	}
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // numbers and strings only
	}
	return string(b)
}

func scanRun(r scanner) (ReplicationRun, error) {
	var v ReplicationRun
	var sched, started, completed, created sql.NullInt64
	var encrypted int
	var progress, replication string
	if err := r.Scan(&v.ReplicationRunID, &v.ReplicationJobID, &v.Type, &v.State, &v.Stage, &v.StageProgress, &v.StatusMessage, &v.AmiID,
		&sched, &started, &completed, &v.Description, &encrypted, &v.KmsKeyID, &progress, &created, &replication); err != nil {
		return ReplicationRun{}, err
	}
	if progress != "" {
		if err := json.Unmarshal([]byte(progress), &v.Progress); err != nil {
			return ReplicationRun{}, fmt.Errorf("run %s: read its progress: %w", v.ReplicationRunID, err)
		}
	}
	if replication != "" {
		v.Replication = new(RunReplication)
		if err := json.Unmarshal([]byte(replication), v.Replication); err != nil {
			return ReplicationRun{}, fmt.Errorf("run %s: read what it replicated: %w", v.ReplicationRunID, err)
		}
	}
	v.ScheduledStartTime, v.StartedAt, v.CompletedTime, v.CreatedAt = timeOf(sched), timeOf(started), timeOf(completed), timeOf(created)
	v.Encrypted = encrypted != 0
	return v, nil
}

func (s *sqlStore) getRun(ctx context.Context, q querier, id string) (ReplicationRun, error) {
	v, err := scanRun(s.queryRow(ctx, q, `SELECT `+runCols+` FROM replication_runs WHERE replication_run_id = ?`+s.lock(q), id))
	if err != nil {
		return ReplicationRun{}, notFound(err, "replication run "+id)
	}
	return v, nil
}

func (s *sqlStore) GetRun(ctx context.Context, id string) (ReplicationRun, error) {
	return s.getRun(ctx, s.db, id)
}

// checkOneLiveRun fails with ErrConflict naming the job's other live run.
func (s *sqlStore) checkOneLiveRun(ctx context.Context, q querier, jobID, self string) error {
	var other string
	var state RunState
	err := s.queryRow(ctx, q, `SELECT replication_run_id, state FROM replication_runs WHERE replication_job_id = ? AND state IN (?, ?) AND replication_run_id <> ?`,
		jobID, RunPending, RunActive, self).Scan(&other, &state)
	if err == nil {
		return fmt.Errorf("%w: replication job %s already has run %s in state %s", ErrConflict, jobID, other, state)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	return err
}

func (s *sqlStore) insertRuns(ctx context.Context, tx *sql.Tx, runs []ReplicationRun) ([]ReplicationRun, error) {
	out := make([]ReplicationRun, 0, len(runs))
	known := map[string]bool{}
	for _, r := range runs {
		if r.State == "" {
			r.State = RunPending
		}
		if r.Type == "" {
			r.Type = RunAutomatic
		}
		if err := ValidateRun(r); err != nil {
			return nil, err
		}
		if !known[r.ReplicationJobID] {
			if _, err := s.getJob(ctx, tx, r.ReplicationJobID); err != nil {
				return nil, err
			}
			known[r.ReplicationJobID] = true
		}
		r.ReplicationRunID = newID(prefixRun)
		if r.CreatedAt.IsZero() {
			r.CreatedAt = s.now()
		}
		if r.State.Live() {
			if err := s.checkOneLiveRun(ctx, tx, r.ReplicationJobID, r.ReplicationRunID); err != nil {
				return nil, err
			}
		}
		_, err := s.exec(ctx, tx, `INSERT INTO replication_runs (`+runCols+`) VALUES (`+placeholders(17)+`)`,
			r.ReplicationRunID, r.ReplicationJobID, r.Type, r.State, r.Stage, r.StageProgress, r.StatusMessage, r.AmiID,
			timeArg(r.ScheduledStartTime), timeArg(r.StartedAt), timeArg(r.CompletedTime), r.Description, boolArg(r.Encrypted), r.KmsKeyID,
			progressArg(r.Progress), timeArg(r.CreatedAt), replicationArg(r.Replication))
		if err != nil {
			if s.d.classify(err) == uniqueViolation {
				return nil, fmt.Errorf("%w: replication job %s already has a pending or active run", ErrConflict, r.ReplicationJobID)
			}
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (s *sqlStore) CreateRuns(ctx context.Context, runs ...ReplicationRun) ([]ReplicationRun, error) {
	var out []ReplicationRun
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = s.insertRuns(ctx, tx, runs)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create replication runs: %w", err)
	}
	return out, nil
}

func (s *sqlStore) ScheduleRuns(ctx context.Context, jobID string, fn func(*ReplicationJob) ([]ReplicationRun, error)) (ReplicationJob, []ReplicationRun, error) {
	var job ReplicationJob
	var runs []ReplicationRun
	err := s.tx(ctx, func(tx *sql.Tx) error {
		j, err := s.getJob(ctx, tx, jobID)
		if err != nil {
			return err
		}
		var planned []ReplicationRun
		if err := s.applyJob(ctx, tx, &j, func(j *ReplicationJob) error {
			var err error
			planned, err = fn(j)
			return err
		}); err != nil {
			return err
		}
		for i := range planned {
			if planned[i].ReplicationJobID == "" {
				planned[i].ReplicationJobID = jobID
			}
			if planned[i].ReplicationJobID != jobID {
				return fmt.Errorf("%w: planned run belongs to job %s", ErrInvalid, planned[i].ReplicationJobID)
			}
		}
		runs, err = s.insertRuns(ctx, tx, planned)
		job = j
		return err
	})
	if err != nil {
		return ReplicationJob{}, nil, fmt.Errorf("schedule runs of replication job %s: %w", jobID, err)
	}
	return job, runs, nil
}

func (s *sqlStore) ListRuns(ctx context.Context, jobID string, limit int) ([]ReplicationRun, error) {
	q := `SELECT ` + runCols + ` FROM replication_runs WHERE replication_job_id = ? ORDER BY scheduled_start_time DESC, created_at DESC, replication_run_id`
	args := []any{jobID}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := s.query(ctx, s.db, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list runs of replication job %s: %w", jobID, err)
	}
	return collect(rows, scanRun, "list runs of replication job "+jobID)
}

func (s *sqlStore) RunsInState(ctx context.Context, states ...RunState) ([]ReplicationRun, error) {
	if len(states) == 0 {
		return nil, nil
	}
	args := make([]any, len(states))
	for i, st := range states {
		args[i] = st
	}
	rows, err := s.query(ctx, s.db, `SELECT `+runCols+` FROM replication_runs WHERE state IN (`+placeholders(len(states))+`)
	ORDER BY scheduled_start_time, created_at, replication_run_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list runs in states %v: %w", states, err)
	}
	return collect(rows, scanRun, "list runs by state")
}

func (s *sqlStore) ServersWithRunsIn(ctx context.Context, states ...RunState) ([]string, error) {
	if len(states) == 0 {
		return nil, nil
	}
	args := make([]any, len(states))
	for i, st := range states {
		args[i] = st
	}
	rows, err := s.query(ctx, s.db, `SELECT DISTINCT j.server_id FROM replication_runs r
	JOIN replication_jobs j ON j.replication_job_id = r.replication_job_id
	WHERE r.state IN (`+placeholders(len(states))+`) ORDER BY j.server_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list servers with runs in states %v: %w", states, err)
	}
	return collect(rows, func(sc scanner) (string, error) {
		var id string
		err := sc.Scan(&id)
		return id, err
	}, "list servers with runs by state")
}

func (s *sqlStore) CountRuns(ctx context.Context, jobID string, typ RunType, since time.Time) (int, error) {
	var n int
	err := s.queryRow(ctx, s.db, `SELECT COUNT(*) FROM replication_runs WHERE replication_job_id = ? AND run_type = ? AND scheduled_start_time >= ?`,
		jobID, typ, since.UnixNano()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count %s runs of replication job %s: %w", typ, jobID, err)
	}
	return n, nil
}

// applyRun runs fn on the stored run and writes the result inside tx.
func (s *sqlStore) applyRun(ctx context.Context, tx *sql.Tx, r *ReplicationRun, fn func(*ReplicationRun) error) error {
	if err := s.checkFence(ctx, tx); err != nil {
		return err
	}
	orig := *r
	if err := fn(r); err != nil {
		return err
	}
	r.ReplicationRunID, r.ReplicationJobID, r.CreatedAt = orig.ReplicationRunID, orig.ReplicationJobID, orig.CreatedAt
	if err := ValidateRun(*r); err != nil {
		return err
	}
	if r.State.Live() && !orig.State.Live() {
		if err := s.checkOneLiveRun(ctx, tx, r.ReplicationJobID, r.ReplicationRunID); err != nil {
			return err
		}
	}
	_, err := s.exec(ctx, tx, `UPDATE replication_runs SET run_type = ?, state = ?, stage = ?, stage_progress = ?, status_message = ?, ami_id = ?,
	scheduled_start_time = ?, started_at = ?, completed_time = ?, description = ?, encrypted = ?, kms_key_id = ?, progress = ?,
	replication = ?,
	lease_holder = CASE WHEN ? = 1 THEN '' ELSE lease_holder END, lease_expires = CASE WHEN ? = 1 THEN 0 ELSE lease_expires END
	WHERE replication_run_id = ?`,
		r.Type, r.State, r.Stage, r.StageProgress, r.StatusMessage, r.AmiID,
		timeArg(r.ScheduledStartTime), timeArg(r.StartedAt), timeArg(r.CompletedTime), r.Description, boolArg(r.Encrypted), r.KmsKeyID,
		progressArg(r.Progress), replicationArg(r.Replication), boolArg(leaseEnds(orig.State, r.State)), boolArg(leaseEnds(orig.State, r.State)), r.ReplicationRunID)
	if err != nil && s.d.classify(err) == uniqueViolation {
		return fmt.Errorf("%w: replication job %s already has a pending or active run", ErrConflict, r.ReplicationJobID)
	}
	return err
}

func (s *sqlStore) UpdateRun(ctx context.Context, id string, fn func(*ReplicationRun) error) (ReplicationRun, error) {
	return update(ctx, s, "replication run", id, s.getRun, s.applyRun, fn)
}

func (s *sqlStore) UpdateRunAndJob(ctx context.Context, runID string, fn func(*ReplicationRun, *ReplicationJob) error) (ReplicationRun, ReplicationJob, error) {
	var run ReplicationRun
	var job ReplicationJob
	err := s.tx(ctx, func(tx *sql.Tx) error {
		r, err := s.getRun(ctx, tx, runID)
		if err != nil {
			return err
		}
		j, err := s.getJob(ctx, tx, r.ReplicationJobID)
		if err != nil {
			return err
		}
		// fn sees both rows; each apply then restores the fields that must
		// not change and validates.
		origR, origJ := r, j
		if err := fn(&r, &j); err != nil {
			return err
		}
		newR, newJ := r, j
		r, j = origR, origJ
		if err := s.applyJob(ctx, tx, &j, func(p *ReplicationJob) error { *p = newJ; return nil }); err != nil {
			return err
		}
		if err := s.applyRun(ctx, tx, &r, func(p *ReplicationRun) error { *p = newR; return nil }); err != nil {
			return err
		}
		run, job = r, j
		return nil
	})
	if err != nil {
		return ReplicationRun{}, ReplicationJob{}, fmt.Errorf("update replication run %s and its job: %w", runID, err)
	}
	return run, job, nil
}

// --- ledger ---

const ledgerCols = `id, run_id, step, kind, intent, resource_id, state, data, handed_from, created_at, updated_at`

func scanLedger(r scanner) (LedgerEntry, error) {
	var e LedgerEntry
	var intent, data string
	var created, updated sql.NullInt64
	if err := r.Scan(&e.ID, &e.RunID, &e.Step, &e.Kind, &intent, &e.ResourceID, &e.State, &data, &e.HandedFrom, &created, &updated); err != nil {
		return LedgerEntry{}, err
	}
	e.Intent, e.Data = jsonOf(intent), jsonOf(data)
	e.CreatedAt, e.UpdatedAt = timeOf(created), timeOf(updated)
	return e, nil
}

func (s *sqlStore) RecordIntent(ctx context.Context, runID, step, kind string, intent json.RawMessage) (int64, error) {
	what := fmt.Sprintf("record intent of %s in step %s of run %s", kind, step, runID)
	if step == "" || kind == "" {
		return 0, fmt.Errorf("%s: %w: step and kind are required", what, ErrInvalid)
	}
	if err := checkJSON("intent", intent); err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	var id int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.getRun(ctx, tx, runID); err != nil {
			return err
		}
		if err := s.checkFence(ctx, tx); err != nil {
			return err
		}
		now := s.now().UnixNano()
		return s.queryRow(ctx, tx, `INSERT INTO ledger (run_id, step, kind, intent, resource_id, state, data, created_at, updated_at)
	VALUES (?, ?, ?, ?, '', ?, '', ?, ?) RETURNING id`, runID, step, kind, jsonArg(intent), LedgerIntent, now, now).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return id, nil
}

func (s *sqlStore) getLedger(ctx context.Context, q querier, id int64) (LedgerEntry, error) {
	e, err := scanLedger(s.queryRow(ctx, q, `SELECT `+ledgerCols+` FROM ledger WHERE id = ?`+s.lock(q), id))
	if err != nil {
		return LedgerEntry{}, notFound(err, fmt.Sprintf("ledger entry %d", id))
	}
	return e, nil
}

func (s *sqlStore) GetLedgerEntry(ctx context.Context, id int64) (LedgerEntry, error) {
	return s.getLedger(ctx, s.db, id)
}

// updateLedger changes entry id inside a transaction after checking that its
// current state allows it.
func (s *sqlStore) updateLedger(ctx context.Context, what string, id int64, allowed []LedgerState, set string, args ...any) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.checkLedgerWrite(ctx, tx, id, allowed); err != nil {
			return err
		}
		args = append(append(args, s.now().UnixNano()), id)
		_, err := s.exec(ctx, tx, `UPDATE ledger SET `+set+`, updated_at = ? WHERE id = ?`, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s of ledger entry %d: %w", what, id, err)
	}
	return nil
}

// checkLedgerWrite is what every write to an existing ledger entry checks
// first: ErrConflict unless entry id is in one of the allowed states
// (ErrNotFound if it is missing), and ErrFenced when ctx carries a lease
// that no longer holds the run.
func (s *sqlStore) checkLedgerWrite(ctx context.Context, tx *sql.Tx, id int64, allowed []LedgerState) error {
	e, err := s.getLedger(ctx, tx, id)
	if err != nil {
		return err
	}
	if !slices.Contains(allowed, e.State) {
		return fmt.Errorf("%w: entry (%s %s) is %s", ErrConflict, e.Kind, e.ResourceID, e.State)
	}
	return s.checkFence(ctx, tx)
}

// partsPerStatement bounds a multi-row insert of parts (3 arguments each)
// well below SQLite's and PostgreSQL's limits on bound parameters.
const partsPerStatement = 200

func (s *sqlStore) RecordParts(ctx context.Context, id int64, parts []LedgerPart) error {
	for _, p := range parts {
		if p.Number < 1 {
			return fmt.Errorf("record parts of ledger entry %d: %w: part number %d is below 1", id, ErrInvalid, p.Number)
		}
		if len(p.Data) == 0 || !json.Valid(p.Data) {
			return fmt.Errorf("record parts of ledger entry %d: %w: data of part %d is not valid JSON", id, ErrInvalid, p.Number)
		}
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.checkLedgerWrite(ctx, tx, id, []LedgerState{LedgerIntent, LedgerCreated}); err != nil {
			return err
		}
		for chunk := range slices.Chunk(parts, partsPerStatement) {
			args := make([]any, 0, 3*len(chunk))
			for _, p := range chunk {
				args = append(args, id, p.Number, jsonArg(p.Data))
			}
			q := `INSERT INTO ledger_parts (entry_id, number, data) VALUES ` +
				strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", len(chunk)), ", ") +
				` ON CONFLICT (entry_id, number) DO UPDATE SET data = excluded.data`
			if _, err := s.exec(ctx, tx, q, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record %d parts of ledger entry %d: %w", len(parts), id, err)
	}
	return nil
}

func (s *sqlStore) LedgerParts(ctx context.Context, id int64) ([]LedgerPart, error) {
	rows, err := s.query(ctx, s.db, `SELECT number, data FROM ledger_parts WHERE entry_id = ? ORDER BY number`, id)
	if err != nil {
		return nil, fmt.Errorf("read parts of ledger entry %d: %w", id, err)
	}
	return collect(rows, func(r scanner) (LedgerPart, error) {
		var p LedgerPart
		var data string
		err := r.Scan(&p.Number, &data)
		p.Data = jsonOf(data)
		return p, err
	}, fmt.Sprintf("read parts of ledger entry %d", id))
}

func (s *sqlStore) RecordCreated(ctx context.Context, id int64, resourceID string, data json.RawMessage) error {
	if err := checkJSON("data", data); err != nil {
		return fmt.Errorf("record creation of ledger entry %d: %w", id, err)
	}
	if resourceID == "" {
		return fmt.Errorf("record creation of ledger entry %d: %w: resource id is empty", id, ErrInvalid)
	}
	allowed := []LedgerState{LedgerIntent, LedgerCreated}
	if data == nil {
		return s.updateLedger(ctx, "record creation", id, allowed, `state = ?, resource_id = ?`, LedgerCreated, resourceID)
	}
	return s.updateLedger(ctx, "record creation", id, allowed, `state = ?, resource_id = ?, data = ?`, LedgerCreated, resourceID, jsonArg(data))
}

func (s *sqlStore) UpdateData(ctx context.Context, id int64, data json.RawMessage) error {
	if err := checkJSON("data", data); err != nil {
		return fmt.Errorf("update data of ledger entry %d: %w", id, err)
	}
	return s.updateLedger(ctx, "update data", id, []LedgerState{LedgerIntent, LedgerCreated, LedgerReleased}, `data = ?`, jsonArg(data))
}

func (s *sqlStore) RecordReleased(ctx context.Context, id int64) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.checkLedgerWrite(ctx, tx, id, []LedgerState{LedgerIntent, LedgerCreated, LedgerReleased}); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `UPDATE ledger SET state = ?, updated_at = ? WHERE id = ?`, LedgerReleased, s.now().UnixNano(), id); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `DELETE FROM ledger_parts WHERE entry_id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("record release of ledger entry %d: %w", id, err)
	}
	return nil
}

func (s *sqlStore) HandOver(ctx context.Context, id int64, toStep string) (LedgerEntry, error) {
	what := fmt.Sprintf("hand ledger entry %d over to step %s", id, toStep)
	if toStep == "" {
		return LedgerEntry{}, fmt.Errorf("%s: %w: step is required", what, ErrInvalid)
	}
	var taken LedgerEntry
	err := s.tx(ctx, func(tx *sql.Tx) error {
		e, err := s.getLedger(ctx, tx, id)
		if err != nil {
			return err
		}
		if e.State != LedgerIntent && e.State != LedgerCreated {
			return fmt.Errorf("%w: entry (%s %s) is %s", ErrConflict, e.Kind, e.ResourceID, e.State)
		}
		if err := s.checkFence(ctx, tx); err != nil {
			return err
		}
		now := s.now().UnixNano()
		if _, err := s.exec(ctx, tx, `UPDATE ledger SET state = ?, updated_at = ? WHERE id = ?`, LedgerHandedOver, now, id); err != nil {
			return err
		}
		var nid int64
		if err := s.queryRow(ctx, tx, `INSERT INTO ledger (run_id, step, kind, intent, resource_id, state, data, handed_from, created_at, updated_at)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, e.RunID, toStep, e.Kind, jsonArg(e.Intent), e.ResourceID, e.State, jsonArg(e.Data), id, now, now).Scan(&nid); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO ledger_parts (entry_id, number, data) SELECT ?, number, data FROM ledger_parts WHERE entry_id = ?`, nid, id); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM ledger_parts WHERE entry_id = ?`, id); err != nil {
			return err
		}
		taken, err = s.getLedger(ctx, tx, nid)
		return err
	})
	if err != nil {
		return LedgerEntry{}, fmt.Errorf("%s: %w", what, err)
	}
	return taken, nil
}

func (s *sqlStore) LedgerForRun(ctx context.Context, runID string) ([]LedgerEntry, error) {
	rows, err := s.query(ctx, s.db, `SELECT `+ledgerCols+` FROM ledger WHERE run_id = ? ORDER BY id`, runID)
	if err != nil {
		return nil, fmt.Errorf("read ledger of run %s: %w", runID, err)
	}
	return collect(rows, scanLedger, "read ledger of run "+runID)
}

func (s *sqlStore) UnreleasedLedger(ctx context.Context) ([]LedgerEntry, error) {
	rows, err := s.query(ctx, s.db, `SELECT `+ledgerCols+` FROM ledger WHERE state IN (?, ?) ORDER BY id`, LedgerIntent, LedgerCreated)
	if err != nil {
		return nil, fmt.Errorf("read unreleased ledger: %w", err)
	}
	return collect(rows, scanLedger, "read unreleased ledger")
}

// --- events ---

func (s *sqlStore) AddEvent(ctx context.Context, e Event) (Event, error) {
	if e.Level == "" {
		e.Level = LevelInfo
	}
	switch e.Level {
	case LevelInfo, LevelWarn, LevelError:
	default:
		return Event{}, fmt.Errorf("add event: %w: unknown level %q", ErrInvalid, e.Level)
	}
	if e.Message == "" {
		return Event{}, fmt.Errorf("add event: %w: message is empty", ErrInvalid)
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	err := s.queryRow(ctx, s.db, `INSERT INTO events (event_time, job_id, run_id, level, message) VALUES (?, ?, ?, ?, ?) RETURNING id`,
		e.Time.UnixNano(), e.JobID, e.RunID, e.Level, e.Message).Scan(&e.ID)
	if err != nil {
		return Event{}, fmt.Errorf("add event %q: %w", e.Message, err)
	}
	e.Time = e.Time.UTC()
	return e, nil
}

func (s *sqlStore) Events(ctx context.Context, f EventFilter) ([]Event, error) {
	q := `SELECT id, event_time, job_id, run_id, level, message FROM events`
	var where []string
	var args []any
	if f.JobID != "" {
		where = append(where, `job_id = ?`)
		args = append(args, f.JobID)
	}
	if f.RunID != "" {
		where = append(where, `run_id = ?`)
		args = append(args, f.RunID)
	}
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY id DESC`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := s.query(ctx, s.db, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return collect(rows, func(r scanner) (Event, error) {
		var e Event
		var t sql.NullInt64
		err := r.Scan(&e.ID, &t, &e.JobID, &e.RunID, &e.Level, &e.Message)
		e.Time = timeOf(t)
		return e, err
	}, "list events")
}

// --- settings ---

func (s *sqlStore) GetSetting(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	if err := s.queryRow(ctx, s.db, `SELECT value FROM settings WHERE setting_key = ?`, key).Scan(&v); err != nil {
		return nil, notFound(err, "setting "+key)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

func (s *sqlStore) PutSetting(ctx context.Context, key string, value []byte) error {
	if key == "" {
		return fmt.Errorf("put setting: %w: key is empty", ErrInvalid)
	}
	if value == nil {
		value = []byte{}
	}
	_, err := s.exec(ctx, s.db, `INSERT INTO settings (setting_key, value, updated_at) VALUES (?, ?, ?)
	ON CONFLICT (setting_key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		key, value, s.now().UnixNano())
	if err != nil {
		return fmt.Errorf("put setting %s: %w", key, err)
	}
	return nil
}

func (s *sqlStore) DeleteSetting(ctx context.Context, key string) error {
	if _, err := s.exec(ctx, s.db, `DELETE FROM settings WHERE setting_key = ?`, key); err != nil {
		return fmt.Errorf("delete setting %s: %w", key, err)
	}
	return nil
}

// collect scans every row and closes rows.
func collect[T any](rows *sql.Rows, scan func(scanner) (T, error), what string) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
