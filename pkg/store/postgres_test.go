package store_test

import (
	"context"
	"os"
	"testing"

	"github.com/rehost/rehost/internal/lab/pgpeer/pgtest"
	"github.com/rehost/rehost/pkg/store"
	"github.com/rehost/rehost/pkg/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func openPostgres(t *testing.T) store.Store {
	t.Helper()
	db := pgtest.NewDB(t)
	s, err := store.OpenPostgres(context.Background(), store.PostgresConfig{URL: db.URL, Password: db.Password, CAFile: db.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPostgresConformance(t *testing.T) {
	storetest.Run(t, openPostgres)
}
