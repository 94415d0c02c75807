// Package pgtest shares one PostgreSQL cluster (pgpeer) among the tests of
// a package: started on first use, stopped by Main, each test given a
// schema of its own so the cluster's start is paid once per package.
//
// PostgreSQL missing: a test that needs it fails under CI=true (CI installs
// it through scripts/deps.sh) and is skipped with a loud message elsewhere.
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/rehost/rehost/internal/lab/pgpeer"
)

var (
	once   sync.Once
	server *pgpeer.Server
	err    error
	seq    atomic.Int64
)

// Main runs the package's tests and stops the shared cluster, if one was
// started: call it from TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if server != nil {
		server.Close()
	}
	return code
}

// Server returns the package's cluster, starting it on first use.
func Server(t testing.TB) *pgpeer.Server {
	t.Helper()
	once.Do(func() {
		if _, berr := pgpeer.Bin(); berr != nil {
			err = berr
			return
		}
		server, err = pgpeer.Start(context.Background(), pgpeer.Options{})
	})
	if err != nil {
		if _, missing := pgpeer.Bin(); missing != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("PostgreSQL is missing and CI must have it (scripts/deps.sh installs postgresql): %v", err)
			}
			t.Skipf("\n\n*** SKIPPED: %v — the PostgreSQL store's tests did not run ***\n\n", err)
		}
		t.Fatalf("start PostgreSQL: %v", err)
	}
	return server
}

// DB is a fresh, empty place for one store: a schema of its own in the
// shared cluster's database, named in URL's search_path.
type DB struct {
	URL      string
	Password string
	CAFile   string
	Schema   string
	Server   *pgpeer.Server
}

// NewDB makes a schema for one test, dropped when it ends.
func NewDB(t testing.TB) DB {
	t.Helper()
	s := Server(t)
	name := fmt.Sprintf("t%d_%s", seq.Add(1), strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(t.Name())))
	if len(name) > 60 {
		name = name[:60]
	}
	ctx := context.Background()
	if err := exec(ctx, s, `CREATE SCHEMA `+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create schema %s: %v", name, err)
	}
	t.Cleanup(func() { exec(context.Background(), s, `DROP SCHEMA `+pgx.Identifier{name}.Sanitize()+` CASCADE`) })
	return DB{URL: WithSearchPath(s.URL("postgres"), name), Password: s.Password, CAFile: s.CAFile, Schema: name, Server: s}
}

// WithSearchPath returns the store URL raw with its search_path set to
// schema.
func WithSearchPath(raw, schema string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func exec(ctx context.Context, s *pgpeer.Server, sql string) error {
	c, err := s.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql)
	return err
}
