package emulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// s3Reader reads staged disk objects from the S3 endpoint the import tasks
// name. The endpoint is reached with the configured keys (an S3 peer knows
// no role), so every call is first authorised against the import role's
// policies (importRole.may); the bucket's own policy is enforced by the S3
// peer itself.
type s3Reader struct {
	client *s3.Client
}

func newS3Reader(cfg Config) (*s3Reader, error) {
	awsCfg := aws.Config{
		Region:      cfg.Region,
		Credentials: credentials.NewStaticCredentialsProvider(cfg.S3AccessKey, cfg.S3SecretKey, ""),
	}
	if cfg.S3HTTPClient != nil {
		awsCfg.HTTPClient = cfg.S3HTTPClient
	}
	c := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(cfg.S3Endpoint)
		o.UsePathStyle = true
		o.RetryMaxAttempts = 2
	})
	return &s3Reader{client: c}, nil
}

// s3Status is the HTTP status of a failed S3 call, 0 when it is not an HTTP
// response error.
func s3Status(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// bucketRegion returns the bucket's region ("" location is us-east-1).
func (s *s3Reader) bucketRegion(ctx context.Context, bucket string) (string, error) {
	out, err := s.client.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(bucket)})
	if err != nil {
		return "", err
	}
	switch loc := string(out.LocationConstraint); loc {
	case "":
		return "us-east-1", nil
	case "EU":
		return "eu-west-1", nil
	default:
		return loc, nil
	}
}

type objectInfo struct {
	size int64
	sseC bool
	// sse is the object's server-side encryption (AES256, aws:kms) and
	// kmsKey the key of aws:kms.
	sse, kmsKey string
}

func (s *s3Reader) head(ctx context.Context, bucket, key string) (objectInfo, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return objectInfo{}, err
	}
	return objectInfo{size: aws.ToInt64(out.ContentLength), sseC: aws.ToString(out.SSECustomerAlgorithm) != "",
		sse: string(out.ServerSideEncryption), kmsKey: aws.ToString(out.SSEKMSKeyId)}, nil
}

// download copies the object into path and returns its size.
func (s *s3Reader) download(ctx context.Context, bucket, key, path string) (int64, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return 0, err
	}
	defer out.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, out.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("read object body: %w", err)
	}
	return n, nil
}

// parseS3URL splits s3://bucket/key (the form VM Import's Url takes for S3).
func parseS3URL(u string) (bucket, key string, ok bool) {
	rest, found := strings.CutPrefix(u, "s3://")
	if !found {
		return "", "", false
	}
	bucket, key, _ = strings.Cut(rest, "/")
	return bucket, key, bucket != "" && key != ""
}

// statusText is "403 Forbidden" for 403.
func statusText(code int) string {
	return fmt.Sprintf("%d %s", code, http.StatusText(code))
}
