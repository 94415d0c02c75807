package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// PreflightAccount is the subject of the AWS account's preflight.
const PreflightAccount = "account"

// Preflight is the latest preflight result of a subject: a server of the
// catalog (by ServerID) or the AWS account (PreflightAccount).
type Preflight struct {
	Subject string `json:"subject"`
	// Status sums the findings up ("ready", "ready with warnings",
	// "blocked"); Findings are the checks' results as JSON. Both are the
	// caller's vocabulary: the store keeps them as given.
	Status    string          `json:"status"`
	Findings  json.RawMessage `json:"findings"`
	CheckedAt time.Time       `json:"checkedAt"`
}

// Preflights is the role of the store that keeps preflight results: one
// per subject, replaced by each check. Methods are safe for concurrent use
// and honour ctx.
type Preflights interface {
	// PutPreflight stores p, replacing the subject's previous result
	// (CheckedAt set to now if zero). ErrInvalid on an empty subject or
	// status, or findings that are not JSON.
	PutPreflight(ctx context.Context, p Preflight) error
	// PutPreflights stores each of ps as PutPreflight does, all in one
	// transaction: every one is stored or, on an error, none.
	PutPreflights(ctx context.Context, ps []Preflight) error
	// GetPreflight returns the subject's result; ErrNotFound when it was
	// never checked (or its result was deleted).
	GetPreflight(ctx context.Context, subject string) (Preflight, error)
	// ListPreflights returns every result, by subject.
	ListPreflights(ctx context.Context) ([]Preflight, error)
	// DeletePreflight removes the subject's result; removing one that does
	// not exist is not an error.
	DeletePreflight(ctx context.Context, subject string) error
}

func (s *sqlStore) PutPreflight(ctx context.Context, p Preflight) error {
	return s.PutPreflights(ctx, []Preflight{p})
}

func (s *sqlStore) PutPreflights(ctx context.Context, ps []Preflight) error {
	ps = slices.Clone(ps)
	for i := range ps {
		p := &ps[i]
		switch {
		case p.Subject == "":
			return fmt.Errorf("put preflight: %w: the subject is empty", ErrInvalid)
		case p.Status == "":
			return fmt.Errorf("put preflight of %s: %w: the status is empty", p.Subject, ErrInvalid)
		case len(p.Findings) == 0:
			p.Findings = json.RawMessage("[]")
		}
		if err := checkJSON("preflight findings of "+p.Subject, p.Findings); err != nil {
			return err
		}
		if p.CheckedAt.IsZero() {
			p.CheckedAt = s.now()
		}
	}
	put := func(ctx context.Context, q querier, p Preflight) error {
		_, err := s.exec(ctx, q, `INSERT INTO preflights (subject, status, findings, checked_at) VALUES (?, ?, ?, ?)
	ON CONFLICT (subject) DO UPDATE SET status = excluded.status, findings = excluded.findings, checked_at = excluded.checked_at`,
			p.Subject, p.Status, jsonArg(p.Findings), p.CheckedAt.UnixNano())
		if err != nil {
			return fmt.Errorf("put preflight of %s: %w", p.Subject, err)
		}
		return nil
	}
	if len(ps) == 1 {
		return put(ctx, s.db, ps[0])
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, p := range ps {
			if err := put(ctx, tx, p); err != nil {
				return err
			}
		}
		return nil
	})
}

func scanPreflight(r scanner) (Preflight, error) {
	var p Preflight
	var findings string
	var checked sql.NullInt64
	if err := r.Scan(&p.Subject, &p.Status, &findings, &checked); err != nil {
		return p, err
	}
	p.Findings, p.CheckedAt = jsonOf(findings), timeOf(checked)
	return p, nil
}

func (s *sqlStore) GetPreflight(ctx context.Context, subject string) (Preflight, error) {
	p, err := scanPreflight(s.queryRow(ctx, s.db, `SELECT subject, status, findings, checked_at FROM preflights WHERE subject = ?`, subject))
	if err != nil {
		return Preflight{}, notFound(err, "preflight of "+subject)
	}
	return p, nil
}

func (s *sqlStore) ListPreflights(ctx context.Context) ([]Preflight, error) {
	rows, err := s.query(ctx, s.db, `SELECT subject, status, findings, checked_at FROM preflights ORDER BY subject`)
	if err != nil {
		return nil, fmt.Errorf("list preflights: %w", err)
	}
	defer rows.Close()
	out := []Preflight{}
	for rows.Next() {
		p, err := scanPreflight(rows)
		if err != nil {
			return nil, fmt.Errorf("list preflights: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func (s *sqlStore) DeletePreflight(ctx context.Context, subject string) error {
	if _, err := s.exec(ctx, s.db, `DELETE FROM preflights WHERE subject = ?`, subject); err != nil {
		return fmt.Errorf("delete preflight of %s: %w", subject, err)
	}
	return nil
}
