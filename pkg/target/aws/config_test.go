package aws

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadConfigCredentialChain(t *testing.T) {
	dir := t.TempDir()
	cfgFile, credFile := filepath.Join(dir, "config"), filepath.Join(dir, "credentials")
	os.WriteFile(cfgFile, []byte("[profile keys]\nregion = eu-west-3\n[profile sso]\nsso_start_url = https://example.awsapps.com/start\nsso_account_id = 111122223333\nsso_role_name = r\nsso_region = eu-west-1\n[profile norole]\nrole_arn = arn:aws:iam::111122223333:role/x\n"), 0o600)
	os.WriteFile(credFile, []byte("[keys]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = secretprofile\n"), 0o600)
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", cfgFile)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", credFile)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secretenv")
	ctx := context.Background()

	key := func(region, profile string) (string, string) {
		t.Helper()
		ac, err := LoadConfig(ctx, region, profile, nil)
		if err != nil {
			t.Fatalf("LoadConfig(%q, %q): %v", region, profile, err)
		}
		c, err := ac.Credentials.Retrieve(ctx)
		if err != nil {
			t.Fatalf("Retrieve(%q): %v", profile, err)
		}
		return c.AccessKeyID, ac.Region
	}
	if id, _ := key("us-east-1", ""); id != "AKIDENV" {
		t.Errorf("no profile named: key %s, want the environment's", id)
	}
	if id, region := key("", "keys"); id != "AKIDPROFILE" || region != "eu-west-3" {
		t.Errorf("profile keys: key %s region %s, want AKIDPROFILE eu-west-3", id, region)
	}
	for profile, want := range map[string]string{"sso": "IAM Identity Center (SSO)", "norole": "needs a source_profile", "absent": `profile "absent"`} {
		if _, err := LoadConfig(ctx, "", profile, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("profile %s: error %v, want one saying %q", profile, err, want)
		}
	}
}
