// Package pgpeer starts a PostgreSQL cluster of its own — Debian's
// postgresql package, initdb and postgres run unprivileged in a temporary
// (or given) directory, listening on a free loopback port with TLS and
// password authentication — for the store's tests, the fleet's tests and
// `rehost-lab postgres`. When the caller is root the server runs as the
// postgres account (or nobody), since PostgreSQL refuses to run as root.
//
// The server is postgres itself as a child process, not a pg_ctl daemon: it
// dies with the process that started it (on Linux even when that one is
// killed), so a crashed test leaves no cluster running.
package pgpeer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrMissing is returned by Start when PostgreSQL is not installed.
var ErrMissing = errors.New("PostgreSQL is not installed: install the Debian package postgresql (scripts/deps.sh does)")

// Options configure Start.
type Options struct {
	// Dir keeps the cluster (data, certificates, password); empty means a
	// temporary directory removed by Close. A Dir that already holds a
	// cluster is started again as it is.
	Dir string
	// Port to listen on, on 127.0.0.1; 0 picks a free one.
	Port int
	// Log receives the server's output (default: a file in the directory).
	Log *os.File
}

// Server is a running PostgreSQL.
type Server struct {
	Host     string // 127.0.0.1
	Port     int
	User     string // the superuser, "rehost"
	Password string
	// CAFile is the PEM file of the CA that signed the server's
	// certificate (for TLS verify-full on 127.0.0.1 or localhost).
	CAFile string
	// PasswordFile holds Password and a newline, for --store-password-file.
	PasswordFile string
	Dir          string

	temp bool
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// Bin finds the directory of initdb and postgres: the newest
// /usr/lib/postgresql/N/bin, else initdb on PATH.
func Bin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real), nil
		}
	}
	return "", ErrMissing
}

func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

const superuser = "rehost"

// Start initialises (if needed) and starts a cluster, returning once it
// accepts connections.
func Start(ctx context.Context, o Options) (_ *Server, err error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	uid, gid, cred, err := runAs()
	if err != nil {
		return nil, err
	}
	s := &Server{Host: "127.0.0.1", User: superuser, Dir: o.Dir, done: make(chan struct{})}
	if s.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "pgpeer-"); err != nil {
			return nil, err
		}
		s.temp = true
	} else if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.Dir, err = filepath.Abs(s.Dir); err != nil {
		return nil, err
	}
	// The server's account must reach its data directory; the directory
	// itself stays private to it.
	if err := os.Chmod(s.Dir, 0o755); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := reachable(s.Dir); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(s.Dir, "data")
	s.CAFile = filepath.Join(s.Dir, "ca.pem")
	s.PasswordFile = filepath.Join(s.Dir, "password")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		if err := s.initdb(ctx, bin, data, uid, gid, cred); err != nil {
			return nil, err
		}
	}
	pw, err := os.ReadFile(s.PasswordFile)
	if err != nil {
		return nil, err
	}
	s.Password = strings.TrimSpace(string(pw))
	s.Port = o.Port
	if s.Port == 0 {
		if s.Port, err = freePort(); err != nil {
			return nil, err
		}
	}
	s.log = filepath.Join(s.Dir, "postgres.log")
	logf := o.Log
	if logf == nil {
		if logf, err = os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return nil, err
		}
		defer logf.Close()
	}
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-c", "listen_addresses=127.0.0.1", "-p", strconv.Itoa(s.Port),
		"-c", "unix_socket_directories=", "-c", "ssl=on",
		"-c", "ssl_cert_file="+filepath.Join(data, "server.crt"), "-c", "ssl_key_file="+filepath.Join(data, "server.key"),
		"-c", "max_connections=200", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=32MB", "-c", "log_min_messages=warning")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = procAttr(cred)
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("pgpeer: start postgres: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) initdb(ctx context.Context, bin, data string, uid, gid int, cred *credential) error {
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	if err := os.Chown(data, uid, gid); err != nil {
		return err
	}
	var b [16]byte
	rand.Read(b[:])
	pw := "pg-" + hex.EncodeToString(b[:])
	if err := os.WriteFile(s.PasswordFile, []byte(pw+"\n"), 0o600); err != nil {
		return err
	}
	// initdb reads the password as the server's account.
	pwInit := filepath.Join(s.Dir, "initdb.pw")
	if err := writeOwned(pwInit, []byte(pw+"\n"), 0o600, uid, gid); err != nil {
		return err
	}
	defer os.Remove(pwInit)
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", superuser, "--pwfile", pwInit,
		"--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--no-locale", "-E", "UTF8", "--no-sync")
	cmd.SysProcAttr = procAttr(cred)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgpeer: initdb: %v\n%s", err, out)
	}
	caPEM, certPEM, keyPEM, err := certificates()
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.CAFile, caPEM, 0o644); err != nil {
		return err
	}
	if err := writeOwned(filepath.Join(data, "server.crt"), certPEM, 0o600, uid, gid); err != nil {
		return err
	}
	return writeOwned(filepath.Join(data, "server.key"), keyPEM, 0o600, uid, gid)
}

func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		c, err := s.Connect(ctx, "postgres")
		if err == nil {
			c.Close(ctx)
			return nil
		}
		select {
		case <-s.done:
			b, _ := os.ReadFile(s.log)
			return fmt.Errorf("pgpeer: postgres exited: %s", tail(string(b), 20))
		case <-ctx.Done():
			b, _ := os.ReadFile(s.log)
			return fmt.Errorf("pgpeer: postgres not ready on port %d: %v\n%s", s.Port, err, tail(string(b), 20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// URL is the address of database db, without the password and with TLS
// verified against CAFile.
func (s *Server) URL(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(s.User), Host: net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), Path: "/" + db}
	return u.String() + "?sslmode=verify-full"
}

// Connect opens an administrative connection to database db.
func (s *Server) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable connect_timeout=5", s.Host, s.Port, s.User, db))
	if err != nil {
		return nil, err
	}
	cfg.Password = s.Password
	return pgx.ConnectConfig(ctx, cfg)
}

// CreateDatabase makes database name if it does not exist.
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	c, err := s.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, `SELECT COUNT(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	_, err = c.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize())
	return err
}

// Close stops the server (fast shutdown) and removes a temporary directory.
func (s *Server) Close() error {
	if s.cmd != nil && s.cmd.Process != nil {
		interrupt(s.cmd.Process)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	if s.temp {
		return os.RemoveAll(s.Dir)
	}
	return nil
}

// Done is closed when the server has exited.
func (s *Server) Done() <-chan struct{} { return s.done }

// reachable checks that every directory above dir lets others through:
// the server runs as another account than the caller.
func reachable(dir string) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("pgpeer: PostgreSQL runs as an unprivileged account, which cannot reach %s: %s is private (mode %v); choose a directory it can reach, e.g. under /tmp", dir, d, fi.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func writeOwned(path string, b []byte, mode os.FileMode, uid, gid int) error {
	if err := os.WriteFile(path, b, mode); err != nil {
		return err
	}
	return os.Chown(path, uid, gid)
}

// certificates makes a CA and a server certificate for 127.0.0.1 and
// localhost, valid for ten years.
func certificates() (caPEM, certPEM, keyPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now().Add(-time.Hour)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgpeer test CA"},
		NotBefore: now, NotAfter: now.Add(10 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now, NotAfter: now.Add(10 * 365 * 24 * time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(parts[max(0, len(parts)-lines):], "\n")
}
