package aws

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// transient reports whether err is worth retrying: a 5xx or 429 answer, a
// throttling or timeout code, a checksum mismatch (corruption in transit), or
// a broken connection.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ce *checksumError
	if errors.As(err, &ce) {
		return true
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		if s := re.HTTPStatusCode(); s >= 500 || s == 429 {
			return true
		}
	}
	switch apiCode(err) {
	case "RequestTimeout", "SlowDown", "InternalError", "ServiceUnavailable", "Throttling",
		"ThrottlingException", "RequestLimitExceeded", "BadDigest", "XAmzContentSHA256Mismatch",
		"InvalidChecksum", "IncompleteBody":
		return true
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == sdk.TrueTernary {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe")
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func apiMessage(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorMessage()
	}
	return ""
}

// backoff is the delay before retry number attempt (0-based): base doubled
// per attempt, capped at 30s, with jitter in [d/2, d].
func backoff(base time.Duration, attempt int) time.Duration {
	d := base
	for i := 0; i < attempt && d < 30*time.Second; i++ {
		d *= 2
	}
	d = min(d, 30*time.Second)
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// withRetry runs fn until it succeeds, fails permanently, or attempts run
// out. retryable decides what is transient (default: transient).
func (t *Target) withRetry(ctx context.Context, what string, retryable func(error) bool, fn func(context.Context) error) error {
	if retryable == nil {
		retryable = transient
	}
	var err error
	for attempt := 0; attempt < t.cfg.RetryAttempts; attempt++ {
		if err = fn(ctx); err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
		t.log.Debug("retrying", "op", what, "attempt", attempt+1, "err", err)
		if serr := sleep(ctx, backoff(t.cfg.RetryBaseDelay, attempt)); serr != nil {
			return err
		}
	}
	return err
}
