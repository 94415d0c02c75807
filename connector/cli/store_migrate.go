package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/fleet"
	"github.com/rehost/rehost/connector/secret"
	"github.com/rehost/rehost/pkg/store"
)

type storeMigrateOptions struct {
	dir, to, caFile, passwordFile string
	asJSON                        bool
}

func init() {
	Register(Command{
		Name:  "store migrate",
		Usage: "--to postgres://USER@HOST[:PORT]/DB [--state-dir DIR] [--store-ca-file FILE] [--store-password-file FILE] [--json]",
		Summary: "move this connector's state from its SQLite database into an empty PostgreSQL database (every job, run, " +
			"ledger entry and key, ids kept), so that a fleet can share it; the connector must be stopped",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			o := &storeMigrateOptions{}
			stateDirFlag(fs, &o.dir)
			fs.StringVar(&o.to, "to", "", "the PostgreSQL store, postgres://USER@HOST[:PORT]/DB (no password in it)")
			fs.StringVar(&o.caFile, "store-ca-file", "", "PEM file of the CA of the store's server certificate")
			fs.StringVar(&o.passwordFile, "store-password-file", "", "file holding the store's password (else REHOST_STORE_PASSWORD)")
			fs.BoolVar(&o.asJSON, "json", false, "print the rows copied per table as JSON")
			return o.run
		},
	})
}

// storeMigrateResult is what store migrate reports.
type storeMigrateResult struct {
	Store  string         `json:"store"`
	Rows   map[string]int `json:"rows"`
	Backup string         `json:"backup"`
}

func (o *storeMigrateOptions) run(ctx context.Context, env Env, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	if o.to == "" {
		return fmt.Errorf("%w: --to is required: the PostgreSQL store to move the state into", ErrUsage)
	}
	if info, serving, err := daemon.Serving(o.dir); err == nil && serving {
		return fmt.Errorf("store migrate: %s is served by 'rehost serve' (pid %d): stop it first, so nothing changes during the copy", o.dir, info.PID)
	}
	if cur, err := daemon.ReadStoreConfig(o.dir); err != nil {
		return err
	} else if cur.Postgres() {
		return fmt.Errorf("store migrate: %s already keeps its state in %s", o.dir, cur.Where(o.dir))
	}
	dbPath := filepath.Join(o.dir, "rehost.db")
	if _, err := os.Stat(dbPath); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store migrate: %s holds no rehost.db: nothing to move (give the right --state-dir)", o.dir)
	}
	sc := daemon.StoreConfig{URL: o.to, CAFile: o.caFile, PasswordFile: o.passwordFile}
	for _, p := range []*string{&sc.CAFile, &sc.PasswordFile} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return err
			}
			*p = abs
		}
	}
	if err := sc.Check(); err != nil {
		return fmt.Errorf("store migrate: %w", err)
	}
	box, err := secret.LoadOrCreate(filepath.Join(o.dir, "master.key"))
	if err != nil {
		return err
	}
	pw, err := daemon.StorePassword(sc, box)
	if err != nil {
		return err
	}
	lite, err := store.OpenSQLite(dbPath)
	if err != nil {
		return err
	}
	defer lite.Close()
	pg, err := store.OpenPostgres(ctx, store.PostgresConfig{URL: sc.URL, Password: pw, CAFile: sc.CAFile})
	if err != nil {
		return fmt.Errorf("store migrate: %w", err)
	}
	defer pg.Close()
	rows, err := store.CopyInto(ctx, pg, lite)
	if err != nil {
		return fmt.Errorf("store migrate: %w", err)
	}
	// The fleet's secrets are sealed with this connector's key: it
	// provisions the key check, and joining members get the key from it.
	if err := fleet.CheckKey(ctx, pg, box, o.dir); err != nil {
		return fmt.Errorf("store migrate: %w", err)
	}
	if err := daemon.WriteStoreConfig(o.dir, sc); err != nil {
		return fmt.Errorf("store migrate: the state was copied, but: %w", err)
	}
	lite.Close()
	// Keep the SQLite database, renamed, so nothing uses it by mistake.
	backup := dbPath + ".migrated-" + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(dbPath, backup); err != nil {
		return fmt.Errorf("store migrate: the state was copied, but rename %s: %w", dbPath, err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		os.Remove(dbPath + suffix)
	}
	res := storeMigrateResult{Store: sc.Where(o.dir), Rows: rows, Backup: backup}
	if o.asJSON {
		return printJSON(env.Stdout, res)
	}
	tables := make([]string, 0, len(rows))
	for t := range rows {
		tables = append(tables, t)
	}
	slices.Sort(tables)
	var parts []string
	for _, t := range tables {
		parts = append(parts, fmt.Sprintf("%s %d", t, rows[t]))
	}
	fmt.Fprintf(env.Stdout, "moved the state of %s into %s: %s\nthe SQLite database is kept as %s; 'rehost serve --state-dir %s' now uses the PostgreSQL store\n",
		o.dir, res.Store, strings.Join(parts, ", "), backup, o.dir)
	return nil
}
