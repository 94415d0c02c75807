package azure

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/rehost/rehost/pkg/retry"
)

// policy is the source's retry policy for one Azure request: Config's
// attempts and first pause, the Azure classifier (transient), a log line
// per retry. The SDK's retries are off (New, readGrant.renew), so this is
// the one level that retries an Azure call.
func (s *Source) policy(op string) retry.Policy {
	return retry.Policy{
		Attempts: s.cfg.RetryAttempts,
		Base:     s.cfg.RetryBaseDelay,
		Max:      time.Minute,
		Classify: transient,
		OnRetry: func(attempt int, err error, wait time.Duration) {
			s.log.Debug("retrying an azure call", "op", op, "attempt", attempt, "wait", wait, "err", err)
		},
	}
}

// call runs one Azure request (a Get, a page of a listing, the start or a
// poll of a long-running operation) under the retry policy. Its error is
// classified (classify, naming op) and, when the attempts ran out, marked
// so that nothing around it (the run's step) retries it again.
func (s *Source) call(ctx context.Context, op string, fn func(context.Context) error) error {
	return s.policy(op).Do(ctx, func(ctx context.Context) error { return classify(op, fn(ctx)) })
}

// transient is the Azure classifier: an answer of 408, 429 or 5xx (but 501
// and 505, which say the server never will) is worth another try, after the
// pause its Retry-After asks for; so is a sign-in Entra ID answered so. Other
// answers (authorization, validation, not found, conflicts) are final.
// Without an answer, pkg/retry's view decides: a broken, refused or
// timed-out connection is transient, and so is what classify marked
// unreachable.
func transient(err error) (bool, time.Duration) {
	var re *azcore.ResponseError
	var ae *azidentity.AuthenticationFailedError
	var resp *http.Response
	switch {
	case errors.As(err, &re):
		resp = re.RawResponse
		if resp == nil {
			return retryStatus(re.StatusCode), 0
		}
	case errors.As(err, &ae) && ae.RawResponse != nil:
		resp = ae.RawResponse
	default:
		return retry.Transient(err), 0
	}
	if !retryStatus(resp.StatusCode) {
		return false, 0
	}
	return true, retryAfter(resp.Header)
}

func retryStatus(s int) bool {
	return s == http.StatusRequestTimeout || s == http.StatusTooManyRequests ||
		s >= 500 && s != http.StatusNotImplemented && s != http.StatusHTTPVersionNotSupported
}

// retryAfter is the pause an Azure answer asks for: its retry-after-ms or
// x-ms-retry-after-ms (milliseconds), else Retry-After (seconds or a date);
// 0 when it names none.
func retryAfter(h http.Header) time.Duration {
	for _, k := range []string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
		if ms, err := strconv.ParseInt(h.Get(k), 10, 64); err == nil && ms > 0 {
			return time.Duration(ms) * time.Millisecond
		}
	}
	return retry.After(h)
}
