// Package web is the appliance's web console: the first-boot setup (the
// admin password), the wizard (AWS registration, sources, the server
// catalog, the first job) and the dashboard (servers, jobs, runs with live
// progress, AMIs, health, API keys, support bundle). It is served by
// `rehost serve` on the API's HTTPS listener (api.Options.Console) and
// calls the same api.Service the CLI does.
//
// Pages are rendered on the server by templ components (the *.templ files,
// compiled to Go by `go tool templ generate`: no template is evaluated by
// reflection, so the linker keeps only the code the console calls); every
// page works without JavaScript. One small script (static/console.js, no build step)
// localises times and refreshes the live parts of a page. Sessions are
// cookies (HttpOnly, Secure, SameSite=Strict) naming state kept in memory;
// every form carries a CSRF token.
package web

// The *_templ.go files are generated, not committed: `make generate` (or
// any make target) runs this.
//go:generate go tool templ generate -log-level warn

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/a-h/templ"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/version"
	"github.com/rehost/rehost/pkg/store"
)

// Keys manages the API access keys; *daemon.Daemon is one.
type Keys interface {
	CreateAccessKey(ctx context.Context, name string, readOnly bool) (daemon.AccessKey, error)
	AccessKeys(ctx context.Context) ([]daemon.AccessKey, error)
	RevokeAccessKey(ctx context.Context, id string) (daemon.AccessKey, error)
}

// Settings holds the admin password's hash; store.Store is one.
type Settings interface {
	GetSetting(ctx context.Context, key string) ([]byte, error)
	PutSetting(ctx context.Context, key string, value []byte) error
}

// Options configure a Console.
type Options struct {
	// Service carries out everything the console shows and does.
	Service  api.Service
	Keys     Keys
	Settings Settings
	// Fingerprint is the SHA-256 fingerprint of the listener's
	// certificate, shown at first boot and login.
	Fingerprint string
	Log         *slog.Logger
	// IdleTimeout ends a session unused this long (default 30 minutes);
	// no session lives longer than 12 hours.
	IdleTimeout time.Duration
	// Now is the clock (tests).
	Now func() time.Time
	// OnEC2 says whether the appliance runs in Amazon EC2, to offer its
	// instance role (default: the DMI vendor says so).
	OnEC2 func() bool
}

// Console serves the web console.
type Console struct {
	o        Options
	svc      api.Service
	log      *slog.Logger
	sessions *sessions
	locks    *lockout
	csrf     csrfKey
	// hashing bounds concurrent argon2id hashes (46 MiB each).
	hashing chan struct{}
	// setupMu serialises setting the first password.
	setupMu sync.Mutex
	mu      sync.Mutex
	// lastSetup is the report of the last registration, shown on the AWS
	// page until the next.
	lastSetup *setupResult
	mux       *http.ServeMux
}

//go:embed static
var staticFS embed.FS

// New returns the console.
func New(o Options) (*Console, error) {
	if o.Service == nil || o.Keys == nil || o.Settings == nil {
		return nil, errors.New("web console: Service, Keys and Settings are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 30 * time.Minute
	}
	if o.OnEC2 == nil {
		o.OnEC2 = onEC2
	}
	c := &Console{o: o, svc: o.Service, log: o.Log, sessions: newSessions(o.IdleTimeout, 12*time.Hour, o.Now),
		locks: newLockout(o.Now), csrf: newCSRFKey(), hashing: make(chan struct{}, 2), mux: http.NewServeMux()}
	c.routes()
	return c, nil
}

// Handler serves the console: mount it as api.Options.Console.
func (c *Console) Handler() http.Handler {
	return secureHeaders(http.NewCrossOriginProtection().Handler(c.mux))
}

// access says who may reach a route.
type access int

const (
	// authed routes need a session (and lead to setup at first boot).
	authed access = iota
	// public routes are the setup and login pages.
	public
)

// request is a console request being served.
type request struct {
	s *session // nil on public routes
	// form is the parsed form of a POST.
	form *form
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, rq *request) error

func (c *Console) routes() {
	c.mux.HandleFunc("GET /static/{file}", serveStatic)
	c.handle("GET /setup", public, c.setupPage)
	c.handle("POST /setup", public, c.setupSubmit)
	c.handle("GET /login", public, c.loginPage)
	c.handle("POST /login", public, c.loginSubmit)
	c.handle("POST /logout", authed, c.logout)
	c.handle("GET /{$}", authed, c.overview)
	c.handle("GET /overview/live", authed, c.overviewLive)
	c.handle("GET /wizard", authed, c.wizardNext)
	c.handle("GET /wizard/{step}", authed, c.wizardStep)
	c.handle("GET /aws", authed, c.awsPage)
	c.handle("POST /aws", authed, c.awsSubmit)
	c.handle("GET /sources", authed, c.sourcesPage)
	c.handle("POST /sources", authed, c.sourceAdd)
	c.handle("POST /sources/{id}/test", authed, c.sourceTest)
	c.handle("GET /sources/{id}/remove", authed, c.sourceRemovePage)
	c.handle("POST /sources/{id}/remove", authed, c.sourceRemove)
	c.handle("GET /servers", authed, c.serversPage)
	c.handle("POST /servers/import", authed, c.serversImport)
	c.handle("POST /servers/preflight", authed, c.serversPreflight)
	c.handle("GET /jobs", authed, c.jobsPage)
	c.handle("GET /jobs/new", authed, c.jobNewPage)
	c.handle("POST /jobs", authed, c.jobCreate)
	c.handle("GET /jobs/{id}", authed, c.jobPage)
	c.handle("GET /jobs/{id}/edit", authed, c.jobEditPage)
	c.handle("POST /jobs/{id}", authed, c.jobUpdate)
	c.handle("POST /jobs/{id}/start", authed, c.jobStart)
	c.handle("POST /jobs/{id}/verify", authed, c.jobVerify)
	c.handle("POST /jobs/{id}/pause", authed, c.jobPause(true))
	c.handle("POST /jobs/{id}/resume", authed, c.jobPause(false))
	c.handle("GET /jobs/{id}/delete", authed, c.jobDeletePage)
	c.handle("POST /jobs/{id}/delete", authed, c.jobDelete)
	c.handle("GET /runs/{id}", authed, c.runPage)
	c.handle("GET /runs/{id}/live", authed, c.runLive)
	c.handle("GET /apps", authed, c.appsPage)
	c.handle("POST /apps", authed, c.appCreate)
	c.handle("GET /apps/{id}", authed, c.appPage)
	c.handle("GET /apps/{id}/live", authed, c.appLive)
	c.handle("POST /apps/{id}/rightsizing", authed, c.appRightsize)
	c.handle("POST /apps/{id}/template", authed, c.appTemplate)
	c.handle("POST /apps/{id}/launch", authed, c.appLaunch)
	c.handle("POST /apps/{id}/replicate", authed, c.appReplicate)
	c.handle("GET /apps/{id}/terminate", authed, c.appTerminatePage)
	c.handle("POST /apps/{id}/terminate", authed, c.appTerminate)
	c.handle("GET /apps/{id}/delete", authed, c.appDeletePage)
	c.handle("POST /apps/{id}/delete", authed, c.appDelete)
	c.handle("GET /fleet", authed, c.fleetPage)
	c.handle("GET /fleet/{id}/remove", authed, c.memberRemovePage)
	c.handle("POST /fleet/{id}/remove", authed, c.memberRemove)
	c.handle("GET /bandwidth", authed, c.bandwidthPage)
	c.handle("POST /bandwidth", authed, c.bandwidthSubmit)
	c.handle("GET /health", authed, c.healthPage)
	c.handle("POST /backup/bucket", authed, c.backupToBucket)
	c.handle("POST /backup/download", authed, c.backupDownload)
	c.handle("GET /backup/key", authed, c.backupKeyPage)
	c.handle("POST /backup/key", authed, c.backupKeyShow)
	c.handle("GET /keys", authed, c.keysPage)
	c.handle("POST /keys", authed, c.keyCreate)
	c.handle("GET /keys/{id}/revoke", authed, c.keyRevokePage)
	c.handle("POST /keys/{id}/revoke", authed, c.keyRevoke)
	c.handle("GET /support", authed, c.supportPage)
	c.handle("GET /support/download", authed, c.supportDownload)
	c.handle("/", authed, func(http.ResponseWriter, *http.Request, *request) error {
		return &api.Error{Type: "NotFound", Message: "there is no such page", Status: http.StatusNotFound}
	})
}

// maxForm bounds a form submission (a CA bundle is the largest field).
const maxForm = 256 << 10

// handle registers a route: first boot leads to setup, authed routes need a
// session, and every POST its CSRF token.
func (c *Console) handle(pattern string, a access, h handlerFunc) {
	c.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		rq := &request{}
		tag, err := c.passwordTag(r.Context())
		if err != nil {
			c.fail(w, r, rq, err)
			return
		}
		if a == authed {
			if tag == "" {
				c.sessions.endAll()
				redirect(w, r, "/setup")
				return
			}
			if ck, err := r.Cookie(sessionCookie); err == nil {
				rq.s = c.sessions.get(ck.Value, tag)
			}
			if rq.s == nil {
				c.refuse(w, r)
				return
			}
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			parse := r.ParseForm
			if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
				// An upload: its files stay in memory (the body is bounded
				// by maxForm), its other fields go to PostForm.
				parse = func() error { return r.ParseMultipartForm(maxForm) }
			}
			if err := parse(); err != nil {
				c.fail(w, r, rq, &api.Error{Type: "BadRequest", Message: "the form could not be read: " + err.Error(), Status: http.StatusBadRequest})
				return
			}
			if !c.csrfOK(r, rq) {
				c.log.Warn("console form refused: missing or wrong CSRF token", "path", r.URL.Path, "remote", remoteIP(r))
				c.fail(w, r, rq, &api.Error{Type: "Forbidden", Status: http.StatusForbidden,
					Message: "this form has expired or did not come from this console: go back, reload the page and send it again"})
				return
			}
			rq.form = newForm(r.PostForm)
		}
		if err := h(w, r, rq); err != nil {
			c.fail(w, r, rq, err)
		}
	})
}

// refuse answers a request without a session: pages lead to the login page
// (and back), forms and live fragments are refused.
func (c *Console) refuse(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead || strings.HasSuffix(r.URL.Path, "/live") {
		http.Error(w, "not logged in: log in to the console again", http.StatusUnauthorized)
		return
	}
	target := "/login"
	if r.URL.Path != "/" {
		target += "?next=" + url.QueryEscape(r.URL.RequestURI())
	}
	redirect(w, r, target)
}

func (c *Console) csrfOK(r *http.Request, rq *request) bool {
	sent := r.PostForm.Get("csrf")
	if rq.s != nil {
		return tokenEqual(sent, rq.s.csrf)
	}
	ck, err := r.Cookie(preCookie)
	return err == nil && tokenEqual(sent, c.csrf.preToken(ck.Value))
}

// passwordTag reads the admin password's hash: "" when none is set.
func (c *Console) passwordTag(ctx context.Context) (string, error) {
	b, err := c.o.Settings.GetSetting(ctx, SettingAdminPassword)
	if errors.Is(err, store.ErrNotFound) || err == nil && len(b) == 0 {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the admin password setting: %w", err)
	}
	return passwordTag(b), nil
}

// redirect answers 303 See Other: after a POST the browser GETs the target.
func redirect(w http.ResponseWriter, r *http.Request, target string) {
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// localPath accepts a "next" target only on this console.
func localPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") || strings.ContainsAny(p, "\r\n") {
		return "/"
	}
	return p
}

// secureHeaders sets the headers every console answer carries.
func secureHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Strict-Transport-Security", "max-age=31536000")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		h.ServeHTTP(w, r)
	})
}

func serveStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	b, err := staticFS.ReadFile(path.Join("static", name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", mime.TypeByExtension(path.Ext(name)))
	// The URLs carry the version, so a new release is fetched anew.
	w.Header().Set("Cache-Control", "public, max-age=86400")
	w.Write(b)
}

// view is what a page template gets.
type view struct {
	Title   string
	Nav     string
	CSRF    string
	Version string
	// LoggedIn shows the navigation and the logout button.
	LoggedIn bool
	Flash    []flash
	Wizard   *wizardView
	// Refresh is how often, in seconds, the page reloads itself when
	// JavaScript is off (0: never); pages with live parts set it.
	Refresh int
	Form    *form
}

// render renders a page, its content in the layout, into a buffer, then
// sends it.
func (c *Console) render(w http.ResponseWriter, r *http.Request, rq *request, status int, v *view, content templ.Component) error {
	v.Version = version.String()
	if rq.s != nil {
		v.LoggedIn, v.CSRF = true, rq.s.csrf
		v.Flash = append(c.sessions.takeFlash(rq.s), v.Flash...)
	}
	if v.Form == nil {
		v.Form = rq.form
	}
	if v.Form == nil {
		v.Form = newForm(nil)
	}
	return c.send(w, r, status, page(v, content))
}

// send renders a component (a page, or the live part of one) into a
// buffer, then sends it.
func (c *Console) send(w http.ResponseWriter, r *http.Request, status int, comp templ.Component) error {
	var buf bytes.Buffer
	if err := comp.Render(r.Context(), &buf); err != nil {
		return fmt.Errorf("render %s: %w", r.URL.Path, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// fail renders an error page: an API error with its message (and status),
// anything else as an internal error, logged.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, rq *request, err error) {
	var ae *api.Error
	status, msg := http.StatusInternalServerError, "internal error: "+err.Error()
	if asAPIError(err, &ae) {
		status, msg = cmp.Or(ae.Status, http.StatusBadRequest), ae.Message
		if ae.Type == api.ErrJobNotFound {
			status = http.StatusNotFound
		}
	} else {
		c.log.Error("console", "path", r.URL.Path, "err", err)
	}
	if strings.HasSuffix(r.URL.Path, "/live") {
		http.Error(w, msg, status)
		return
	}
	title := http.StatusText(status)
	if rerr := c.render(w, r, rq, status, &view{Title: title}, errorPage(title, msg)); rerr != nil {
		http.Error(w, msg, status)
	}
}

// flash queues a message for the next page and redirects to it.
func (c *Console) flashTo(w http.ResponseWriter, r *http.Request, rq *request, target string, f flash) error {
	c.sessions.addFlash(rq.s, f)
	redirect(w, r, target)
	return nil
}

func remoteIP(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}

// onEC2 reads the DMI vendor Linux exposes: "Amazon EC2" on EC2 instances.
func onEC2() bool {
	for _, f := range []string{"/sys/class/dmi/id/sys_vendor", "/sys/class/dmi/id/board_vendor"} {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "Amazon EC2") {
			return true
		}
	}
	return false
}
