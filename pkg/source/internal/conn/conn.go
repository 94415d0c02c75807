// Package conn holds what rehost's sources share of their connections to
// a hypervisor: TLS verification — against a pinned SHA-1 or SHA-256
// thumbprint when one is configured for that host, against the system
// roots (plus an optional CA bundle) otherwise, or not at all when the user
// explicitly turned it off; a refused certificate yields a
// *CertificateError carrying the thumbprint the server presented, for the
// user to compare and accept — and the classification of a failure to
// reach the server.
package conn

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rehost/rehost/pkg/source"
)

// CertificateError says why a certificate was refused and what the server
// presented. It wraps source.ErrCertificate.
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
			"if the certificate was replaced on purpose, check the new thumbprint with the server's administrator and accept it",
			e.Host, e.Expected, e.Presented)
	}
	return fmt.Sprintf("certificate of %s is not trusted (%v); its thumbprint is %s: "+
		"accept this thumbprint if it is the server's, or trust its CA", e.Host, e.Reason, e.Presented)
}

func (e *CertificateError) Unwrap() error { return source.ErrCertificate }

// Verifier dials TLS connections and checks the server's certificate.
type Verifier struct {
	insecure bool
	roots    *x509.CertPool
	timeout  time.Duration
	port     string // default port of addresses given without one

	mu   sync.Mutex
	pins map[string]string // host:port → normalized thumbprint
}

// NewVerifier makes a verifier; defaultPort completes addresses without a
// port, ca (PEM) is trusted in addition to the system roots, insecure
// accepts any certificate.
func NewVerifier(defaultPort string, ca []byte, insecure bool, timeout time.Duration) (*Verifier, error) {
	v := &Verifier{insecure: insecure, timeout: timeout, port: defaultPort, pins: map[string]string{}}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if len(ca) > 0 && !roots.AppendCertsFromPEM(ca) {
		return nil, errors.New("the ca bundle holds no PEM certificate")
	}
	v.roots = roots
	return v, nil
}

// Pin trusts the certificate with thumbprint (SHA-1 or SHA-256 hex, colons
// optional) for addr, in place of the CA chain.
func (v *Verifier) Pin(addr, thumbprint string) error { return v.pin(addr, thumbprint, true) }

// PinIfUnset pins thumbprint for addr unless addr has a pin already (a
// host a server named, whose pin the user's must not replace).
func (v *Verifier) PinIfUnset(addr, thumbprint string) error { return v.pin(addr, thumbprint, false) }

func (v *Verifier) pin(addr, thumbprint string, replace bool) error {
	tp := Normalize(thumbprint)
	if len(tp) != 40 && len(tp) != 64 {
		return fmt.Errorf("thumbprint %q is neither a SHA-1 nor a SHA-256 hex fingerprint", thumbprint)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.pins[v.hostPort(addr)]; ok && !replace {
		return nil
	}
	v.pins[v.hostPort(addr)] = tp
	return nil
}

// DialTLS connects to addr and completes a handshake whose certificate
// passes the checks; usable as http.Transport.DialTLSContext.
func (v *Verifier) DialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
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
		InsecureSkipVerify: true, // checked in VerifyConnection, with pins
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

func (v *Verifier) check(addr, host string, cs tls.ConnectionState) error {
	if v.insecure {
		return nil
	}
	if len(cs.PeerCertificates) == 0 {
		return &CertificateError{Host: addr, Reason: errors.New("no certificate presented")}
	}
	leaf := cs.PeerCertificates[0]
	presented := fmt.Sprintf("%x", sha256.Sum256(leaf.Raw))
	v.mu.Lock()
	want := v.pins[v.hostPort(addr)]
	v.mu.Unlock()
	if want != "" {
		if want == presented || want == fmt.Sprintf("%x", sha1.Sum(leaf.Raw)) {
			return nil
		}
		return &CertificateError{Host: addr, Expected: ColonHex(want), Presented: ColonHex(presented)}
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: v.roots, Intermediates: inter}); err != nil {
		return &CertificateError{Host: addr, Presented: ColonHex(presented), Reason: err}
	}
	return nil
}

func (v *Verifier) hostPort(h string) string {
	if _, _, err := net.SplitHostPort(h); err == nil {
		return strings.ToLower(h)
	}
	return strings.ToLower(net.JoinHostPort(strings.Trim(h, "[]"), v.port))
}

// Unreachable reports whether err says the server could not be reached
// (refused, reset, no route, a name that does not resolve, a timeout).
func Unreachable(err error) bool {
	var dns *net.DNSError
	var op *net.OpError
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EPIPE):
		return true
	case errors.As(err, &dns), errors.As(err, &op):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	}
	return false
}

// Fetch connects to addr without trusting it and returns the SHA-256
// thumbprint of its certificate (colon-separated upper-case hex), for a
// user to compare and accept.
func Fetch(ctx context.Context, addr string) (string, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 30 * time.Second}, Config: &tls.Config{InsecureSkipVerify: true}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("fetch the certificate of %s: %v: %w", addr, err, source.ErrUnreachable)
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", fmt.Errorf("fetch the certificate of %s: none presented: %w", addr, source.ErrCertificate)
	}
	return ColonHex(fmt.Sprintf("%x", sha256.Sum256(certs[0].Raw))), nil
}

// Normalize turns a thumbprint as users paste it into lower-case bare hex.
func Normalize(s string) string {
	return strings.ToLower(strings.NewReplacer(":", "", " ", "", "-", "").Replace(strings.TrimSpace(s)))
}

// ColonHex formats hex as AA:BB:….
func ColonHex(h string) string {
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
