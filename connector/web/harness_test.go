package web_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/connector/web"
)

// testPassword passes the console's password policy.
const testPassword = "violet tractor harbour 42"

// clock is a settable clock for the console's sessions and lockouts.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness is a connector serving the API and the console on loopback.
type harness struct {
	*apitest.Connector
	t     *testing.T
	clock *clock
	// tlsConfig trusts the connector's certificate.
	tlsConfig *tls.Config
}

func start(t *testing.T, o apitest.Options) *harness {
	t.Helper()
	h := &harness{t: t, clock: &clock{t: time.Now()}}
	o.Console = func(c *apitest.Connector, svc api.Service) http.Handler {
		con, err := web.New(web.Options{Service: svc, Keys: c.D, Settings: c.D.Store, Fingerprint: c.Fingerprint,
			Log: slog.New(slog.NewJSONHandler(c.Log, nil)), Now: h.clock.Now, OnEC2: func() bool { return false }})
		if err != nil {
			t.Fatal(err)
		}
		return con.Handler()
	}
	h.Connector = apitest.Start(t, o)
	pem, err := os.ReadFile(filepath.Join(h.Dir, "tls", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	h.tlsConfig = &tls.Config{RootCAs: pool}
	return h
}

// browser is an HTTP client with its own cookies that does not follow
// redirects, so a test sees each answer.
type browser struct {
	h      *harness
	client *http.Client
}

func (h *harness) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{h: h, client: &http.Client{Jar: jar, Timeout: time.Minute,
		Transport:     &http.Transport{TLSClientConfig: h.tlsConfig},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type answer struct {
	status int
	header http.Header
	body   string
}

// location is a redirect's target path.
func (a answer) location() string { return a.header.Get("Location") }

func (b *browser) do(req *http.Request) answer {
	b.h.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

func (b *browser) get(path string) answer {
	b.h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.h.URL+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, v url.Values) answer {
	b.h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.h.URL+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of the first form on a page.
func (b *browser) csrf(path string) string {
	b.h.t.Helper()
	a := b.get(path)
	m := csrfRE.FindStringSubmatch(a.body)
	if m == nil {
		b.h.t.Fatalf("GET %s (%d): no CSRF token in the page:\n%s", path, a.status, a.body)
	}
	return m[1]
}

// submit posts a form of the page at page to action with its CSRF token.
func (b *browser) submit(page, action string, v url.Values) answer {
	b.h.t.Helper()
	if v == nil {
		v = url.Values{}
	}
	v.Set("csrf", b.csrf(page))
	return b.post(action, v)
}

// setup sets the first admin password, which logs this browser in.
func (b *browser) setup() {
	b.h.t.Helper()
	a := b.submit("/setup", "/setup", url.Values{"password": {testPassword}, "confirm": {testPassword}})
	if a.status != http.StatusSeeOther || a.location() != "/wizard" {
		b.h.t.Fatalf("setup: %d %s\n%s", a.status, a.location(), a.body)
	}
}

func (b *browser) login(pw string) answer {
	b.h.t.Helper()
	return b.submit("/login", "/login", url.Values{"password": {pw}})
}

// cookie is the browser's value of a cookie on the connector.
func (b *browser) cookie(name string) string {
	u, _ := url.Parse(b.h.URL)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}
