package lab

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehost/rehost/appliance/release"
	"github.com/rehost/rehost/connector/cli"
	"github.com/rehost/rehost/pkg/sshsig"
)

// verify-image passes a file whose sum and signature match the key, and
// fails (exit 1, naming the file) one changed after signing and one
// checked against another key.
func TestVerifyImage(t *testing.T) {
	dir := t.TempDir()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	img := filepath.Join(dir, "rehost-connector.ova")
	content := bytes.Repeat([]byte("ova "), 1<<16)
	os.WriteFile(img, content, 0o644)
	sum := sha256.Sum256(content)
	os.WriteFile(img+".sha256", []byte(hex.EncodeToString(sum[:])+"  rehost-connector.ova\n"), 0o644)
	sig, err := sshsig.Sign(key, release.ImageNamespace, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(img+".sig", sig, 0o644)
	pubFile := filepath.Join(dir, "rehost-release.pub")
	os.WriteFile(pubFile, []byte(sshsig.MarshalPublicKey(pub, release.Identity)+"\n"), 0o644)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	otherFile := filepath.Join(dir, "other.pub")
	os.WriteFile(otherFile, []byte(sshsig.MarshalPublicKey(otherPub, "")+"\n"), 0o644)

	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}, append([]string{"verify-image"}, args...))
		return code, out.String() + errb.String()
	}
	if code, out := run("--key", pubFile, img); code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("a good image: exit %d\n%s", code, out)
	}
	if code, out := run("--key", otherFile, img); code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "signed by key") {
		t.Errorf("another key: exit %d\n%s", code, out)
	}
	content[100] ^= 1
	os.WriteFile(img, content, 0o644)
	if code, out := run("--key", pubFile, img); code != 1 || !strings.Contains(out, "rehost-connector.ova: FAILED") {
		t.Errorf("a changed image: exit %d\n%s", code, out)
	}
}
