package aws

import (
	"context"
	"errors"
	"time"

	"github.com/aws/smithy-go"

	"github.com/rehost/rehost/pkg/retry"
)

// policy is the target's retry policy for one operation: Config's attempts
// and base delay, pkg/retry's classifier, a log line per retry. The SDK's
// own retryer is off (see New), so this is the only level that retries an
// AWS call.
func (t *Target) policy(op string) retry.Policy {
	return retry.Policy{
		Attempts: t.cfg.RetryAttempts,
		Base:     t.cfg.RetryBaseDelay,
		OnRetry: func(attempt int, err error, wait time.Duration) {
			t.log.Debug("retrying", "op", op, "attempt", attempt, "wait", wait, "err", err)
		},
	}
}

// call runs one AWS call under the retry policy.
func (t *Target) call(ctx context.Context, op string, fn func(context.Context) error) error {
	return t.policy(op).Do(ctx, fn)
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
