package web_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/connector/web"
)

// Until a password is set every page leads to setup, which shows the
// certificate's fingerprint, refuses weak passwords and stores an argon2id
// hash; resetting it (as 'rehost admin reset-password' does) leads back
// there and ends the sessions.
func TestFirstBoot(t *testing.T) {
	h := start(t, apitest.Options{Unregistered: true})
	b := h.browser()
	for _, p := range []string{"/", "/jobs", "/servers", "/keys", "/login", "/wizard/aws", "/runs/sms-run-x"} {
		if a := b.get(p); a.status != http.StatusSeeOther || a.location() != "/setup" {
			t.Errorf("GET %s before setup: %d → %q, want 303 → /setup", p, a.status, a.location())
		}
	}
	a := b.get("/setup")
	if a.status != http.StatusOK || !strings.Contains(a.body, h.Fingerprint) {
		t.Fatalf("setup page (%d) does not show the certificate fingerprint %s", a.status, h.Fingerprint)
	}
	for pw, want := range map[string]string{
		"short pass":           "at least 12 characters",
		"Password1234!":        "common password",
		"qwertyuiop123":        "common password",
		"dragonmonkey99":       "common password",
		"abcabcabcabc":         "common password",
		"P@ssw0rd2024!":        "common password",
		"iloveyou2025":         "common password",
		strings.Repeat("x", 9): "at least 12",
	} {
		a := b.submit("/setup", "/setup", url.Values{"password": {pw}, "confirm": {pw}})
		if a.status != http.StatusUnprocessableEntity || !strings.Contains(a.body, want) {
			t.Errorf("password %q: %d, want 422 saying %q", pw, a.status, want)
		}
		if strings.Contains(a.body, `value="`+pw+`"`) {
			t.Errorf("password %q was rendered back into the page", pw)
		}
	}
	a = b.submit("/setup", "/setup", url.Values{"password": {testPassword}, "confirm": {testPassword + "x"}})
	if a.status != http.StatusUnprocessableEntity || !strings.Contains(a.body, "the two passwords differ") {
		t.Errorf("differing confirmation: %d", a.status)
	}
	if _, err := h.D.Store.GetSetting(context.Background(), web.SettingAdminPassword); err == nil {
		t.Fatal("a refused password was stored")
	}
	b.setup()
	phc, err := h.D.Store.GetSetting(context.Background(), web.SettingAdminPassword)
	if err != nil || !regexp.MustCompile(`^\$argon2id\$v=19\$m=47104,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`).Match(phc) {
		t.Fatalf("stored password %q (%v): want an argon2id PHC string", phc, err)
	}
	if strings.Contains(string(phc), testPassword) {
		t.Fatal("the password is stored in clear")
	}
	if a := b.get("/wizard"); a.status != http.StatusSeeOther || a.location() != "/wizard/aws" {
		t.Errorf("after setup /wizard → %d %q, want the AWS step", a.status, a.location())
	}
	if a := b.get("/setup"); a.location() != "/login" {
		t.Errorf("setup once a password is set → %q, want /login", a.location())
	}
	other := h.browser()
	if a := other.post("/setup", url.Values{"password": {"another good passphrase here"}, "confirm": {"another good passphrase here"}}); a.status != http.StatusForbidden {
		t.Errorf("setting the password again without a form: %d", a.status)
	}
	// The reset: the setting deleted.
	if err := h.D.Store.DeleteSetting(context.Background(), web.SettingAdminPassword); err != nil {
		t.Fatal(err)
	}
	if a := b.get("/jobs"); a.location() != "/setup" {
		t.Errorf("after a reset /jobs → %q, want /setup", a.location())
	}
	b.setup()
	if a := b.get("/jobs"); a.status != http.StatusOK {
		t.Errorf("after setting a new password: /jobs %d", a.status)
	}
}

// pages are the console's GET pages and fragments; forms its POST actions.
var (
	pages = []string{"/", "/wizard", "/wizard/aws", "/wizard/sources", "/wizard/catalog", "/wizard/job", "/aws", "/sources",
		"/sources/vcenter/remove", "/servers", "/jobs", "/jobs/new", "/jobs/sms-job-x", "/jobs/sms-job-x/edit",
		"/jobs/sms-job-x/delete", "/runs/sms-run-x", "/health", "/keys", "/keys/RHKX/revoke", "/support", "/support/download", "/nothing-here"}
	forms = []string{"/logout", "/aws", "/sources", "/sources/vcenter/test", "/sources/vcenter/remove", "/servers/import", "/jobs",
		"/jobs/sms-job-x", "/jobs/sms-job-x/start", "/jobs/sms-job-x/pause", "/jobs/sms-job-x/resume", "/jobs/sms-job-x/delete",
		"/keys", "/keys/RHKX/revoke"}
)

// Without a session every page leads to the login page (and shows
// nothing), every form and live fragment is refused; a made-up cookie is
// no session.
func TestEverythingNeedsASession(t *testing.T) {
	h := start(t, apitest.Options{})
	h.browser().setup()
	for _, b := range []*browser{h.browser(), forged(h)} {
		for _, p := range pages {
			a := b.get(p)
			if a.status != http.StatusSeeOther || !strings.HasPrefix(a.location(), "/login") || strings.Contains(a.body, "<main") {
				t.Errorf("GET %s without a session: %d → %q", p, a.status, a.location())
			}
		}
		for _, p := range append(forms, "/runs/sms-run-x/live") {
			method := http.MethodPost
			if strings.HasSuffix(p, "/live") {
				method = http.MethodGet
			}
			req, _ := http.NewRequest(method, h.URL+p, strings.NewReader("csrf=x&name=k"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if a := b.do(req); a.status != http.StatusUnauthorized {
				t.Errorf("%s %s without a session: %d, want 401", method, p, a.status)
			}
		}
	}
	if keys, _ := h.D.AccessKeys(context.Background()); len(keys) != 1 {
		t.Errorf("a form without a session created a key: %d keys", len(keys))
	}
	// The login page comes back to the page asked for.
	b := h.browser()
	if a := b.get("/jobs/new?server=s-1"); a.location() != "/login?next=%2Fjobs%2Fnew%3Fserver%3Ds-1" {
		t.Errorf("redirect to login: %q", a.location())
	}
	a := b.get("/login?next=%2Fjobs%2Fnew")
	tok := csrfRE.FindStringSubmatch(a.body)[1]
	if a := b.post("/login", url.Values{"csrf": {tok}, "password": {testPassword}, "next": {"/jobs/new"}}); a.location() != "/jobs/new" {
		t.Errorf("after login → %q, want /jobs/new", a.location())
	}
	evil := h.browser()
	tok = evil.csrf("/login")
	if a := evil.post("/login", url.Values{"csrf": {tok}, "password": {testPassword}, "next": {"https://evil.example/"}}); a.location() != "/" {
		t.Errorf("login with next=https://evil.example → %q", a.location())
	}
}

// forged is a browser holding a session cookie the connector never issued.
func forged(h *harness) *browser {
	b := h.browser()
	u, _ := url.Parse(h.URL)
	b.client.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-rehost-session", Value: "forged-forged-forged-forged-forged-forged-42", Path: "/"}})
	return b
}

// A form without its CSRF token, or with another session's, or from
// another site, is refused and changes nothing.
func TestFormsNeedTheirCSRFToken(t *testing.T) {
	h := start(t, apitest.Options{})
	b := h.browser()
	b.setup()
	other := h.browser()
	if a := other.login(testPassword); a.status != http.StatusSeeOther {
		t.Fatalf("second login: %d", a.status)
	}
	otherToken := other.csrf("/keys")
	for what, v := range map[string]url.Values{
		"no token":          {"name": {"k"}},
		"empty token":       {"name": {"k"}, "csrf": {""}},
		"another session's": {"name": {"k"}, "csrf": {otherToken}},
		"a made-up token":   {"name": {"k"}, "csrf": {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},
	} {
		if a := b.post("/keys", v); a.status != http.StatusForbidden || !strings.Contains(a.body, "reload the page") {
			t.Errorf("POST /keys with %s: %d", what, a.status)
		}
	}
	// The login form before a session: a token without its pre-session
	// cookie is refused too.
	anon := h.browser()
	if a := anon.post("/login", url.Values{"password": {testPassword}, "csrf": {"x"}}); a.status != http.StatusForbidden {
		t.Errorf("login without a token: %d", a.status)
	}
	// Cross-site, even with the right token (the browser would send the
	// cookie only same-site anyway).
	v := url.Values{"name": {"k"}, "csrf": {b.csrf("/keys")}}
	req, _ := http.NewRequest(http.MethodPost, h.URL+"/keys", strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if a := b.do(req); a.status != http.StatusForbidden {
		t.Errorf("cross-site POST: %d", a.status)
	}
	if keys, _ := h.D.AccessKeys(context.Background()); len(keys) != 1 {
		t.Fatalf("refused forms created keys: %d", len(keys))
	}
	if a := b.submit("/keys", "/keys", url.Values{"name": {"laptop"}}); a.status != http.StatusOK || !strings.Contains(a.body, "shown only this once") {
		t.Errorf("the same form with its token: %d", a.status)
	}
	if !strings.Contains(h.Log.String(), "CSRF token") {
		t.Error("refused forms are not logged")
	}
}

// Five wrong passwords in a minute lock the address out: the sixth attempt
// is refused whatever the password, the lockout is logged, and it ends.
func TestLoginLockout(t *testing.T) {
	h := start(t, apitest.Options{Unregistered: true})
	h.browser().setup()
	b := h.browser()
	for i := 1; i <= 5; i++ {
		if a := b.login("wrong password number " + string(rune('0'+i))); a.status != http.StatusUnauthorized || !strings.Contains(a.body, "wrong password") {
			t.Fatalf("wrong password %d: %d", i, a.status)
		}
		h.clock.Advance(5 * time.Second)
	}
	a := b.login("wrong password number 6")
	if a.status != http.StatusTooManyRequests || !strings.Contains(a.body, "locked") || a.header.Get("Retry-After") == "" {
		t.Fatalf("sixth wrong password in a minute: %d, want 429 locked out\n%s", a.status, a.body)
	}
	if a := b.login(testPassword); a.status != http.StatusTooManyRequests {
		t.Errorf("the right password during the lockout: %d, want 429", a.status)
	}
	if !strings.Contains(h.Log.String(), "console login locked out") {
		t.Error("the lockout is not logged")
	}
	h.clock.Advance(5*time.Minute + time.Second)
	if a := b.login(testPassword); a.status != http.StatusSeeOther {
		t.Errorf("after the lockout: %d", a.status)
	}
}

// The session id changes at login, logout ends it on the server (its
// cookie replayed is refused), and an idle session expires. Cookies are
// HttpOnly, Secure and SameSite=Strict.
func TestSessions(t *testing.T) {
	h := start(t, apitest.Options{Unregistered: true})
	b := h.browser()
	b.setup()
	first := b.cookie("__Host-rehost-session")
	// Another browser logs in while presenting that session's cookie: it
	// gets a new session, and the one it presented ends.
	x := h.browser()
	tok := x.csrf("/login")
	u, _ := url.Parse(h.URL)
	x.client.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-rehost-session", Value: first, Path: "/"}})
	a := x.post("/login", url.Values{"csrf": {tok}, "password": {testPassword}})
	if a.status != http.StatusSeeOther {
		t.Fatalf("login: %d", a.status)
	}
	for _, c := range a.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, "__Host-rehost-session=") && !(strings.Contains(c, "HttpOnly") && strings.Contains(c, "Secure") && strings.Contains(c, "SameSite=Strict") && strings.Contains(c, "Path=/")) {
			t.Errorf("session cookie %q: want HttpOnly, Secure, SameSite=Strict", c)
		}
	}
	second := x.cookie("__Host-rehost-session")
	if second == "" || second == first {
		t.Fatalf("the session id was not rotated at login: %q then %q", first, second)
	}
	if a := b.get("/jobs"); a.status != http.StatusSeeOther {
		t.Errorf("the session presented at login still works: %d", a.status)
	}
	b = x
	replay := h.browser()
	replay.client.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-rehost-session", Value: second, Path: "/"}})
	if a := replay.get("/jobs"); a.status != http.StatusOK {
		t.Fatalf("a copy of the live cookie: %d", a.status)
	}
	if a := b.submit("/jobs", "/logout", nil); a.status != http.StatusSeeOther || a.location() != "/login" {
		t.Fatalf("logout: %d %q", a.status, a.location())
	}
	if a := replay.get("/jobs"); a.status != http.StatusSeeOther {
		t.Errorf("the cookie replayed after logout: %d, want the login page", a.status)
	}
	b.login(testPassword)
	if a := b.get("/jobs"); a.status != http.StatusOK {
		t.Fatalf("after logging in again: %d", a.status)
	}
	h.clock.Advance(29 * time.Minute)
	if a := b.get("/jobs"); a.status != http.StatusOK {
		t.Errorf("after 29 idle minutes: %d", a.status)
	}
	h.clock.Advance(31 * time.Minute)
	if a := b.get("/jobs"); a.status != http.StatusSeeOther {
		t.Errorf("after 31 idle minutes: %d, want the login page", a.status)
	}
}

// Every answer carries the security headers; the CSP allows no inline
// script, and the console's script is a file.
func TestSecurityHeaders(t *testing.T) {
	h := start(t, apitest.Options{Unregistered: true})
	b := h.browser()
	b.setup()
	for _, p := range []string{"/", "/login", "/jobs", "/static/console.js", "/nothing"} {
		a := b.get(p)
		csp := a.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			a.header.Get("X-Frame-Options") != "DENY" || !strings.HasPrefix(a.header.Get("Strict-Transport-Security"), "max-age=") ||
			a.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: headers %v", p, a.header)
		}
		if strings.Contains(a.body, "<script>") || regexp.MustCompile(`\son[a-z]+=`).MatchString(a.body) {
			t.Errorf("GET %s has inline script", p)
		}
	}
	if a := b.get("/static/console.js"); a.status != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), "text/javascript") {
		t.Errorf("console.js: %d %s", a.status, a.header.Get("Content-Type"))
	}
	if a := b.get("/"); a.header.Get("Cache-Control") != "no-store" {
		t.Errorf("pages may be cached: %q", a.header.Get("Cache-Control"))
	}
}

// The planted secrets — the AWS secret key, the vCenter password, an API
// key's secret — appear in no page or fragment, whatever the console
// shows, including the forms re-shown after an error.
func TestNoSecretInAnyPage(t *testing.T) {
	h := start(t, apitest.Options{})
	ctx := context.Background()
	settings, err := h.Peers.AWSSettings()
	if err != nil {
		t.Fatal(err)
	}
	src := h.Peers.SourceInput()
	secrets := map[string]string{"AWS secret key": settings.SecretAccessKey, "vCenter password": src.Password, "API key secret": h.Key.Secret}
	b := h.browser()
	b.setup()
	var bodies []string
	keep := func(what string, a answer) { bodies = append(bodies, what+"\n"+a.body) }
	keep("import", b.submit("/servers", "/servers/import", nil))
	list, err := (&api.Local{D: h.D}).GetServers(ctx, &api.GetServersInput{})
	if err != nil || len(list.ServerList) == 0 {
		t.Fatalf("catalog: %v", err)
	}
	a := b.submit("/jobs/new", "/jobs", url.Values{"server": {list.ServerList[0].ServerID}, "frequency": {"12"}, "keep": {"2"}, "license": {"AWS"}})
	if a.status != http.StatusSeeOther {
		t.Fatalf("create job: %d\n%s", a.status, a.body)
	}
	job := strings.TrimPrefix(a.location(), "/jobs/")
	// Forms sent with the secrets, refused and shown again.
	keep("aws", b.submit("/aws", "/aws", url.Values{"region": {"eu-west-1"}, "cred": {"keys"}, "access_key_id": {"AKIAWRONGWRONGWRONG0"},
		"secret_access_key": {settings.SecretAccessKey}, "endpoint": {settings.Endpoint}, "s3_endpoint": {settings.S3Endpoint}, "ca_pem": {string(settings.CAPEM)}}))
	keep("source", b.submit("/sources", "/sources", url.Values{"kind": {"vsphere"}, "name": {"x"}, "url": {src.URL}, "user": {"nobody"}, "password": {src.Password}, "thumbprint": {src.Thumbprint}}))
	keep("source no thumbprint", b.submit("/sources", "/sources", url.Values{"kind": {"vsphere"}, "name": {"y"}, "url": {src.URL}, "user": {src.User}, "password": {src.Password}}))
	keep("login", h.browser().login(src.Password))
	keep("test", b.submit("/sources", "/sources/vcenter/test", nil))
	keep("key", b.submit("/keys", "/keys", url.Values{"name": {"console"}}))
	waitRun(t, h, job)
	// Crawl every page a link reaches.
	seen := map[string]bool{"/logout": true, "/support/download": true}
	queue := []string{"/"}
	hrefRE := regexp.MustCompile(`href="(/[^"#]*)"`)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		a := b.get(p)
		keep(p, a)
		for _, m := range hrefRE.FindAllStringSubmatch(a.body, -1) {
			if l := strings.ReplaceAll(m[1], "&amp;", "&"); !strings.HasPrefix(l, "/static/") && !seen[l] {
				queue = append(queue, l)
			}
		}
		if strings.HasPrefix(p, "/runs/") {
			keep(p+"/live", b.get(p+"/live"))
		}
	}
	if len(seen) < 20 {
		t.Errorf("the crawl reached only %d pages: %v", len(seen), seen)
	}
	for what, s := range secrets {
		for _, body := range bodies {
			if strings.Contains(body, s) {
				t.Errorf("the %s appears in the page %s", what, strings.SplitN(body, "\n", 2)[0])
			}
		}
	}
}
