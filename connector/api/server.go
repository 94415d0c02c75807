// Package api is the connector's HTTPS endpoint: the SMS-compatible API
// (AWS JSON 1.1, SigV4), the appliance's own operations beside it, the
// Prometheus metrics and the support bundle, and the web console (its own
// package, connector/web) on the paths they leave free.
// It serves TLS only (1.2 and later) with the certificate kept in the state
// directory.
//
// Service is the API as a Go interface, implemented by Local (on an open
// state directory) and by the HTTP client in connector/api/client; the CLI
// holds one or the other.
package api

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/rehost/rehost/connector/version"
)

// Options configure an Endpoint.
type Options struct {
	// Service carries out the operations; nil serves /healthz only.
	Service Service
	// Auth authenticates the API's callers (see KeyAuth).
	Auth Authenticator
	// Metrics, when set, is served at /metrics and counts API calls.
	Metrics *Metrics
	// Console, when set, serves every path the routes above leave free
	// (GET / and the console's pages); it authenticates its users itself,
	// with sessions.
	Console http.Handler
	Log     *slog.Logger
	// PerKeyRate and PerKeyBurst bound each key's requests (default 20/s,
	// burst 40); PerAddressRate and PerAddressBurst bound each remote
	// address before authentication (default 50/s, burst 100).
	PerKeyRate, PerAddressRate   float64
	PerKeyBurst, PerAddressBurst int
}

// Endpoint serves the connector's HTTPS endpoint.
type Endpoint struct {
	o       Options
	log     *slog.Logger
	started time.Time
	mux     *http.ServeMux
	keys    *limiters
	addrs   *limiters
}

// maxBody bounds a request body: the largest input (Register with a CA
// bundle) is far smaller.
const maxBody = 1 << 20

// New returns the endpoint.
func New(o Options) *Endpoint {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Auth == nil {
		o.Auth = denyAll{}
	}
	s := &Endpoint{o: o, log: o.Log, started: time.Now(), mux: http.NewServeMux(),
		keys:  newLimiters(cmp.Or(o.PerKeyRate, 20), cmp.Or(o.PerKeyBurst, 40)),
		addrs: newLimiters(cmp.Or(o.PerAddressRate, 50), cmp.Or(o.PerAddressBurst, 100))}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	if o.Service != nil {
		// Each route group names its authentication, so the console can
		// bring its own (sessions) beside the keys.
		s.mux.Handle("POST /{$}", s.authed(o.Auth, "", s.call))
		s.mux.Handle("GET /support/bundle", s.authed(o.Auth, "SupportBundle", s.download("take a support bundle", "application/zip",
			"rehost-support-%s.zip", o.Service.SupportBundle)))
		s.mux.Handle("GET /state/backup", s.authed(o.Auth, "BackupState", s.download("back up the state", "application/octet-stream",
			"rehost-state-%s.rehost-backup", o.Service.BackupState)))
		if o.Metrics != nil {
			s.mux.Handle("GET /metrics", s.authed(Either(o.Auth, BasicKeyAuth(o.Auth)), "Metrics", s.metrics))
		}
	}
	if o.Console != nil {
		s.mux.Handle("/", o.Console)
	}
	return s
}

// Handler is the endpoint's HTTP handler (without TLS, for tests).
func (s *Endpoint) Handler() http.Handler { return s.mux }

// Health is the answer of /healthz, the one endpoint open without
// credentials: it says the process is up and which version it runs, nothing
// about the account or the sources.
type Health struct {
	Status        string `json:"status"`
	Version       string `json:"version"`
	UptimeSeconds int64  `json:"uptimeSeconds"`
}

func (s *Endpoint) healthz(w http.ResponseWriter, r *http.Request) {
	if !s.addrs.allow(remoteIP(r)) {
		writeError(w, Errorf(ErrThrottling, "too many requests from %s", remoteIP(r)))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(Health{Status: "ok", Version: version.String(), UptimeSeconds: int64(time.Since(s.started).Seconds())})
}

// request is an authenticated call being served.
type request struct {
	id   string
	who  Principal
	body []byte
	// op names the operation for the log and the metrics.
	op  string
	err *Error
}

// authed reads the body (bounded), rate-limits, authenticates and logs a
// request of a route group, then hands it to h. op names the group's one
// operation; the JSON group names its own per request.
func (s *Endpoint) authed(auth Authenticator, op string, h func(http.ResponseWriter, *http.Request, *request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rq := &request{id: newRequestID(), op: op}
		w.Header().Set("x-amzn-RequestId", rq.id)
		defer func() { s.logCall(r, rq, time.Since(start)) }()
		if !s.addrs.allow(remoteIP(r)) {
			rq.err = Errorf(ErrThrottling, "too many requests from %s: slow down", remoteIP(r))
			writeError(w, rq.err)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			rq.err = Errorf(ErrRequestTooLarge, "request body over %d bytes", maxBody)
			writeError(w, rq.err)
			return
		}
		rq.body = body
		if rq.op == "" {
			rq.op = strings.TrimSpace(r.Header.Get("X-Amz-Target"))
		}
		p, err := auth.Authenticate(r, body)
		if err != nil {
			rq.err = asError(err)
			writeError(w, rq.err)
			return
		}
		rq.who = p
		if !s.keys.allow(p.KeyID) {
			rq.err = Errorf(ErrThrottling, "rate exceeded for access key %s: slow down", p.KeyID)
			writeError(w, rq.err)
			return
		}
		h(w, r, rq)
	})
}

// denyAll refuses every request: an endpoint given no authentication.
type denyAll struct{}

func (denyAll) Authenticate(*http.Request, []byte) (Principal, error) {
	return Principal{}, Errorf(ErrUnauthorizedOperation, "this endpoint accepts no credentials")
}

func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Errorf(ErrInternal, "%v", err)
}

// logCall logs every call with the key that made it (never a secret: the
// body is not logged, and the error messages carry none).
func (s *Endpoint) logCall(r *http.Request, rq *request, took time.Duration) {
	attrs := []any{"requestId", rq.id, "keyId", rq.who.KeyID, "operation", rq.op, "remote", remoteIP(r), "seconds", took.Seconds()}
	errType := ""
	if rq.err != nil {
		errType = rq.err.Type
		attrs = append(attrs, "errorType", rq.err.Type, "error", rq.err.Message)
	}
	if s.o.Metrics != nil {
		s.o.Metrics.apiCall(rq.op, errType)
	}
	level := slog.LevelInfo
	if rq.err != nil && rq.err.Status >= 500 {
		level = slog.LevelError
	}
	s.log.Log(r.Context(), level, "api call", attrs...)
}

// call serves the JSON operations: X-Amz-Target names one.
func (s *Endpoint) call(w http.ResponseWriter, r *http.Request, rq *request) {
	o, ok := operations[rq.op]
	if !ok {
		rq.err = Errorf(ErrUnknownOperation, "unknown operation %q: want %s.<Operation> or %s.<Operation>", rq.op, SMSTarget, RehostTarget)
		writeError(w, rq.err)
		return
	}
	rq.op = rq.op[strings.IndexByte(rq.op, '.')+1:]
	if !o.readOnly && rq.who.ReadOnly {
		rq.err = Errorf(ErrUnauthorizedOperation, "access key %s is read-only and may not call %s", rq.who.KeyID, rq.op)
		writeError(w, rq.err)
		return
	}
	out, err := o.call(r.Context(), s.o.Service, func(v any) error { return decodeInput(rq.body, v) })
	if err != nil {
		rq.err = asError(err)
		if rq.err.Type == ErrInternal {
			s.log.Error("internal error", "requestId", rq.id, "operation", rq.op, "err", err)
		}
		writeError(w, rq.err)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(out)
}

// decodeInput reads an operation's JSON input; a member of the wrong type
// is named in the error.
func decodeInput(body []byte, v any) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	err := json.Unmarshal(body, v)
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		return Errorf(ErrInvalidParameter, "member %s: a %s is not a %s", te.Field, te.Value, te.Type)
	case strings.Contains(err.Error(), "timestamp"):
		return Errorf(ErrInvalidParameter, "%v", err)
	}
	return Errorf(ErrSerialization, "the request body is not valid JSON: %v", err)
}

func writeError(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Errortype", e.Type)
	w.WriteHeader(cmp.Or(e.Status, statusOf(e.Type)))
	json.NewEncoder(w).Encode(e)
}

// download serves a file the service writes (a support bundle, a state
// backup) to a key that may change things; name is the file name's
// pattern, given the time.
func (s *Endpoint) download(what, contentType, name string, write func(context.Context, io.Writer) error) func(http.ResponseWriter, *http.Request, *request) {
	return func(w http.ResponseWriter, r *http.Request, rq *request) {
		if rq.who.ReadOnly {
			rq.err = Errorf(ErrUnauthorizedOperation, "access key %s is read-only and may not %s", rq.who.KeyID, what)
			writeError(w, rq.err)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Content-Disposition", `attachment; filename="`+fmt.Sprintf(name, time.Now().UTC().Format("20060102T150405Z"))+`"`)
		if err := write(r.Context(), w); err != nil {
			// Headers are gone; the truncated file tells the client.
			rq.err = asError(err)
			s.log.Error(what, "requestId", rq.id, "err", err)
		}
	}
}

func (s *Endpoint) metrics(w http.ResponseWriter, r *http.Request, _ *request) {
	s.o.Metrics.ServeHTTP(w, r)
}

func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
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
func (s *Endpoint) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
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
