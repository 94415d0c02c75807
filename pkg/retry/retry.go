// Package retry is rehost's one retry policy: one classifier of what is
// worth retrying, and bounded attempts with jittered exponential backoff that
// honour the context's deadline. A policy is applied around one call or one
// step, never around something already retried: an error that exhausted a
// policy is marked so that no outer policy retries it again.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Policy retries a call while it fails transiently.
type Policy struct {
	// Attempts is the number of tries in all (default 5).
	Attempts int
	// Base is the first pause (default 500 ms), doubled per attempt up to
	// Max (default 30 s); each pause is drawn from [d/2, d].
	Base, Max time.Duration
	// Retryable decides what is worth another try (default Transient).
	Retryable func(error) bool
	// OnRetry, when set, hears of each failure that is retried.
	OnRetry func(attempt int, err error, wait time.Duration)
}

// With returns a copy of p that also retries what extra accepts (a
// condition one call knows to be passing, such as a snapshot still in use
// just after its image was deregistered).
func (p Policy) With(extra func(error) bool) Policy {
	base := p.retryable()
	p.Retryable = func(err error) bool { return base(err) || extra(err) }
	return p
}

func (p Policy) retryable() func(error) bool {
	if p.Retryable != nil {
		return p.Retryable
	}
	return Transient
}

// Do calls fn until it succeeds, fails permanently, the attempts run out or
// ctx ends. A pause that would outlast ctx's deadline is not taken. When the
// attempts run out on a transient error, the error returned wraps it as
// exhausted: Transient reports it false, so an outer policy does not retry
// it again.
func (p Policy) Do(ctx context.Context, fn func(context.Context) error) error {
	attempts := p.Attempts
	if attempts <= 0 {
		attempts = 5
	}
	retryable := p.retryable()
	for i := 1; ; i++ {
		err := fn(ctx)
		if err == nil || ctx.Err() != nil || !retryable(err) {
			return err
		}
		if i >= attempts {
			return &exhausted{err: err, attempts: i}
		}
		wait := p.backoff(i)
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
	base, limit := p.Base, p.Max
	if base <= 0 {
		base = 500 * time.Millisecond
	}
	if limit <= 0 {
		limit = 30 * time.Second
	}
	d := base
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d/2 + rand.N(d/2+1)
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

// Exhausted reports whether err ran out of a policy's attempts.
func Exhausted(err error) bool {
	var e *exhausted
	return errors.As(err, &e)
}

// Marker is implemented by errors that know whether they are transient
// (a hypervisor that could not be reached, a stream that broke).
type Marker interface{ Transient() bool }

// transientCodes are AWS error codes that mean "try again": throttling,
// timeouts, a service hiccup, corruption in transit.
var transientCodes = map[string]bool{
	"RequestTimeout": true, "RequestTimeoutException": true, "SlowDown": true, "InternalError": true,
	"InternalFailure": true, "ServiceUnavailable": true, "Throttling": true, "ThrottlingException": true,
	"ThrottledException": true, "RequestThrottled": true, "RequestThrottledException": true,
	"TooManyRequestsException": true, "RequestLimitExceeded": true, "ProvisionedThroughputExceededException": true,
	"BandwidthLimitExceeded": true, "PriorRequestNotComplete": true, "EC2ThrottledException": true,
	"BadDigest": true, "XAmzContentSHA256Mismatch": true, "InvalidChecksum": true, "IncompleteBody": true,
	"IDPCommunicationError": true, "EBSServerErrorException": true,
}

// Transient is the one classifier: throttling, 429 and 5xx answers (but 501), broken
// or refused connections and timeouts are worth retrying; access denied,
// validation errors, not found and everything else are not. An error that
// exhausted a policy is not transient any more; a cancelled context never is.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || Exhausted(err) {
		return false
	}
	var m Marker
	if errors.As(err, &m) {
		return m.Transient()
	}
	if code := apiCode(err); code != "" {
		if transientCodes[code] {
			return true
		}
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) {
			return retryStatus(re.HTTPStatusCode())
		}
		return false
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		// Status 0: no answer came (the request could not be sent); the
		// connection checks below decide.
		if retryStatus(re.HTTPStatusCode()) {
			return true
		}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	// The SDK's own view of a connection that broke before an answer.
	if (retry.RetryableConnectionError{}).IsErrorRetryable(err).Bool() {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// retryStatus: 429 and the 5xx answers of a server that could do the
// request another time. 501 Not Implemented says it never will (an
// S3-compatible server lacking a bucket feature), so it is not retried.
func retryStatus(s int) bool {
	return s == http.StatusTooManyRequests || s >= 500 && s != http.StatusNotImplemented
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}
