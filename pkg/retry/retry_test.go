package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type marked bool

func (m marked) Error() string   { return fmt.Sprintf("marked %v", bool(m)) }
func (m marked) Transient() bool { return bool(m) }

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
		{io.EOF, false},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{syscall.ECONNREFUSED, true},
		{syscall.EPIPE, true},
		{timeout, true},
		{&net.OpError{Op: "dial", Err: errors.New("network is unreachable")}, true},
		{&net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, false},
		{&net.DNSError{Err: "server misbehaving", Name: "x.example", IsTemporary: true}, true},
		{marked(true), true},
		{fmt.Errorf("vm x: %w", marked(false)), false},
		// A marker is taken at its word, whatever it wraps.
		{fmt.Errorf("%w: %w", marked(false), io.ErrUnexpectedEOF), false},
		{errors.New("plain"), false},
		{&exhausted{err: io.ErrUnexpectedEOF, attempts: 3}, false},
		{fmt.Errorf("step: %w", &exhausted{err: marked(true), attempts: 3}), false},
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

// Real failures on loopback, as net/http reports them: a refused
// connection was never made; a server that hangs up before answering
// broke one that was.
func TestConnectionOnLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	_, refused := http.Get("http://" + closed + "/")
	if !Connection(refused) || !Dialing(refused) || !Transient(refused) {
		t.Errorf("refused connection %v: Connection %v, Dialing %v", refused, Connection(refused), Dialing(refused))
	}

	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 1024)
			c.Read(buf) // the request arrived; no answer
			c.Close()
		}
	}()
	_, hungUp := http.Get("http://" + ln.Addr().String() + "/")
	if hungUp == nil || !Connection(hungUp) || Dialing(hungUp) {
		t.Errorf("hung-up connection %v: Connection %v, Dialing %v", hungUp, Connection(hungUp), Dialing(hungUp))
	}
}

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
	if err == nil || n != 1 || Exhausted(err) {
		t.Fatalf("permanent: err %v after %d calls, want 1 call", err, n)
	}

	n = 0
	err = p.Do(ctx, func(context.Context) error { n++; return io.ErrUnexpectedEOF })
	if n != 4 || !Exhausted(err) || !errors.Is(err, io.ErrUnexpectedEOF) || Transient(err) {
		t.Fatalf("always transient: %d calls, err %v (exhausted %v)", n, err, Exhausted(err))
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

// An outer policy does not retry what an inner one gave up on, whatever
// its classifier says: the calls are the inner policy's attempts, once.
func TestNoRetryAroundRetry(t *testing.T) {
	ctx := context.Background()
	inner := Policy{Attempts: 3, Base: time.Millisecond}
	outer := Policy{Attempts: 4, Base: time.Millisecond, Classify: func(error) (bool, time.Duration) { return true, 0 }}
	calls, outerTries := 0, 0
	err := outer.Do(ctx, func(ctx context.Context) error {
		outerTries++
		return fmt.Errorf("step: %w", inner.Do(ctx, func(context.Context) error { calls++; return io.ErrUnexpectedEOF }))
	})
	if calls != 3 || outerTries != 1 || !Exhausted(err) {
		t.Fatalf("nested: %d calls in %d outer tries (%v), want 3 in 1", calls, outerTries, err)
	}
	// A failure the inner policy never saw is the outer one's to retry.
	calls = 0
	err = Policy{Attempts: 2, Base: time.Millisecond}.Do(ctx, func(ctx context.Context) error {
		calls++
		if calls == 1 {
			return io.ErrUnexpectedEOF // e.g. a stream that broke between calls
		}
		return inner.Do(ctx, func(context.Context) error { return nil })
	})
	if err != nil || calls != 2 {
		t.Fatalf("outer retry of its own failure: %d calls, %v", calls, err)
	}
}

// A server's Retry-After replaces the backoff; one longer than Max ends
// the retries at once.
func TestServerPause(t *testing.T) {
	ctx := context.Background()
	busy := errors.New("busy")
	asks := func(d time.Duration) Classifier {
		return func(err error) (bool, time.Duration) { return errors.Is(err, busy), d }
	}
	var waits []time.Duration
	p := Policy{Attempts: 3, Base: time.Hour, Max: 2 * time.Hour, Classify: asks(5 * time.Millisecond),
		OnRetry: func(_ int, _ error, w time.Duration) { waits = append(waits, w) }}
	n := 0
	start := time.Now()
	err := p.Do(ctx, func(context.Context) error { n++; return busy })
	if n != 3 || !Exhausted(err) || time.Since(start) > time.Minute {
		t.Fatalf("%d calls, %v", n, err)
	}
	if len(waits) != 2 || waits[0] != 5*time.Millisecond || waits[1] != 5*time.Millisecond {
		t.Fatalf("pauses %v, want the server's 5ms twice instead of an hour's backoff", waits)
	}

	n = 0
	p = Policy{Attempts: 5, Base: time.Millisecond, Max: time.Second, Classify: asks(time.Hour)}
	err = p.Do(ctx, func(context.Context) error { n++; return busy })
	if n != 1 || !Exhausted(err) {
		t.Fatalf("a pause of an hour over a Max of 1s: %d calls, %v", n, err)
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

// The policy knows no SDK: each SDK's classifier lives with its user.
func TestImportsOnlyTheStandardLibrary(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range f.Imports {
			path := strings.Trim(im.Path.Value, `"`)
			if first, _, _ := strings.Cut(path, "/"); strings.Contains(first, ".") {
				t.Errorf("%s imports %s: pkg/retry takes the standard library only", name, path)
			}
		}
	}
}

func TestAfter(t *testing.T) {
	h := http.Header{}
	if d := After(h); d != 0 {
		t.Errorf("no header: %v", d)
	}
	h.Set("Retry-After", "7")
	if d := After(h); d != 7*time.Second {
		t.Errorf("Retry-After: 7 = %v", d)
	}
	h.Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
	if d := After(h); d < 80*time.Second || d > 90*time.Second {
		t.Errorf("Retry-After in 90 s as a date = %v", d)
	}
	h.Set("Retry-After", "soon")
	if d := After(h); d != 0 {
		t.Errorf("Retry-After: soon = %v", d)
	}
}

// A server that gives up on an HTTP/2 stream mid-answer resets it; the
// client's read fails with a stream error that is worth another try.
func TestHTTP2StreamReset(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("x"), 1000))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("served over %s, want HTTP/2", resp.Proto)
	}
	_, err = io.ReadAll(resp.Body)
	if err == nil || !Connection(err) || Dialing(err) {
		t.Fatalf("stream reset mid-body: %v (Connection %v)", err, Connection(err))
	}
}
