package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
)

// A key is shared between connectors of a fleet without crossing the wire
// as it is: the joining connector sends the public half of a one-time
// X25519 key, the member answers with its own one-time public key and the
// key sealed (AES-256-GCM) under what the two agree (ECDH, then HKDF-SHA256).
// Only the joining connector's private half opens it.

const shareInfo = "rehost fleet key share v1"

// ShareRequest is the joining connector's half of a key share.
type ShareRequest struct{ priv *ecdh.PrivateKey }

// NewShareRequest makes a one-time key pair for one share.
func NewShareRequest() (*ShareRequest, error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &ShareRequest{priv: priv}, nil
}

// Public is what the joining connector sends.
func (r *ShareRequest) Public() []byte { return r.priv.PublicKey().Bytes() }

// Open recovers the key a member sealed with SealFor.
func (r *ShareRequest) Open(memberPublic, sealed []byte) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(memberPublic)
	if err != nil {
		return nil, fmt.Errorf("open the shared key: the member's public key: %w", err)
	}
	aead, err := shareAEAD(r.priv, pub)
	if err != nil {
		return nil, err
	}
	n := aead.NonceSize()
	if len(sealed) < n+aead.Overhead() {
		return nil, ErrDecrypt
	}
	key, err := aead.Open(nil, sealed[:n], sealed[n:], []byte(shareInfo))
	if err != nil {
		return nil, ErrDecrypt
	}
	return key, nil
}

// SealFor seals the key file at keyPath for the holder of the private half
// of joinerPublic, returning the member's one-time public key and the
// sealed key.
func SealFor(keyPath string, joinerPublic []byte) (memberPublic, sealed []byte, err error) {
	key, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("share the key: %w", err)
	}
	if len(key) != 32 {
		return nil, nil, errors.New("share the key: the key file does not hold a key")
	}
	peer, err := ecdh.X25519().NewPublicKey(joinerPublic)
	if err != nil {
		return nil, nil, fmt.Errorf("share the key: the joining connector's public key: %w", err)
	}
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	aead, err := shareAEAD(priv, peer)
	if err != nil {
		return nil, nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return priv.PublicKey().Bytes(), aead.Seal(nonce, nonce, key, []byte(shareInfo)), nil
}

func shareAEAD(priv *ecdh.PrivateKey, pub *ecdh.PublicKey) (cipher.AEAD, error) {
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("share the key: %w", err)
	}
	k, err := hkdf.Key(sha256.New, shared, nil, shareInfo, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Install writes key as the key file at path (0600), refusing to replace a
// different key already there.
func Install(path string, key []byte) error {
	if _, err := New(key); err != nil {
		return err
	}
	if old, err := os.ReadFile(path); err == nil {
		if string(old) == string(key) {
			return nil
		}
		return fmt.Errorf("install the fleet's key: %s holds another key already (this state directory has secrets of its own); join from a new state directory", path)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("install the fleet's key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return fmt.Errorf("install the fleet's key: %w", err)
	}
	return f.Close()
}
