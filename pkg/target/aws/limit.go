package aws

import "context"

// Limiter caps bandwidth: WaitN blocks until n more bytes may be sent, or
// returns ctx's error. golang.org/x/time/rate.Limiter satisfies it (with a
// burst of at least the largest n asked for). A nil Limiter means no cap.
type Limiter interface {
	WaitN(ctx context.Context, n int) error
}
