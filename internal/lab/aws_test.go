package lab

import (
	"context"
	"encoding/json"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/rehost/rehost/connector/cli"
)

func TestAWSServesUntilCancelled(t *testing.T) {
	line, stop := serve(t, "aws", "--data", t.TempDir(), "--json", "--account-id", "123456789012")
	var info awsInfo
	if err := json.Unmarshal(line, &info); err != nil {
		t.Fatalf("parse %q: %v", line, err)
	}
	client := sts.New(sts.Options{Region: info.Region, BaseEndpoint: aws.String(info.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(info.AccessKeyID, info.SecretAccessKey, "")})
	id, err := client.GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(id.Account) != "123456789012" || info.AccountID != "123456789012" {
		t.Fatalf("account %q, printed %q", aws.ToString(id.Account), info.AccountID)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestAWSNeedsData(t *testing.T) {
	if code := Main(context.Background(), cli.Env{Stdout: io.Discard, Stderr: io.Discard}, []string{"aws"}); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
}
