// Package vsphere is the vCenter (and ESXi) source: inventory through the
// property collector, VM snapshots as checkpoints, each disk of a snapshot
// exported as a streamOptimized VMDK through an NFC export lease, and
// changed block tracking (QueryChangedDiskAreas) for incremental runs.
package vsphere

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/session/keepalive"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/rehost/rehost/pkg/source"
)

// Config says how to reach and trust a vCenter.
type Config struct {
	// URL of the vCenter: "vc.example.com", "https://vc.example.com" or the
	// SDK endpoint "https://vc.example.com/sdk". User info in it is ignored.
	URL      string
	User     string
	Password string
	// Thumbprint pins the vCenter's certificate: its SHA-1 or SHA-256
	// fingerprint in hex, with or without colons (as FetchThumbprint returns
	// and the vSphere client shows). When set, the certificate must match it
	// and the CA chain is not consulted.
	Thumbprint string
	// Insecure accepts any certificate. For labs only.
	Insecure bool
	// CA is a PEM bundle trusted in addition to the system roots (e.g. the
	// VMCA root certificate downloaded from the vCenter).
	CA []byte
	// Datacenter limits the inventory to one datacenter (by name).
	Datacenter string
	// Timeout bounds connecting and the TLS handshake; default 30 s.
	Timeout time.Duration
}

// Source is a connected vCenter. Its methods are safe for concurrent use.
type Source struct {
	cfg    Config
	u      *url.URL
	soap   *soap.Client
	c      *vim25.Client
	sm     *session.Manager
	verify *verifier
}

var (
	_ source.Source        = (*Source)(nil)
	_ source.ChangeTracker = (*Source)(nil)
)

// New connects and logs in. Errors wrap source.ErrAuth, ErrUnreachable or
// ErrCertificate where they apply; a *CertificateError carries the
// thumbprint the server presented, for the user to accept.
func New(ctx context.Context, cfg Config) (*Source, error) {
	u, err := sdkURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	v, err := newVerifier(cfg, u.Host)
	if err != nil {
		return nil, err
	}
	sc := soap.NewClient(u, false)
	t := sc.DefaultTransport()
	t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // verification is v's, in dialTLS
	t.DialTLSContext = v.dialTLS
	t.TLSHandshakeTimeout = cfg.Timeout

	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	c, err := vim25.NewClient(dctx, sc)
	if err != nil {
		return nil, classify(fmt.Sprintf("connect to vcenter %s", u.Host), err)
	}
	s := &Source{cfg: cfg, u: u, soap: sc, c: c, verify: v}
	// A run can sit idle between disks longer than vCenter's session
	// timeout: the keepalive (started by Login) makes a cheap call every few
	// minutes, and a session lost anyway (vCenter restarted) is logged in
	// again once before the call that found it lost is retried.
	c.RoundTripper = &relogin{rt: keepalive.NewHandlerSOAP(c.RoundTripper, 5*time.Minute, nil), s: s}
	s.sm = session.NewManager(c)
	if err := s.sm.Login(dctx, url.UserPassword(cfg.User, cfg.Password)); err != nil {
		return nil, classify(fmt.Sprintf("log in to vcenter %s as %q", u.Host, cfg.User), err)
	}
	return s, nil
}

type relogin struct {
	rt soap.RoundTripper
	s  *Source
	mu sync.Mutex
}

func (r *relogin) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	err := r.rt.RoundTrip(ctx, req, res)
	if err == nil || !isFault(err, "NotAuthenticated") {
		return err
	}
	if _, login := req.(*methods.LoginBody); login {
		return err
	}
	r.mu.Lock()
	lerr := r.s.sm.Login(ctx, url.UserPassword(r.s.cfg.User, r.s.cfg.Password))
	r.mu.Unlock()
	if lerr != nil {
		return fmt.Errorf("%w (and logging in again failed: %v)", err, lerr)
	}
	slog.Info("vcenter session was lost; logged in again", "vcenter", r.s.u.Host)
	// The failed answer left its fault in res; decode the retry into a
	// clean one.
	if v := reflect.ValueOf(res); v.Kind() == reflect.Pointer && !v.IsNil() {
		v.Elem().Set(reflect.Zero(v.Elem().Type()))
	}
	return r.rt.RoundTrip(ctx, req, res)
}

// Close logs out.
func (s *Source) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.sm.Logout(ctx); err != nil {
		return classify("log out of vcenter "+s.u.Host, err)
	}
	return nil
}

func sdkURL(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, errors.New("vcenter url is empty")
	}
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse vcenter url: %w", err)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("vcenter url %q: only https is supported", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("vcenter url %q has no host", u.Redacted())
	}
	u.User = nil
	if u.Path == "" || u.Path == "/" {
		u.Path = "/sdk"
	}
	return u, nil
}

// CertificateError says why the server's certificate was refused and what
// it presented. It wraps source.ErrCertificate.
type CertificateError struct {
	Host string
	// Expected is the pinned thumbprint, empty when the chain was checked.
	Expected string
	// Presented is the SHA-256 thumbprint of the server's certificate.
	Presented string
	// Reason is the chain verification error, when that is what failed.
	Reason error
}

func (e *CertificateError) Error() string {
	if e.Expected != "" {
		return fmt.Sprintf("certificate of %s changed: expected thumbprint %s, server presented %s; "+
			"if the vCenter certificate was replaced on purpose, check the new thumbprint with its administrator and accept it",
			e.Host, e.Expected, e.Presented)
	}
	return fmt.Sprintf("certificate of %s is not trusted (%v); its thumbprint is %s: "+
		"accept this thumbprint if it is the vCenter's, or trust its CA", e.Host, e.Reason, e.Presented)
}

func (e *CertificateError) Unwrap() error { return source.ErrCertificate }

type verifier struct {
	insecure bool
	roots    *x509.CertPool
	timeout  time.Duration

	mu   sync.Mutex
	pins map[string]string // host:port → normalized thumbprint
}

func newVerifier(cfg Config, vcHost string) (*verifier, error) {
	v := &verifier{insecure: cfg.Insecure, timeout: cfg.Timeout, pins: map[string]string{}}
	if cfg.Thumbprint != "" {
		tp := normThumbprint(cfg.Thumbprint)
		if len(tp) != 40 && len(tp) != 64 {
			return nil, fmt.Errorf("thumbprint %q is neither a SHA-1 nor a SHA-256 hex fingerprint", cfg.Thumbprint)
		}
		v.pins[hostPort(vcHost)] = tp
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if len(cfg.CA) > 0 && !roots.AppendCertsFromPEM(cfg.CA) {
		return nil, errors.New("the ca bundle holds no PEM certificate")
	}
	v.roots = roots
	return v, nil
}

// pin trusts thumbprint for host (an ESXi host named in an NFC lease).
func (v *verifier) pin(host, thumbprint string) {
	if thumbprint == "" {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.pins[hostPort(host)]; !ok {
		v.pins[hostPort(host)] = normThumbprint(thumbprint)
	}
}

func (v *verifier) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: v.timeout, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	conn := tls.Client(raw, &tls.Config{
		ServerName:         host,
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
		VerifyConnection:   func(cs tls.ConnectionState) error { return v.check(addr, host, cs) },
	})
	hctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}

func (v *verifier) check(addr, host string, cs tls.ConnectionState) error {
	if v.insecure {
		return nil
	}
	if len(cs.PeerCertificates) == 0 {
		return &CertificateError{Host: addr, Reason: errors.New("no certificate presented")}
	}
	leaf := cs.PeerCertificates[0]
	presented := sha256.Sum256(leaf.Raw)
	v.mu.Lock()
	want := v.pins[hostPort(addr)]
	v.mu.Unlock()
	if want != "" {
		s1 := sha1.Sum(leaf.Raw)
		if want == fmt.Sprintf("%x", presented[:]) || want == fmt.Sprintf("%x", s1[:]) {
			return nil
		}
		return &CertificateError{Host: addr, Expected: colonHex(want), Presented: colonHex(fmt.Sprintf("%x", presented[:]))}
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: v.roots, Intermediates: inter}); err != nil {
		return &CertificateError{Host: addr, Presented: colonHex(fmt.Sprintf("%x", presented[:])), Reason: err}
	}
	return nil
}

// FetchThumbprint connects to the vCenter at rawURL without trusting it and
// returns the SHA-256 thumbprint of its certificate (colon-separated
// upper-case hex), for a user to compare and accept.
func FetchThumbprint(ctx context.Context, rawURL string) (string, error) {
	u, err := sdkURL(rawURL)
	if err != nil {
		return "", err
	}
	addr := hostPort(u.Host)
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 30 * time.Second}, Config: &tls.Config{InsecureSkipVerify: true}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", classify("fetch the certificate of "+addr, err)
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", fmt.Errorf("fetch the certificate of %s: none presented: %w", addr, source.ErrCertificate)
	}
	sum := sha256.Sum256(certs[0].Raw)
	return colonHex(fmt.Sprintf("%x", sum[:])), nil
}

func hostPort(h string) string {
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), "443")
}

func normThumbprint(s string) string {
	return strings.ToLower(strings.NewReplacer(":", "", " ", "", "-", "").Replace(strings.TrimSpace(s)))
}

func colonHex(h string) string {
	h = strings.ToUpper(h)
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i:min(i+2, len(h))])
	}
	return b.String()
}

// classify wraps err with what was being done and the source error class a
// caller acts on.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var ce *CertificateError
	switch {
	case errors.As(err, &ce):
		return fmt.Errorf("%s: %w", op, ce)
	case isFault(err, "InvalidLogin"):
		return fmt.Errorf("%s: the user name or password was refused: %w", op, source.ErrAuth)
	case isFault(err, "NotAuthenticated", "NoPermission"):
		return fmt.Errorf("%s: %v: %w", op, err, source.ErrAuth)
	case isUnreachable(err):
		return fmt.Errorf("%s: %v: %w", op, err, source.ErrUnreachable)
	case isFault(err, "ManagedObjectNotFound"):
		return fmt.Errorf("%s: %v: %w", op, err, source.ErrNotFound)
	}
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	if errors.As(err, &ue) || errors.As(err, &he) {
		return fmt.Errorf("%s: %v: %w", op, err, source.ErrCertificate)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isUnreachable(err error) bool {
	var dns *net.DNSError
	var op *net.OpError
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return true
	case errors.As(err, &dns), errors.As(err, &op):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	}
	return false
}

// faultName is the vSphere fault type carried by err (a SOAP fault or a
// failed task), e.g. "InvalidLogin", or "".
func faultName(err error) string {
	var f any
	var te task.Error
	switch {
	case err == nil:
		return ""
	case soap.IsSoapFault(err):
		f = soap.ToSoapFault(err).VimFault()
	case soap.IsVimFault(err):
		f = soap.ToVimFault(err)
	case errors.As(err, &te):
		f = te.Fault()
	}
	if f == nil {
		return ""
	}
	return reflect.Indirect(reflect.ValueOf(f)).Type().Name()
}

func isFault(err error, names ...string) bool {
	n := faultName(err)
	return n != "" && slices.Contains(names, n)
}
