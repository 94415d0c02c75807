package s3peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func sinkClient(t *testing.T, s *Sink, secret string) *s3.Client {
	t.Helper()
	pem, err := os.ReadFile(s.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return s3.New(s3.Options{Region: s.Region, BaseEndpoint: aws.String(s.URL), UsePathStyle: true,
		HTTPClient: &http.Client{Transport: tr}, RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKeyID, secret, "")})
}

func crc32c(b []byte) string {
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	return base64.StdEncoding.EncodeToString(c[:])
}

// The SDK's multipart uploader streams a body of unknown length into the
// sink with CRC32C trailers (aws-chunked); the sink checks each part's
// checksum, keeps the object's size and composite checksum, and counts the
// payload and the wire.
func TestSinkTakesAMultipartUploadAndCountsIt(t *testing.T) {
	s := StartSink(t)
	c := sinkClient(t, s, s.SecretAccessKey)
	ctx := context.Background()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("b")}); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 23<<20)
	rand.NewChaCha8([32]byte{1}).Read(data)
	up := manager.NewUploader(c, func(u *manager.Uploader) { u.PartSize, u.Concurrency = 5<<20, 2 })
	out, err := up.Upload(ctx, &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("dir/disk.raw"),
		Body: io.MultiReader(bytes.NewReader(data)), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		ServerSideEncryption: types.ServerSideEncryptionAes256})
	if err != nil {
		t.Fatal(err)
	}
	// The composite checksum is the CRC32C of the parts' CRC32Cs.
	comp := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	for off := 0; off < len(data); off += 5 << 20 {
		b, _ := base64.StdEncoding.DecodeString(crc32c(data[off:min(off+5<<20, len(data))]))
		comp.Write(b)
	}
	if want := base64.StdEncoding.EncodeToString(comp.Sum(nil)) + "-5"; aws.ToString(out.ChecksumCRC32C) != want {
		t.Errorf("composite checksum %q, want %q", aws.ToString(out.ChecksumCRC32C), want)
	}
	h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("dir/disk.raw")})
	if err != nil || aws.ToInt64(h.ContentLength) != int64(len(data)) {
		t.Fatalf("head: %v, %d bytes, want %d", err, aws.ToInt64(h.ContentLength), len(data))
	}
	if got := s.PayloadBytes(); got != int64(len(data)) {
		t.Errorf("payload %d bytes, want %d", got, len(data))
	}
	if got := s.WireBytes(); got < int64(len(data)) || got > int64(len(data))+1<<20 {
		t.Errorf("wire %d bytes for a payload of %d", got, len(data))
	}
	l, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("b"), Prefix: aws.String("dir/")})
	if err != nil || len(l.Contents) != 1 || aws.ToString(l.Contents[0].Key) != "dir/disk.raw" {
		t.Fatalf("list: %v %+v", err, l)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("b"), Key: aws.String("dir/disk.raw")}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.ObjectSize("b", "dir/disk.raw"); ok {
		t.Error("object still there after DeleteObject")
	}
}

// A part whose CRC32C is not that of its bytes is refused, as are a wrong
// signature and a part of an unknown upload; ListParts reports the parts
// taken.
func TestSinkRefusesBadPartsAndSignatures(t *testing.T) {
	s := StartSink(t)
	c := sinkClient(t, s, s.SecretAccessKey)
	ctx := context.Background()
	c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("b")})
	cu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("b"), Key: aws.String("k"),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
	if err != nil {
		t.Fatal(err)
	}
	part := bytes.Repeat([]byte("rehost"), 1<<20)
	_, err = c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("b"), Key: aws.String("k"), UploadId: cu.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(part), ChecksumCRC32C: aws.String(crc32c([]byte("other")))})
	if err == nil || !strings.Contains(err.Error(), "BadDigest") {
		t.Fatalf("a part with a wrong CRC32C: %v, want BadDigest", err)
	}
	if _, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("b"), Key: aws.String("k"), UploadId: cu.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(part), ChecksumCRC32C: aws.String(crc32c(part))}); err != nil {
		t.Fatal(err)
	}
	lp, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("b"), Key: aws.String("k"), UploadId: cu.UploadId})
	if err != nil || len(lp.Parts) != 1 || aws.ToInt64(lp.Parts[0].Size) != int64(len(part)) || aws.ToString(lp.Parts[0].ChecksumCRC32C) != crc32c(part) {
		t.Fatalf("list parts: %v %+v", err, lp)
	}
	_, err = c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("b"), Key: aws.String("k"), UploadId: aws.String("nope"),
		PartNumber: aws.Int32(1), Body: bytes.NewReader(part)})
	if err == nil || !strings.Contains(err.Error(), "NoSuchUpload") {
		t.Fatalf("a part of an unknown upload: %v, want NoSuchUpload", err)
	}
	bad := sinkClient(t, s, "wrong-secret")
	_, err = bad.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("x"), Body: strings.NewReader("data")})
	if err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Fatalf("a wrong secret: %v, want SignatureDoesNotMatch", err)
	}
	if _, ok := s.ObjectSize("b", "x"); ok {
		t.Error("an object signed with a wrong secret was stored")
	}
}
