package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/rehost/rehost/connector/cli"
	"github.com/rehost/rehost/internal/lab/diskwrite"
	"github.com/rehost/rehost/internal/lab/vspheresim"
)

func TestVCenterServesUntilCancelled(t *testing.T) {
	t.Setenv(cli.EnvVCenterPassword, "")
	dir := t.TempDir()
	line, stop := serve(t, "vcenter", "--dir", dir, "--demo", "--json")
	var info vcenterInfo
	if err := json.Unmarshal(line, &info); err != nil {
		t.Fatalf("parse %q: %v", line, err)
	}
	if info.Password == "" || len(info.VMs) != 3 {
		t.Fatalf("info %+v", info)
	}
	t.Setenv(cli.EnvVCenterPassword, info.Password)
	var out, errOut bytes.Buffer
	if code := cli.Main(context.Background(), cli.Env{Stdout: &out, Stderr: &errOut}, []string{"source", "inventory", "--url", info.URL, "--user", info.User,
		"--thumbprint", info.Thumbprint}); code != 0 || !strings.Contains(out.String(), "web-01") {
		t.Fatalf("inventory of the emulator: exit %d %s %s", code, out.String(), errOut.String())
	}
	// The write URL changes a running VM's disk as docs/lab.md shows.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if sum := sha256.Sum256(raw[0]); fmt.Sprintf("%X", sum[:]) != strings.ReplaceAll(info.Thumbprint, ":", "") {
				return fmt.Errorf("certificate is not the vcenter's")
			}
			return nil
		}}}}
	res, err := diskwrite.Post(context.Background(), hc, info.WriteURL, info.User, info.Password, diskwrite.Request{VM: "web-01", Disk: 1, Blocks: 8})
	if err != nil || len(res.Offsets) != 8 || res.Bytes != 8*4096 {
		t.Fatalf("write request: %+v, %v", res, err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	// The key pair stays in --dir, so the thumbprint a user accepted holds
	// across restarts.
	sim, err := vspheresim.Start(context.Background(), vspheresim.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	if sim.Thumbprint() != info.Thumbprint {
		t.Fatalf("thumbprint changed across restarts: %s then %s", info.Thumbprint, sim.Thumbprint())
	}
}
