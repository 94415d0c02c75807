package store_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/pgpeer/pgtest"
	"github.com/rehost/rehost/internal/lab/proxy"
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

// pgDB is a fresh schema and the configuration of a store on it.
func pgDB(t *testing.T) (pgtest.DB, store.PostgresConfig) {
	db := pgtest.NewDB(t)
	return db, store.PostgresConfig{URL: db.URL, Password: db.Password, CAFile: db.CAFile}
}

func TestPostgresMigratesOnceUnderItsLock(t *testing.T) {
	_, cfg := pgDB(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	stores := make([]*store.Postgres, 4)
	errs := make([]error, 4)
	for i := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = store.OpenPostgres(ctx, cfg)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	var rows, distinct, newest int
	if err := stores[0].DB().QueryRow(`SELECT COUNT(*), COUNT(DISTINCT version), MAX(version) FROM schema_version`).Scan(&rows, &distinct, &newest); err != nil {
		t.Fatal(err)
	}
	if rows != store.NewestSchema() || distinct != rows || newest != store.NewestSchema() {
		t.Errorf("schema_version: %d rows, %d distinct, newest %d; want %d", rows, distinct, newest, store.NewestSchema())
	}
}

func TestPostgresRefusesNewerSchema(t *testing.T) {
	_, cfg := pgDB(t)
	ctx := context.Background()
	s, err := store.OpenPostgres(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().Exec(`INSERT INTO schema_version (version, name, applied_at) VALUES (9999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = store.OpenPostgres(ctx, cfg)
	if !errors.Is(err, store.ErrSchemaNewer) || !strings.Contains(err.Error(), "9999") || !strings.Contains(err.Error(), fmt.Sprint(store.NewestSchema())) {
		t.Fatalf("open with a newer schema: %v", err)
	}
}

func TestPostgresURLs(t *testing.T) {
	for raw, want := range map[string]string{
		"postgres://rehost:hunter2@db:5432/rehost":                 "holds a password",
		"postgres://db/rehost":                                     "names no user",
		"postgres://rehost@db/rehost?sslmode=require":              "sslmode=require does not verify",
		"postgres://rehost@db/rehost?sslmode=prefer":               "sslmode=prefer",
		"mysql://rehost@db/rehost":                                 "want postgres://",
		"postgres://rehost@db.example:5432/rehost?sslmode=disable": "",
		"postgresql://rehost@db.example/rehost":                    "",
	} {
		bare, err := store.CheckPostgresURL(raw)
		if want == "" {
			if err != nil || strings.Contains(bare, "?") {
				t.Errorf("%s: %q, %v", raw, bare, err)
			}
			continue
		}
		if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", raw, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", raw, err)
		}
	}
}

func TestPostgresTLSIsVerified(t *testing.T) {
	db, cfg := pgDB(t)
	ctx := context.Background()
	// The default is verify-full: a CA that did not sign the server's
	// certificate is refused.
	other := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(other, otherCA(t), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.CAFile = other
	if _, err := store.OpenPostgres(ctx, bad); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("open with the wrong CA: %v", err)
	}
	// localhost is in the certificate; a name that is not fails.
	wrongName := cfg
	wrongName.URL = strings.Replace(db.URL, "127.0.0.1", "127.0.0.2", 1)
	if _, err := store.OpenPostgres(ctx, wrongName); err == nil {
		t.Error("open with a server name not in the certificate succeeded")
	}
	// The password is checked.
	badPW := cfg
	badPW.Password = "wrong"
	if _, err := store.OpenPostgres(ctx, badPW); err == nil || !strings.Contains(err.Error(), "password") {
		t.Errorf("open with a wrong password: %v", err)
	}
	// The session really is encrypted.
	s, err := store.OpenPostgres(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ssl bool
	if err := s.DB().QueryRow(`SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil || !ssl {
		t.Errorf("session TLS = %v, %v", ssl, err)
	}
}

func otherCA(t *testing.T) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "not the server's CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestPostgresUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = store.OpenPostgres(context.Background(), store.PostgresConfig{URL: "postgres://rehost@" + addr + "/rehost?sslmode=disable"})
	if !errors.Is(err, store.ErrUnreachable) || !strings.Contains(err.Error(), addr) {
		t.Errorf("open on a closed port: %v", err)
	}
}

// viaProxy opens a store on a fresh schema through a TCP proxy the test
// cuts and restores (plain TCP, so the proxy can see a COMMIT go by).
func viaProxy(t *testing.T, wait bool) (*store.Postgres, *proxy.Proxy, *outages) {
	db, _ := pgDB(t)
	p, err := proxy.New(fmt.Sprintf("%s:%d", db.Server.Host, db.Server.Port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	u := pgtest.WithSearchPath(fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable", db.Server.User, p.Addr), db.Schema)
	o := &outages{}
	s, err := store.OpenPostgres(context.Background(), store.PostgresConfig{URL: u, Password: db.Password, Wait: wait, Outage: o.hear, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, p, o
}

type outages struct {
	mu    sync.Mutex
	heard []string
}

func (o *outages) hear(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.heard = append(o.heard, "down")
	} else {
		o.heard = append(o.heard, "up")
	}
}

func (o *outages) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.heard, ",")
}

// runFixture makes a source, server, job and an ACTIVE run.
func runFixture(t *testing.T, s store.Store) store.ReplicationRun {
	ctx := context.Background()
	src, err := s.CreateSource(ctx, store.Source{Kind: store.SourceVSphere, Name: "vc"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := s.UpsertServer(ctx, store.Server{SourceID: src.ID, VMID: "vm-1"})
	if err != nil {
		t.Fatal(err)
	}
	job, err := s.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, SeedReplicationTime: time.Now(), Frequency: 1})
	if err != nil {
		t.Fatal(err)
	}
	runs, err := s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, State: store.RunActive})
	if err != nil {
		t.Fatal(err)
	}
	return runs[0]
}

// TestPostgresWriteWaitsForTheDatabase: with the connection cut, a ledger
// write waits; restored, it is applied once.
func TestPostgresWriteWaitsForTheDatabase(t *testing.T) {
	s, p, o := viaProxy(t, true)
	ctx := context.Background()
	r := runFixture(t, s)
	p.Cut()
	done := make(chan error, 1)
	go func() {
		_, err := s.RecordIntent(ctx, r.ReplicationRunID, "stage", "multipart-upload", json.RawMessage(`{"disk":0}`))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("write returned while the database was cut off: %v", err)
	case <-time.After(700 * time.Millisecond):
	}
	// Reads wait too.
	read := make(chan error, 1)
	go func() { _, err := s.GetRun(ctx, r.ReplicationRunID); read <- err }()
	p.Restore()
	if err := <-done; err != nil {
		t.Fatalf("write after the connection came back: %v", err)
	}
	if err := <-read; err != nil {
		t.Fatalf("read after the connection came back: %v", err)
	}
	l, err := s.LedgerForRun(ctx, r.ReplicationRunID)
	if err != nil || len(l) != 1 {
		t.Fatalf("ledger = %+v, %v", l, err)
	}
	if got := o.String(); got != "down,up" {
		t.Errorf("outages heard: %q, want down,up", got)
	}
}

// TestPostgresLostCommitIsAppliedOnce: the connection is cut right after
// COMMIT reached the server, so its answer is lost; the store finds the
// transaction's key once the connection is back, and the write is neither
// lost nor applied twice.
func TestPostgresLostCommitIsAppliedOnce(t *testing.T) {
	s, p, _ := viaProxy(t, true)
	ctx := context.Background()
	r := runFixture(t, s)
	// pgx commits with a simple query: 'Q', its length (11), "commit\0".
	const commit = "Q\x00\x00\x00\x0bcommit\x00"
	restore := func() {
		for p.Cuts() == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		p.Restore()
	}
	p.CutAfter(commit)
	go restore()
	id, err := s.RecordIntent(ctx, r.ReplicationRunID, "stage", "multipart-upload", nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Cuts() != 1 {
		t.Fatalf("the commit was not cut (%d cuts)", p.Cuts())
	}
	cuts := p.Cuts()
	p.CutAfter(commit)
	go func() {
		for p.Cuts() == cuts {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		p.Restore()
	}()
	taken, err := s.HandOver(ctx, id, "unstage")
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.LedgerForRun(ctx, r.ReplicationRunID)
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 2 || l[0].ID != id || l[0].State != store.LedgerHandedOver || l[1].ID != taken.ID || l[1].HandedFrom != id {
		t.Fatalf("ledger after two lost commit answers = %+v", l)
	}
}

// TestPostgresWithoutWaitFailsFast: the CLI's store reports the lost
// database instead of waiting.
func TestPostgresWithoutWaitFailsFast(t *testing.T) {
	s, p, _ := viaProxy(t, false)
	r := runFixture(t, s)
	p.Cut()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := s.RecordIntent(ctx, r.ReplicationRunID, "stage", "multipart-upload", nil)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("write to a cut-off database: %v after %v", err, time.Since(start))
	}
}
