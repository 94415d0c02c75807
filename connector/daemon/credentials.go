package daemon

import (
	"context"
	"fmt"

	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// checkCredentials resolves the credential chain (environment, profile,
// instance role; see awstarget.LoadConfig) as the daemon will,
// so that a machine with none gets told what to set rather than the SDK's
// last word, the instance metadata service's refusal. A profile's role is
// assumed through stsEndpoint when set (the registration's endpoint).
func checkCredentials(ctx context.Context, region, profile, stsEndpoint string) error {
	cfg, err := awstarget.LoadConfig(ctx, region, profile, awstarget.LoadOptions{STSEndpoint: stsEndpoint})
	if err == nil {
		_, err = cfg.Credentials.Retrieve(ctx)
	}
	if err == nil {
		return nil
	}
	if profile != "" {
		return fmt.Errorf("no AWS credentials in profile %q: check ~/.aws/config and ~/.aws/credentials (%v)", profile, err)
	}
	return fmt.Errorf("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN for temporary keys), " +
		"or name a profile of ~/.aws/config with --aws-profile or AWS_PROFILE, or run on an EC2 instance with a role " +
		"(every source of the chain was tried; the last, the instance metadata service, did not answer with a role)")
}
