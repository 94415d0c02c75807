package aws

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/rehost/rehost/internal/lab/emulator"
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
		ac, err := LoadConfig(ctx, region, profile, LoadOptions{})
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
		if _, err := LoadConfig(ctx, "", profile, LoadOptions{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("profile %s: error %v, want one saying %q", profile, err, want)
		}
	}
}

// A profile's role_arn is assumed with its source_profile's keys through
// the connector's STS endpoint (not the region's public one), and every
// client then signs as the role with the session's token; a trust policy
// the request does not satisfy is refused by STS, and the error says so.
func TestProfileRoleAssumedThroughSTSEndpoint(t *testing.T) {
	emu, err := emulator.New(emulator.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	base, err := emu.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	ctx := context.Background()
	ak, sk := emu.Credentials()
	admin := iam.NewFromConfig(sdk.Config{Region: emu.Region(), Credentials: credentials.NewStaticCredentialsProvider(ak, sk, ""), RetryMaxAttempts: 1},
		func(o *iam.Options) { o.BaseEndpoint = sdk.String(base) })
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + emu.AccountID() +
		`:root"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"wave-1"}}}]}`
	role, err := admin.CreateRole(ctx, &iam.CreateRoleInput{RoleName: sdk.String("deployer"), AssumeRolePolicyDocument: sdk.String(trust)})
	if err != nil {
		t.Fatal(err)
	}
	arn := sdk.ToString(role.Role.Arn)

	dir := t.TempDir()
	cfgFile, credFile := filepath.Join(dir, "config"), filepath.Join(dir, "credentials")
	os.WriteFile(cfgFile, []byte("[profile deploy]\nrole_arn = "+arn+"\nsource_profile = keys\nexternal_id = wave-1\n"+
		"[profile noext]\nrole_arn = "+arn+"\nsource_profile = keys\n"), 0o600)
	os.WriteFile(credFile, []byte("[keys]\naws_access_key_id = "+ak+"\naws_secret_access_key = "+sk+"\n"), 0o600)
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
		"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", cfgFile)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", credFile)

	target := func(profile string) *Target {
		tg, err := New(ctx, Config{Region: emu.Region(), Profile: profile,
			Endpoints: Endpoints{EC2: base, IAM: base, STS: base, EBS: base}, RetryBaseDelay: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return tg
	}
	tg := target("deploy")
	id, err := tg.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity as the profile's role: %v", err)
	}
	if want := "arn:aws:sts::" + emu.AccountID() + ":assumed-role/deployer/rehost-connector"; sdk.ToString(id.Arn) != want {
		t.Errorf("caller %s, want %s", sdk.ToString(id.Arn), want)
	}
	// The session's token is accepted by the other services too.
	if err := tg.CheckEBSDirect(ctx); err != nil {
		t.Errorf("EBS direct with the role's session: %v", err)
	}
	// The registration's --assume-role with stored keys goes the same way.
	reg, err := New(ctx, Config{Region: emu.Region(), AccessKeyID: ak, SecretAccessKey: sk, AssumeRoleARN: arn, ExternalID: "wave-1",
		Endpoints: Endpoints{EC2: base, IAM: base, STS: base, EBS: base}, RetryBaseDelay: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := reg.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil || !strings.Contains(sdk.ToString(id.Arn), ":assumed-role/deployer/") {
		t.Errorf("stored keys with AssumeRoleARN: %v", err)
	}
	_, err = target("noext").sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err == nil || !strings.Contains(err.Error(), "not authorized to perform: sts:AssumeRole") {
		t.Errorf("a role whose trust wants an external id, assumed without one: %v", err)
	}
}
