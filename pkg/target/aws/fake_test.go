package aws

import (
	"context"
	"strings"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// fakeS3 answers only what the region check needs; any other call panics
// through the nil embedded interface, which would show as a test failure.
type fakeS3 struct {
	S3API
	location string
	headErr  error
	created  int
}

func (f *fakeS3) HeadBucket(context.Context, *s3.HeadBucketInput, ...func(*s3.Options)) (*s3.HeadBucketOutput, error) {
	return &s3.HeadBucketOutput{}, f.headErr
}

func (f *fakeS3) GetBucketLocation(context.Context, *s3.GetBucketLocationInput, ...func(*s3.Options)) (*s3.GetBucketLocationOutput, error) {
	return &s3.GetBucketLocationOutput{LocationConstraint: types.BucketLocationConstraint(f.location)}, nil
}

func (f *fakeS3) CreateBucket(context.Context, *s3.CreateBucketInput, ...func(*s3.Options)) (*s3.CreateBucketOutput, error) {
	f.created++
	return nil, &smithy.GenericAPIError{Code: "BucketAlreadyExists", Message: "taken"}
}

type fakeSTS struct{}

func (fakeSTS) GetCallerIdentity(context.Context, *sts.GetCallerIdentityInput, ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error) {
	return &sts.GetCallerIdentityOutput{Account: sdk.String("111122223333")}, nil
}

func TestSetupRefusesBucketElsewhere(t *testing.T) {
	for _, c := range []struct {
		location, region, want string
	}{
		{"", "eu-west-1", "bucket is in us-east-1 but imports run in eu-west-1"},
		{"EU", "eu-central-1", "bucket is in eu-west-1 but imports run in eu-central-1"},
	} {
		tg := NewWithClients(Config{Region: c.region}, Clients{S3: &fakeS3{location: c.location}, STS: fakeSTS{}})
		_, err := tg.Setup(context.Background(), SetupOptions{Bucket: "b"})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("location %q region %s: %v", c.location, c.region, err)
		}
	}
	f := &fakeS3{headErr: &smithy.GenericAPIError{Code: "NotFound"}}
	tg := NewWithClients(Config{Region: "us-east-1"}, Clients{S3: f, STS: fakeSTS{}})
	_, err := tg.Setup(context.Background(), SetupOptions{})
	if err == nil || !strings.Contains(err.Error(), "rehost-staging-111122223333-us-east-1") ||
		!strings.Contains(err.Error(), "taken by another account") || f.created != 1 {
		t.Errorf("name taken: %v", err)
	}
	if _, err := tg.Setup(context.Background(), SetupOptions{KMSKeyID: "alias/x"}); err == nil || !strings.Contains(err.Error(), "not an alias") {
		t.Errorf("alias key: %v", err)
	}
}
