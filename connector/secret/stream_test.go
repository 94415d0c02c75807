package secret

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
)

// What SealStream wrote, OpenStream gives back byte for byte, whatever its
// length against the chunk size; with another key, a flipped bit, a
// dropped tail, a stream cut at a chunk boundary or a chunk moved, it
// fails with ErrStream.
func TestStreamRoundTripAndTampering(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	seal := func(plain []byte) []byte {
		var b bytes.Buffer
		w, err := SealStream(&b, key)
		if err != nil {
			t.Fatal(err)
		}
		// Odd write sizes cross chunk boundaries.
		for p := plain; len(p) > 0; {
			n := min(len(p), 1000+len(p)%7777)
			if _, err := w.Write(p[:n]); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	open := func(sealed, k []byte) ([]byte, error) {
		r, err := OpenStream(bytes.NewReader(sealed), k)
		if err != nil {
			return nil, err
		}
		return io.ReadAll(r)
	}
	for _, size := range []int{0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 3*chunkSize + 12345} {
		plain := make([]byte, size)
		rand.Read(plain)
		sealed := seal(plain)
		got, err := open(sealed, key)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%d bytes: round trip %d bytes, %v", size, len(got), err)
		}
		if bytes.Contains(sealed, plain[:min(size, 64)]) && size >= 16 {
			t.Errorf("%d bytes: the plaintext shows in the sealed stream", size)
		}
	}
	plain := make([]byte, 3*chunkSize+100)
	rand.Read(plain)
	sealed := seal(plain)
	other := make([]byte, 32)
	rand.Read(other)
	head := len(streamMagic) + saltSize
	ctChunk := chunkSize + 16
	cases := map[string][]byte{
		"flipped bit":          append(append([]byte{}, sealed[:head+10]...), append([]byte{sealed[head+10] ^ 1}, sealed[head+11:]...)...),
		"tail dropped":         sealed[:len(sealed)-5],
		"cut at a chunk":       sealed[:head+2*ctChunk],
		"chunks swapped":       append(append(append([]byte{}, sealed[:head]...), sealed[head+ctChunk:head+2*ctChunk]...), append(append([]byte{}, sealed[head:head+ctChunk]...), sealed[head+2*ctChunk:]...)...),
		"extra chunk appended": append(append([]byte{}, sealed...), sealed[head:head+ctChunk]...),
	}
	for name, c := range cases {
		if _, err := open(c, key); !errors.Is(err, ErrStream) {
			t.Errorf("%s: %v, want ErrStream", name, err)
		}
	}
	if _, err := open(sealed, other); !errors.Is(err, ErrStream) {
		t.Errorf("another key: %v, want ErrStream", err)
	}
	if _, err := open([]byte("SQLite format 3\x00"), key); err == nil {
		t.Error("a plain file opens")
	}
}
