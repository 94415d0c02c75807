package aws

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
)

// countLimiter lets everything through, counting the bytes asked for.
type countLimiter struct{ n atomic.Int64 }

func (l *countLimiter) WaitN(_ context.Context, n int) error { l.n.Add(int64(n)); return nil }

// Parts over TLS go through bodyConns, written from their buffers (through
// the bandwidth limiter's WriteTo when one is set), and arrive intact.
func TestStageOverBodyConns(t *testing.T) {
	env := newPeerTarget(t, true, Config{Concurrency: 2, PartSize: MinPartSize})
	tr, ok := s3HTTPClient(env.srv.HTTPClient()).(*http.Client).Transport.(*http.Transport)
	if !ok || tr.DialTLSContext == nil {
		t.Fatal("the S3 client's transport does not dial bodyConns")
	}
	u, _ := url.Parse(env.srv.URL)
	c, err := tr.DialTLSContext(context.Background(), "tcp", u.Host)
	if err != nil {
		t.Fatalf("dial %s: %v", u.Host, err)
	}
	if _, ok := c.(*bodyConn); !ok {
		t.Fatalf("dialled a %T, want a *bodyConn", c)
	}
	c.Close()

	for _, lim := range []*countLimiter{nil, new(countLimiter)} {
		const size = 3*MinPartSize + 12345
		src := newGen(7, size)
		in := StageInput{Key: "body-conn", Body: src, SizeHint: size}
		if lim != nil {
			in.Limiter = lim
		}
		obj, err := env.t.Stage(context.Background(), in)
		if err != nil {
			t.Fatalf("stage (limiter %v): %v", lim != nil, err)
		}
		got, n := downloadSum(t, env.srv, "staging", in.Key)
		if obj.Size != size || n != size || got != src.sum() {
			t.Fatalf("limiter %v: downloaded %d bytes that differ from the %d-byte source", lim != nil, n, int64(size))
		}
		if lim != nil && lim.n.Load() != size {
			t.Fatalf("the limiter was asked for %d bytes, want %d", lim.n.Load(), int64(size))
		}
	}
}

// A body of known length that is an io.WriterTo is written up to its
// limit, no further, and the reader is left just past what was written.
func TestBodyConnWritesAtMostTheLimit(t *testing.T) {
	var out bytes.Buffer
	c := &bodyConn{batch: &batchConn{}}
	data := bytes.Repeat([]byte("0123456789"), 1000)
	r := bytes.NewReader(data)
	lr := &io.LimitedReader{R: r, N: 4321}
	n, err := c.readFromTo(&out, lr)
	if err != nil || n != 4321 || lr.N != 0 || !bytes.Equal(out.Bytes(), data[:4321]) || r.Len() != len(data)-4321 {
		t.Fatalf("wrote %d (%v), limit left %d, reader left %d; want 4321 bytes of the body", n, err, lr.N, r.Len())
	}
	out.Reset()
	n, err = c.readFromTo(&out, struct{ io.Reader }{bytes.NewReader(data)})
	if err != nil || n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("copied %d (%v), want the %d-byte body", n, err, len(data))
	}
}
