package web

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Login throttling. Per remote address: at most 10 attempts at once, then
// one every 2 s (rate); 5 wrong passwords within a minute lock the address
// out for 5 minutes, so the sixth attempt is refused unread. Across all
// addresses: 30 wrong passwords within a minute lock every login out for a
// minute, which bounds a distributed guesser at the cost of a short wait for
// the administrator. Every lockout is logged.
const (
	failWindow       = time.Minute
	maxFailures      = 5
	lockoutFor       = 5 * time.Minute
	maxGlobalFailure = 30
	globalLockoutFor = time.Minute
	attemptBurst     = 10
	attemptEvery     = 2 * time.Second
	// maxTracked bounds the addresses remembered; the table is cleared of
	// quiet ones first.
	maxTracked = 10000
)

type lockout struct {
	mu     sync.Mutex
	now    func() time.Time
	addrs  map[string]*addrState
	global []time.Time
	// globalUntil is when the global lockout ends.
	globalUntil time.Time
}

type addrState struct {
	fails   []time.Time
	until   time.Time
	limiter *rate.Limiter
	seen    time.Time
}

func newLockout(now func() time.Time) *lockout {
	return &lockout{now: now, addrs: map[string]*addrState{}}
}

func (l *lockout) addr(ip string, now time.Time) *addrState {
	a := l.addrs[ip]
	if a == nil {
		if len(l.addrs) >= maxTracked {
			for k, x := range l.addrs {
				if now.Sub(x.seen) > lockoutFor && now.After(x.until) {
					delete(l.addrs, k)
				}
			}
		}
		a = &addrState{limiter: rate.NewLimiter(rate.Every(attemptEvery), attemptBurst)}
		l.addrs[ip] = a
	}
	a.seen = now
	return a
}

// verdict says whether an attempt may go on to check the password.
type verdict int

const (
	allowed verdict = iota
	throttled
	locked
)

// attempt is called before a password is checked; wait is how long the
// caller must wait when it is not allowed.
func (l *lockout) attempt(ip string) (verdict, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	a := l.addr(ip, now)
	if now.Before(a.until) {
		return locked, a.until.Sub(now)
	}
	if now.Before(l.globalUntil) {
		return locked, l.globalUntil.Sub(now)
	}
	if !a.limiter.AllowN(now, 1) {
		return throttled, attemptEvery
	}
	return allowed, 0
}

// fail records a wrong password; it reports a lockout it started: "addr",
// "all" or "".
func (l *lockout) fail(ip string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	a := l.addr(ip, now)
	a.fails = append(recent(a.fails, now), now)
	l.global = append(recent(l.global, now), now)
	switch {
	case len(l.global) >= maxGlobalFailure:
		l.global = nil
		l.globalUntil = now.Add(globalLockoutFor)
		return "all"
	case len(a.fails) >= maxFailures:
		a.fails = nil
		a.until = now.Add(lockoutFor)
		return "addr"
	}
	return ""
}

// succeed forgets an address's failures.
func (l *lockout) succeed(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.addrs[ip]; a != nil {
		a.fails = nil
	}
}

// recent keeps the times within the failure window.
func recent(ts []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(ts) && now.Sub(ts[i]) > failWindow {
		i++
	}
	return ts[i:]
}
