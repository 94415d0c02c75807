package api

import (
	"context"
	"crypto/subtle"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/pkg/sigv4"
)

// Principal is who made an authenticated request.
type Principal struct {
	KeyID    string
	ReadOnly bool
}

// Authenticator checks a request (whose body was read into body) and
// returns who made it, or an *Error to answer with.
type Authenticator interface {
	Authenticate(r *http.Request, body []byte) (Principal, error)
}

// KeyStore looks up an access key that is not revoked; ok is false for an
// unknown or revoked key. *daemon.Daemon is one.
type KeyStore interface {
	AccessKey(ctx context.Context, id string) (daemon.AccessKey, bool, error)
}

// Service is the SigV4 service name requests are signed for (SMS's).
const SigningService = "sms"

// KeyAuth verifies SigV4 signatures made with the appliance's access keys.
type KeyAuth struct {
	Keys KeyStore
	// Region returns the region requests must be scoped to: the
	// registration's; "" (not registered yet) accepts any.
	Region func(ctx context.Context) string
	Now    func() time.Time
}

// RegistrationRegion is the KeyAuth.Region of a daemon: its registration's
// region, or any while it is not registered.
func RegistrationRegion(d *daemon.Daemon) func(context.Context) string {
	return func(ctx context.Context) string {
		s, err := d.Registration(ctx)
		if err != nil {
			return ""
		}
		return s.Region
	}
}

// Authenticate implements Authenticator.
func (a *KeyAuth) Authenticate(r *http.Request, body []byte) (Principal, error) {
	var key daemon.AccessKey
	var lookupErr error
	v := &sigv4.Verifier{
		Services: []string{SigningService},
		Now:      a.Now,
		Secret: func(id string) (string, bool) {
			k, ok, err := a.Keys.AccessKey(r.Context(), id)
			if err != nil {
				lookupErr = err
				return "", false
			}
			key = k
			return k.Secret, ok
		},
	}
	if a.Region != nil {
		v.Region = a.Region(r.Context())
	}
	if _, err := v.Verify(r, body); err != nil {
		if lookupErr != nil {
			return Principal{}, Errorf(ErrInternal, "read the access keys: %v", lookupErr)
		}
		return Principal{}, authError(err)
	}
	return Principal{KeyID: key.ID, ReadOnly: key.ReadOnly}, nil
}

// BasicKeyAuth accepts HTTP basic authentication with an access key id and
// its secret, for scrapers that cannot sign (Prometheus): only for the
// metrics, over TLS.
func BasicKeyAuth(a Authenticator) Authenticator {
	ka, _ := a.(*KeyAuth)
	return basicAuth{ka}
}

type basicAuth struct{ a *KeyAuth }

func (b basicAuth) Authenticate(r *http.Request, _ []byte) (Principal, error) {
	id, secret, ok := r.BasicAuth()
	if !ok || b.a == nil {
		return Principal{}, authError(&sigv4.Error{Kind: sigv4.Missing, Message: "Request is missing Authentication Token"})
	}
	k, found, err := b.a.Keys.AccessKey(r.Context(), id)
	if err != nil {
		return Principal{}, Errorf(ErrInternal, "read the access keys: %v", err)
	}
	if !found || subtle.ConstantTimeCompare([]byte(k.Secret), []byte(secret)) != 1 {
		return Principal{}, authError(&sigv4.Error{Kind: sigv4.UnknownKey, Message: "The security token included in the request is invalid."})
	}
	return Principal{KeyID: k.ID, ReadOnly: k.ReadOnly}, nil
}

// Either tries SigV4 when the request carries a signature, else basic
// authentication.
func Either(sig, basic Authenticator) Authenticator { return either{sig, basic} }

type either struct{ sig, basic Authenticator }

func (e either) Authenticate(r *http.Request, body []byte) (Principal, error) {
	if _, _, ok := r.BasicAuth(); ok {
		return e.basic.Authenticate(r, body)
	}
	return e.sig.Authenticate(r, body)
}

// limiters holds one token bucket per key (an access key id, a remote
// address); buckets idle for 10 minutes are dropped.
type limiters struct {
	mu    sync.Mutex
	r     rate.Limit
	burst int
	m     map[string]*limiter
	swept time.Time
}

type limiter struct {
	l    *rate.Limiter
	seen time.Time
}

func newLimiters(perSecond float64, burst int) *limiters {
	return &limiters{r: rate.Limit(perSecond), burst: burst, m: map[string]*limiter{}}
}

func (ls *limiters) allow(key string) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := time.Now()
	if now.Sub(ls.swept) > time.Minute {
		for k, l := range ls.m {
			if now.Sub(l.seen) > 10*time.Minute {
				delete(ls.m, k)
			}
		}
		ls.swept = now
	}
	l, ok := ls.m[key]
	if !ok {
		l = &limiter{l: rate.NewLimiter(ls.r, ls.burst)}
		ls.m[key] = l
	}
	l.seen = now
	return l.l.AllowN(now, 1)
}
