package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// Sessions live in the daemon's memory, not in the store: a restart logs
// the administrator out, which is cheap (one login), while a session table
// in the store would be one more secret at rest to seal, expire and sweep,
// and a stolen state backup would carry live sessions. One daemon serves a
// state directory (daemon.LockServe), so memory is the whole truth.
const (
	sessionCookie = "__Host-rehost-session"
	// preCookie ties the login and setup forms' CSRF tokens to a browser
	// before there is a session.
	preCookie = "__Host-rehost-pre"
	// maxSessions bounds the table; the least recently used goes first.
	maxSessions = 64
)

type session struct {
	id       string
	csrf     string
	created  time.Time
	lastSeen time.Time
	// pwTag identifies the password hash the session logged in with: a
	// reset or a new password ends it.
	pwTag string
	// flash is shown once, on the next page.
	flash []flash
}

// flash is a message for the next page: Kind is "ok" or "error"; Target,
// when set, is the id of the element it belongs next to.
type flash struct {
	Kind, Message, Target string
}

type sessions struct {
	mu       sync.Mutex
	m        map[string]*session
	idle     time.Duration
	lifetime time.Duration
	now      func() time.Time
}

func newSessions(idle, lifetime time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[string]*session{}, idle: idle, lifetime: lifetime, now: now}
}

func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session, ending old, the one the browser held (rotation
// at login: a session id planted before login is worthless after it).
func (s *sessions) create(old, pwTag string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, old)
	now := s.now()
	s.sweep(now)
	if len(s.m) >= maxSessions {
		var lru *session
		for _, x := range s.m {
			if lru == nil || x.lastSeen.Before(lru.lastSeen) {
				lru = x
			}
		}
		delete(s.m, lru.id)
	}
	x := &session{id: randomToken(), csrf: randomToken(), created: now, lastSeen: now, pwTag: pwTag}
	s.m[x.id] = x
	return x
}

// get returns the live session with that id, touching it; nil when it is
// unknown, idle too long, too old or of another password.
func (s *sessions) get(id, pwTag string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.m[id]
	if x == nil {
		return nil
	}
	now := s.now()
	if now.Sub(x.lastSeen) > s.idle || now.Sub(x.created) > s.lifetime || x.pwTag != pwTag {
		delete(s.m, id)
		return nil
	}
	x.lastSeen = now
	return x
}

func (s *sessions) sweep(now time.Time) {
	for id, x := range s.m {
		if now.Sub(x.lastSeen) > s.idle || now.Sub(x.created) > s.lifetime {
			delete(s.m, id)
		}
	}
}

// end removes a session (logout).
func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// endAll removes every session (the password changed).
func (s *sessions) endAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.m)
}

// addFlash queues a message for the session's next page.
func (s *sessions) addFlash(x *session, f flash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x.flash = append(x.flash, f)
}

// takeFlash returns and clears the queued messages.
func (s *sessions) takeFlash(x *session) []flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := x.flash
	x.flash = nil
	return f
}

// setCookie sets a cookie as every console cookie is: HttpOnly, Secure,
// SameSite=Strict, host-only (the __Host- prefix), for the browser session.
func setCookie(w http.ResponseWriter, name, value string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// csrfKey signs the tokens of the forms shown before login.
type csrfKey [32]byte

func newCSRFKey() (k csrfKey) {
	rand.Read(k[:])
	return k
}

// preToken is the CSRF token of a form shown before login: an HMAC of the
// browser's pre-session cookie, so nothing is kept per anonymous visitor.
func (k csrfKey) preToken(pre string) string {
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte("rehost console pre-session\x00" + pre))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func tokenEqual(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// passwordTag identifies a stored hash without revealing it.
func passwordTag(phc []byte) string {
	h := sha256.Sum256(phc)
	return base64.RawURLEncoding.EncodeToString(h[:12])
}
