package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrFenced: a write carried the fencing token of a lease that is no longer
// the run's (another member claimed the run since). The writer must stop
// the run and leave it to the new holder; nothing was written.
var ErrFenced = errors.New("lease lost")

// Member is one connector of a fleet sharing the store.
type Member struct {
	ID string `json:"id"`
	// Incarnation tells a restart of the member (the same state directory:
	// the same incarnation) from a second connector given the same id.
	Incarnation string `json:"-"`
	Version     string `json:"version,omitempty"`
	Address     string `json:"address,omitempty"`
	// Sources are the ids of the sources the member can reach; it is given
	// runs of their servers only.
	Sources []string `json:"sources"`
	// Capacity is how many runs the member takes at once.
	Capacity  int       `json:"capacity"`
	JoinedAt  time.Time `json:"joinedAt"`
	Heartbeat time.Time `json:"heartbeat"`
}

// Lease is a member's hold on one run. Token is the fencing token: every
// lease of a run has a higher one than the run's previous lease.
type Lease struct {
	RunID    string    `json:"runId"`
	Holder   string    `json:"holder"`
	Token    int64     `json:"token"`
	Acquired time.Time `json:"acquired"`
	Expires  time.Time `json:"expires"`
}

// Claim is a run leased to a member by ClaimRuns.
type Claim struct {
	Run   ReplicationRun
	Lease Lease
}

// Fleet is the membership of a fleet of connectors and the leases by which
// they share the runs. A store shared by several processes (PostgreSQL)
// makes it fleet-wide; every backend implements it the same way.
//
// Times are the store's clock: members are expected to keep theirs in step
// (NTP), well within a lease's time to live.
type Fleet interface {
	// JoinFleet adds m (JoinedAt and Heartbeat set to now). A member of
	// the same id and incarnation is a restart: its row is refreshed and
	// the leases its previous process held are ended, free to be claimed
	// at once. A member of the same id but another incarnation is refused
	// with ErrConflict naming it while its heartbeat is younger than
	// stale; older, it is taken to be gone and replaced.
	JoinFleet(ctx context.Context, m Member, stale time.Duration) (Member, error)
	// Heartbeat records that m is alive, with its current version,
	// address, sources and capacity. ErrNotFound if m was removed from the
	// fleet; ErrConflict if another incarnation took its id over. Either
	// way m must stop taking work.
	Heartbeat(ctx context.Context, m Member) error
	// ListMembers lists the members by id.
	ListMembers(ctx context.Context) ([]Member, error)
	// RemoveMember removes the member and ends its leases. ErrNotFound if
	// there is none.
	RemoveMember(ctx context.Context, id string) error

	// ClaimRuns leases to member up to max runs, in one transaction: runs
	// PENDING, or ACTIVE with no lease or an expired one (their holder
	// stopped renewing), of servers whose source the member reaches,
	// oldest ScheduledStartTime first. Rows another transaction holds are
	// skipped, never waited for. The work is spread by load: a member
	// takes its share of the runs in flight and claimable among the
	// healthy members (heartbeat within ttl) that reach its sources, less
	// what it runs already (at least one while no member runs less), and
	// leaves the rest to the others unless they have waited longer than
	// ttl. PENDING runs become ACTIVE with StartedAt now. Each lease
	// expires after ttl unless renewed, and its token is one higher than
	// the run's previous one.
	ClaimRuns(ctx context.Context, member string, max int, ttl time.Duration) ([]Claim, error)
	// LeaseRun leases one run, whatever its state (cleanup of a finished
	// run), to member for ttl. ErrConflict naming the holder if another
	// member holds an unexpired lease; ErrNotFound if there is no run.
	LeaseRun(ctx context.Context, member, runID string, ttl time.Duration) (Lease, error)
	// RenewLeases extends each lease still held (same holder and token)
	// to now+ttl, in one transaction, and returns the runs of those that
	// are not: another member holds the run now, or it ended.
	RenewLeases(ctx context.Context, leases []Lease, ttl time.Duration) (lost []string, err error)
	// ReleaseLease ends l if it is still held, leaving the run as it is
	// for another member to claim at once. Releasing a lease no longer
	// held is not an error.
	ReleaseLease(ctx context.Context, l Lease) error
	// Leases lists the leases of runs that have a holder, expired or not,
	// by run.
	Leases(ctx context.Context) ([]Lease, error)

	// TryLock takes, or renews for holder, the named fleet-wide lock until
	// now+ttl, and reports whether holder has it.
	TryLock(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// LockHolder returns who holds the named lock, and until when; an
	// empty holder when nobody ever took it.
	LockHolder(ctx context.Context, name string) (holder string, expires time.Time, err error)

	// AcquireImportSlots takes n of the region's limit VM Import slots
	// (one per import task) for the run of lease l, all or none, and
	// reports whether it holds them (false: too few are free; the caller
	// waits and tries again). Slots are held while the lease they were
	// taken with is: they free themselves when the lease ends or expires.
	// Slots the lease already holds count towards n. ErrInvalid unless
	// 1 <= n <= limit; ErrFenced if l is no longer the run's lease.
	AcquireImportSlots(ctx context.Context, region string, limit, n int, l Lease) (bool, error)
	// ReleaseImportSlot frees the region's slots held by l, if any.
	ReleaseImportSlot(ctx context.Context, region string, l Lease) error
	// ImportSlotsInUse counts the held slots per region.
	ImportSlotsInUse(ctx context.Context) (map[string]int, error)
}

type leaseKey struct{}

// WithLease returns ctx carrying l as the fencing token of the writes made
// with it: a ledger write or run update under ctx fails with ErrFenced,
// changing nothing, once l is not the run's current lease.
func WithLease(ctx context.Context, l Lease) context.Context {
	return context.WithValue(ctx, leaseKey{}, l)
}

// LeaseOf returns the lease ctx carries, if any.
func LeaseOf(ctx context.Context) (Lease, bool) {
	l, ok := ctx.Value(leaseKey{}).(Lease)
	return l, ok
}

// checkFence fails with ErrFenced unless the lease ctx carries (if any) is
// still its run's, and holds the run's row until tx ends so no claim can
// come between the check and the write.
func (s *sqlStore) checkFence(ctx context.Context, tx *sql.Tx) error {
	l, ok := LeaseOf(ctx)
	if !ok {
		return nil
	}
	var holder string
	var token int64
	err := s.queryRow(ctx, tx, `SELECT lease_holder, lease_token FROM replication_runs WHERE replication_run_id = ?`+s.d.forUpdate, l.RunID).Scan(&holder, &token)
	if err != nil {
		return notFound(err, "replication run "+l.RunID)
	}
	if holder != l.Holder || token != l.Token {
		now := "nobody"
		if holder != "" {
			now = fmt.Sprintf("connector %s (token %d)", holder, token)
		}
		return fmt.Errorf("%w: run %s is held by %s, not by connector %s (token %d): this write was refused", ErrFenced, l.RunID, now, l.Holder, l.Token)
	}
	return nil
}

// --- members ---

const memberCols = `member_id, incarnation, version, address, sources, capacity, joined_at, heartbeat_at`

func scanMember(r scanner) (Member, error) {
	var m Member
	var sources string
	var joined, hb sql.NullInt64
	if err := r.Scan(&m.ID, &m.Incarnation, &m.Version, &m.Address, &sources, &m.Capacity, &joined, &hb); err != nil {
		return Member{}, err
	}
	if err := json.Unmarshal([]byte(sources), &m.Sources); err != nil {
		return Member{}, fmt.Errorf("sources of member %s: %w", m.ID, err)
	}
	m.JoinedAt, m.Heartbeat = timeOf(joined), timeOf(hb)
	return m, nil
}

func validateMember(m Member) error {
	if m.ID == "" {
		return fmt.Errorf("%w: connector id is empty", ErrInvalid)
	}
	if m.Incarnation == "" {
		return fmt.Errorf("%w: connector %s: incarnation is empty", ErrInvalid, m.ID)
	}
	if m.Capacity < 0 {
		return fmt.Errorf("%w: connector %s: capacity is negative", ErrInvalid, m.ID)
	}
	return nil
}

// endLeases frees every lease member holds (its token stays on the run).
func (s *sqlStore) endLeases(ctx context.Context, q querier, member string) error {
	_, err := s.exec(ctx, q, `UPDATE replication_runs SET lease_holder = '', lease_expires = 0 WHERE lease_holder = ?`, member)
	return err
}

func (s *sqlStore) JoinFleet(ctx context.Context, m Member, stale time.Duration) (Member, error) {
	if err := validateMember(m); err != nil {
		return Member{}, fmt.Errorf("join the fleet: %w", err)
	}
	if m.Sources == nil {
		m.Sources = []string{}
	}
	now := s.now()
	m.Heartbeat = now
	err := s.tx(ctx, func(tx *sql.Tx) error {
		cur, err := scanMember(s.queryRow(ctx, tx, `SELECT `+memberCols+` FROM members WHERE member_id = ?`+s.lock(tx), m.ID))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			m.JoinedAt = now
			_, err = s.exec(ctx, tx, `INSERT INTO members (`+memberCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
				m.ID, m.Incarnation, m.Version, m.Address, stringsArg(m.Sources), m.Capacity, timeArg(m.JoinedAt), timeArg(m.Heartbeat))
			if err != nil && s.d.classify(err) == uniqueViolation {
				return fmt.Errorf("%w: another connector joined with id %s at the same moment", ErrConflict, m.ID)
			}
			return err
		case err != nil:
			return err
		}
		if cur.Incarnation != m.Incarnation {
			if age := now.Sub(cur.Heartbeat); age < stale {
				return fmt.Errorf("%w: connector id %s is in use by another connector (address %s, heartbeat %s ago): give this one another id, or stop the other one",
					ErrConflict, m.ID, cmpOr(cur.Address, "unknown"), age.Round(time.Second))
			}
		}
		m.JoinedAt = now
		if _, err := s.exec(ctx, tx, `UPDATE members SET incarnation = ?, version = ?, address = ?, sources = ?, capacity = ?, joined_at = ?, heartbeat_at = ? WHERE member_id = ?`,
			m.Incarnation, m.Version, m.Address, stringsArg(m.Sources), m.Capacity, timeArg(m.JoinedAt), timeArg(m.Heartbeat), m.ID); err != nil {
			return err
		}
		// The previous process of this id is gone: what it held is free.
		return s.endLeases(ctx, tx, m.ID)
	})
	if err != nil {
		return Member{}, fmt.Errorf("join the fleet as connector %s: %w", m.ID, err)
	}
	m.JoinedAt, m.Heartbeat = m.JoinedAt.UTC(), m.Heartbeat.UTC()
	return m, nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func stringsArg(v []string) string {
	if v == nil {
		v = []string{}
	}
	b, _ := json.Marshal(v) // a []string always marshals
	return string(b)
}

func (s *sqlStore) Heartbeat(ctx context.Context, m Member) error {
	if err := validateMember(m); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE members SET version = ?, address = ?, sources = ?, capacity = ?, heartbeat_at = ? WHERE member_id = ? AND incarnation = ?`,
			m.Version, m.Address, stringsArg(m.Sources), m.Capacity, timeArg(s.now()), m.ID, m.Incarnation)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		var n int
		if err := s.queryRow(ctx, tx, `SELECT COUNT(*) FROM members WHERE member_id = ?`, m.ID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: connector %s was removed from the fleet", ErrNotFound, m.ID)
		}
		return fmt.Errorf("%w: another connector took id %s over", ErrConflict, m.ID)
	})
	if err != nil {
		return fmt.Errorf("heartbeat of connector %s: %w", m.ID, err)
	}
	return nil
}

func (s *sqlStore) ListMembers(ctx context.Context) ([]Member, error) {
	rows, err := s.query(ctx, s.db, `SELECT `+memberCols+` FROM members ORDER BY member_id`)
	if err != nil {
		return nil, fmt.Errorf("list connectors: %w", err)
	}
	return collect(rows, scanMember, "list connectors")
}

func (s *sqlStore) RemoveMember(ctx context.Context, id string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `DELETE FROM members WHERE member_id = ?`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		return s.endLeases(ctx, tx, id)
	})
	if err != nil {
		return fmt.Errorf("remove connector %s: %w", id, err)
	}
	return nil
}

// --- leases ---

// loads counts the unexpired leases of ACTIVE runs per holder.
func (s *sqlStore) loads(ctx context.Context, q querier, now int64) (map[string]int, error) {
	rows, err := s.query(ctx, q, `SELECT lease_holder, COUNT(*) FROM replication_runs WHERE state = ? AND lease_holder <> '' AND lease_expires > ? GROUP BY lease_holder`, RunActive, now)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var h string
		var n int
		if err := rows.Scan(&h, &n); err != nil {
			return nil, err
		}
		out[h] = n
	}
	return out, rows.Err()
}

// claimWindow is how many candidates a claim reads per run it may take:
// the rest are left to less loaded members.
const claimWindow = 4

func (s *sqlStore) ClaimRuns(ctx context.Context, member string, max int, ttl time.Duration) ([]Claim, error) {
	if max <= 0 {
		return nil, nil
	}
	var out []Claim
	err := s.tx(ctx, func(tx *sql.Tx) error {
		out = nil
		now := s.now()
		rows, err := s.query(ctx, tx, `SELECT `+memberCols+` FROM members`)
		if err != nil {
			return err
		}
		members, err := collect(rows, scanMember, "list connectors")
		if err != nil {
			return err
		}
		i := slices.IndexFunc(members, func(m Member) bool { return m.ID == member })
		if i < 0 {
			return fmt.Errorf("%w: connector %s is not a member of the fleet", ErrNotFound, member)
		}
		me := members[i]
		if len(me.Sources) == 0 {
			return nil
		}
		load, err := s.loads(ctx, tx, now.UnixNano())
		if err != nil {
			return err
		}
		where := `FROM replication_runs r
	JOIN replication_jobs j ON j.replication_job_id = r.replication_job_id
	JOIN servers s ON s.server_id = j.server_id
	WHERE r.state IN (?, ?) AND (r.lease_holder = '' OR r.lease_expires <= ?) AND s.source_id IN (` + placeholders(len(me.Sources)) + `)`
		args := []any{RunPending, RunActive, now.UnixNano()}
		for _, src := range me.Sources {
			args = append(args, src)
		}
		var claimable int
		if err := s.queryRow(ctx, tx, `SELECT COUNT(*) `+where, args...).Scan(&claimable); err != nil {
			return err
		}
		if claimable == 0 {
			return nil
		}
		quota := fairShare(members, member, load, claimable, now, ttl)
		rows, err = s.query(ctx, tx, `SELECT r.replication_run_id, r.state, r.scheduled_start_time, r.lease_expires `+where+`
	ORDER BY r.scheduled_start_time, r.created_at, r.replication_run_id LIMIT ?`+s.d.skipLockedOf("r"), append(args, max*claimWindow)...)
		if err != nil {
			return err
		}
		type candidate struct {
			id             string
			state          RunState
			waiting        time.Time
			sched, expires sql.NullInt64
		}
		var cands []candidate
		for rows.Next() {
			var c candidate
			if err := rows.Scan(&c.id, &c.state, &c.sched, &c.expires); err != nil {
				rows.Close()
				return err
			}
			c.waiting = timeOf(c.sched)
			if c.state == RunActive && c.expires.Int64 > 0 {
				c.waiting = time.Unix(0, c.expires.Int64)
			}
			cands = append(cands, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var take []string
		for _, c := range cands {
			if len(take) >= max {
				break
			}
			// Beyond its share a member leaves runs to the others, unless
			// they have waited longer than ttl.
			if len(take) >= quota && now.Sub(c.waiting) < ttl {
				continue
			}
			take = append(take, c.id)
		}
		out, err = s.lease(ctx, tx, member, take, ttl, now, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim runs for connector %s: %w", member, err)
	}
	return out, nil
}

// fairShare is how many of the claimable runs member may take: its share
// of the work (the runs in flight and claimable) among the healthy members
// with capacity that reach one of its sources, less what it runs already;
// at least one while no such member runs less than it does.
func fairShare(members []Member, member string, load map[string]int, claimable int, now time.Time, ttl time.Duration) int {
	var me Member
	for _, m := range members {
		if m.ID == member {
			me = m
		}
	}
	eligible, work, least := 0, claimable, true
	for _, m := range members {
		shares := m.ID == member
		for _, src := range m.Sources {
			shares = shares || slices.Contains(me.Sources, src)
		}
		if !shares || m.Capacity <= 0 || (m.ID != member && now.Sub(m.Heartbeat) >= ttl) {
			continue
		}
		eligible++
		work += load[m.ID]
		if m.ID != member && load[m.ID] < load[member] && load[m.ID] < m.Capacity {
			least = false
		}
	}
	share := (work+eligible-1)/eligible - load[member]
	if share <= 0 && least {
		share = 1
	}
	return share
}

// lease gives each of runs to member with its next token, in one
// statement; start also makes PENDING runs ACTIVE, started now. The claims
// come back in the order of runs.
func (s *sqlStore) lease(ctx context.Context, tx *sql.Tx, member string, runs []string, ttl time.Duration, now time.Time, start bool) ([]Claim, error) {
	if len(runs) == 0 {
		return nil, nil
	}
	expires := now.Add(ttl)
	args := []any{member, now.UnixNano(), expires.UnixNano(), boolArg(start), RunPending, RunActive, boolArg(start), RunPending, now.UnixNano()}
	for _, id := range runs {
		args = append(args, id)
	}
	rows, err := s.query(ctx, tx, `UPDATE replication_runs SET lease_holder = ?, lease_token = lease_token + 1, lease_acquired = ?, lease_expires = ?,
	state = CASE WHEN ? = 1 AND state = ? THEN ? ELSE state END,
	started_at = CASE WHEN ? = 1 AND state = ? THEN ? ELSE started_at END
	WHERE replication_run_id IN (`+placeholders(len(runs))+`) RETURNING lease_token, `+runCols, args...)
	if err != nil {
		return nil, err
	}
	claims, err := collect(rows, func(r scanner) (Claim, error) {
		var token int64
		run, err := scanRun(prefixed{r, &token})
		return Claim{Run: run, Lease: Lease{RunID: run.ReplicationRunID, Holder: member, Token: token, Acquired: now.UTC(), Expires: expires.UTC()}}, err
	}, "lease runs")
	if err != nil {
		return nil, err
	}
	if len(claims) != len(runs) {
		return nil, fmt.Errorf("%w: lease %d runs: %d found", ErrNotFound, len(runs), len(claims))
	}
	order := make(map[string]int, len(runs))
	for i, id := range runs {
		order[id] = i
	}
	slices.SortFunc(claims, func(a, b Claim) int { return order[a.Run.ReplicationRunID] - order[b.Run.ReplicationRunID] })
	return claims, nil
}

// prefixed scans a leading column into first, then the rest as r would.
type prefixed struct {
	r     scanner
	first any
}

func (p prefixed) Scan(dest ...any) error { return p.r.Scan(append([]any{p.first}, dest...)...) }

func (s *sqlStore) LeaseRun(ctx context.Context, member, runID string, ttl time.Duration) (Lease, error) {
	var l Lease
	err := s.tx(ctx, func(tx *sql.Tx) error {
		now := s.now()
		var holder string
		var expires int64
		err := s.queryRow(ctx, tx, `SELECT lease_holder, lease_expires FROM replication_runs WHERE replication_run_id = ?`+s.lock(tx), runID).Scan(&holder, &expires)
		if err != nil {
			return notFound(err, "replication run "+runID)
		}
		if holder != "" && holder != member && expires > now.UnixNano() {
			return fmt.Errorf("%w: connector %s holds it until %s", ErrConflict, holder, time.Unix(0, expires).UTC().Format(time.RFC3339))
		}
		c, err := s.lease(ctx, tx, member, []string{runID}, ttl, now, false)
		if err == nil {
			l = c[0].Lease
		}
		return err
	})
	if err != nil {
		return Lease{}, fmt.Errorf("lease run %s to connector %s: %w", runID, member, err)
	}
	return l, nil
}

func (s *sqlStore) RenewLeases(ctx context.Context, leases []Lease, ttl time.Duration) ([]string, error) {
	if len(leases) == 0 {
		return nil, nil
	}
	var lost []string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		lost = nil
		until := s.now().Add(ttl).UnixNano()
		for _, l := range leases {
			res, err := s.exec(ctx, tx, `UPDATE replication_runs SET lease_expires = ? WHERE replication_run_id = ? AND lease_holder = ? AND lease_token = ?`,
				until, l.RunID, l.Holder, l.Token)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				lost = append(lost, l.RunID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("renew %d leases: %w", len(leases), err)
	}
	return lost, nil
}

func (s *sqlStore) ReleaseLease(ctx context.Context, l Lease) error {
	_, err := s.exec(ctx, s.db, `UPDATE replication_runs SET lease_holder = '', lease_expires = 0 WHERE replication_run_id = ? AND lease_holder = ? AND lease_token = ?`,
		l.RunID, l.Holder, l.Token)
	if err != nil {
		return fmt.Errorf("release the lease of run %s: %w", l.RunID, err)
	}
	return nil
}

func (s *sqlStore) Leases(ctx context.Context) ([]Lease, error) {
	rows, err := s.query(ctx, s.db, `SELECT replication_run_id, lease_holder, lease_token, lease_acquired, lease_expires FROM replication_runs
	WHERE lease_holder <> '' ORDER BY replication_run_id`)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return collect(rows, func(r scanner) (Lease, error) {
		var l Lease
		var acquired, expires int64
		err := r.Scan(&l.RunID, &l.Holder, &l.Token, &acquired, &expires)
		l.Acquired, l.Expires = time.Unix(0, acquired).UTC(), time.Unix(0, expires).UTC()
		return l, err
	}, "list leases")
}

// --- locks ---

func (s *sqlStore) TryLock(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if name == "" || holder == "" {
		return false, fmt.Errorf("take lock: %w: name and holder are required", ErrInvalid)
	}
	var got bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		now := s.now()
		until := now.Add(ttl).UnixNano()
		var cur string
		var expires int64
		err := s.queryRow(ctx, tx, `SELECT holder, expires_at FROM fleet_locks WHERE name = ?`+s.lock(tx), name).Scan(&cur, &expires)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = s.exec(ctx, tx, `INSERT INTO fleet_locks (name, holder, expires_at) VALUES (?, ?, ?)`, name, holder, until)
			if err != nil && s.d.classify(err) == uniqueViolation {
				got = false
				return errLockTaken
			}
			got = err == nil
			return err
		case err != nil:
			return err
		}
		if cur != holder && expires > now.UnixNano() {
			got = false
			return nil
		}
		_, err = s.exec(ctx, tx, `UPDATE fleet_locks SET holder = ?, expires_at = ? WHERE name = ?`, holder, until, name)
		got = err == nil
		return err
	})
	if errors.Is(err, errLockTaken) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("take lock %s for %s: %w", name, holder, err)
	}
	return got, nil
}

func (s *sqlStore) LockHolder(ctx context.Context, name string) (string, time.Time, error) {
	var holder string
	var expires int64
	err := s.queryRow(ctx, s.db, `SELECT holder, expires_at FROM fleet_locks WHERE name = ?`, name).Scan(&holder, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, nil
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("read lock %s: %w", name, err)
	}
	return holder, time.Unix(0, expires).UTC(), nil
}

// errLockTaken aborts a lock's insert that another holder won.
var errLockTaken = errors.New("lock taken")

// --- import slots ---

// heldSlots returns the region's slots still held (by the lease they were
// taken with), deleting those that are not.
func (s *sqlStore) heldSlots(ctx context.Context, tx *sql.Tx, region string, now int64) (map[int]Lease, error) {
	rows, err := s.query(ctx, tx, `SELECT i.slot, i.run_id, i.holder, i.token, COALESCE(r.lease_holder, ''), COALESCE(r.lease_token, 0), COALESCE(r.lease_expires, 0), COALESCE(r.state, '')
	FROM import_slots i LEFT JOIN replication_runs r ON r.replication_run_id = i.run_id WHERE i.region = ?`, region)
	if err != nil {
		return nil, err
	}
	held := map[int]Lease{}
	var stale []int
	for rows.Next() {
		var slot int
		var l Lease
		var holder, state string
		var token, expires int64
		if err := rows.Scan(&slot, &l.RunID, &l.Holder, &l.Token, &holder, &token, &expires, &state); err != nil {
			rows.Close()
			return nil, err
		}
		if holder == l.Holder && token == l.Token && expires > now && RunState(state) == RunActive {
			held[slot] = l
		} else {
			stale = append(stale, slot)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, slot := range stale {
		if _, err := s.exec(ctx, tx, `DELETE FROM import_slots WHERE region = ? AND slot = ?`, region, slot); err != nil {
			return nil, err
		}
	}
	return held, nil
}

func (s *sqlStore) AcquireImportSlots(ctx context.Context, region string, limit, n int, l Lease) (bool, error) {
	if region == "" || limit <= 0 || n <= 0 || n > limit {
		return false, fmt.Errorf("take %d of %d VM Import slots: %w: a region and 1 to limit slots are required", n, limit, ErrInvalid)
	}
	var got bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		got = false
		if err := s.checkFence(WithLease(ctx, l), tx); err != nil {
			return err
		}
		held, err := s.heldSlots(ctx, tx, region, s.now().UnixNano())
		if err != nil {
			return err
		}
		need := n
		for _, h := range held {
			if h.RunID == l.RunID && h.Token == l.Token {
				need--
			}
		}
		if need <= 0 {
			got = true
			return nil
		}
		// All or none: a run whose import needs several tasks starts none
		// until all have a slot.
		if len(held)+need > limit {
			return nil
		}
		for slot := 0; slot < limit && need > 0; slot++ {
			if _, taken := held[slot]; taken {
				continue
			}
			_, err = s.exec(ctx, tx, `INSERT INTO import_slots (region, slot, run_id, holder, token) VALUES (?, ?, ?, ?, ?)`, region, slot, l.RunID, l.Holder, l.Token)
			if err != nil && s.d.classify(err) == uniqueViolation {
				return errLockTaken
			}
			if err != nil {
				return err
			}
			need--
		}
		got = need == 0
		return nil
	})
	if errors.Is(err, errLockTaken) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("take %d VM Import slots in %s for run %s: %w", n, region, l.RunID, err)
	}
	return got, nil
}

func (s *sqlStore) ReleaseImportSlot(ctx context.Context, region string, l Lease) error {
	_, err := s.exec(ctx, s.db, `DELETE FROM import_slots WHERE region = ? AND run_id = ? AND token = ?`, region, l.RunID, l.Token)
	if err != nil {
		return fmt.Errorf("free the VM Import slot of run %s in %s: %w", l.RunID, region, err)
	}
	return nil
}

func (s *sqlStore) ImportSlotsInUse(ctx context.Context) (map[string]int, error) {
	var regions []string
	rows, err := s.query(ctx, s.db, `SELECT DISTINCT region FROM import_slots ORDER BY region`)
	if err != nil {
		return nil, fmt.Errorf("count VM Import slots: %w", err)
	}
	regions, err = collect(rows, func(r scanner) (string, error) { var v string; return v, r.Scan(&v) }, "count VM Import slots")
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, region := range regions {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			held, err := s.heldSlots(ctx, tx, region, s.now().UnixNano())
			if len(held) > 0 {
				out[region] = len(held)
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("count VM Import slots in %s: %w", region, err)
		}
	}
	return out, nil
}

// skipLockedOf is the dialect's skip-locked clause for table alias.
func (d dialect) skipLockedOf(alias string) string {
	if d.skipLocked == "" {
		return ""
	}
	return fmt.Sprintf(d.skipLocked, alias)
}

// leaseEnds reports whether a run update ends the run's lease: a run that
// leaves PENDING and ACTIVE has no holder any more (its token stays). A
// finished run leased for its cleanup keeps its lease through updates.
func leaseEnds(from, to RunState) bool { return from.Live() && !to.Live() }
