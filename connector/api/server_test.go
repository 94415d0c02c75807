package api

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCertificateIsMadeOnceAndPinned(t *testing.T) {
	dir := t.TempDir()
	c1, err := LoadOrCreateCertificate(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v: want 0600", st.Mode(), err)
	}
	c2, err := LoadOrCreateCertificate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(c1.Certificate[0]) != Fingerprint(c2.Certificate[0]) {
		t.Error("a second start made a new certificate")
	}
	sum := sha256.Sum256(c1.Certificate[0])
	if fp := Fingerprint(c1.Certificate[0]); len(fp) != 95 || !strings.HasPrefix(fp, strings.ToUpper(hexByte(sum[0]))) {
		t.Errorf("fingerprint %q", fp)
	}
	// One file without the other is refused, not silently replaced.
	os.Remove(filepath.Join(dir, KeyFile))
	if _, err := LoadOrCreateCertificate(dir); err == nil || !strings.Contains(err.Error(), "both") {
		t.Errorf("cert without key: %v", err)
	}
}

func hexByte(b byte) string {
	return string("0123456789ABCDEF"[b>>4]) + string("0123456789ABCDEF"[b&15])
}

func TestServesHealthzOverTLSOnly(t *testing.T) {
	cert, err := LoadOrCreateCertificate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0", cert)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := New(Options{})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	resp, err := cl.Get("https://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != 200 || h.Status != "ok" || h.Version == "" {
		t.Errorf("healthz: %d %+v %v", resp.StatusCode, h, err)
	}
	resp.Body.Close()

	// TLS 1.1 is refused.
	if c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}
	// Plain HTTP gets no API answer.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	b, _ := io.ReadAll(c)
	c.Close()
	if strings.Contains(string(b), `"status"`) {
		t.Errorf("plain HTTP was answered: %q", b)
	}
}
