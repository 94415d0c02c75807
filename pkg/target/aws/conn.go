package aws

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// S3's part bodies take a shorter way to the wire than net/http's: for a
// request body of known length the transport copies the body through a
// 32 KiB buffer into the connection (io.Copy of an io.LimitedReader, which
// hides the body's io.WriterTo), and crypto/tls then writes each 16 KiB
// record with a system call of its own. The S3 client's connections are
// bodyConns instead: a body that is an io.WriterTo (a part's buffer) is
// written into TLS straight from the part buffer, and the records of one
// body go to the socket batchSize bytes at a time. Measured with
// BenchmarkStage, that is what separates the part-buffered stage path from
// the SDK manager's reads of the file straight into its TLS writes.

// batchSize is how many bytes of TLS records a body's write gathers before
// one write system call.
const batchSize = 256 << 10

// s3HTTPClient is hc for the S3 client: its transport's TLS connections
// are bodyConns. A client it cannot see into (not Go's transport, or one
// that dials TLS itself) is returned unchanged.
func s3HTTPClient(hc sdk.HTTPClient) sdk.HTTPClient {
	switch c := hc.(type) {
	case *awshttp.BuildableClient:
		return c.WithTransportOptions(func(tr *http.Transport) { dialBodyConns(tr) })
	case *http.Client:
		return withTransport(c, dialBodyConns)
	}
	return hc
}

// dialBodyConns makes tr dial its TLS connections as bodyConns, with what
// it would otherwise use itself: its DialContext, TLSClientConfig and
// TLSHandshakeTimeout. The connections speak HTTP/1.1 (S3's protocol): the
// transport takes HTTP/2 only over a *tls.Conn of its own.
// It leaves (and reports false for) a transport that dials TLS itself.
func dialBodyConns(tr *http.Transport) bool {
	if tr.DialTLSContext != nil || tr.DialTLS != nil {
		return false
	}
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dial := tr.DialContext
		if dial == nil {
			dial = (&net.Dialer{}).DialContext
		}
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cfg := tr.TLSClientConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				host = addr
			}
			cfg.ServerName = host
		}
		cfg.NextProtos = []string{"http/1.1"}
		if tr.TLSHandshakeTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, tr.TLSHandshakeTimeout)
			defer cancel()
		}
		bc := &batchConn{Conn: raw}
		tc := tls.Client(bc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		return &bodyConn{Conn: tc, batch: bc}, nil
	}
	return true
}

// bodyConn is a client TLS connection whose ReadFrom (what net/http's
// transport copies a request body with) writes a body that is an
// io.WriterTo from the body's own bytes.
type bodyConn struct {
	*tls.Conn
	batch *batchConn
}

// ReadFrom writes r into the connection: the transport passes a body of
// known length as an io.LimitedReader, whose reader, when an io.WriterTo,
// writes at most its N bytes itself. Any other reader is copied. The
// records written are sent batchSize bytes at a time.
func (c *bodyConn) ReadFrom(r io.Reader) (int64, error) {
	c.batch.gather(true)
	n, err := c.readFromTo(c.Conn, r)
	if ferr := c.batch.gather(false); err == nil {
		err = ferr
	}
	return n, err
}

// readFromTo is ReadFrom's copy into w (the TLS connection).
func (c *bodyConn) readFromTo(w io.Writer, r io.Reader) (int64, error) {
	lr, ok := r.(*io.LimitedReader)
	if !ok {
		return io.Copy(struct{ io.Writer }{w}, r)
	}
	wt, ok := lr.R.(io.WriterTo)
	if !ok {
		return io.Copy(struct{ io.Writer }{w}, r)
	}
	cw := &capWriter{w: w, n: lr.N}
	n, err := wt.WriteTo(cw)
	lr.N -= n
	if errors.Is(err, errCapped) {
		err = nil
	}
	return n, err
}

// errCapped ends a WriteTo at its reader's limit.
var errCapped = errors.New("body limit reached")

// capWriter passes on at most n bytes, then answers errCapped.
type capWriter struct {
	w io.Writer
	n int64
}

func (c *capWriter) Write(p []byte) (int, error) {
	capped := int64(len(p)) > c.n
	if capped {
		p = p[:c.n]
	}
	m, err := c.w.Write(p)
	c.n -= int64(m)
	if err == nil && capped {
		err = errCapped
	}
	return m, err
}

// batchConn is the socket under a bodyConn's TLS: while gathering, the
// records TLS writes are gathered and sent batchSize bytes at a time;
// otherwise (the handshake, headers, alerts) each write goes out at once.
type batchConn struct {
	net.Conn

	mu  sync.Mutex
	on  bool
	buf []byte
	err error
}

// gather turns gathering on or off; turning it off sends what is gathered
// and returns the first error of a gathered write.
func (b *batchConn) gather(on bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.on = on
	if on {
		if b.buf == nil {
			b.buf = make([]byte, 0, batchSize)
		}
		return nil
	}
	b.flushLocked()
	err := b.err
	b.err = nil
	return err
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.on {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		return b.Conn.Write(p)
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(b.buf)+len(p) > cap(b.buf) {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
	}
	if len(p) >= cap(b.buf) {
		return b.Conn.Write(p)
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// flushLocked sends what is gathered; b.mu held.
func (b *batchConn) flushLocked() error {
	if len(b.buf) == 0 || b.err != nil {
		return b.err
	}
	_, b.err = b.Conn.Write(b.buf)
	b.buf = b.buf[:0]
	return b.err
}
