package s3peer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

func noRetry(o *s3.Options) { o.Retryer = aws.NopRetryer{} }

func TestServerTLSFrontRoundTrip(t *testing.T) {
	s := Start(t, Options{TLS: true})
	if !strings.HasPrefix(s.URL, "https://") || s.URL == s.BackendURL {
		t.Fatalf("URL %q should be the TLS front, backend %q", s.URL, s.BackendURL)
	}
	ctx := context.Background()
	c := s.S3Client()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bucket-one")}); err != nil {
		t.Fatalf("create bucket through the front (signature over Host): %v", err)
	}

	// A multipart upload with SDK-computed CRC32C trailing checksums
	// (aws-chunked over TLS) must arrive intact through the front.
	rng := rand.New(rand.NewPCG(1, 2))
	part1 := make([]byte, 5<<20)
	for i := range part1 {
		part1[i] = byte(rng.Uint32())
	}
	part2 := []byte("tail of the object")
	mp, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String("bucket-one"), Key: aws.String("dir/obj"), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
	})
	if err != nil {
		t.Fatalf("create multipart upload: %v", err)
	}
	var parts []types.CompletedPart
	for i, body := range [][]byte{part1, part2} {
		out, err := c.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String("bucket-one"), Key: aws.String("dir/obj"), UploadId: mp.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(body),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		})
		if err != nil {
			t.Fatalf("upload part %d: %v", i+1, err)
		}
		if aws.ToString(out.ChecksumCRC32C) == "" {
			t.Fatalf("part %d: server returned no CRC32C", i+1)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1)), ChecksumCRC32C: out.ChecksumCRC32C})
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String("bucket-one"), Key: aws.String("dir/obj"), UploadId: mp.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}); err != nil {
		t.Fatalf("complete: %v", err)
	}
	got, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bucket-one"), Key: aws.String("dir/obj")})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	data, err := io.ReadAll(got.Body)
	got.Body.Close()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	want := sha256.Sum256(append(append([]byte(nil), part1...), part2...))
	if sha256.Sum256(data) != want {
		t.Fatalf("object content differs from what was uploaded (%d bytes back)", len(data))
	}
	if n := s.Front.Count("UploadPart"); n != 2 {
		t.Fatalf("front counted %d UploadPart, want 2", n)
	}
	for _, r := range s.Front.Requests() {
		if r.Op == "UploadPart" && !strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") &&
			r.Header.Get("X-Amz-Trailer") == "" {
			t.Errorf("UploadPart %s was not sent with a trailing checksum over TLS: %v", r.PartNumber, r.Header)
		}
	}
}

func TestFrontRecordsEncryptionAndLifecycle(t *testing.T) {
	s := Start(t, Options{})
	ctx := context.Background()
	c := s.S3Client()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bucket-two")}); err != nil {
		t.Fatal(err)
	}
	_, err := c.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String("bucket-two")})
	if code := apiCode(err); code != "ServerSideEncryptionConfigurationNotFoundError" {
		t.Fatalf("get absent encryption: code %q (%v)", code, err)
	}
	_, err = c.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: aws.String("bucket-two")})
	if code := apiCode(err); code != "NoSuchLifecycleConfiguration" {
		t.Fatalf("get absent lifecycle: code %q (%v)", code, err)
	}
	if _, err := c.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{
		Bucket: aws.String("bucket-two"),
		ServerSideEncryptionConfiguration: &types.ServerSideEncryptionConfiguration{Rules: []types.ServerSideEncryptionRule{{
			ApplyServerSideEncryptionByDefault: &types.ServerSideEncryptionByDefault{
				SSEAlgorithm: types.ServerSideEncryptionAwsKms, KMSMasterKeyID: aws.String("key-1"),
			},
			BucketKeyEnabled: aws.Bool(true),
		}}},
	}); err != nil {
		t.Fatalf("put encryption: %v", err)
	}
	enc, err := c.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String("bucket-two")})
	if err != nil {
		t.Fatalf("get encryption: %v", err)
	}
	rule := enc.ServerSideEncryptionConfiguration.Rules[0]
	if rule.ApplyServerSideEncryptionByDefault.SSEAlgorithm != types.ServerSideEncryptionAwsKms ||
		aws.ToString(rule.ApplyServerSideEncryptionByDefault.KMSMasterKeyID) != "key-1" || !aws.ToBool(rule.BucketKeyEnabled) {
		t.Fatalf("encryption read back differs: %+v", rule)
	}
	if _, err := c.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{
		Bucket: aws.String("bucket-two"),
		LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: []types.LifecycleRule{{
			ID: aws.String("r1"), Status: types.ExpirationStatusEnabled,
			Filter:     &types.LifecycleRuleFilter{Prefix: aws.String("")},
			Expiration: &types.LifecycleExpiration{Days: aws.Int32(7)},
		}}},
	}); err != nil {
		t.Fatalf("put lifecycle: %v", err)
	}
	lc, err := c.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: aws.String("bucket-two")})
	if err != nil {
		t.Fatalf("get lifecycle: %v", err)
	}
	if len(lc.Rules) != 1 || aws.ToString(lc.Rules[0].ID) != "r1" || aws.ToInt32(lc.Rules[0].Expiration.Days) != 7 {
		t.Fatalf("lifecycle read back differs: %+v", lc.Rules)
	}
	if !bytes.Contains(s.Front.Config("bucket-two", SubLifecycle), []byte("<Days>7</Days>")) {
		t.Fatalf("front did not record the lifecycle XML: %s", s.Front.Config("bucket-two", SubLifecycle))
	}
	if _, err := c.DeleteBucketLifecycle(ctx, &s3.DeleteBucketLifecycleInput{Bucket: aws.String("bucket-two")}); err != nil {
		t.Fatal(err)
	}
	if s.Front.Config("bucket-two", SubLifecycle) != nil {
		t.Fatal("lifecycle still recorded after delete")
	}
	_, err = c.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String("nope")})
	if code := apiCode(err); code != "NoSuchBucket" {
		t.Fatalf("encryption of a missing bucket: code %q (%v)", code, err)
	}
}

func TestFrontInjectsFaults(t *testing.T) {
	s := Start(t, Options{TLS: true})
	ctx := context.Background()
	c := s.S3Client()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bucket-three")}); err != nil {
		t.Fatal(err)
	}
	s.Front.Inject("PutObject", 1, Fail500)
	s.Front.Inject("PutObject", 2, DropAfter(1<<20))
	body := bytes.Repeat([]byte("x"), 3<<20)
	put := func() error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bucket-three"), Key: aws.String("k"), Body: bytes.NewReader(body)}, noRetry)
		return err
	}
	if err := put(); apiCode(err) != "InternalError" {
		t.Fatalf("first put: want InternalError, got %v", err)
	}
	if err := put(); err == nil || apiCode(err) != "" {
		t.Fatalf("second put: want a connection error, got %v", err)
	}
	if err := put(); err != nil {
		t.Fatalf("third put: %v", err)
	}
	if n := s.Front.Count("PutObject"); n != 3 {
		t.Fatalf("count %d, want 3", n)
	}
	reqs := s.Front.Requests()
	faulted := 0
	for _, r := range reqs {
		if r.Faulted {
			faulted++
		}
	}
	if faulted != 2 {
		t.Fatalf("%d faulted requests recorded, want 2", faulted)
	}
}

func TestPolicyPassesThroughAndPublicAccessBlockIsRecorded(t *testing.T) {
	s := Start(t, Options{TLS: true})
	ctx := context.Background()
	c := s.S3Client()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bucket-four")}); err != nil {
		t.Fatal(err)
	}
	pol := `{"Version":"2012-10-17","Statement":[{"Sid":"x","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::bucket-four","arn:aws:s3:::bucket-four/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}`
	if _, err := c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String("bucket-four"), Policy: aws.String(pol)}); err != nil {
		t.Fatalf("put policy: %v", err)
	}
	got, err := c.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String("bucket-four")})
	if err != nil {
		t.Fatalf("get policy: %v", err)
	}
	if !strings.Contains(aws.ToString(got.Policy), `"aws:SecureTransport":"false"`) {
		t.Fatalf("policy read back from versitygw differs: %s", aws.ToString(got.Policy))
	}
	if s.Front.Count("PutBucketPolicy") != 1 {
		t.Fatalf("policy PUT not seen by the front")
	}
	if _, err := c.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{Bucket: aws.String("bucket-four"),
		PublicAccessBlockConfiguration: &types.PublicAccessBlockConfiguration{
			BlockPublicAcls: aws.Bool(true), BlockPublicPolicy: aws.Bool(true), IgnorePublicAcls: aws.Bool(true), RestrictPublicBuckets: aws.Bool(false)}}); err != nil {
		t.Fatalf("put public access block: %v", err)
	}
	pab, err := c.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: aws.String("bucket-four")})
	if err != nil {
		t.Fatalf("get public access block: %v", err)
	}
	cfg := pab.PublicAccessBlockConfiguration
	if !aws.ToBool(cfg.BlockPublicAcls) || !aws.ToBool(cfg.BlockPublicPolicy) || !aws.ToBool(cfg.IgnorePublicAcls) || aws.ToBool(cfg.RestrictPublicBuckets) {
		t.Fatalf("public access block read back differs: %+v", cfg)
	}
	// SSE request headers are accepted by versitygw (it stores data unencrypted).
	if _, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("bucket-four"), Key: aws.String("k"),
		ServerSideEncryption: types.ServerSideEncryptionAwsKms, SSEKMSKeyId: aws.String("k1"), BucketKeyEnabled: aws.Bool(true)}); err != nil {
		t.Fatalf("create multipart upload with SSE-KMS headers: %v", err)
	}
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// rehost sends requests signed for one host to another, as a front that
// did not keep the Host header would.
type rehost struct {
	to string
	rt http.RoundTripper
}

func (r rehost) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.Host, req.Host = r.to, ""
	return r.rt.RoundTrip(req)
}

// TestVersitygwChecksSignedHost shows why the front must forward the Host
// header the client signed.
func TestVersitygwChecksSignedHost(t *testing.T) {
	s := Start(t, Options{})
	backend, _ := url.Parse(s.BackendURL)
	c := s3.New(s3.Options{Region: s.Region, BaseEndpoint: aws.String(s.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKeyID, s.SecretAccessKey, ""),
		HTTPClient:  &http.Client{Transport: rehost{to: backend.Host, rt: s.HTTPClient().Transport}}})
	_, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("bucket-five")}, noRetry)
	if code := apiCode(err); code != "SignatureDoesNotMatch" {
		t.Fatalf("a request signed for the front's host sent with another Host: got %q (%v), want SignatureDoesNotMatch", code, err)
	}
}
