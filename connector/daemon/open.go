package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrNoState is returned by OpenExisting for a state directory that does
// not exist or holds no connector state.
var ErrNoState = errors.New("no connector state")

// OpenExisting opens a state directory that Open made before, creating
// nothing: verbs that only read (and the CLI on a mistyped --state-dir)
// must not leave an empty directory and a fresh key behind.
func OpenExisting(ctx context.Context, dir string, o Options) (*Daemon, error) {
	if dir == "" {
		return nil, errors.New("open state: no state directory given (--state-dir or REHOST_STATE_DIR)")
	}
	// A state directory on a PostgreSQL store keeps only its key and the
	// store's configuration.
	need := []string{"", "rehost.db", "master.key"}
	if sc, err := ReadStoreConfig(dir); err == nil && sc.Postgres() || o.Store != nil && o.Store.Postgres() {
		need = []string{"", "master.key"}
	}
	for _, name := range need {
		if _, err := os.Stat(filepath.Join(dir, name)); errors.Is(err, fs.ErrNotExist) {
			what := "does not exist"
			if name != "" {
				what = "holds no " + name
			}
			return nil, fmt.Errorf("%w in %s: it %s; set the connector up with 'rehost register' (or give the right --state-dir or REHOST_STATE_DIR)", ErrNoState, dir, what)
		} else if err != nil {
			return nil, fmt.Errorf("open state %s: %w", dir, err)
		}
	}
	return Open(ctx, dir, o)
}
