package daemon

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go/logging"
)

// checkCredentials resolves the SDK's credential chain (environment,
// profile, SSO, web identity, container, instance role) as the daemon will,
// so that a machine with none gets told what to set rather than the SDK's
// last word, the instance metadata service's refusal.
func checkCredentials(ctx context.Context, region, profile string) error {
	opts := []func(*config.LoadOptions) error{config.WithRegion(region), config.WithLogger(logging.Nop{})}
	if profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(profile))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
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
		"(every source of the SDK's chain was tried; the last, the instance metadata service, did not answer with a role)")
}
