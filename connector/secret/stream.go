package secret

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A stream (a state backup) is sealed in chunks, so a file of any size is
// encrypted and checked in bounded memory: a header of streamMagic and a
// random salt; then chunks of chunkSize bytes of plaintext (the last one
// shorter, possibly empty), each sealed with AES-256-GCM under a key
// derived from the caller's key and the salt, its nonce the chunk's number
// and a flag marking the last chunk — so chunks cannot be reordered,
// dropped, or the stream cut short without OpenStream noticing.
const (
	streamMagic = "rehost-sealed-stream-1\n"
	saltSize    = 32
	chunkSize   = 64 << 10
)

// ErrStream: a sealed stream could not be opened — a different key, or a
// stream changed, reordered or cut short.
var ErrStream = errors.New("cannot decrypt: wrong key, or the file is damaged or incomplete")

func streamAEAD(key, salt []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("stream key: %d bytes, want 32", len(key))
	}
	k, err := hkdf.Key(sha256.New, key, salt, "rehost state backup", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func chunkNonce(n uint64, last bool) []byte {
	nonce := make([]byte, 12)
	binary.BigEndian.PutUint64(nonce[3:11], n)
	if last {
		nonce[11] = 1
	}
	return nonce
}

type sealer struct {
	w    io.Writer
	aead cipher.AEAD
	buf  []byte
	n    uint64
	err  error
}

// SealStream returns a writer that encrypts what is written to it onto w
// with key (32 bytes); Close writes the last chunk and must be called.
func SealStream(w io.Writer, key []byte) (io.WriteCloser, error) {
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	aead, err := streamAEAD(key, salt)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(w, streamMagic); err != nil {
		return nil, err
	}
	if _, err := w.Write(salt); err != nil {
		return nil, err
	}
	return &sealer{w: w, aead: aead, buf: make([]byte, 0, chunkSize)}, nil
}

func (s *sealer) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 && s.err == nil {
		if len(s.buf) == chunkSize {
			s.flush(false)
			continue
		}
		n := copy(s.buf[len(s.buf):chunkSize], p)
		s.buf = s.buf[:len(s.buf)+n]
		p, written = p[n:], written+n
	}
	return written, s.err
}

func (s *sealer) flush(last bool) {
	out := s.aead.Seal(nil, chunkNonce(s.n, last), s.buf, []byte(streamMagic))
	s.n++
	s.buf = s.buf[:0]
	_, s.err = s.w.Write(out)
}

func (s *sealer) Close() error {
	if s.err == nil {
		s.flush(true)
	}
	if s.err == nil {
		s.err = errors.New("sealed stream already closed")
		return nil
	}
	return s.err
}

type opener struct {
	r    *bufio.Reader
	aead cipher.AEAD
	buf  []byte // plaintext not yet read
	n    uint64
	done bool
}

// OpenStream returns a reader of what SealStream encrypted with key. It
// returns ErrStream (wrapped) from Read when a chunk does not open, and
// from the last Read when the stream ends without its last chunk.
func OpenStream(r io.Reader, key []byte) (io.Reader, error) {
	br := bufio.NewReaderSize(r, chunkSize+64)
	head := make([]byte, len(streamMagic)+saltSize)
	if _, err := io.ReadFull(br, head); err != nil || string(head[:len(streamMagic)]) != streamMagic {
		return nil, errors.New("not a rehost sealed file (no header)")
	}
	aead, err := streamAEAD(key, head[len(streamMagic):])
	if err != nil {
		return nil, err
	}
	return &opener{r: br, aead: aead}, nil
}

func (o *opener) Read(p []byte) (int, error) {
	for len(o.buf) == 0 {
		if o.done {
			return 0, io.EOF
		}
		if err := o.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, o.buf)
	o.buf = o.buf[n:]
	return n, nil
}

// next opens the next chunk: the last one when the stream ends right
// after it.
func (o *opener) next() error {
	ct := make([]byte, chunkSize+o.aead.Overhead())
	n, err := io.ReadFull(o.r, ct)
	last := false
	switch err {
	case nil:
		_, perr := o.r.Peek(1)
		if perr != nil && perr != io.EOF {
			return perr
		}
		last = perr == io.EOF
	case io.ErrUnexpectedEOF, io.EOF: // a short chunk, or none: the end
		last = true
	default:
		return err
	}
	pt, err := o.aead.Open(ct[:0], chunkNonce(o.n, last), ct[:n], []byte(streamMagic))
	if err != nil {
		return fmt.Errorf("chunk %d: %w", o.n, ErrStream)
	}
	o.n++
	o.buf, o.done = pt, last
	return nil
}
