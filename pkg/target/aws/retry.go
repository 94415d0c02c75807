package aws

import (
	"context"
	"errors"
	"net/http"
	"time"

	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/rehost/rehost/pkg/retry"
)

// policy is the target's retry policy for one operation: Config's attempts
// and base delay, the AWS classifier (transient), a log line per retry. The
// SDK's own retryer is off (see New), so this is the only level that
// retries an AWS call.
func (t *Target) policy(op string) retry.Policy {
	return retry.Policy{
		Attempts: t.cfg.RetryAttempts,
		Base:     t.cfg.RetryBaseDelay,
		Classify: func(err error) (bool, time.Duration) { return transient(err), 0 },
		OnRetry: func(attempt int, err error, wait time.Duration) {
			t.log.Debug("retrying", "op", op, "attempt", attempt, "wait", wait, "err", err)
		},
	}
}

// call runs one AWS call under the retry policy.
func (t *Target) call(ctx context.Context, op string, fn func(context.Context) error) error {
	return t.policy(op).Do(ctx, fn)
}

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

// transient is the AWS classifier: throttling and the other codes above,
// 429 and 5xx answers (but 501), broken or refused connections and
// timeouts are worth retrying; access denied, validation errors, not found
// and everything else are not. An error marked transient or not
// (retry.Marker, such as a part whose checksum S3 disputes) is taken at its
// word. The S3 staging path, EC2, IAM and STS calls all run under it.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || retry.Exhausted(err) {
		return false
	}
	var m retry.Marker
	if errors.As(err, &m) {
		return m.Transient()
	}
	var re *smithyhttp.ResponseError
	hasResp := errors.As(err, &re)
	if code := apiCode(err); code != "" {
		return transientCodes[code] || hasResp && retryStatus(re.HTTPStatusCode())
	}
	// Status 0: no answer came (the request could not be sent); the
	// connection checks decide.
	if hasResp && retryStatus(re.HTTPStatusCode()) {
		return true
	}
	// The SDK's own view of a connection that broke before an answer.
	return retry.Transient(err) || (awsretry.RetryableConnectionError{}).IsErrorRetryable(err).Bool()
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

func apiMessage(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorMessage()
	}
	return ""
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
