package api

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/smithy-go"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/limit"
	"github.com/rehost/rehost/pkg/awsregion"
)

// roleARN is the shape of an IAM role's ARN, in any partition.
var roleARN = regexp.MustCompile(`^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$`)

// member is an input member and the rules its value obeys.
type member struct {
	name  string
	field limit.Field
	value string
}

// checkMembers checks each member against its rules: the first one
// refused is an InvalidParameterException naming it.
func checkMembers(ms ...member) error {
	for _, m := range ms {
		if err := m.field.Check(m.value); err != nil {
			return invalidMember(m.name, err)
		}
	}
	return nil
}

// invalidMember is an InvalidParameterException about one member.
func invalidMember(name string, err error) *Error {
	e := Errorf(ErrInvalidParameter, "%v", err)
	e.Field = name
	return e
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func checkSourceInput(in *SourceInput) error {
	switch {
	case in.Name == "":
		return &Error{Type: ErrMissingRequiredParameter, Message: "name is required: how the console and the CLI call the source, e.g. vc1", Field: "name", Status: statusOf(ErrMissingRequiredParameter)}
	case in.URL == "":
		return &Error{Type: ErrMissingRequiredParameter, Message: "url is required", Field: "url", Status: statusOf(ErrMissingRequiredParameter)}
	case len(in.Options) > limit.SourceOptions.Max:
		return invalidMember("options", fmt.Errorf("source options: %d bytes, want at most %d", len(in.Options), limit.SourceOptions.Max))
	}
	return checkMembers(member{"name", limit.SourceName, in.Name}, member{"url", limit.SourceURL, in.URL},
		member{"user", limit.SourceUser, in.User}, member{"password", limit.SourceSecret, in.Password},
		member{"thumbprint", limit.SourceThumbprint, in.Thumbprint})
}

func checkSettings(s *daemon.AWSSettings) error {
	if err := awsregion.Check(s.Region); err != nil {
		return invalidMember("settings.region", err)
	}
	if s.AssumeRoleARN != "" && !roleARN.MatchString(s.AssumeRoleARN) {
		return invalidMember("settings.assumeRoleArn", fmt.Errorf("role ARN %q: not a role ARN; want one like arn:aws:iam::123456789012:role/rehost-connector", s.AssumeRoleARN))
	}
	return checkMembers(member{"settings.bucket", limit.Bucket, s.Bucket}, member{"settings.roleName", limit.RoleName, s.RoleName},
		member{"settings.kmsKeyId", limit.KMSKeyID, s.KMSKeyID}, member{"settings.accessKeyId", limit.AccessKeyID, s.AccessKeyID},
		member{"settings.secretAccessKey", limit.SecretKey, s.SecretAccessKey}, member{"settings.profile", limit.Profile, s.Profile},
		member{"settings.assumeRoleArn", limit.RoleARN, s.AssumeRoleARN}, member{"settings.externalId", limit.ExternalID, s.ExternalID},
		member{"settings.endpoint", limit.Endpoint, s.Endpoint}, member{"settings.s3Endpoint", limit.Endpoint, s.S3Endpoint},
		member{"settings.caPem", limit.CAPEM, string(s.CAPEM)})
}

// registerCauses say which setting a failed registration is about and, for
// AWS's error codes, what they mean in words. The first that matches
// applies: by the error code AWS answered, else by words of the message.
var registerCauses = []struct {
	member, words  string
	codes, phrases []string
}{
	{"settings.assumeRoleArn", "the role could not be assumed with these credentials", nil, []string{"assumerole"}},
	{"settings.secretAccessKey", "AWS refused the secret access key: it is not the secret of this access key id", []string{"SignatureDoesNotMatch"}, nil},
	{"settings.accessKeyId", "AWS does not know this access key id (a typing error, or a deleted key)", []string{"InvalidClientTokenId", "UnrecognizedClientException", "InvalidAccessKeyId"}, nil},
	{"settings.accessKeyId", "these credentials have expired", []string{"ExpiredToken", "ExpiredTokenException", "RequestExpired"}, nil},
	{"settings.caPem", "the endpoint's certificate is not trusted: give its CA certificate", nil, []string{"x509:", "certificate signed by unknown authority"}},
	{"settings.endpoint", "the endpoint cannot be reached", nil, []string{"no such host", "connection refused", "dial tcp", "i/o timeout"}},
	{"settings.kmsKeyId", "", []string{"KMS.NotFoundException", "NotFoundException", "KMSInvalidStateException"}, []string{"kms"}},
	{"settings.bucket", "", []string{"BucketAlreadyExists", "BucketAlreadyOwnedByYou", "InvalidBucketName"}, []string{"bucket"}},
	{"settings.roleName", "", nil, []string{"role "}},
}

// registerError is a failed registration's error, with the setting it is
// about and AWS's error code said in words where it has one.
func registerError(err error) *Error {
	e := Errorf(ErrInvalidParameter, "%v", err)
	code := ""
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	lower := strings.ToLower(e.Message)
	for _, c := range registerCauses {
		match := code != "" && slices.Contains(c.codes, code)
		for _, w := range c.phrases {
			match = match || strings.Contains(lower, w)
		}
		if match {
			e.Field = c.member
			if c.words != "" {
				e.Message = c.words + " (" + e.Message + ")"
			}
			return e
		}
	}
	return e
}
