package imagetest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/appliance/build"
	ab "github.com/rehost/rehost/appliance/internal/boot"
	"github.com/rehost/rehost/appliance/release"
	"github.com/rehost/rehost/pkg/sshsig"
)

// released is the manifest of the built image: its version and commit
// time, against which the tests make newer and older upgrades.
func released(t *testing.T, dir string) release.Manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, build.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var m release.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// site serves system images to the guest over HTTP (qemu's user network
// reaches the host's loopback as 10.0.2.2), each offer in a directory of
// its own.
type site struct {
	t    *testing.T
	dir  string
	port int
}

func newSite(t *testing.T) *site {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &site{t: t, dir: t.TempDir(), port: ln.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{Handler: http.FileServer(http.Dir(s.dir))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// url is what a user types at the upgrade menu for the offer name.
func (s *site) url(name string) string {
	return fmt.Sprintf("http://10.0.2.2:%d/%s/%s", s.port, name, build.SystemFile)
}

// build offers a system image built at version and epoch, signed with key,
// carrying rehost as its connector when set.
func (s *site) build(name, version string, epoch time.Time, key ed25519.PrivateKey, rehost string) release.Manifest {
	s.t.Helper()
	out := filepath.Join(s.dir, name)
	start := time.Now()
	if _, err := buildSystem(out, version, epoch, key, rehost); err != nil {
		s.t.Fatalf("build the system image %s: %v", name, err)
	}
	s.t.Logf("system image %s (%s) built in %.0f s", name, version, time.Since(start).Seconds())
	return released(s.t, out)
}

// offer offers the image of the offer from under another manifest: m
// changed by change, signed with key (nil: not signed at all).
func (s *site) offer(name, from string, change func(*release.Manifest), key ed25519.PrivateKey) {
	s.t.Helper()
	dir := filepath.Join(s.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Link(filepath.Join(s.dir, from, build.SystemFile), filepath.Join(dir, build.SystemFile)); err != nil {
		s.t.Fatal(err)
	}
	m := released(s.t, filepath.Join(s.dir, from))
	change(&m)
	b := m.Marshal()
	if err := os.WriteFile(filepath.Join(dir, build.ManifestFile), b, 0o644); err != nil {
		s.t.Fatal(err)
	}
	if key == nil {
		return
	}
	sig, err := sshsig.Sign(key, release.UpgradeNamespace, bytes.NewReader(b))
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, build.ManifestFile+".sig"), sig, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// brokenRehost builds a stand-in for the connector that exits at once
// with an error, as a release whose daemon cannot start would.
func brokenRehost(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	os.WriteFile(src, []byte(`package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "rehost serve: open state: this connector cannot start (the image test's broken release)")
	os.Exit(1)
}
`), 0o644)
	bin := filepath.Join(dir, "rehost")
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the broken connector: %v\n%s", err, out)
	}
	return bin
}

// bootState is grubenv on the disk's EFI system partition, read with
// mtools (no mount).
func bootState(t *testing.T, raw string) ab.State {
	t.Helper()
	cmd := exec.Command("mtype", "-i", fmt.Sprintf("%s@@%d", raw, build.ESPOff), "::/"+ab.EnvPath)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "MTOOLSRC=/dev/null")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("read grubenv: %v", err)
	}
	env, err := ab.ParseEnv(out)
	if err != nil {
		t.Fatal(err)
	}
	return ab.FromEnv(env)
}

// upgrade picks the upgrade menu entry and gives it url.
func (v *vm) upgrade(url string) {
	v.t.Helper()
	v.menu("7", "URL of rehost-connector-system.img", url)
}

// applianceReport is the init's status file on the data partition, what
// GetConnectorStatus serves as its appliance section.
func applianceReport(t *testing.T, raw string) string {
	return strings.TrimSpace(string(dataFile(t, raw, "/appliance/status.json")))
}

// backupToData backs the state up onto the data partition from the
// console menu and reads the recovery code it shows; it returns the
// backup's path on the appliance and the code.
func (v *vm) backupToData() (path, code string) {
	v.t.Helper()
	v.menu("10", "Back up to 1) the staging bucket, or 2) the data partition", "2")
	path = v.expect(regexp.MustCompile(`backed up to (/data/backup/rehost-state-\S+\.rehost-backup)`), 2*time.Minute)[1]
	v.expect(regexp.MustCompile(regexp.QuoteMeta("Show the backup key's recovery code")), time.Minute)
	v.send("y")
	// To its line's end: the serial console may bring the code in pieces.
	code = v.expect(regexp.MustCompile(`(RBK1-[A-Z2-7-]+)\r*\n`), time.Minute)[1]
	return path, code
}
