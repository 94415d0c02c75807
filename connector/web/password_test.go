package web

import (
	"strings"
	"testing"
)

func TestPasswordPolicy(t *testing.T) {
	for pw, weak := range map[string]bool{
		"violet tractor harbour 42":    false,
		"correct horse battery staple": false,
		"Gx7#mQ2v!zR9wLp":              false,
		"short one":                    true,
		"Password1234!":                true,
		"P@ssw0rd2024!":                true,
		"passwordpassword":             true,
		"qwertyuiop123":                true,
		"1234567890123":                true,
		"abcdefghijklm":                true,
		"zyxwvutsrqpon":                true,
		"iloveyou2025":                 true,
		"Summer2024!!!":                true,
		"dragonmonkey99":               true,
		"adminqwerty12":                true,
		"rehostrehost":                 true,
		"aaaaaaaaaaaaaa":               true,
		"VMware123456!":                true,
		strings.Repeat("x", 300):       true,
	} {
		msg := checkPassword(pw)
		if (msg != "") != weak {
			t.Errorf("checkPassword(%q) = %q, want weak=%v", pw, msg, weak)
		}
	}
	if n := len(weakWords); n < 500 {
		t.Errorf("the common-password list has %d words, want at least 500", n)
	}
}

func TestPasswordHash(t *testing.T) {
	cheap := argonParams{memoryKiB: 8 * 1024, time: 1, threads: 1}
	phc := hashPassword("violet tractor harbour 42", cheap)
	if !strings.HasPrefix(phc, "$argon2id$v=19$m=8192,t=1,p=1$") {
		t.Fatalf("PHC string %q", phc)
	}
	if phc == hashPassword("violet tractor harbour 42", cheap) {
		t.Error("two hashes of one password are equal: no salt")
	}
	for pw, want := range map[string]bool{"violet tractor harbour 42": true, "violet tractor harbour 43": false, "": false} {
		if ok, err := verifyPassword(phc, pw); err != nil || ok != want {
			t.Errorf("verify %q: %v, %v; want %v", pw, ok, err, want)
		}
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=16$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=8192,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA"} {
		if ok, err := verifyPassword(bad, "x"); ok || err == nil {
			t.Errorf("verify against %q: %v, %v; want an error", bad, ok, err)
		}
	}
}

// BenchmarkHashPassword is the cost of one admin password hash (or login)
// with the console's parameters.
func BenchmarkHashPassword(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		hashPassword("violet tractor harbour 42", defaultArgon)
	}
}
