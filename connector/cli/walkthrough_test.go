package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/demo"
)

func walk(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}, args)
	return out.String(), errb.String(), code
}

// The README's walkthrough, verb by verb, against the demo's peers:
// register, add a source, import the catalog, create jobs, list them.
func TestWalkthrough(t *testing.T) {
	dir := t.TempDir()
	peers, err := demo.StartPeers(context.Background(), demo.PeerOptions{Dir: filepath.Join(dir, "peers")})
	if err != nil {
		t.Fatal(err)
	}
	defer peers.Close()
	settings, err := peers.AWSSettings()
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, settings.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	t.Setenv("REHOST_STATE_DIR", state)
	t.Setenv("AWS_ACCESS_KEY_ID", settings.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", settings.SecretAccessKey)

	// A region that is well formed but does not exist is refused by name,
	// by the same check the API and the console make.
	_, errs, code := walk(t, "register", "--region", "xx-nowhere-9", "--aws-endpoint", settings.Endpoint,
		"--s3-endpoint", settings.S3Endpoint, "--aws-ca-file", ca, "--store-keys", "--create-role")
	if code != 1 || !strings.Contains(errs, "no such region: xx-nowhere-9") {
		t.Errorf("register in an unknown region: exit %d, %s", code, errs)
	}
	out, errs, code := walk(t, "register", "--region", settings.Region, "--aws-endpoint", settings.Endpoint,
		"--s3-endpoint", settings.S3Endpoint, "--aws-ca-file", ca, "--store-keys", "--create-role")
	if code != 0 {
		t.Fatalf("register: %d %s %s", code, out, errs)
	}
	if !strings.Contains(out, "staging bucket: rehost-staging-") || !strings.Contains(out, "changed:") {
		t.Errorf("register output: %s", out)
	}
	// Re-running changes nothing.
	out, errs, code = walk(t, "register", "--region", settings.Region, "--aws-endpoint", settings.Endpoint,
		"--s3-endpoint", settings.S3Endpoint, "--aws-ca-file", ca, "--store-keys", "--create-role")
	if code != 0 || !strings.Contains(out, "nothing to change") {
		t.Errorf("second register: %d %s %s", code, out, errs)
	}

	// Without the thumbprint the simulator's self-signed certificate is
	// refused, and the error offers the thumbprint to accept.
	si := peers.SourceInput()
	t.Setenv("REHOST_SOURCE_PASSWORD", si.Password)
	_, errs, code = walk(t, "source", "add", "--name", "vc", "--url", si.URL, "--user", si.User)
	if code == 0 || !strings.Contains(errs, "--thumbprint") {
		t.Fatalf("untrusted certificate accepted or not explained: %d %s", code, errs)
	}
	// Names obey the rules of connector/limit, here as in the API and the
	// console.
	_, errs, code = walk(t, "source", "add", "--name", "lab/vc", "--url", si.URL, "--user", si.User, "--thumbprint", si.Thumbprint)
	if code != 1 || !strings.Contains(errs, `source name "lab/vc": '/' is not allowed`) {
		t.Errorf("a source name with '/': exit %d, %s", code, errs)
	}
	t.Setenv("REHOST_SOURCE_PASSWORD", "wrong")
	_, errs, code = walk(t, "source", "add", "--name", "vc", "--url", si.URL, "--user", si.User, "--thumbprint", si.Thumbprint)
	if code == 0 || !strings.Contains(strings.ToLower(errs), "authentication") {
		t.Fatalf("bad password: %d %s", code, errs)
	}
	t.Setenv("REHOST_SOURCE_PASSWORD", si.Password)
	out, errs, code = walk(t, "source", "add", "--name", "vc", "--url", si.URL, "--user", si.User, "--thumbprint", si.Thumbprint)
	if code != 0 {
		t.Fatalf("source add: %d %s", code, errs)
	}

	out, errs, code = walk(t, "server", "import", "--json")
	if code != 0 {
		t.Fatalf("server import: %d %s", code, errs)
	}
	var servers []api.Server
	if err := json.Unmarshal([]byte(out), &servers); err != nil || len(servers) != len(peers.VMs) {
		t.Fatalf("server import: %v %s", err, out)
	}

	_, errs, code = walk(t, "job", "create", "--server", "web-01", "--frequency", "25")
	if code == 0 || !strings.Contains(errs, "1 to 24") {
		t.Errorf("frequency 25 accepted or unexplained: %d %s", code, errs)
	}
	_, errs, code = walk(t, "job", "create", "--server", "no-such-vm", "--frequency", "6")
	if code == 0 || !strings.Contains(errs, "server import") {
		t.Errorf("unknown server: %d %s", code, errs)
	}
	out, errs, code = walk(t, "job", "create", "--server", "web-01", "--frequency", "6", "--keep", "2", "--json")
	if code != 0 {
		t.Fatalf("job create: %d %s", code, errs)
	}
	var j api.ReplicationJob
	if err := json.Unmarshal([]byte(out), &j); err != nil || j.Frequency != 6 || j.NumberOfRecentAmisToKeep != 2 {
		t.Fatalf("job create: %v %s", err, out)
	}
	_, errs, code = walk(t, "job", "create", "--server", "web-01", "--frequency", "6")
	if code == 0 || !strings.Contains(errs, j.ReplicationJobID) {
		t.Errorf("second job for one server: %d %s", code, errs)
	}
	out, _, code = walk(t, "job", "list")
	if code != 0 || !strings.Contains(out, j.ReplicationJobID) || !strings.Contains(out, "6 h") {
		t.Errorf("job list: %s", out)
	}
	out, errs, code = walk(t, "run", "list", "--job", j.ReplicationJobID)
	if code != 0 || !strings.Contains(out, "RUN ID") {
		t.Errorf("run list: %d %s %s", code, out, errs)
	}
	for _, v := range []struct{ verb, state string }{{"pause", "PAUSED"}, {"resume", "ACTIVE"}} {
		out, errs, code = walk(t, "job", v.verb, j.ReplicationJobID)
		jobs, _, _ := walk(t, "job", "list")
		if code != 0 || !strings.Contains(out, v.verb[:5]) || !strings.Contains(jobs, v.state) {
			t.Errorf("job %s: %d %s %s; job list:\n%s", v.verb, code, out, errs, jobs)
		}
	}
	out, errs, code = walk(t, "job", "delete", j.ReplicationJobID)
	if code != 0 || !strings.Contains(out, "deleted") {
		t.Errorf("job delete: %d %s %s", code, out, errs)
	}
	// Secrets never reach the database in plaintext.
	db, err := os.ReadFile(filepath.Join(state, "rehost.db"))
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(filepath.Join(state, "rehost.db-wal"))
	for _, secret := range []string{si.Password, settings.SecretAccessKey} {
		if bytes.Contains(db, []byte(secret)) || bytes.Contains(wal, []byte(secret)) {
			t.Errorf("a secret is stored in plaintext")
		}
	}
}
