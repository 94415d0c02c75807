// Package vsphere is the vCenter (and ESXi) source: inventory through the
// property collector, VM snapshots as checkpoints, each disk of a snapshot
// exported as a streamOptimized VMDK through an NFC export lease, and
// changed block tracking (QueryChangedDiskAreas) for incremental runs.
package vsphere

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/internal/conn"
	"github.com/rehost/rehost/pkg/source/vsphere/internal/vim"
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
	c      *vim.Client
	verify *conn.Verifier
	// noDetailed: this vCenter refused guest.guestDetailedData.
	noDetailed atomic.Bool
}

var _ source.Source = (*Source)(nil)

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
	v, err := conn.NewVerifier("443", cfg.CA, cfg.Insecure, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	if cfg.Thumbprint != "" {
		if err := v.Pin(u.Host, cfg.Thumbprint); err != nil {
			return nil, err
		}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // verification is v's, in DialTLS
	t.DialTLSContext = v.DialTLS
	t.TLSHandshakeTimeout = cfg.Timeout

	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	c, err := vim.Connect(dctx, u, &http.Client{Transport: t})
	if err != nil {
		return nil, classify(fmt.Sprintf("connect to vcenter %s", u.Host), err)
	}
	// A run can sit idle between disks longer than vCenter's session
	// timeout: the keepalive makes a cheap call after 5 idle minutes, and
	// a session lost anyway (vCenter restarted) is logged in again once
	// before the call that found it lost is retried.
	if err := c.Login(dctx, cfg.User, cfg.Password, 5*time.Minute); err != nil {
		return nil, classify(fmt.Sprintf("log in to vcenter %s as %q", u.Host, cfg.User), err)
	}
	return &Source{cfg: cfg, u: u, c: c, verify: v}, nil
}

// Close logs out.
func (s *Source) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.c.Logout(ctx); err != nil {
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
// it presented (the thumbprint to accept). It wraps source.ErrCertificate.
type CertificateError = conn.CertificateError

// FetchThumbprint connects to the vCenter at rawURL without trusting it and
// returns the SHA-256 thumbprint of its certificate (colon-separated
// upper-case hex), for a user to compare and accept.
func FetchThumbprint(ctx context.Context, rawURL string) (string, error) {
	u, err := sdkURL(rawURL)
	if err != nil {
		return "", err
	}
	addr := u.Host
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), "443")
	}
	return conn.Fetch(ctx, addr)
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
	case conn.Unreachable(err):
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

func isFault(err error, names ...string) bool {
	n := vim.FaultName(err)
	return n != "" && slices.Contains(names, n)
}
