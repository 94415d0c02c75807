package cli

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/daemon"
)

// rehost serve serves the web console beside the API: at first boot every
// page leads to setup; 'rehost admin reset-password' on the appliance sends
// it back there and ends the sessions.
func TestServeConsoleAndResetPassword(t *testing.T) {
	clearServeEnv(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard},
			[]string{"serve", "--state-dir", dir, "--listen", "127.0.0.1:0", "--log-format", "text"})
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d", code)
		}
	}()
	var base string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if info, ok, err := daemon.Serving(dir); err == nil && ok && info.Listen != "" && !strings.HasSuffix(info.Listen, ":0") {
			base = "https://" + info.Listen
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not start listening")
		}
	}
	jar, _ := cookiejar.New(nil)
	// The test trusts whatever certificate serve made; the console's own
	// tests pin it.
	client := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, _ := get("/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup" {
		t.Fatalf("GET / at first boot: %d → %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, page := get("/setup")
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("setup page without a form:\n%s", page)
	}
	pw := "violet tractor harbour 42"
	resp, err := client.PostForm(base+"/setup", url.Values{"csrf": {m[1]}, "password": {pw}, "confirm": {pw}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("setting the password: %d", resp.StatusCode)
	}
	if resp, _ := get("/jobs"); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /jobs logged in: %d", resp.StatusCode)
	}
	if resp, _ := get("/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("the API's /healthz beside the console: %d", resp.StatusCode)
	}
	out, errs, code := walk(t, "admin", "reset-password", "--state-dir", dir)
	if code != 0 || !strings.Contains(out, "reset") {
		t.Fatalf("reset-password: exit %d, %q %q", code, out, errs)
	}
	if resp, _ := get("/jobs"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup" {
		t.Errorf("after the reset: %d → %q, want the setup page", resp.StatusCode, resp.Header.Get("Location"))
	}
}
