package hypervsim

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"strings"
	"time"
	"unicode/utf16"

	"golang.org/x/crypto/md4" //nolint:staticcheck // NTLM's NT hash is MD4 by definition
)

// The server side of NTLMv2 (MS-NLMP) as WinRM's HTTP.sys offers it under
// "Negotiate": answer a NEGOTIATE with a CHALLENGE, verify the
// AUTHENTICATE's NTProofStr against the account's password.

const (
	ntlmUnicode        = 0x00000001
	ntlmRequestTarget  = 0x00000004
	ntlmNTLM           = 0x00000200
	ntlmAlwaysSign     = 0x00008000
	ntlmTargetDomain   = 0x00010000
	ntlmExtendedSecure = 0x00080000
	ntlmTargetInfo     = 0x00800000
	ntlm128            = 0x20000000
	ntlm56             = 0x80000000
)

var ntlmSignature = []byte("NTLMSSP\x00")

func ntlmType(msg []byte) uint32 {
	if len(msg) < 12 || string(msg[:8]) != string(ntlmSignature) {
		return 0
	}
	return binary.LittleEndian.Uint32(msg[8:])
}

// challenge builds a CHALLENGE for domain and computer, returning it and
// the server challenge to verify the answer with.
func challenge(domain, computer string) (msg []byte, server [8]byte) {
	rand.Read(server[:])
	le := binary.LittleEndian
	target := utf16le(domain)
	var info []byte
	av := func(id uint16, v []byte) {
		info = le.AppendUint16(info, id)
		info = le.AppendUint16(info, uint16(len(v)))
		info = append(info, v...)
	}
	av(2, utf16le(domain))
	av(1, utf16le(computer))
	av(4, utf16le(strings.ToLower(domain)+".lab"))
	av(3, utf16le(strings.ToLower(computer)+"."+strings.ToLower(domain)+".lab"))
	ts := make([]byte, 8)
	le.PutUint64(ts, uint64(time.Now().UnixNano()/100)+116444736000000000)
	av(7, ts)
	av(0, nil)
	const head = 56
	msg = make([]byte, head)
	copy(msg, ntlmSignature)
	le.PutUint32(msg[8:], 2)
	le.PutUint16(msg[12:], uint16(len(target)))
	le.PutUint16(msg[14:], uint16(len(target)))
	le.PutUint32(msg[16:], head)
	le.PutUint32(msg[20:], ntlmUnicode|ntlmRequestTarget|ntlmNTLM|ntlmAlwaysSign|ntlmTargetDomain|ntlmExtendedSecure|ntlmTargetInfo|ntlm128|ntlm56)
	copy(msg[24:], server[:])
	le.PutUint16(msg[40:], uint16(len(info)))
	le.PutUint16(msg[42:], uint16(len(info)))
	le.PutUint32(msg[44:], uint32(head+len(target)))
	msg = append(append(msg, target...), info...)
	return msg, server
}

// verify checks an AUTHENTICATE against the server challenge and the
// account: the user name (a domain prefix ignored, case-insensitive) and
// the NTLMv2 proof computed from the password.
func verify(msg []byte, server [8]byte, user, password string) (string, error) {
	if ntlmType(msg) != 3 || len(msg) < 64 {
		return "", errors.New("not an NTLM AUTHENTICATE message")
	}
	field := func(at int) ([]byte, error) {
		le := binary.LittleEndian
		n, off := int(le.Uint16(msg[at:])), int(le.Uint32(msg[at+4:]))
		if off+n > len(msg) {
			return nil, errors.New("field outside the message")
		}
		return msg[off : off+n], nil
	}
	nt, err := field(20)
	if err != nil {
		return "", err
	}
	dom, err := field(28)
	if err != nil {
		return "", err
	}
	usr, err := field(36)
	if err != nil {
		return "", err
	}
	name, domain := fromUTF16(usr), fromUTF16(dom)
	want := user
	if _, u, ok := strings.Cut(user, `\`); ok {
		want = u
	}
	if given, _, ok := strings.Cut(name, "@"); ok {
		name = given
	}
	if !strings.EqualFold(name, want) {
		return name, errors.New("unknown user")
	}
	if len(nt) < 24 {
		return name, errors.New("not an NTLMv2 response")
	}
	h := md4.New()
	h.Write(utf16le(password))
	mac := hmac.New(md5.New, h.Sum(nil))
	mac.Write(utf16le(strings.ToUpper(fromUTF16(usr)) + domain))
	v2 := mac.Sum(nil)
	proof := hmac.New(md5.New, v2)
	proof.Write(server[:])
	proof.Write(nt[16:])
	if !hmac.Equal(proof.Sum(nil), nt[:16]) {
		return name, errors.New("wrong password")
	}
	return name, nil
}

func utf16le(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

func fromUTF16(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}
