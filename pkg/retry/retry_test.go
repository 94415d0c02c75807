package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

type marked bool

func (m marked) Error() string   { return fmt.Sprintf("marked %v", bool(m)) }
func (m marked) Transient() bool { return bool(m) }

func respErr(status int, code string) error {
	var err error = &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: errors.New("x")}
	if code != "" {
		err = fmt.Errorf("op: %w", &wrapped{api: &smithy.GenericAPIError{Code: code, Message: "m"}, resp: err})
	}
	return err
}

// wrapped carries an API error inside a response error, as the SDK's
// OperationError does.
type wrapped struct {
	api  error
	resp error
}

func (w *wrapped) Error() string   { return w.api.Error() }
func (w *wrapped) Unwrap() []error { return []error{w.api, w.resp} }

func TestTransient(t *testing.T) {
	timeout := &net.OpError{Op: "read", Err: &timeoutErr{}}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{context.Canceled, false},
		{fmt.Errorf("wrap: %w", context.DeadlineExceeded), true},
		{io.ErrUnexpectedEOF, true},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{syscall.ECONNREFUSED, true},
		{timeout, true},
		{respErr(503, ""), true},
		{respErr(429, ""), true},
		{respErr(500, "InternalError"), true},
		{respErr(501, "NotImplemented"), false},
		{respErr(501, ""), false},
		{respErr(400, "ThrottlingException"), true},
		{respErr(400, "RequestLimitExceeded"), true},
		{respErr(403, "AccessDenied"), false},
		{respErr(400, "InvalidParameterValue"), false},
		{respErr(404, "NoSuchKey"), false},
		{respErr(400, "ValidationError"), false},
		{&smithy.GenericAPIError{Code: "UnauthorizedOperation"}, false},
		{marked(true), true},
		{fmt.Errorf("vm x: %w", marked(false)), false},
		{errors.New("plain"), false},
		{&exhausted{err: io.ErrUnexpectedEOF, attempts: 3}, false},
	} {
		if got := Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestDo(t *testing.T) {
	p := Policy{Attempts: 4, Base: time.Millisecond, Max: 2 * time.Millisecond}
	ctx := context.Background()

	n := 0
	err := p.Do(ctx, func(context.Context) error {
		n++
		if n < 3 {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("transient twice then ok: err %v after %d calls", err, n)
	}

	n = 0
	err = p.Do(ctx, func(context.Context) error { n++; return errors.New("access denied") })
	if err == nil || n != 1 {
		t.Fatalf("permanent: err %v after %d calls, want 1 call", err, n)
	}

	n = 0
	err = p.Do(ctx, func(context.Context) error { n++; return io.ErrUnexpectedEOF })
	if n != 4 || !Exhausted(err) || !errors.Is(err, io.ErrUnexpectedEOF) || Transient(err) {
		t.Fatalf("always transient: %d calls, err %v (exhausted %v)", n, err, Exhausted(err))
	}

	// An outer policy does not retry what an inner one gave up on.
	outer := 0
	_ = p.Do(ctx, func(ctx context.Context) error {
		outer++
		return p.Do(ctx, func(context.Context) error { return io.ErrUnexpectedEOF })
	})
	if outer != 1 {
		t.Fatalf("nested: outer ran %d times, want 1", outer)
	}

	// Extra conditions for one call.
	n = 0
	inUse := errors.New("in use")
	err = p.With(func(err error) bool { return errors.Is(err, inUse) }).Do(ctx, func(context.Context) error {
		n++
		if n == 1 {
			return inUse
		}
		return nil
	})
	if err != nil || n != 2 {
		t.Fatalf("With: err %v after %d calls", err, n)
	}
}

func TestDoHonoursDeadline(t *testing.T) {
	p := Policy{Attempts: 10, Base: time.Hour, Max: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := 0
	err := p.Do(ctx, func(context.Context) error { n++; return io.ErrUnexpectedEOF })
	if n != 1 || !Exhausted(err) {
		t.Fatalf("a pause longer than the deadline was taken: %d calls, %v", n, err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	n = 0
	err = Policy{Attempts: 3}.Do(ctx, func(context.Context) error { n++; return io.ErrUnexpectedEOF })
	if n != 1 || err == nil {
		t.Fatalf("cancelled context: %d calls, %v", n, err)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	p := Policy{Base: 100 * time.Millisecond, Max: time.Second}
	for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second} {
		d := p.backoff(i + 1)
		if d < want/2 || d > want {
			t.Errorf("backoff(%d) = %v, want within [%v, %v]", i+1, d, want/2, want)
		}
	}
}

// A request that could not be sent carries a response error of status 0
// around the connection error, as the SDK reports it.
func TestTransientSendFailure(t *testing.T) {
	send := &smithyhttp.RequestSendError{Err: &net.OpError{Op: "write", Err: syscall.ECONNRESET}}
	err := fmt.Errorf("operation error S3: UploadPart: %w", &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{}}, Err: send})
	if !Transient(err) {
		t.Fatalf("send failure %v is not transient", err)
	}
}
