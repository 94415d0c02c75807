package secret

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestSealOpenRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "master.key")
	b, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("vcenter-password-ünïcode")
	sealed := b.Seal(secret)
	if bytes.Contains(sealed, secret) {
		t.Fatal("sealed value contains the plaintext")
	}
	if bytes.Equal(sealed, b.Seal(secret)) {
		t.Fatal("two seals of the same value are equal: nonce reused")
	}
	// A second load reads the same key.
	b2, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b2.Open(sealed)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open = %q, %v", got, err)
	}
	fi, _ := os.Stat(path)
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestOpenRejectsTamperingAndOtherKeys(t *testing.T) {
	a, _ := New(bytes.Repeat([]byte{1}, 32))
	b, _ := New(bytes.Repeat([]byte{2}, 32))
	sealed := a.Seal([]byte("secret"))
	if _, err := b.Open(sealed); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("other key: err = %v", err)
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := a.Open(sealed); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("tampered: err = %v", err)
	}
	if _, err := a.Open([]byte{1, 2}); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("short: err = %v", err)
	}
}

func TestRefusesWorldReadableKey(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("POSIX modes only")
	}
	path := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(path, bytes.Repeat([]byte{3}, 32), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(path); err == nil {
		t.Fatal("world-readable key accepted")
	}
}

func TestShareKeyBetweenConnectors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")
	box, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	sealedSecret := box.Seal([]byte("vcenter password"))
	req, err := NewShareRequest()
	if err != nil {
		t.Fatal(err)
	}
	pub, sealed, err := SealFor(path, req.Public())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(path)
	if bytes.Contains(sealed, key) {
		t.Fatal("the key crossed in the clear")
	}
	// Someone else's one-time key cannot open it.
	other, _ := NewShareRequest()
	if _, err := other.Open(pub, sealed); !errors.Is(err, ErrDecrypt) {
		t.Errorf("another request opened the share: %v", err)
	}
	got, err := req.Open(pub, sealed)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("opened %x, %v", got, err)
	}
	joined := filepath.Join(t.TempDir(), "master.key")
	if err := Install(joined, got); err != nil {
		t.Fatal(err)
	}
	if err := Install(joined, got); err != nil {
		t.Errorf("installing the same key twice: %v", err)
	}
	if err := Install(path, make([]byte, 32)); err == nil {
		t.Error("a different key replaced an existing one")
	}
	box2, err := LoadOrCreate(joined)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := box2.Open(sealedSecret); err != nil || string(pt) != "vcenter password" {
		t.Errorf("the joined connector opens %q, %v", pt, err)
	}
}
