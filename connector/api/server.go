// Package api is the connector's HTTPS endpoint: the SMS-compatible API, the
// appliance's own endpoints and, beside them, the web console. It serves TLS
// only (1.2 and later) with the certificate kept in the state directory.
package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/version"
)

// Server serves the connector's HTTPS endpoint.
type Server struct {
	d       *daemon.Daemon
	log     *slog.Logger
	started time.Time
	mux     *http.ServeMux
}

// New returns a server for the daemon d.
func New(d *daemon.Daemon, log *slog.Logger) *Server {
	s := &Server{d: d, log: log, started: time.Now(), mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	return s
}

// Handler is the server's HTTP handler (without TLS, for tests that wrap it).
func (s *Server) Handler() http.Handler { return s.mux }

// Health is the answer of /healthz, the one endpoint open without
// credentials: it says the process is up and which version it runs, nothing
// about the account or the sources.
type Health struct {
	Status        string `json:"status"`
	Version       string `json:"version"`
	UptimeSeconds int64  `json:"uptimeSeconds"`
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(Health{Status: "ok", Version: version.String(), UptimeSeconds: int64(time.Since(s.started).Seconds())})
}

// Listen opens the TLS listener on addr ("host:port"; port 0 picks one).
func Listen(addr string, cert tls.Certificate) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return tls.NewListener(ln, TLSConfig(cert)), nil
}

// TLSConfig is the server's TLS configuration: 1.2 and later, modern AEAD
// suites only.
func TLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,
		},
	}
}

// Serve serves on ln until ctx ends, then shuts down gracefully (10 s).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := hs.Shutdown(sctx)
	if e := <-done; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}
