package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/rehost/rehost/connector/secret"
	"github.com/rehost/rehost/pkg/store"
)

// StoreConfig chooses where the connector's state lives: the state
// directory's SQLite database (no URL, the default) or a PostgreSQL
// database that a fleet of connectors shares. It is kept in the state
// directory (store.json) and never holds a password in the clear: the
// password comes from REHOST_STORE_PASSWORD, a file, or is kept sealed
// with the state directory's key.
type StoreConfig struct {
	// URL is postgres://USER@HOST[:PORT]/DATABASE, without the password.
	URL string `json:"url,omitempty"`
	// CAFile is the PEM file of the CA the server's certificate is checked
	// against (TLS verify-full).
	CAFile string `json:"caFile,omitempty"`
	// PasswordFile holds the password (its first line).
	PasswordFile string `json:"passwordFile,omitempty"`
	// SealedPassword is the password sealed with the state directory's key
	// (set from the console).
	SealedPassword []byte `json:"sealedPassword,omitempty"`
}

// EnvStorePassword is the environment variable the store's password is
// read from first.
const EnvStorePassword = "REHOST_STORE_PASSWORD"

const storeConfigFile = "store.json"

// Postgres reports whether the configuration names a PostgreSQL store.
func (c StoreConfig) Postgres() bool { return c.URL != "" }

// Check validates the configuration without connecting.
func (c StoreConfig) Check() error {
	if c.URL == "" {
		return nil
	}
	if _, err := store.CheckPostgresURL(c.URL); err != nil {
		return err
	}
	if c.CAFile != "" {
		if _, err := os.Stat(c.CAFile); err != nil {
			return fmt.Errorf("store CA file: %w", err)
		}
	}
	if c.PasswordFile != "" {
		if _, err := os.Stat(c.PasswordFile); err != nil {
			return fmt.Errorf("store password file: %w", err)
		}
	}
	return nil
}

// StorePassword finds the store's password: REHOST_STORE_PASSWORD, then
// the file, then the sealed copy (opened with box).
func StorePassword(c StoreConfig, box *secret.Box) (string, error) { return c.password(box) }

func (c StoreConfig) password(box *secret.Box) (string, error) {
	if pw := os.Getenv(EnvStorePassword); pw != "" {
		return pw, nil
	}
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("read the store's password: %w", err)
		}
		pw, _, _ := strings.Cut(string(b), "\n")
		return strings.TrimRight(pw, "\r"), nil
	}
	if len(c.SealedPassword) > 0 {
		b, err := box.Open(c.SealedPassword)
		if err != nil {
			return "", fmt.Errorf("open the store's sealed password: %w", err)
		}
		return string(b), nil
	}
	return "", nil
}

// Where is the store for messages: its URL without parameters, or the
// SQLite file.
func (c StoreConfig) Where(dir string) string {
	if c.URL == "" {
		return filepath.Join(dir, "rehost.db")
	}
	if w, err := store.CheckPostgresURL(c.URL); err == nil {
		return w
	}
	return "postgres store"
}

// ReadStoreConfig reads the state directory's store selection; none means
// SQLite.
func ReadStoreConfig(dir string) (StoreConfig, error) {
	var c StoreConfig
	b, err := os.ReadFile(filepath.Join(dir, storeConfigFile))
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read the store's configuration: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("read the store's configuration %s: %w", filepath.Join(dir, storeConfigFile), err)
	}
	return c, nil
}

// WriteStoreConfig saves the state directory's store selection (private to
// its owner), replacing it atomically.
func WriteStoreConfig(dir string, c StoreConfig) error {
	if err := c.Check(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, storeConfigFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save the store's configuration: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, storeConfigFile)); err != nil {
		return fmt.Errorf("save the store's configuration: %w", err)
	}
	return nil
}

// poolSize is the connections a daemon of maxRuns concurrent runs uses at
// most: per run its steps' writes, the progress ticker and events; then
// the API and console, the scheduler, the heartbeat and renewals, metrics.
func poolSize(maxRuns int) int {
	return 3*max(maxRuns, 2) + 8
}

// openStore opens the store c names.
func openStore(ctx context.Context, dir string, c StoreConfig, box *secret.Box, o Options, log *slog.Logger) (store.Store, error) {
	if !c.Postgres() {
		return store.OpenSQLite(filepath.Join(dir, "rehost.db"))
	}
	pw, err := c.password(box)
	if err != nil {
		return nil, err
	}
	where := c.Where(dir)
	return store.OpenPostgres(ctx, store.PostgresConfig{
		URL: c.URL, Password: pw, CAFile: c.CAFile, MaxConns: poolSize(o.Scheduler.MaxConcurrent), Wait: o.WaitForStore,
		Outage: func(err error) {
			if err != nil {
				log.Error("the store is unreachable: runs pause at their next write until it is back", "store", where, "err", err)
			} else {
				log.Info("the store is reachable again", "store", where)
			}
		},
	})
}
