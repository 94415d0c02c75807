package cli

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehost/rehost/connector/web"
	"github.com/rehost/rehost/pkg/store"
)

func runVerb(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}, args)
	if code != 0 {
		return out.String(), errors.New(errb.String())
	}
	return out.String(), nil
}

func TestAdminResetPasswordRemovesTheHash(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	d, err := openState(ctx, dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Store.PutSetting(ctx, web.SettingAdminPassword, []byte("$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$aGFzaA")); err != nil {
		t.Fatal(err)
	}
	d.Close()
	for i := 0; i < 2; i++ { // a second reset finds nothing to remove and still succeeds
		if out, err := runVerb(t, "admin", "reset-password", "--state-dir", dir); err != nil || !strings.Contains(out, "set a new one") {
			t.Fatalf("reset %d: %q, %v", i, out, err)
		}
	}
	d, err = openState(ctx, dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Store.GetSetting(ctx, web.SettingAdminPassword); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("admin.password after the reset: %v", err)
	}
}

// The bundle holds the versions, the registration, sources, jobs and the
// logs, with every secret the state and the logs hold redacted.
func TestSupportBundleRedactsSecrets(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	const (
		keyID    = "AKIAIOSFODNN7EXAMPLE"
		secret   = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
		password = "vc-Pa55w0rd!"
	)
	d, err := openState(ctx, dir, true)
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := json.Marshal(map[string]string{"region": "eu-west-1", "bucket": "staging-b", "accessKeyId": keyID, "secretAccessKey": secret})
	if err := d.Store.PutSetting(ctx, "aws", d.Box.Seal(reg)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Store.CreateSource(ctx, store.Source{Kind: store.SourceVSphere, Name: "vc1", Endpoint: "https://vc.example", User: "admin", Secret: d.Box.Seal([]byte(password))}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	logf := filepath.Join(t.TempDir(), "rehost.log")
	os.WriteFile(logf, []byte(`{"msg":"registered","region":"eu-west-1","secretAccessKey":"`+secret+`"}
time=now msg="source added" password=`+password+` user=admin
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg
-----END PRIVATE KEY-----
plain line keyid `+keyID+`
`), 0o644)
	out := filepath.Join(t.TempDir(), "bundle.zip")
	if o, err := runVerb(t, "support", "bundle", "--state-dir", dir, "--out", out, "--file", logf); err != nil {
		t.Fatalf("%s %v", o, err)
	}
	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("bundle %v, %v: want mode 0600", st, err)
	}
	zr, err := zip.OpenReader(out)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	got := map[string]string{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		got[f.Name] = string(b)
	}
	for _, name := range []string{"versions.json", "registration.json", "summary.json", "files/rehost.log"} {
		if _, ok := got[name]; !ok {
			t.Errorf("bundle lacks %s (has %v)", name, keys(got))
		}
	}
	if !strings.Contains(got["registration.json"], "staging-b") || !strings.Contains(got["summary.json"], "vc.example") ||
		!strings.Contains(got["files/rehost.log"], "source added") {
		t.Errorf("bundle lost its non-secret content:\n%s\n%s\n%s", got["registration.json"], got["summary.json"], got["files/rehost.log"])
	}
	// The access key id names the key (the registration shows it, as the
	// AWS console does); the secret, the password and a private key are
	// what must never leave.
	if !strings.Contains(got["registration.json"], keyID) {
		t.Errorf("registration.json does not say which key is stored:\n%s", got["registration.json"])
	}
	for name, content := range got {
		for _, s := range []string{secret, password, "MIGHAgEAMBMG"} {
			if strings.Contains(content, s) {
				t.Errorf("%s holds the secret %q:\n%s", name, s, content)
			}
		}
	}
}

func keys(m map[string]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}
