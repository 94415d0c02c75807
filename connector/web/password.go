package web

import (
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// SettingAdminPassword is the store setting holding the admin password's
// argon2id hash as a PHC string. Deleting it ('rehost admin
// reset-password') sends the console back to first-boot setup and ends
// every session.
const SettingAdminPassword = "admin.password"

// argonParams are argon2id's cost parameters. The console uses OWASP's
// recommended configuration (46 MiB, 1 pass, 1 lane): about 0.2 s a hash on
// a loaded 2-core machine (BenchmarkHashPassword), so a login stays quick
// while each guess costs an attacker 46 MiB of memory.
type argonParams struct {
	memoryKiB uint32
	time      uint32
	threads   uint8
}

var defaultArgon = argonParams{memoryKiB: 46 * 1024, time: 1, threads: 1}

const (
	saltLen = 16
	keyLen  = 32
)

// hashPassword returns the PHC string of pw:
// $argon2id$v=19$m=47104,t=1,p=1$<salt>$<hash> (unpadded base64).
func hashPassword(pw string, p argonParams) string {
	salt := make([]byte, saltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(pw), salt, p.time, p.memoryKiB, p.threads, keyLen)
	b64 := base64.RawStdEncoding.EncodeToString
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memoryKiB, p.time, p.threads, b64(salt), b64(key))
}

// maxArgonMemoryKiB bounds what a stored hash may ask for (1 GiB), so a
// tampered setting cannot exhaust the appliance's memory.
const maxArgonMemoryKiB = 1 << 20

// verifyPassword checks pw against a PHC string made by hashPassword (with
// whatever parameters it records).
func verifyPassword(phc, pw string) (bool, error) {
	f := strings.Split(phc, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return false, errors.New("the stored admin password is not an argon2id PHC string: reset it with 'rehost admin reset-password'")
	}
	var v int
	var p argonParams
	if _, err := fmt.Sscanf(f[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, fmt.Errorf("the stored admin password has argon2 version %q, want %d", f[2], argon2.Version)
	}
	if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &p.memoryKiB, &p.time, &p.threads); err != nil ||
		p.memoryKiB == 0 || p.memoryKiB > maxArgonMemoryKiB || p.time == 0 || p.time > 100 || p.threads == 0 {
		return false, fmt.Errorf("the stored admin password has bad argon2 parameters %q", f[3])
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(f[4])
	key, err2 := base64.RawStdEncoding.DecodeString(f[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(key) < 16 {
		return false, errors.New("the stored admin password's salt or hash is not valid base64")
	}
	got := argon2.IDKey([]byte(pw), salt, p.time, p.memoryKiB, p.threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// Password length bounds, in characters.
const (
	minPasswordLen = 12
	maxPasswordLen = 256
)

// weakList is the common-password list shipped with rehost (see the
// file's header for where it comes from).
//
//go:embed weak-passwords.txt
var weakList string

var weakWords = func() map[string]bool {
	m := map[string]bool{}
	for line := range strings.Lines(weakList) {
		if !strings.HasPrefix(line, "#") {
			for _, w := range strings.Fields(line) {
				m[w] = true
			}
		}
	}
	return m
}()

// sequences are runs people type: a password whose core is a piece of one
// (forwards or backwards) is weak.
var sequences = []string{
	"abcdefghijklmnopqrstuvwxyz", "01234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm",
	"qwertzuiop", "azertyuiop", "1qaz2wsx3edc4rfv", "1q2w3e4r5t6y", "qazwsxedc", "!@#$%^&*()",
}

// leet undoes the common letter substitutions.
var leet = strings.NewReplacer("0", "o", "1", "i", "3", "e", "4", "a", "5", "s", "7", "t", "8", "b", "@", "a", "$", "s", "!", "i", "|", "l", "+", "t")

// checkPassword says why pw is too weak to be the admin password, or
// returns "" when it is acceptable: long enough, and not a common password,
// keyboard run or repetition, nor one of those decorated with capitals,
// substitutions, digits or symbols at either end, nor two common words
// joined.
func checkPassword(pw string) string {
	n := utf8.RuneCountInString(pw)
	switch {
	case n < minPasswordLen:
		return fmt.Sprintf("use at least %d characters (this has %d); a few unrelated words make a good one", minPasswordLen, n)
	case n > maxPasswordLen:
		return fmt.Sprintf("use at most %d characters", maxPasswordLen)
	}
	lower := strings.ToLower(pw)
	core := strings.TrimFunc(lower, func(r rune) bool {
		return unicode.IsDigit(r) || unicode.IsPunct(r) || unicode.IsSymbol(r) || unicode.IsSpace(r)
	})
	for _, c := range []string{lower, core, leet.Replace(core), strings.Join(strings.Fields(leet.Replace(core)), "")} {
		if weakCore(c) {
			return "this is a common password, or one made from a common word, a keyboard run or a repeated pattern: choose something less guessable, such as a few unrelated words"
		}
	}
	return ""
}

func weakCore(c string) bool {
	if c == "" || weakPart(c) {
		return true
	}
	// A repetition of a shorter unit ("abcabcabcabc", "rehostrehost").
	for unit := 1; unit <= len(c)/2; unit++ {
		if len(c)%unit == 0 && strings.Repeat(c[:unit], len(c)/unit) == c {
			return true
		}
	}
	// Two common words, or a common word and a run ("dragonmonkey",
	// "adminqwerty").
	for i := 1; i < len(c); i++ {
		if weakPart(c[:i]) && weakPart(c[i:]) {
			return true
		}
	}
	return false
}

// weakPart reports whether s is a common word, digits only, or a piece of
// a keyboard or alphabet run.
func weakPart(s string) bool {
	if weakWords[s] || strings.Trim(s, "0123456789") == "" {
		return true
	}
	for _, q := range sequences {
		if len(s) >= 3 && (strings.Contains(q, s) || strings.Contains(reverse(q), s)) {
			return true
		}
	}
	return false
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}
