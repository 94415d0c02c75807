package hyperv

import (
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
	"github.com/masterzen/winrm"
	"github.com/masterzen/winrm/soap"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/internal/conn"
)

// DefaultPort is WinRM's HTTPS port.
const DefaultPort = 5986

// scriptTimeout bounds one script (a checkpoint of a busy VM can take
// minutes).
const scriptTimeout = 30 * time.Minute

// wsman runs scripts on one host through masterzen/winrm, with rehost's
// own transport underneath: the certificate checked by pin (thumbprint or
// CA), the request bound to the caller's context, and the authentication
// scheme chosen by the configuration, never downgraded.
type wsman struct {
	addr     string // host:port
	url      string
	endpoint *winrm.Endpoint
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
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(portText)
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
	w := &wsman{addr: addr, url: "https://" + addr + "/wsman", user: cfg.User, password: cfg.Password, auth: auth,
		endpoint: &winrm.Endpoint{Host: host, Port: port, HTTPS: true, Timeout: 2 * time.Minute}}
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
	params := winrm.NewParameters("PT60S", "en-US", 153600)
	params.TransportDecorator = func() winrm.Transporter { return &transport{w: w, ctx: ctx} }
	client, err := winrm.NewClientWithParameters(w.endpoint, w.user, w.password, params)
	if err != nil {
		return err
	}
	stdout, stderr, _, err := client.RunCmdWithContext(ctx, cmd)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("run %s on %s: %w", name, w.addr, context.Cause(ctx))
		}
		return classifyNet(fmt.Sprintf("run %s on %s", name, w.addr), err)
	}
	return decodeAnswer(name, stdout, stderr, out)
}

// transport is the winrm.Transporter of one script run.
type transport struct {
	w   *wsman
	ctx context.Context
}

func (t *transport) Transport(*winrm.Endpoint) error { return nil }

var faultText = regexp.MustCompile(`(?s)<(?:\w+:)?(?:Message|Text)[^>]*>(.*?)</(?:\w+:)?(?:Message|Text)>`)

func (t *transport) Post(_ *winrm.Client, msg *soap.SoapMessage) (string, error) {
	body := msg.String()
	ctx := t.ctx
	// Ending a command and deleting its shell must reach the host even
	// when the run was cancelled, or the shell lingers until WinRM's idle
	// timeout.
	if strings.Contains(body, "/shell/Signal</") || strings.Contains(body, "/transfer/Delete</") {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.w.url, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/soap+xml;charset=UTF-8")
	switch t.w.auth {
	case AuthBasic, AuthNTLM:
		req.SetBasicAuth(t.w.user, t.w.password) // NTLM: the negotiator turns it into a handshake
	case AuthKerberos:
		if err := spnego.SetSPNEGOHeader(t.w.krb, req, t.w.spn); err != nil {
			return "", fmt.Errorf("kerberos ticket for %s: %v: %w", t.w.spn, err, source.ErrAuth)
		}
	}
	resp, err := t.w.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return "", fmt.Errorf("read the answer of %s: %w", t.w.addr, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return string(b), nil
	case resp.StatusCode == http.StatusUnauthorized:
		return "", fmt.Errorf("%s refused the credentials of %s (or the account may not use WinRM): %w", t.w.addr, t.w.user, source.ErrAuth)
	}
	text := strings.Join(strings.Fields(string(b)), " ")
	if m := faultText.FindAllStringSubmatch(string(b), -1); len(m) > 0 {
		text = strings.TrimSpace(m[len(m)-1][1])
	}
	if strings.Contains(string(b), "OperationTimeout") || strings.Contains(string(b), "w:TimedOut") {
		// The winrm client polls again on this word.
		return "", fmt.Errorf("OperationTimeout: %s", text)
	}
	return "", fmt.Errorf("%s answered %s: %s", t.w.addr, resp.Status, clip(text, 500))
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
