// Package sshsig makes and checks detached Ed25519 signatures in the
// format of OpenSSH's `ssh-keygen -Y sign` (PROTOCOL.sshsig), so anyone
// can check a signed file with the stock ssh-keygen:
//
//	ssh-keygen -Y verify -f ALLOWED_SIGNERS -I IDENTITY -n NAMESPACE -s FILE.sig < FILE
//
// The message is hashed with SHA-512 as it streams, so a file of any size
// is signed and checked in bounded memory. Only Ed25519 keys are made and
// accepted: the appliance's release key is one.
package sshsig

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

const (
	magic     = "SSHSIG"
	sigVer    = 1
	keyType   = "ssh-ed25519"
	hashAlg   = "sha512"
	armorHead = "-----BEGIN SSH SIGNATURE-----"
	armorTail = "-----END SSH SIGNATURE-----"
)

// ErrBadSignature: the signature does not verify with the key, for this
// namespace and message (another key signed it, or the file changed).
var ErrBadSignature = errors.New("signature does not match")

// Sign reads the message from r and returns the armored signature
// ("-----BEGIN SSH SIGNATURE-----"…) that ssh-keygen -Y verify accepts for
// the key's public half and namespace.
func Sign(key ed25519.PrivateKey, namespace string, r io.Reader) ([]byte, error) {
	if namespace == "" {
		return nil, errors.New("sign: empty namespace")
	}
	h := sha512.New()
	if _, err := io.Copy(h, r); err != nil {
		return nil, fmt.Errorf("sign: read the message: %w", err)
	}
	sig := ed25519.Sign(key, signedData(namespace, h.Sum(nil)))
	var blob bytes.Buffer
	blob.WriteString(magic)
	binary.Write(&blob, binary.BigEndian, uint32(sigVer))
	putString(&blob, wirePublicKey(key.Public().(ed25519.PublicKey)))
	putString(&blob, []byte(namespace))
	putString(&blob, nil) // reserved
	putString(&blob, []byte(hashAlg))
	var s bytes.Buffer
	putString(&s, []byte(keyType))
	putString(&s, sig)
	putString(&blob, s.Bytes())
	return armor(blob.Bytes()), nil
}

// Verify checks an armored signature over the message read from r: made
// by key, for namespace. It returns ErrBadSignature (wrapped) when the
// signature is well-formed but does not verify, and another error when it
// is not a signature this package can read.
func Verify(key ed25519.PublicKey, namespace string, r io.Reader, armored []byte) error {
	blob, err := unarmor(armored)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(blob, []byte(magic)) {
		return errors.New("not an SSH signature (no SSHSIG preamble)")
	}
	rd := &reader{b: blob[len(magic):]}
	ver := rd.uint32()
	pub, ns, _, alg, sigField := rd.string(), rd.string(), rd.string(), rd.string(), rd.string()
	if rd.err != nil {
		return fmt.Errorf("SSH signature: %w", rd.err)
	}
	if ver != sigVer {
		return fmt.Errorf("SSH signature version %d: want %d", ver, sigVer)
	}
	signer, err := parseWirePublicKey(pub)
	if err != nil {
		return fmt.Errorf("SSH signature: %w", err)
	}
	if string(ns) != namespace {
		return fmt.Errorf("%w: the signature is for namespace %q, not %q", ErrBadSignature, ns, namespace)
	}
	if string(alg) != hashAlg {
		return fmt.Errorf("SSH signature hash %q: want %s", alg, hashAlg)
	}
	sr := &reader{b: sigField}
	st, sig := sr.string(), sr.string()
	if sr.err != nil || string(st) != keyType || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("SSH signature: want an %s signature", keyType)
	}
	if !bytes.Equal(signer, key) {
		return fmt.Errorf("%w: signed by key %s, not by %s", ErrBadSignature, Fingerprint(signer), Fingerprint(key))
	}
	h := sha512.New()
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("read the signed file: %w", err)
	}
	if !ed25519.Verify(key, signedData(namespace, h.Sum(nil)), sig) {
		return fmt.Errorf("%w: the file is not the one %s signed", ErrBadSignature, Fingerprint(key))
	}
	return nil
}

// signedData is what the key signs: the preamble, namespace, reserved
// field, hash name and the message's hash.
func signedData(namespace string, digest []byte) []byte {
	var b bytes.Buffer
	b.WriteString(magic)
	putString(&b, []byte(namespace))
	putString(&b, nil)
	putString(&b, []byte(hashAlg))
	putString(&b, digest)
	return b.Bytes()
}

// MarshalPublicKey returns the key in authorized_keys form:
// "ssh-ed25519 BASE64 comment".
func MarshalPublicKey(key ed25519.PublicKey, comment string) string {
	s := keyType + " " + base64.StdEncoding.EncodeToString(wirePublicKey(key))
	if comment != "" {
		s += " " + comment
	}
	return s
}

// AllowedSigners returns the line of an ssh-keygen allowed_signers file
// that trusts key as identity for the namespaces.
func AllowedSigners(identity string, key ed25519.PublicKey, namespaces ...string) string {
	return fmt.Sprintf("%s namespaces=%q %s\n", identity, strings.Join(namespaces, ","), MarshalPublicKey(key, ""))
}

// ParsePublicKey reads a key in authorized_keys form (what
// MarshalPublicKey writes, or an ssh-keygen .pub file), or an
// allowed_signers line holding one.
func ParsePublicKey(text []byte) (ed25519.PublicKey, error) {
	fs := strings.Fields(string(text))
	for i := 0; i+1 < len(fs); i++ {
		if fs[i] == keyType {
			wire, err := base64.StdEncoding.DecodeString(fs[i+1])
			if err != nil {
				return nil, fmt.Errorf("public key: %w", err)
			}
			return parseWirePublicKey(wire)
		}
	}
	return nil, fmt.Errorf("public key: no %s key found", keyType)
}

// Fingerprint is the key's SHA256 fingerprint as ssh-keygen -l prints it.
func Fingerprint(key ed25519.PublicKey) string {
	sum := sha256.Sum256(wirePublicKey(key))
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

func wirePublicKey(key ed25519.PublicKey) []byte {
	var b bytes.Buffer
	putString(&b, []byte(keyType))
	putString(&b, key)
	return b.Bytes()
}

func parseWirePublicKey(wire []byte) (ed25519.PublicKey, error) {
	r := &reader{b: wire}
	t, k := r.string(), r.string()
	if r.err != nil || string(t) != keyType || len(k) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("want an %s public key", keyType)
	}
	return ed25519.PublicKey(k), nil
}

func putString(b *bytes.Buffer, s []byte) {
	binary.Write(b, binary.BigEndian, uint32(len(s)))
	b.Write(s)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uint32() uint32 {
	if r.err != nil || len(r.b) < 4 {
		r.err = errors.New("truncated")
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) string() []byte {
	n := r.uint32()
	if r.err != nil || uint32(len(r.b)) < n {
		r.err = errors.New("truncated")
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

// armor wraps the blob as ssh-keygen does: base64 in lines of 70.
func armor(blob []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(blob)
	var b bytes.Buffer
	b.WriteString(armorHead + "\n")
	for len(enc) > 70 {
		b.WriteString(enc[:70] + "\n")
		enc = enc[70:]
	}
	b.WriteString(enc + "\n" + armorTail + "\n")
	return b.Bytes()
}

func unarmor(armored []byte) ([]byte, error) {
	s := strings.TrimSpace(string(armored))
	body, ok := strings.CutPrefix(s, armorHead)
	if !ok {
		return nil, fmt.Errorf("not an SSH signature (want %s)", armorHead)
	}
	body, ok = strings.CutSuffix(body, armorTail)
	if !ok {
		return nil, fmt.Errorf("SSH signature: no %s line", armorTail)
	}
	blob, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(body), ""))
	if err != nil {
		return nil, fmt.Errorf("SSH signature: %w", err)
	}
	return blob, nil
}
