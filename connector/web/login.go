package web

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/limit"
)

// authView is the data of the setup and login pages.
type authView struct {
	Fingerprint string
	Next        string
	// PreCSRF is the form's token before there is a session.
	PreCSRF string
	MinLen  int
}

// preSession gives the browser a pre-session cookie (keeping one it has)
// and returns the CSRF token of the form about to be shown.
func (c *Console) preSession(w http.ResponseWriter, r *http.Request) string {
	pre := ""
	if ck, err := r.Cookie(preCookie); err == nil && len(ck.Value) >= 32 {
		pre = ck.Value
	} else {
		pre = randomToken()
		setCookie(w, preCookie, pre)
	}
	return c.csrf.preToken(pre)
}

func (c *Console) authPage(w http.ResponseWriter, r *http.Request, rq *request, status int, name, title, next string) error {
	v := &view{Title: title}
	d := authView{Fingerprint: c.o.Fingerprint, Next: next, PreCSRF: c.preSession(w, r), MinLen: minPasswordLen}
	content := loginPage(v, d)
	if name == "setup" {
		content = setupPage(v, d)
	}
	return c.render(w, r, rq, status, v, content)
}

// setupPage asks for the first admin password; once one is set it leads
// to the login page.
func (c *Console) setupPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	if tag, err := c.passwordTag(r.Context()); err != nil || tag != "" {
		redirect(w, r, "/login")
		return err
	}
	return c.authPage(w, r, rq, http.StatusOK, "setup", "Set up the connector", "")
}

func (c *Console) setupSubmit(w http.ResponseWriter, r *http.Request, rq *request) error {
	f := rq.form
	pw, again := f.Values.Get("password"), f.Values.Get("confirm")
	if err := limit.Password.Check(pw); err != nil {
		f.fail("password", err.Error())
	} else if msg := checkPassword(pw); msg != "" {
		f.fail("password", msg)
	} else if pw != again {
		f.fail("confirm", "the two passwords differ: type the same one twice")
	}
	if !f.ok() {
		return c.authPage(w, r, rq, http.StatusUnprocessableEntity, "setup", "Set up the connector", "")
	}
	phc, err := c.hash(r.Context(), pw)
	if err != nil {
		return err
	}
	c.setupMu.Lock()
	defer c.setupMu.Unlock()
	// Whoever set it first wins; the second is sent to the login page.
	if tag, err := c.passwordTag(r.Context()); err != nil || tag != "" {
		redirect(w, r, "/login")
		return err
	}
	if err := c.o.Settings.PutSetting(r.Context(), SettingAdminPassword, []byte(phc)); err != nil {
		return fmt.Errorf("save the admin password: %w", err)
	}
	c.log.Info("console admin password set", "remote", remoteIP(r))
	c.startSession(w, r, []byte(phc))
	redirect(w, r, "/wizard")
	return nil
}

// hash hashes a password, at most two at a time (46 MiB each).
func (c *Console) hash(ctx context.Context, pw string) (string, error) {
	select {
	case c.hashing <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-c.hashing }()
	return hashPassword(pw, defaultArgon), nil
}

func (c *Console) verify(ctx context.Context, phc []byte, pw string) (bool, error) {
	select {
	case c.hashing <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-c.hashing }()
	return verifyPassword(string(phc), pw)
}

// startSession starts a new session (ending the one the browser held) and
// sets its cookie.
func (c *Console) startSession(w http.ResponseWriter, r *http.Request, phc []byte) {
	old := ""
	if ck, err := r.Cookie(sessionCookie); err == nil {
		old = ck.Value
	}
	s := c.sessions.create(old, passwordTag(phc))
	setCookie(w, sessionCookie, s.id)
	clearCookie(w, preCookie)
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	tag, err := c.passwordTag(r.Context())
	if err != nil {
		return err
	}
	if tag == "" {
		redirect(w, r, "/setup")
		return nil
	}
	next := localPath(r.URL.Query().Get("next"))
	if ck, err := r.Cookie(sessionCookie); err == nil && c.sessions.get(ck.Value, tag) != nil {
		redirect(w, r, next)
		return nil
	}
	return c.authPage(w, r, rq, http.StatusOK, "login", "Log in", next)
}

func (c *Console) loginSubmit(w http.ResponseWriter, r *http.Request, rq *request) error {
	f := rq.form
	next := localPath(f.Get("next"))
	ip := remoteIP(r)
	phc, err := c.o.Settings.GetSetting(r.Context(), SettingAdminPassword)
	if err != nil || len(phc) == 0 {
		redirect(w, r, "/setup")
		return nil
	}
	switch v, wait := c.locks.attempt(ip); v {
	case locked:
		c.log.Warn("console login refused: locked out after repeated wrong passwords", "remote", ip, "retryAfterSeconds", int(wait.Seconds()))
		f.Error = fmt.Sprintf("too many wrong passwords: logins are locked for %s; try again later (or reset the password from the appliance's console)", wait.Round(time.Second))
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		return c.authPage(w, r, rq, http.StatusTooManyRequests, "login", "Log in", next)
	case throttled:
		f.Error = "too many login attempts: wait a few seconds and try again"
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())))
		return c.authPage(w, r, rq, http.StatusTooManyRequests, "login", "Log in", next)
	}
	pw := f.Values.Get("password")
	if limit.Password.Check(pw) != nil {
		pw = "" // no stored password is this long: wrong, without hashing it
	}
	ok, err := c.verify(r.Context(), phc, pw)
	if err != nil {
		return err
	}
	if !ok {
		switch c.locks.fail(ip) {
		case "addr":
			c.log.Warn("console login locked out: repeated wrong passwords", "remote", ip, "failures", maxFailures, "lockedForSeconds", int(lockoutFor.Seconds()))
		case "all":
			c.log.Warn("console logins locked out for everyone: many wrong passwords from several addresses", "failures", maxGlobalFailure, "lockedForSeconds", int(globalLockoutFor.Seconds()))
		default:
			c.log.Warn("console login failed: wrong password", "remote", ip)
		}
		f.fail("password", "wrong password")
		return c.authPage(w, r, rq, http.StatusUnauthorized, "login", "Log in", next)
	}
	c.locks.succeed(ip)
	c.startSession(w, r, phc)
	c.log.Info("console login", "remote", ip)
	if reg, err := c.svc.GetRegistration(r.Context(), &api.GetRegistrationInput{}); err == nil && !reg.Registered && next == "/" {
		next = "/wizard"
	}
	redirect(w, r, next)
	return nil
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, rq *request) error {
	c.sessions.end(rq.s.id)
	clearCookie(w, sessionCookie)
	c.log.Info("console logout", "remote", remoteIP(r))
	redirect(w, r, "/login")
	return nil
}
