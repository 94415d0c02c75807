package sshsig

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// What Sign makes, the stock ssh-keygen accepts; a changed file, another
// namespace and another key's allowed_signers it refuses.
func TestSshKeygenVerifiesSign(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Fatalf("ssh-keygen (Debian openssh-client) is needed: %v", err)
	}
	dir := t.TempDir()
	key := newKey(t)
	msg := bytes.Repeat([]byte("rehost appliance image "), 50000)
	file := filepath.Join(dir, "image")
	os.WriteFile(file, msg, 0o644)
	sig, err := Sign(key, "rehost-image", bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(file+".sig", sig, 0o644)
	allowed := filepath.Join(dir, "allowed_signers")
	os.WriteFile(allowed, []byte(AllowedSigners("release@rehost", key.Public().(ed25519.PublicKey), "rehost-image", "rehost-upgrade")), 0o644)
	verify := func(ns, signers string, content []byte) error {
		cmd := exec.Command("ssh-keygen", "-Y", "verify", "-f", signers, "-I", "release@rehost", "-n", ns, "-s", file+".sig")
		cmd.Stdin = bytes.NewReader(content)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return errors.New(strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := verify("rehost-image", allowed, msg); err != nil {
		t.Fatalf("ssh-keygen refuses the signature: %v", err)
	}
	changed := append([]byte{}, msg...)
	changed[len(changed)/2] ^= 1
	if verify("rehost-image", allowed, changed) == nil {
		t.Error("ssh-keygen accepts the signature over a changed file")
	}
	if verify("other", allowed, msg) == nil {
		t.Error("ssh-keygen accepts the signature for another namespace")
	}
	other := filepath.Join(dir, "other_signers")
	os.WriteFile(other, []byte(AllowedSigners("release@rehost", newKey(t).Public().(ed25519.PublicKey), "rehost-image")), 0o644)
	if verify("rehost-image", other, msg) == nil {
		t.Error("ssh-keygen accepts the signature with another key's allowed_signers")
	}
}

// What ssh-keygen -Y sign makes with an Ed25519 key, Verify accepts, with
// the key read from ssh-keygen's .pub file.
func TestVerifyAcceptsSshKeygenSign(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "release")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "release@rehost", "-f", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -t ed25519: %v\n%s", err, out)
	}
	file := filepath.Join(dir, "manifest.json")
	msg := []byte(`{"version":"1.2.3"}`)
	os.WriteFile(file, msg, 0o644)
	if out, err := exec.Command("ssh-keygen", "-Y", "sign", "-f", keyFile, "-n", "rehost-upgrade", file).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -Y sign: %v\n%s", err, out)
	}
	pubText, _ := os.ReadFile(keyFile + ".pub")
	pub, err := ParsePublicKey(pubText)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := os.ReadFile(file + ".sig")
	if err := Verify(pub, "rehost-upgrade", bytes.NewReader(msg), sig); err != nil {
		t.Fatalf("Verify refuses ssh-keygen's signature: %v", err)
	}
	if err := Verify(pub, "rehost-image", bytes.NewReader(msg), sig); !errors.Is(err, ErrBadSignature) {
		t.Errorf("another namespace: %v, want ErrBadSignature", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	msg := []byte("system image")
	sig, err := Sign(key, "ns", bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(pub, "ns", bytes.NewReader(msg), sig); err != nil {
		t.Fatalf("own signature: %v", err)
	}
	other := newKey(t).Public().(ed25519.PublicKey)
	for name, c := range map[string]struct {
		key  ed25519.PublicKey
		msg  []byte
		sig  []byte
		want error
	}{
		"another key":     {other, msg, sig, ErrBadSignature},
		"changed message": {pub, []byte("system imagf"), sig, ErrBadSignature},
		"truncated":       {pub, msg, sig[:len(sig)/2], nil},
		"not a signature": {pub, msg, []byte("-----BEGIN PGP SIGNATURE-----\n"), nil},
		"empty":           {pub, msg, nil, nil},
	} {
		err := Verify(c.key, "ns", bytes.NewReader(c.msg), c.sig)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if k, err := ParsePublicKey([]byte(MarshalPublicKey(pub, "release@rehost"))); err != nil || !k.Equal(pub) {
		t.Errorf("public key round trip: %v", err)
	}
}
