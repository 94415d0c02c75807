package aws

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// LoadConfig builds the SDK configuration the connector uses, without the
// SDK's LoadDefaultConfig (whose chain links the SSO, SSO-OIDC and sign-in
// clients, about 1.4 MB of the binary). The region is region, else
// AWS_REGION, else the profile's. The credentials are the first of:
//   - static, when not nil (the keys the connector stores);
//   - AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN), unless
//     a profile is named;
//   - the profile (profile, else AWS_PROFILE, else "default") of the shared
//     credentials and config files: its static keys, or its role_arn assumed
//     with its source_profile's keys (chained) or its credential_source
//     (Environment, Ec2InstanceMetadata);
//   - the EC2 instance role, through the instance metadata service.
//
// IAM Identity Center (SSO) profiles, credential_process and web identity
// profiles are not read: a named profile that relies on one is an error
// saying so. The SDK's own retries are off (every caller retries under
// pkg/retry).
func LoadConfig(ctx context.Context, region, profile string, o LoadOptions) (sdk.Config, error) {
	env, err := config.NewEnvConfig()
	if err != nil {
		return sdk.Config{}, fmt.Errorf("load aws configuration: %w", err)
	}
	ac := sdk.Config{
		Region:       cmp.Or(region, env.Region),
		Retryer:      func() sdk.Retryer { return sdk.NopRetryer{} },
		BaseEndpoint: nilIfEmpty(env.BaseEndpoint),
		Credentials:  o.Static,
		HTTPClient:   o.HTTPClient,
	}
	named := profile != ""
	if o.Static == nil && !named && env.Credentials.HasKeys() {
		ac.Credentials = credentials.StaticCredentialsProvider{Value: env.Credentials}
	}
	if ac.Credentials != nil && ac.Region != "" {
		return ac, nil
	}
	name := cmp.Or(profile, env.SharedConfigProfile, "default")
	sc, err := config.LoadSharedConfigProfile(ctx, name, func(o *config.LoadSharedConfigOptions) {
		if env.SharedConfigFile != "" { // AWS_CONFIG_FILE
			o.ConfigFiles = []string{env.SharedConfigFile}
		}
		if env.SharedCredentialsFile != "" { // AWS_SHARED_CREDENTIALS_FILE
			o.CredentialsFiles = []string{env.SharedCredentialsFile}
		}
	})
	var missing config.SharedConfigProfileNotExistError
	switch {
	case err == nil:
		ac.Region = cmp.Or(ac.Region, sc.Region)
	case errors.As(err, &missing) && !named && env.SharedConfigProfile == "":
		// No files or no default profile: the instance role is next.
	default:
		return sdk.Config{}, fmt.Errorf("load aws configuration: profile %q: %w", name, err)
	}
	if ac.Credentials != nil {
		return ac, nil
	}
	if err == nil {
		if ac.Credentials, err = profileCredentials(ac, o, env, &sc); err != nil {
			return sdk.Config{}, fmt.Errorf("load aws configuration: %w", err)
		}
	}
	if ac.Credentials == nil {
		ac.Credentials = sdk.NewCredentialsCache(ec2rolecreds.New())
	}
	return ac, nil
}

// profileCredentials is what a shared-config profile gives: its keys, or
// its role assumed with its source's credentials; nil when the profile
// holds no credentials at all (the default profile with a region only).
func profileCredentials(ac sdk.Config, o LoadOptions, env config.EnvConfig, sc *config.SharedConfig) (sdk.CredentialsProvider, error) {
	if sc.RoleARN == "" {
		switch {
		case sc.Credentials.HasKeys():
			return credentials.StaticCredentialsProvider{Value: sc.Credentials}, nil
		case sc.SSOSessionName != "" || sc.SSOStartURL != "" || sc.SSOAccountID != "":
			return nil, fmt.Errorf("profile %q signs in with IAM Identity Center (SSO), which the connector does not read: give it access keys or a role_arn with a source_profile", sc.Profile)
		case sc.CredentialProcess != "" || sc.WebIdentityTokenFile != "":
			return nil, fmt.Errorf("profile %q uses credential_process or web_identity_token_file, which the connector does not read: give it access keys or a role_arn with a source_profile", sc.Profile)
		}
		return nil, nil
	}
	var base sdk.CredentialsProvider
	switch {
	case sc.Source != nil:
		b, err := profileCredentials(ac, o, env, sc.Source)
		if err != nil {
			return nil, err
		}
		if b == nil {
			return nil, fmt.Errorf("profile %q: its source_profile %q holds no access keys", sc.Profile, sc.Source.Profile)
		}
		base = b
	case sc.CredentialSource == "Environment" && env.Credentials.HasKeys():
		base = credentials.StaticCredentialsProvider{Value: env.Credentials}
	case sc.CredentialSource == "Ec2InstanceMetadata":
		base = sdk.NewCredentialsCache(ec2rolecreds.New())
	default:
		return nil, fmt.Errorf("profile %q: role_arn needs a source_profile with access keys or credential_source Environment or Ec2InstanceMetadata", sc.Profile)
	}
	ac.Credentials = base
	client := sts.NewFromConfig(ac, func(so *sts.Options) {
		if o.STSEndpoint != "" {
			so.BaseEndpoint = &o.STSEndpoint
		}
	})
	return sdk.NewCredentialsCache(stscreds.NewAssumeRoleProvider(client, sc.RoleARN, func(ro *stscreds.AssumeRoleOptions) {
		ro.RoleSessionName = cmp.Or(sc.RoleSessionName, "rehost-connector")
		if sc.ExternalID != "" {
			ro.ExternalID = sdk.String(sc.ExternalID)
		}
		if sc.RoleDurationSeconds != nil {
			ro.Duration = *sc.RoleDurationSeconds
		}
	})), nil
}

// LoadOptions are what LoadConfig takes besides the region and profile.
type LoadOptions struct {
	// Static, when not nil, are the credentials (the keys the connector
	// stores), ahead of every other source.
	Static sdk.CredentialsProvider
	// HTTPClient and STSEndpoint, when set, are what a profile's role is
	// assumed through: the connector's own trust and its STS endpoint
	// (the default: the SDK's client and the region's endpoint, or
	// AWS_ENDPOINT_URL).
	HTTPClient  sdk.HTTPClient
	STSEndpoint string
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
