package lab

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehost/rehost/internal/lab/pgpeer"
	"github.com/rehost/rehost/pkg/store"
)

// rehost-lab postgres serves a store a connector opens with what it
// printed: the URL (no password in it), the password file and the CA; a
// restart keeps the data.
func TestPostgresVerb(t *testing.T) {
	if _, err := pgpeer.Bin(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is missing and CI must have it: %v", err)
		}
		t.Skipf("\n\n*** SKIPPED: %v ***\n\n", err)
	}
	// Not under t.TempDir: as root the server runs as postgres, which must
	// reach the directory.
	parent, err := os.MkdirTemp("", "lab-postgres-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "pg")
	open := func() (*store.Postgres, func() int) {
		line, stop := serve(t, "postgres", "--dir", dir, "--json")
		var info postgresInfo
		if err := json.Unmarshal(line, &info); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(info.Store, ":"+readFile(t, info.PasswordFile)+"@") {
			t.Fatalf("the URL holds the password: %s", info.Store)
		}
		s, err := store.OpenPostgres(context.Background(), store.PostgresConfig{URL: info.Store, Password: readFile(t, info.PasswordFile), CAFile: info.CAFile})
		if err != nil {
			t.Fatal(err)
		}
		return s, stop
	}
	s, stop := open()
	if err := s.PutSetting(context.Background(), "k", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if code := stop(); code != 0 {
		t.Errorf("stopped with %d", code)
	}
	s, _ = open()
	defer s.Close()
	if v, err := s.GetSetting(context.Background(), "k"); err != nil || string(v) != "kept" {
		t.Errorf("after a restart: %q, %v", v, err)
	}
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
