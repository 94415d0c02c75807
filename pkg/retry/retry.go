// Package retry is rehost's one retry policy: bounded attempts with
// jittered exponential backoff that honour the context's deadline and the
// pause a server asks for, applied around one call or one step, never around
// something already retried: an error that exhausted a policy is marked so
// that no outer policy retries it again.
//
// What is worth another try is a Classifier's call. Each SDK's classifier
// lives with the code that uses the SDK (pkg/target/aws for AWS,
// pkg/source/azure for Azure, connector/api/client for the connector's own
// API) and falls back on Transient, which knows what needs no SDK: errors
// that say they are transient (Marker) and connections that broke. This
// package imports nothing but the standard library.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A Classifier judges one failed try: again reports whether another may
// succeed; wait, when positive, is the pause the server asked for (a
// Retry-After header), taken instead of the policy's backoff. A policy never
// shows it an error that exhausted a policy, nor one of a cancelled context.
type Classifier func(err error) (again bool, wait time.Duration)

// Policy retries a call while it fails transiently.
type Policy struct {
	// Attempts is the number of tries in all (default 5).
	Attempts int
	// Base is the first pause (default 500 ms), doubled per attempt up to
	// Max (default 30 s); each pause is drawn from [d/2, d]. A server that
	// asks for a pause longer than Max is not waited for: the error is
	// returned, marked exhausted.
	Base, Max time.Duration
	// Classify decides what is worth another try (default Transient, and
	// no server-given pause).
	Classify Classifier
	// OnRetry, when set, hears of each failure that is retried.
	OnRetry func(attempt int, err error, wait time.Duration)
}

// With returns a copy of p that also retries what extra accepts (a
// condition one call knows to be passing, such as a snapshot still in use
// just after its image was deregistered). extra is asked only about errors
// p's classifier would not retry.
func (p Policy) With(extra func(error) bool) Policy {
	base := p.classifier()
	p.Classify = func(err error) (bool, time.Duration) {
		if again, wait := base(err); again {
			return true, wait
		}
		return extra(err), 0
	}
	return p
}

func (p Policy) classifier() Classifier {
	if p.Classify != nil {
		return p.Classify
	}
	return func(err error) (bool, time.Duration) { return Transient(err), 0 }
}

// Do calls fn until it succeeds, fails permanently, the attempts run out or
// ctx ends. A pause that would outlast ctx's deadline is not taken. When the
// attempts run out on a transient error, the error returned wraps it as
// exhausted (Exhausted reports it), and no policy retries it again.
func (p Policy) Do(ctx context.Context, fn func(context.Context) error) error {
	attempts := cmpOr(p.Attempts, 5)
	limit := cmpOr(p.Max, 30*time.Second)
	classify := p.classifier()
	for i := 1; ; i++ {
		err := fn(ctx)
		if err == nil || ctx.Err() != nil || errors.Is(err, context.Canceled) || Exhausted(err) {
			return err
		}
		again, asked := classify(err)
		if !again {
			return err
		}
		if i >= attempts || asked > limit {
			return &exhausted{err: err, attempts: i}
		}
		wait := p.backoff(i)
		if asked > 0 {
			wait = asked
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return &exhausted{err: err, attempts: i}
		}
		if p.OnRetry != nil {
			p.OnRetry(i, err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// backoff is the pause after attempt (1-based).
func (p Policy) backoff(attempt int) time.Duration {
	base, limit := cmpOr(p.Base, 500*time.Millisecond), cmpOr(p.Max, 30*time.Second)
	d := base
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d/2 + rand.N(d/2+1)
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// exhausted is a transient error that ran out of attempts.
type exhausted struct {
	err      error
	attempts int
}

func (e *exhausted) Error() string {
	return fmt.Sprintf("%v (gave up after %d attempts)", e.err, e.attempts)
}
func (e *exhausted) Unwrap() error { return e.err }

// Exhausted reports whether err ran out of a policy's attempts: it was
// retried already, and is not to be retried by anything around it.
func Exhausted(err error) bool {
	var e *exhausted
	return errors.As(err, &e)
}

// Marker is implemented by errors that know whether they are transient
// (a hypervisor that could not be reached, a stream that broke).
type Marker interface{ Transient() bool }

// Transient is the classifier every other falls back on: an error that
// says whether it is transient (Marker) is taken at its word; otherwise a
// connection that broke, was refused or timed out (Connection) is worth
// another try, and anything else is not. An error that exhausted a policy
// is not transient any more; a cancelled context never is.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || Exhausted(err) {
		return false
	}
	var m Marker
	if errors.As(err, &m) {
		return m.Transient()
	}
	return Connection(err)
}

// Connection reports whether err is a connection that failed on the way:
// reset, refused, aborted or cut short (an HTTP/2 stream reset by a server
// in trouble included), a dial or a DNS lookup that failed for the moment,
// a timeout (a deadline of the call's own included).
func Connection(err error) bool {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if Dialing(err) {
		return true
	}
	// The server closed the connection before it answered.
	var ue *url.Error
	if errors.As(err, &ue) && errors.Is(ue.Err, io.EOF) {
		return true
	}
	var se streamError
	if errors.As(err, &se) && transientStreamCodes[se.Code] {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// streamError has the shape net/http's HTTP/2 stream errors convert to
// (as they do to golang.org/x/net/http2.StreamError): one stream of a
// connection reset, by the peer or the transport.
type streamError struct {
	StreamID uint32
	Code     uint32
	Cause    error
}

func (e streamError) Error() string {
	return fmt.Sprintf("http2 stream %d reset: code %d", e.StreamID, e.Code)
}

// transientStreamCodes are the HTTP/2 reset codes of a stream a server gave
// up on for the moment (RFC 9113 section 7): INTERNAL_ERROR,
// REFUSED_STREAM, CANCEL, CONNECT_ERROR, ENHANCE_YOUR_CALM.
var transientStreamCodes = map[uint32]bool{0x2: true, 0x7: true, 0x8: true, 0xa: true, 0xb: true}

// Dialing reports whether err is a connection that was never made (the
// request cannot have reached the server): a refused or failed dial, a DNS
// lookup that failed for the moment.
func Dialing(err error) bool {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return !dns.IsNotFound && (dns.IsTemporary || dns.IsTimeout)
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// After is the pause an HTTP answer's Retry-After header asks for (a
// number of seconds or a date), 0 when it asks for none.
func After(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return max(0, time.Duration(s)*time.Second)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}
