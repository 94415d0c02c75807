package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/rehost/rehost/connector/cli"
)

func TestAWSServesUntilCancelled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, cli.Env{Stdout: pw, Stderr: io.Discard}, []string{"aws", "--data", dir, "--json", "--account-id", "123456789012"})
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadBytes('\n')
	if err != nil {
		t.Fatalf("read endpoint line: %v", err)
	}
	go io.Copy(io.Discard, pr)
	var info awsInfo
	if err := json.Unmarshal(line, &info); err != nil {
		t.Fatalf("parse %q: %v", line, err)
	}
	client := sts.New(sts.Options{Region: info.Region, BaseEndpoint: aws.String(info.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(info.AccessKeyID, info.SecretAccessKey, "")})
	id, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(id.Account) != "123456789012" || info.AccountID != "123456789012" {
		t.Fatalf("account %q, printed %q", aws.ToString(id.Account), info.AccountID)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("emulator did not stop on cancel")
	}
}

func TestAWSNeedsData(t *testing.T) {
	if code := Main(context.Background(), cli.Env{Stdout: io.Discard, Stderr: io.Discard}, []string{"aws"}); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
}
