// Package s3peer runs versitygw (a real S3 server, pinned version) on
// loopback for tests and the demo, optionally behind TLS with a generated
// certificate, and behind a recording front (see Front) that fills the gaps
// versitygw leaves (bucket encryption and lifecycle answer 501 there) and
// injects faults on chosen requests.
//
// Clients must use path-style addressing: the front and versitygw are reached
// by IP address, not by bucket host names.
package s3peer

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Options configure a server.
type Options struct {
	// TLS serves HTTPS (versitygw and the front) with a self-signed
	// certificate for 127.0.0.1; Server.CAPool and HTTPClient trust it. The
	// SDK only sends aws-chunked trailing checksums over TLS.
	TLS bool
	// Region versitygw reports; default us-east-1.
	Region string
	// Dir is the posix backend root (buckets are its subdirectories). Start
	// defaults it to t.TempDir(); StartProcess to a temporary directory that
	// Close removes.
	Dir string
	// NoFront makes URL point at versitygw itself, with no recording front.
	NoFront bool
	// Binary overrides the versitygw binary; default Binary(ctx).
	Binary string
	// Log receives versitygw's output; default: kept in memory and shown
	// only when startup fails.
	Log io.Writer
	// AccessKeyID and SecretAccessKey are the root keys; default
	// generated (they then change with every start).
	AccessKeyID, SecretAccessKey string
	// Listen is the front's address (TLS with TLS); PlainListen its plain
	// HTTP one with TLS. Default 127.0.0.1:0 each.
	Listen, PlainListen string
	// LifecycleEvery runs the buckets' lifecycle rules on the real clock
	// at this interval, as S3 does in the background; default 0: only
	// Front.Advance and Front.Sweep run them.
	LifecycleEvery time.Duration
}

// Server is a running versitygw, optionally behind a Front.
type Server struct {
	// URL is the endpoint clients use: the front's unless Options.NoFront.
	URL string
	// PlainURL is the front's plain HTTP endpoint (with TLS, the one a
	// bucket policy denying insecure transport refuses); URL without TLS.
	PlainURL string
	// BackendURL is versitygw's own endpoint.
	BackendURL string
	// Region, AccessKeyID and SecretAccessKey are the root credentials,
	// generated per server.
	Region, AccessKeyID, SecretAccessKey string
	// Dir is the posix backend root: Dir/<bucket>/<key>.
	Dir string
	// CertFile and KeyFile are absolute paths of the TLS pair (TLS only).
	CertFile, KeyFile string
	// CAPool trusts the server certificate (TLS only).
	CAPool *x509.CertPool
	// Front is the recording front (nil with Options.NoFront).
	Front *Front

	cmd        *exec.Cmd
	exited     chan struct{}
	removeDir  bool
	closeOnce  sync.Once
	closeErr   error
	output     *lockedBuffer
	clientOnce sync.Once
	client     *http.Client
}

// Start runs a server for the duration of the test; it is stopped (and its
// directory removed) at cleanup. Failure to start fails the test.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := StartProcess(ctx, opts)
	if err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Logf("stop versitygw: %v", err)
		}
	})
	return s
}

// StartProcess runs a server outside of a test (rehost demo). The caller
// must Close it. ctx bounds the install and startup only.
func StartProcess(ctx context.Context, opts Options) (*Server, error) {
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = Binary(ctx); err != nil {
			return nil, err
		}
	}
	s := &Server{Region: opts.Region, output: &lockedBuffer{}}
	if s.Region == "" {
		s.Region = "us-east-1"
	}
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "s3peer-")
		if err != nil {
			return nil, fmt.Errorf("start versitygw: %w", err)
		}
		opts.Dir, s.removeDir = d, true
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	// Keep the TLS pair outside the bucket root so it never shows as a bucket.
	s.Dir = filepath.Join(dir, "root")
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	s.AccessKeyID, s.SecretAccessKey = opts.AccessKeyID, opts.SecretAccessKey
	if s.AccessKeyID == "" || s.SecretAccessKey == "" {
		s.AccessKeyID = "AKRH" + randHex(8)
		s.SecretAccessKey = randHex(20)
	}

	var pair tls.Certificate
	if opts.TLS {
		s.CertFile, s.KeyFile, pair, s.CAPool, err = selfSigned(dir)
		if err != nil {
			s.cleanupDir()
			return nil, fmt.Errorf("start versitygw: tls: %w", err)
		}
	}
	var out io.Writer = s.output
	if opts.Log != nil {
		out = io.MultiWriter(s.output, opts.Log)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if lastErr = s.launch(ctx, bin, out); lastErr == nil {
			break
		}
		if ctx.Err() != nil {
			break
		}
	}
	if lastErr != nil {
		s.cleanupDir()
		return nil, lastErr
	}
	if opts.NoFront {
		s.URL, s.PlainURL = s.BackendURL, s.BackendURL
		return s, nil
	}
	front, err := newFront(s, frontOptions{tls: opts.TLS, pair: pair,
		listen: cmp.Or(opts.Listen, "127.0.0.1:0"), plainListen: cmp.Or(opts.PlainListen, "127.0.0.1:0"),
		lifecycleEvery: opts.LifecycleEvery, statePath: filepath.Join(dir, "front.json")})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("start s3 front: %w", err)
	}
	s.Front = front
	s.URL, s.PlainURL = front.URL, front.PlainURL
	return s, nil
}

func (s *Server) launch(ctx context.Context, bin string, out io.Writer) error {
	port, err := freePort()
	if err != nil {
		return fmt.Errorf("start versitygw: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{"--port", addr, "--region", s.Region, "--quiet"}
	scheme := "http"
	if s.CertFile != "" {
		args = append(args, "--cert", s.CertFile, "--key", s.KeyFile)
		scheme = "https"
	}
	args = append(args, "posix", s.Dir)
	cmd := exec.Command(bin, args...)
	// Credentials go through the environment so they never show in ps.
	cmd.Env = append(os.Environ(),
		"ROOT_ACCESS_KEY_ID="+s.AccessKeyID,
		"ROOT_SECRET_ACCESS_KEY="+s.SecretAccessKey)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start versitygw %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	s.BackendURL = scheme + "://" + addr

	client := s.newHTTPClient()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("start versitygw: exited early (%v): %s", cmd.ProcessState, s.output.String())
		case <-ctx.Done():
			s.stop()
			return fmt.Errorf("start versitygw: %w", ctx.Err())
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.BackendURL+"/", nil)
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("start versitygw: not answering on %s after 30s: %s", addr, s.output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// HTTPClient returns a client trusting the server certificate, speaking
// HTTP/1.1 (the front's fault injection hijacks HTTP/1 connections).
func (s *Server) HTTPClient() *http.Client {
	s.clientOnce.Do(func() { s.client = s.newHTTPClient() })
	return s.client
}

func (s *Server) newHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.MaxIdleConnsPerHost = 32
	if s.CAPool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: s.CAPool, NextProtos: []string{"http/1.1"}}
	}
	return &http.Client{Transport: tr}
}

// S3Client returns an SDK client for URL with the root credentials, path
// style, and the server's trust.
func (s *Server) S3Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKeyID, s.SecretAccessKey, ""),
		HTTPClient:   s.HTTPClient(),
	})
}

// Output returns what versitygw has printed so far.
func (s *Server) Output() string { return s.output.String() }

// Close stops the front and versitygw and removes a directory StartProcess
// created. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.Front != nil {
			s.Front.close()
		}
		s.closeErr = s.stop()
		s.cleanupDir()
	})
	return s.closeErr
}

func (s *Server) stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	select {
	case <-s.exited:
		return nil
	default:
	}
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		s.cmd.Process.Kill()
	}
	select {
	case <-s.exited:
		return nil
	case <-time.After(5 * time.Second):
	}
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill versitygw pid %d: %w", s.cmd.Process.Pid, err)
	}
	<-s.exited
	return nil
}

func (s *Server) cleanupDir() {
	if s.removeDir {
		os.RemoveAll(filepath.Dir(s.Dir))
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write keeps at most the last 64 KiB.
func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.buf.Len() > 64<<10 {
		keep := append([]byte(nil), b.buf.Bytes()[b.buf.Len()-32<<10:]...)
		b.buf.Reset()
		b.buf.Write(keep)
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
