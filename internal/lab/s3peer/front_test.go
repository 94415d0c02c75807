package s3peer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func clientFor(s *Server, url, region, secret string) *s3.Client {
	return s3.New(s3.Options{Region: region, BaseEndpoint: aws.String(url), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKeyID, secret, ""),
		HTTPClient:  s.HTTPClient(), Retryer: aws.NopRetryer{}})
}

// signedRequest signs a request to the front with the SDK's signer at the
// given time, for the body bodyHash claims.
func signedRequest(t *testing.T, s *Server, method, path, body, bodyHash string, at time.Time) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("X-Amz-Content-Sha256", bodyHash)
	err = v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }).SignHTTP(context.Background(),
		aws.Credentials{AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey}, r, bodyHash, "s3", s.Region, at)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func s3ErrorCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_, rest, _ := strings.Cut(string(b), "<Code>")
	code, _, _ := strings.Cut(rest, "</Code>")
	return code
}

// The calls the front answers itself are verified as S3 verifies them.
func TestFrontChecksSignatures(t *testing.T) {
	s := Start(t, Options{TLS: true})
	ctx := context.Background()
	if _, err := s.S3Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bucket-sig")}); err != nil {
		t.Fatal(err)
	}
	enc := &s3.PutBucketEncryptionInput{Bucket: aws.String("bucket-sig"), ServerSideEncryptionConfiguration: &types.ServerSideEncryptionConfiguration{
		Rules: []types.ServerSideEncryptionRule{{ApplyServerSideEncryptionByDefault: &types.ServerSideEncryptionByDefault{SSEAlgorithm: types.ServerSideEncryptionAes256}}}}}
	_, err := clientFor(s, s.URL, s.Region, "wrong-secret").PutBucketEncryption(ctx, enc)
	if code := apiCode(err); code != "SignatureDoesNotMatch" {
		t.Fatalf("wrong secret: %q (%v)", code, err)
	}
	_, err = clientFor(s, s.URL, "eu-central-1", s.SecretAccessKey).PutBucketEncryption(ctx, enc)
	if code := apiCode(err); code != "AuthorizationHeaderMalformed" {
		t.Fatalf("wrong region: %q (%v)", code, err)
	}
	if s.Front.Config("bucket-sig", SubEncryption) != nil {
		t.Fatal("a refused request stored the encryption")
	}
	doc := `<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>`
	for _, c := range []struct {
		name, body, hash string
		at               time.Time
		want             string
	}{
		{"stale date", doc, hashOf(doc), time.Now().Add(-20 * time.Minute), "RequestTimeTooSkewed"},
		{"tampered body", strings.Replace(doc, "AES256", "aws:kms", 1), hashOf(doc), time.Now(), "XAmzContentSHA256Mismatch"},
		{"good", doc, hashOf(doc), time.Now(), ""},
	} {
		resp, err := s.HTTPClient().Do(signedRequest(t, s, "PUT", "/bucket-sig?encryption", c.body, c.hash, c.at))
		if err != nil {
			t.Fatal(err)
		}
		if code := s3ErrorCode(t, resp); code != c.want {
			t.Fatalf("%s: %d %q, want %q", c.name, resp.StatusCode, code, c.want)
		}
	}
	if got := string(s.Front.Config("bucket-sig", SubEncryption)); got != doc {
		t.Fatalf("stored %q", got)
	}
}

const denyInsecure = `{"Version":"2012-10-17","Statement":[{"Sid":"tls","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::bucket-tls","arn:aws:s3:::bucket-tls/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}`

// Plain HTTP to a bucket whose policy denies insecure transport is refused
// as S3 refuses it; TLS is not.
func TestFrontEnforcesBucketPolicy(t *testing.T) {
	s := Start(t, Options{TLS: true})
	if !strings.HasPrefix(s.PlainURL, "http://") {
		t.Fatalf("plain URL %q", s.PlainURL)
	}
	ctx := context.Background()
	tlsc, plain := s.S3Client(), clientFor(s, s.PlainURL, s.Region, s.SecretAccessKey)
	if _, err := tlsc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bucket-tls")}); err != nil {
		t.Fatal(err)
	}
	put := func(c *s3.Client, key string) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bucket-tls"), Key: aws.String(key), Body: strings.NewReader("data")})
		return err
	}
	if err := put(plain, "before"); err != nil {
		t.Fatalf("plain HTTP without a policy: %v", err)
	}
	_, err := tlsc.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String("bucket-tls"),
		Policy: aws.String(strings.Replace(denyInsecure, `"Bool"`, `"Boolish"`, 1))})
	if code := apiCode(err); code != "MalformedPolicy" {
		t.Fatalf("a policy with an unknown operator: %q (%v)", code, err)
	}
	if _, err := tlsc.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String("bucket-tls"), Policy: aws.String(denyInsecure)}); err != nil {
		t.Fatal(err)
	}
	if code := apiCode(put(plain, "after")); code != "AccessDenied" {
		t.Fatalf("plain HTTP PutObject: %q", code)
	}
	_, err = plain.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bucket-tls"), Key: aws.String("before")})
	if code := apiCode(err); code != "AccessDenied" {
		t.Fatalf("plain HTTP GetObject: %q", code)
	}
	_, err = clientFor(s, s.PlainURL, s.Region, "wrong").GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bucket-tls"), Key: aws.String("before")})
	if code := apiCode(err); code != "SignatureDoesNotMatch" {
		t.Fatalf("plain HTTP with a bad signature is refused for its signature first: %q", code)
	}
	if err := put(tlsc, "after"); err != nil {
		t.Fatalf("TLS PutObject: %v", err)
	}
	// The account root keeps the policy calls, even over plain HTTP.
	if _, err := plain.DeleteBucketPolicy(ctx, &s3.DeleteBucketPolicyInput{Bucket: aws.String("bucket-tls")}); err != nil {
		t.Fatalf("delete the policy: %v", err)
	}
	if err := put(plain, "again"); err != nil {
		t.Fatalf("plain HTTP once the policy is gone: %v", err)
	}
}

// Objects report the encryption asked at upload, else the bucket default.
func TestFrontReportsEncryption(t *testing.T) {
	s := Start(t, Options{})
	ctx := context.Background()
	c := s.S3Client()
	b := aws.String("bucket-sse")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: b}); err != nil {
		t.Fatal(err)
	}
	head := func(key string) (types.ServerSideEncryption, string) {
		t.Helper()
		h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: b, Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		g, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: b, Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		g.Body.Close()
		if g.ServerSideEncryption != h.ServerSideEncryption || aws.ToString(g.SSEKMSKeyId) != aws.ToString(h.SSEKMSKeyId) {
			t.Fatalf("%s: GET reports %q/%q, HEAD %q/%q", key, g.ServerSideEncryption, aws.ToString(g.SSEKMSKeyId), h.ServerSideEncryption, aws.ToString(h.SSEKMSKeyId))
		}
		return h.ServerSideEncryption, aws.ToString(h.SSEKMSKeyId)
	}
	c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String("plain"), Body: strings.NewReader("x")})
	if alg, _ := head("plain"); alg != "" {
		t.Fatalf("no encryption anywhere, yet %q reported", alg)
	}
	if _, err := c.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: b, ServerSideEncryptionConfiguration: &types.ServerSideEncryptionConfiguration{
		Rules: []types.ServerSideEncryptionRule{{ApplyServerSideEncryptionByDefault: &types.ServerSideEncryptionByDefault{
			SSEAlgorithm: types.ServerSideEncryptionAwsKms, KMSMasterKeyID: aws.String("arn:aws:kms:us-east-1:111122223333:key/k1")}, BucketKeyEnabled: aws.Bool(true)}}}}); err != nil {
		t.Fatal(err)
	}
	if alg, key := head("plain"); alg != types.ServerSideEncryptionAwsKms || key != "arn:aws:kms:us-east-1:111122223333:key/k1" {
		t.Fatalf("bucket default: %q %q", alg, key)
	}
	out, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String("aes"), Body: strings.NewReader("x"), ServerSideEncryption: types.ServerSideEncryptionAes256})
	if err != nil || out.ServerSideEncryption != types.ServerSideEncryptionAes256 {
		t.Fatalf("put with AES256: %v %q", err, out.ServerSideEncryption)
	}
	if alg, _ := head("aes"); alg != types.ServerSideEncryptionAes256 {
		t.Fatalf("object asked for AES256 reports %q", alg)
	}
	mp, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: b, Key: aws.String("mp"),
		ServerSideEncryption: types.ServerSideEncryptionAwsKms, SSEKMSKeyId: aws.String("arn:aws:kms:us-east-1:111122223333:key/k2")})
	if err != nil || aws.ToString(mp.SSEKMSKeyId) != "arn:aws:kms:us-east-1:111122223333:key/k2" {
		t.Fatalf("create multipart upload: %v %+v", err, mp)
	}
	part, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: b, Key: aws.String("mp"), UploadId: mp.UploadId, PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("part"))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: b, Key: aws.String("mp"), UploadId: mp.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{ETag: part.ETag, PartNumber: aws.Int32(1)}}}}); err != nil {
		t.Fatal(err)
	}
	if alg, key := head("mp"); alg != types.ServerSideEncryptionAwsKms || key != "arn:aws:kms:us-east-1:111122223333:key/k2" {
		t.Fatalf("multipart object: %q %q", alg, key)
	}
}

// A lifecycle rule expires objects and aborts uploads under its prefix
// when the clock passes their day, and nothing else.
func TestFrontLifecycle(t *testing.T) {
	s := Start(t, Options{})
	ctx := context.Background()
	c := s.S3Client()
	b := aws.String("bucket-life")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: b}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{Bucket: b,
		LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: []types.LifecycleRule{{
			ID: aws.String("staging"), Status: types.ExpirationStatusEnabled,
			Filter:                         &types.LifecycleRuleFilter{Prefix: aws.String("rehost/")},
			Expiration:                     &types.LifecycleExpiration{Days: aws.Int32(7)},
			AbortIncompleteMultipartUpload: &types.AbortIncompleteMultipartUpload{DaysAfterInitiation: aws.Int32(1)},
		}}}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rehost/j/r/disk-0.vmdk", "keep/other"} {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String(k), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: b, Key: aws.String(k + ".part")}); err != nil {
			t.Fatal(err)
		}
	}
	sw, err := s.Front.Advance(ctx, 2*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(sw.Expired) != 0 || len(sw.Aborted) != 1 || !strings.HasPrefix(sw.Aborted[0], "bucket-life/rehost/j/r/disk-0.vmdk.part#") {
		t.Fatalf("after 2 days: %+v", sw)
	}
	// The same clock is reachable from another process.
	resp, err := http.Post(s.PlainURL+"/_s3peer/clock?advance=144h", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	st, err := FetchState(ctx, nil, s.PlainURL)
	if err != nil {
		t.Fatal(err)
	}
	var bs BucketState
	for _, x := range st.Buckets {
		if x.Name == "bucket-life" {
			bs = x
		}
	}
	if len(bs.Objects) != 1 || bs.Objects[0].Key != "keep/other" || len(bs.Uploads) != 1 || bs.Uploads[0].Key != "keep/other.part" || !bs.Lifecycle {
		t.Fatalf("after 8 days: %+v", bs)
	}
}
