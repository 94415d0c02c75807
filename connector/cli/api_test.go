package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
)

// apiEnv points the CLI at the connector's API with its issued key, and
// away from any state directory or login of the machine.
func apiEnv(t *testing.T, c *apitest.Connector) {
	t.Setenv("REHOST_STATE_DIR", "")
	t.Setenv("REHOST_LOGIN_FILE", filepath.Join(t.TempDir(), "login.json"))
	t.Setenv("REHOST_ENDPOINT", c.URL)
	t.Setenv("AWS_REGION", c.Region)
	t.Setenv("AWS_ACCESS_KEY_ID", c.Key.ID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", c.Key.Secret)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
}

// The CLI over HTTPS: import, a job, `job start` then `run watch` to the
// AMI, the run's times, the status; a name two servers bear; login.
func TestCLIOverTheAPI(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	apiEnv(t, c)
	fp := "--fingerprint=" + c.Fingerprint

	out, errs, code := walk(t, "server", "import", fp)
	if code != 0 || !strings.Contains(out, "SOURCE") || !strings.Contains(out, "vcenter") || !strings.Contains(out, "db-01") {
		t.Fatalf("server import: %d %s %s", code, out, errs)
	}
	if _, errs, code := walk(t, "server", "list"); code != 1 || !strings.Contains(errs, "fingerprint") {
		t.Errorf("a connector whose certificate is not pinned nor trusted: %d %s", code, errs)
	}
	seed := time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339)
	out, errs, code = walk(t, "job", "create", fp, "--server", "db-01", "--frequency", "12", "--seed", seed, "--json")
	if code != 0 {
		t.Fatalf("job create: %d %s", code, errs)
	}
	var j api.ReplicationJob
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatal(err)
	}
	out, errs, code = walk(t, "job", "start", fp, j.ReplicationJobID)
	runID := regexp.MustCompile(`sms-run-[0-9a-f]+`).FindString(out)
	if code != 0 || runID == "" {
		t.Fatalf("job start: %d %s %s", code, out, errs)
	}
	out, errs, code = walk(t, "run", "watch", fp, "--interval", "100ms", runID)
	if code != 0 || !regexp.MustCompile(`COMPLETED: AMI ami-[0-9a-f]+`).MatchString(out) || !strings.Contains(out, "disk 1 [") {
		t.Fatalf("run watch: %d\n%s\n%s", code, out, errs)
	}
	t.Logf("run watch:\n%s", out)
	out, _, code = walk(t, "run", "list", fp, "--job", j.ReplicationJobID)
	if code != 0 || !strings.Contains(out, "STARTED") || !strings.Contains(out, "ENDED") || !strings.Contains(out, "COMPLETED") ||
		len(regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d`).FindAllString(out, -1)) < 3 {
		t.Errorf("run list shows no start and end times: %s", out)
	}
	if out, errs, code := walk(t, "connector", "status", fp); code != 0 || !strings.Contains(out, "healthy") {
		t.Errorf("connector status: %d %s %s", code, out, errs)
	}
	if _, errs, code := walk(t, "job", "start", fp); code != 2 || !strings.Contains(errs, "usage:") {
		t.Errorf("job start without a job: exit %d, %s", code, errs)
	}
	if _, errs, code := walk(t, "job", "create", fp, "--server", "db-01", "--frequency", "25"); code != 1 || !strings.Contains(errs, "1 to 24") {
		t.Errorf("frequency 25: exit %d, %s", code, errs)
	}

	// A second source on the same vCenter: every VM name now has two
	// servers, and a name is refused with both candidates.
	si := c.Peers.SourceInput()
	t.Setenv("REHOST_SOURCE_PASSWORD", si.Password)
	if _, errs, code := walk(t, "source", "add", fp, "--name", "vc2", "--url", si.URL, "--user", si.User, "--thumbprint", si.Thumbprint); code != 0 {
		t.Fatalf("source add: %s", errs)
	}
	if _, errs, code := walk(t, "server", "import", fp, "--source", "vc2"); code != 0 {
		t.Fatalf("server import: %s", errs)
	}
	_, errs, code = walk(t, "job", "create", fp, "--server", "web-01")
	if code != 1 || !strings.Contains(errs, "2 servers are named") || !strings.Contains(errs, "source vcenter") || !strings.Contains(errs, "source vc2") {
		t.Errorf("ambiguous name: %d %s", code, errs)
	}
	out, _, _ = walk(t, "source", "list", fp, "--json")
	if strings.Contains(out, si.Password) || !strings.Contains(out, "vc2") {
		t.Errorf("source list: %s", out)
	}

	// rehost login saves the endpoint, the pin and the key.
	t.Setenv("REHOST_SECRET_ACCESS_KEY", c.Key.Secret)
	if out, errs, code := walk(t, "login", "--endpoint", c.URL, "--access-key-id", c.Key.ID, fp); code != 0 {
		t.Fatalf("login: %d %s %s", code, out, errs)
	}
	st, err := os.Stat(os.Getenv("REHOST_LOGIN_FILE"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("login file: %v %v", st, err)
	}
	for _, k := range []string{"REHOST_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	if out, errs, code := walk(t, "job", "list"); code != 0 || !strings.Contains(out, j.ReplicationJobID) {
		t.Errorf("job list after login: %d %s %s", code, out, errs)
	}
}
