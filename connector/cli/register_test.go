package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRegisterRefusesEndpointWithoutS3Endpoint(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	_, errs, code := walk(t, "register", "--state-dir", state, "--region", "us-east-1", "--aws-endpoint", "https://ec2.example")
	if code != 2 || !strings.Contains(errs, "--aws-endpoint needs --s3-endpoint") {
		t.Fatalf("exit %d: %s", code, errs)
	}
}

// Without credentials register says what to set, not what the instance
// metadata service answered.
func TestRegisterWithoutCredentials(t *testing.T) {
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(home, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(home, "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	state := filepath.Join(t.TempDir(), "state")
	_, errs, code := walk(t, "register", "--state-dir", state, "--region", "us-east-1")
	if code != 1 || !strings.Contains(errs, "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") || !strings.Contains(errs, "--aws-profile") ||
		strings.Contains(errs, "IMDS") {
		t.Fatalf("exit %d: %s", code, errs)
	}
}
