package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
)

// tablesNotCopied are the store's own bookkeeping, made by each store.
var tablesNotCopied = []string{"schema_version", "tx_keys"}

// CopyInto copies every row of every table of src into dst, which must be
// empty and at the same schema version, in one transaction: all of it or
// nothing. Ids are kept, so the ledger's order and every reference stay as
// they were, and dst's id sequences continue after the copied ones. It
// returns the rows copied per table. Tables are found in src's schema, so
// tables that later migrations add are copied too.
func CopyInto(ctx context.Context, dst *Postgres, src *SQLite) (map[string]int, error) {
	sv, err := src.SchemaVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("copy the store: %w", err)
	}
	dv, err := dst.SchemaVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("copy the store: %w", err)
	}
	if sv != dv {
		return nil, fmt.Errorf("copy the store: %w: %s is at schema version %d, %s at %d", ErrInvalid, src.Path(), sv, dst.Where(), dv)
	}
	tables, err := sqliteTables(ctx, src.db)
	if err != nil {
		return nil, fmt.Errorf("copy the store: list the tables of %s: %w", src.Path(), err)
	}
	counts := map[string]int{}
	err = dst.tx(ctx, func(tx *sql.Tx) error {
		for _, t := range tables {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+t.name).Scan(&n); err != nil {
				return fmt.Errorf("count the rows of %s in %s: %w", t.name, dst.Where(), err)
			}
			if n > 0 {
				return fmt.Errorf("%w: %s already holds data (%d rows in %s): copy into an empty database", ErrConflict, dst.Where(), n, t.name)
			}
		}
		for _, t := range tables {
			n, err := copyTable(ctx, tx, src.db, t)
			if err != nil {
				return fmt.Errorf("copy table %s: %w", t.name, err)
			}
			counts[t.name] = n
		}
		return resetIdentities(ctx, tx)
	})
	if err != nil {
		return nil, fmt.Errorf("copy the store %s into %s: %w", src.Path(), dst.Where(), err)
	}
	return counts, nil
}

type table struct {
	name    string
	columns []string
	refs    []string // tables it refers to
}

// sqliteTables lists src's tables, each after the tables it refers to.
func sqliteTables(ctx context.Context, db *sql.DB) ([]table, error) {
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		return nil, err
	}
	names, err := collect(rows, func(r scanner) (string, error) { var v string; return v, r.Scan(&v) }, "list tables")
	if err != nil {
		return nil, err
	}
	byName := map[string]*table{}
	var all []*table
	for _, name := range names {
		if slices.Contains(tablesNotCopied, name) {
			continue
		}
		t := &table{name: name}
		cols, err := db.QueryContext(ctx, `SELECT name FROM pragma_table_info(?) ORDER BY cid`, name)
		if err != nil {
			return nil, err
		}
		if t.columns, err = collect(cols, func(r scanner) (string, error) { var v string; return v, r.Scan(&v) }, "columns of "+name); err != nil {
			return nil, err
		}
		fks, err := db.QueryContext(ctx, `SELECT DISTINCT "table" FROM pragma_foreign_key_list(?)`, name)
		if err != nil {
			return nil, err
		}
		if t.refs, err = collect(fks, func(r scanner) (string, error) { var v string; return v, r.Scan(&v) }, "references of "+name); err != nil {
			return nil, err
		}
		byName[name] = t
		all = append(all, t)
	}
	var out []table
	done := map[string]bool{}
	var visit func(t *table, path []string) error
	visit = func(t *table, path []string) error {
		if done[t.name] {
			return nil
		}
		if slices.Contains(path, t.name) {
			return fmt.Errorf("tables refer to each other in a cycle: %s", strings.Join(append(path, t.name), " → "))
		}
		for _, ref := range t.refs {
			if r, ok := byName[ref]; ok && ref != t.name {
				if err := visit(r, append(path, t.name)); err != nil {
					return err
				}
			}
		}
		done[t.name] = true
		out = append(out, *t)
		return nil
	}
	for _, t := range all {
		if err := visit(t, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// copyTable inserts every row of t, read from src in rowid order, through
// tx, converting each value to the type of its PostgreSQL column.
func copyTable(ctx context.Context, tx *sql.Tx, src *sql.DB, t table) (int, error) {
	types := map[string]string{}
	rows, err := tx.QueryContext(ctx, `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1`, t.name)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var c, ty string
		if err := rows.Scan(&c, &ty); err != nil {
			rows.Close()
			return 0, err
		}
		types[c] = ty
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, c := range t.columns {
		if types[c] == "" {
			return 0, fmt.Errorf("column %s is missing from the PostgreSQL table", c)
		}
	}
	quoted := make([]string, len(t.columns))
	marks := make([]string, len(t.columns))
	for i, c := range t.columns {
		quoted[i] = `"` + c + `"`
		marks[i] = fmt.Sprintf("$%d", i+1)
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO `+t.name+` (`+strings.Join(quoted, ", ")+`) VALUES (`+strings.Join(marks, ", ")+`)`)
	if err != nil {
		return 0, err
	}
	defer ins.Close()
	in, err := src.QueryContext(ctx, `SELECT `+strings.Join(quoted, ", ")+` FROM `+t.name+` ORDER BY rowid`)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	vals := make([]any, len(t.columns))
	ptrs := make([]any, len(t.columns))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	n := 0
	for in.Next() {
		if err := in.Scan(ptrs...); err != nil {
			return n, err
		}
		args := make([]any, len(vals))
		for i, v := range vals {
			args[i] = convertFor(types[t.columns[i]], v)
		}
		if _, err := ins.ExecContext(ctx, args...); err != nil {
			return n, fmt.Errorf("row %d: %w", n+1, err)
		}
		n++
	}
	return n, in.Err()
}

// convertFor gives a SQLite value the Go type PostgreSQL's column type
// takes: SQLite keeps what it was given, so text may come back as bytes.
func convertFor(pgType string, v any) any {
	switch pgType {
	case "text", "character varying":
		if b, ok := v.([]byte); ok {
			return string(b)
		}
	case "bytea":
		if s, ok := v.(string); ok {
			return []byte(s)
		}
	}
	return v
}

// resetIdentities moves each identity column's sequence past the largest
// id copied, so new rows continue the numbering.
func resetIdentities(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() AND is_identity = 'YES'`)
	if err != nil {
		return err
	}
	type col struct{ table, column string }
	var cols []col
	for rows.Next() {
		var c col
		if err := rows.Scan(&c.table, &c.column); err != nil {
			rows.Close()
			return err
		}
		cols = append(cols, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, c := range cols {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`SELECT setval(pg_get_serial_sequence('%s', '%s'), COALESCE(MAX("%s"), 0) + 1, false) FROM %s`,
			c.table, c.column, c.column, c.table)); err != nil {
			return fmt.Errorf("continue the ids of %s.%s: %w", c.table, c.column, err)
		}
	}
	return nil
}
