package hyperv

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	ntlmssp "github.com/Azure/go-ntlmssp"
	krbclient "github.com/jcmturner/gokrb5/v8/client"
	krbconfig "github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/spnego"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/hyperv/internal/shell"
	"github.com/rehost/rehost/pkg/source/internal/conn"
)

// DefaultPort is WinRM's HTTPS port.
const DefaultPort = 5986

// scriptTimeout bounds one script (a checkpoint of a busy VM can take
// minutes).
const scriptTimeout = 30 * time.Minute

// wsman runs scripts on one host in a WinRM shell (internal/shell), with
// rehost's own transport underneath: the certificate checked by pin (thumbprint or
// CA), the request bound to the caller's context, and the authentication
// scheme chosen by the configuration, never downgraded.
type wsman struct {
	addr     string // host:port
	url      string
	user     string
	password string
	auth     string
	client   *http.Client
	krb      *krbclient.Client
	spn      string

	// One script at a time on one connection: NTLM authenticates the
	// connection, so its handshake must not spread over several.
	mu sync.Mutex
}

// endpointAddr parses "host", "host:port" or "https://host:port/wsman".
func endpointAddr(endpoint string) (string, error) {
	e := strings.TrimSpace(endpoint)
	if e == "" {
		return "", errors.New("the endpoint is empty")
	}
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil {
			return "", fmt.Errorf("parse endpoint %q: %w", e, err)
		}
		if u.Scheme != "https" {
			return "", fmt.Errorf("endpoint %q: only WinRM over HTTPS is supported (enable the HTTPS listener: winrm quickconfig -transport:https)", e)
		}
		e = u.Host
	}
	if _, _, err := net.SplitHostPort(e); err != nil {
		e = net.JoinHostPort(strings.Trim(e, "[]"), strconv.Itoa(DefaultPort))
	}
	return e, nil
}

func newWSMan(cfg Config, addr, thumbprint string) (*wsman, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	v, err := conn.NewVerifier(strconv.Itoa(DefaultPort), cfg.CA, cfg.Insecure, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	if thumbprint != "" {
		if err := v.Pin(addr, thumbprint); err != nil {
			return nil, err
		}
	}
	auth := strings.ToLower(cmp.Or(cfg.Auth, AuthNTLM))
	base := &http.Transport{
		DialTLSContext:      v.DialTLS,
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
		// A Receive is answered within WinRM's OperationTimeout (60 s).
		ResponseHeaderTimeout: 2 * time.Minute,
	}
	w := &wsman{addr: addr, url: "https://" + addr + "/wsman", user: cfg.User, password: cfg.Password, auth: auth}
	switch auth {
	case AuthBasic:
		w.client = &http.Client{Transport: base}
	case AuthNTLM:
		w.client = &http.Client{Transport: ntlmssp.Negotiator{RoundTripper: noBasic{base}}}
	case AuthKerberos:
		w.client = &http.Client{Transport: base}
		if w.krb, w.spn, err = kerberosClient(cfg, host); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("authentication %q is none of ntlm, kerberos, basic", cfg.Auth)
	}
	return w, nil
}

func kerberosClient(cfg Config, host string) (*krbclient.Client, string, error) {
	user, realm := cfg.User, cfg.Kerberos.Realm
	if u, d, ok := strings.Cut(user, "@"); ok {
		user, realm = u, cmp.Or(realm, d)
	} else if d, u, ok := strings.Cut(user, `\`); ok {
		user, realm = u, cmp.Or(realm, d)
	}
	if realm == "" {
		return nil, "", errors.New("kerberos needs a realm: give the user as user@REALM or set the realm")
	}
	conf, err := krbconfig.Load(cmp.Or(cfg.Kerberos.Config, "/etc/krb5.conf"))
	if err != nil {
		return nil, "", fmt.Errorf("kerberos: read %s: %w", cmp.Or(cfg.Kerberos.Config, "/etc/krb5.conf"), err)
	}
	cl := krbclient.NewWithPassword(user, strings.ToUpper(realm), cfg.Password, conf, krbclient.DisablePAFXFAST(true))
	return cl, cmp.Or(cfg.Kerberos.SPN, "HTTP/"+host), nil
}

// noBasic keeps the NTLM negotiator from falling back to Basic (it sends
// the password in the clear of the TLS tunnel) when a server does not
// offer NTLM or Negotiate.
type noBasic struct{ rt http.RoundTripper }

func (n noBasic) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasPrefix(r.Header.Get("Authorization"), "Basic ") {
		return nil, fmt.Errorf("the server offers neither NTLM nor Negotiate authentication; rehost does not fall back to Basic "+
			"(choose basic authentication explicitly if the host allows only that): %w", source.ErrAuth)
	}
	return n.rt.RoundTrip(r)
}

// run runs script name with args on the host and decodes its answer into
// out (a pointer to a slice).
func (w *wsman) run(ctx context.Context, name string, args, out any) error {
	text, err := Script(name, args)
	if err != nil {
		return err
	}
	cmd, err := Command(text)
	if err != nil {
		return fmt.Errorf("script %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, scriptTimeout)
	defer cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.krb != nil {
		if err := w.krb.AffirmLogin(); err != nil {
			return fmt.Errorf("kerberos login of %s: %v: %w", w.user, err, source.ErrAuth)
		}
	}
	client := &shell.Client{URL: w.url, Post: w.post, OperationTimeout: operationTimeout, MaxEnvelopeSize: maxEnvelopeSize, Locale: "en-US"}
	stdout, stderr, _, err := client.Run(ctx, cmd)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("run %s on %s: %w", name, w.addr, context.Cause(ctx))
		}
		return classifyNet(fmt.Sprintf("run %s on %s", name, w.addr), err)
	}
	return decodeAnswer(name, string(stdout), string(stderr), out)
}

// The WS-Management options of every request: a Receive is held up to
// the operation timeout, and answers stay within the envelope size.
const (
	operationTimeout = 60 * time.Second
	maxEnvelopeSize  = 153600
)

var faultText = regexp.MustCompile(`(?s)<(?:\w+:)?(?:Message|Text)[^>]*>(.*?)</(?:\w+:)?(?:Message|Text)>`)

// post sends one envelope with the configured authentication and returns
// the body of a 200 answer; a fault becomes an error carrying its message.
func (w *wsman) post(ctx context.Context, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/soap+xml;charset=UTF-8")
	switch w.auth {
	case AuthBasic, AuthNTLM:
		req.SetBasicAuth(w.user, w.password) // NTLM: the negotiator turns it into a handshake
	case AuthKerberos:
		if err := spnego.SetSPNEGOHeader(w.krb, req, w.spn); err != nil {
			return nil, fmt.Errorf("kerberos ticket for %s: %v: %w", w.spn, err, source.ErrAuth)
		}
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s: %w", w.addr, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return b, nil
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("%s refused the credentials of %s (or the account may not use WinRM): %w", w.addr, w.user, source.ErrAuth)
	}
	text := strings.Join(strings.Fields(string(b)), " ")
	if m := faultText.FindAllStringSubmatch(string(b), -1); len(m) > 0 {
		text = strings.TrimSpace(m[len(m)-1][1])
	}
	if bytes.Contains(b, []byte("OperationTimeout")) || bytes.Contains(b, []byte("w:TimedOut")) {
		return nil, fmt.Errorf("OperationTimeout: %s: %w", text, shell.ErrTimedOut)
	}
	return nil, fmt.Errorf("%s answered %s: %s", w.addr, resp.Status, clip(text, 500))
}

// classifyNet wraps err with what was being done and the source error
// class a caller acts on.
func classifyNet(op string, err error) error {
	var pe *conn.CertificateError
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		return fmt.Errorf("%s: %w", op, pe)
	case errors.Is(err, source.ErrAuth), errors.Is(err, source.ErrCertificate), errors.Is(err, source.ErrNotFound):
		return fmt.Errorf("%s: %w", op, err)
	case errors.As(err, &ue), errors.As(err, &he):
		return fmt.Errorf("%s: %v: %w", op, err, source.ErrCertificate)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", op, err)
	case conn.Unreachable(err):
		return fmt.Errorf("%s: %v: %w", op, err, source.ErrUnreachable)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// FetchThumbprint connects to a WinRM endpoint without trusting it and
// returns the SHA-256 thumbprint of its certificate, for a user to compare
// (Get-ChildItem Cert:\LocalMachine\My on the host) and accept.
func FetchThumbprint(ctx context.Context, endpoint string) (string, error) {
	addr, err := endpointAddr(endpoint)
	if err != nil {
		return "", err
	}
	return conn.Fetch(ctx, addr)
}

// CertificateError is the error of a refused certificate; it carries the
// thumbprint the server presented.
type CertificateError = conn.CertificateError
