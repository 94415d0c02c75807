package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/rehost/rehost/connector/cli"
)

// serve runs a peer verb in the background and returns the JSON line it
// printed, and stop, which interrupts it and returns its exit code (the
// test's cleanup stops it too).
func serve(t *testing.T, args ...string) (line []byte, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, cli.Env{Stdout: pw, Stderr: io.Discard}, args)
		pw.Close()
	}()
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(15 * time.Second):
				t.Errorf("%s did not stop when interrupted", args[0])
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	line, err := bufio.NewReader(pr).ReadBytes('\n')
	if err != nil {
		t.Fatalf("%s: read its JSON line: %v", args[0], err)
	}
	go io.Copy(io.Discard, pr)
	return line, stop
}

// The three peers as a user starts them (the AWS emulator sharing the S3
// peer's keys through its JSON), and leftovers counting what they hold.
func TestPeersAndLeftovers(t *testing.T) {
	t.Setenv(cli.EnvVCenterPassword, "")
	t.Setenv(envS3AccessKey, "")
	ctx := context.Background()
	dir := t.TempDir()
	line, _ := serve(t, "s3", "--dir", filepath.Join(dir, "s3"), "--json")
	var s3i s3Info
	if err := json.Unmarshal(line, &s3i); err != nil {
		t.Fatal(err)
	}
	s3file := filepath.Join(dir, "s3.json")
	os.WriteFile(s3file, line, 0o600)
	var awsi awsInfo
	line, _ = serve(t, "aws", "--data", filepath.Join(dir, "aws"), "--s3", s3file, "--json")
	json.Unmarshal(line, &awsi)
	var vci vcenterInfo
	line, _ = serve(t, "vcenter", "--dir", filepath.Join(dir, "vc"), "--demo", "--lease-timeout", "1m", "--json")
	json.Unmarshal(line, &vci)
	if awsi.AccessKeyID != s3i.AccessKeyID || awsi.Region != s3i.Region || !strings.HasPrefix(s3i.Endpoint, "https://") || !strings.HasPrefix(s3i.PlainEndpoint, "http://") {
		t.Fatalf("aws %+v does not share the s3 peer's %+v", awsi, s3i)
	}
	// The account's keys work against both.
	cfg := aws.Config{Region: awsi.Region, Credentials: credentials.NewStaticCredentialsProvider(awsi.AccessKeyID, awsi.SecretAccessKey, "")}
	if _, err := sts.NewFromConfig(cfg, func(o *sts.Options) { o.BaseEndpoint = aws.String(awsi.Endpoint) }).GetCallerIdentity(ctx, nil); err != nil {
		t.Fatal(err)
	}
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint, o.UsePathStyle = aws.String(s3i.PlainEndpoint), true })
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("left")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("left"), Key: aws.String("rehost/x"), Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := Main(ctx, cli.Env{Stdout: &out, Stderr: io.Discard}, []string{"leftovers", "--vcenter", vci.URL, "--vcenter-thumbprint", vci.Thumbprint,
		"--s3", s3i.PlainEndpoint, "--aws", awsi.Endpoint, "--json"}); code != 0 {
		t.Fatalf("leftovers: exit %d", code)
	}
	var c leftoverCounts
	if err := json.Unmarshal(out.Bytes(), &c); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if c.Objects != 1 || c.Clean || c.OpenLeases+c.VMSnapshots+c.MultipartUploads+c.ActiveImports+c.OrphanSnapshots+c.AMIs != 0 {
		t.Fatalf("counts %+v", c)
	}
	if c.Details.Objects[0] != "left/rehost/x" {
		t.Fatalf("details %+v", c.Details)
	}
}
