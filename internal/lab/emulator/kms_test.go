package emulator

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/servicequotas"
)

// adminOnlyKeyPolicy lets one administrator manage and use the key, and
// nobody else: the account's IAM policies do not count for it.
func adminOnlyKeyPolicy(account string) string {
	return `{"Version":"2012-10-17","Statement":[{"Sid":"KeyAdmin","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + account +
		`:user/key-admin"},"Action":"kms:*","Resource":"*"}]}`
}

// An encrypted import with a key whose policy does not defer to IAM fails
// even though the role's IAM policy names the key; a grant to the role, as
// an administrator adds it, makes it work. A key the role is named in by
// the key policy needs no IAM permission.
func TestKMSKeyPolicyAndGrants(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	key := e.key(adminOnlyKeyPolicy(e.em.AccountID()))
	raw := guestDisk(t, "bios")
	e.put("d.raw", raw)
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	if _, err := e.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("vmimport"),
		PolicyName: aws.String("kms"), PolicyDocument: aws.String(kmsPolicy(key))}); err != nil {
		t.Fatal(err)
	}
	in := func() *ec2.ImportImageInput {
		return &ec2.ImportImageInput{Encrypted: aws.Bool(true), KmsKeyId: aws.String(key)}
	}
	task := e.waitImage(e.importImageWith(in(), "d.raw"))
	if !strings.Contains(aws.ToString(task.StatusMessage), "does not have sufficient permissions") {
		t.Fatalf("without a grant: %s %q", aws.ToString(task.Status), aws.ToString(task.StatusMessage))
	}
	roleARN := "arn:aws:iam::" + e.em.AccountID() + ":role/vmimport"
	g, err := e.kms.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: aws.String(key), GranteePrincipal: aws.String(roleARN),
		Operations: []kmstypes.GrantOperation{"Decrypt", "Encrypt", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo", "CreateGrant", "DescribeKey"}})
	if err != nil {
		t.Fatal(err)
	}
	grants, err := e.kms.ListGrants(ctx, &kms.ListGrantsInput{KeyId: aws.String(key)})
	if err != nil || len(grants.Grants) != 1 || aws.ToString(grants.Grants[0].GrantId) != aws.ToString(g.GrantId) ||
		aws.ToString(grants.Grants[0].GranteePrincipal) != roleARN {
		t.Fatalf("grants %+v %v", grants, err)
	}
	task = e.waitImage(e.importImageWith(in(), "d.raw"))
	if aws.ToString(task.Status) != "completed" {
		t.Fatalf("with the grant: %q", aws.ToString(task.StatusMessage))
	}

	// Named in the key policy: no IAM permission needed.
	named := e.key(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"` + roleARN + `"},"Action":"kms:*","Resource":"*"}]}`)
	if _, err := e.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String("vmimport"), PolicyName: aws.String("kms")}); err != nil {
		t.Fatal(err)
	}
	task = e.waitImage(e.importImageWith(&ec2.ImportImageInput{Encrypted: aws.Bool(true), KmsKeyId: aws.String(named)}, "d.raw"))
	if aws.ToString(task.Status) != "completed" {
		t.Fatalf("named in the key policy: %q", aws.ToString(task.StatusMessage))
	}
	pol, err := e.kms.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(named), PolicyName: aws.String("default")})
	if err != nil || !strings.Contains(aws.ToString(pol.Policy), roleARN) {
		t.Fatalf("key policy %v %v", pol, err)
	}

	// A disabled key, and one that does not exist, are not accessible.
	if _, err := e.kms.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(named)}); err != nil {
		t.Fatal(err)
	}
	d, err := e.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(named)})
	if err != nil || d.KeyMetadata.KeyState != kmstypes.KeyStateDisabled || d.KeyMetadata.KeyManager != kmstypes.KeyManagerTypeCustomer {
		t.Fatalf("describe a disabled key: %+v %v", d, err)
	}
	_, err = e.ec2.ImportImage(ctx, &ec2.ImportImageInput{Encrypted: aws.Bool(true), KmsKeyId: aws.String(named), DiskContainers: []ec2types.ImageDiskContainer{{Format: aws.String("RAW"), UserBucket: &ec2types.UserBucket{S3Bucket: aws.String(e.bucket), S3Key: aws.String("d.raw")}}}})
	wantCode(t, err, "InvalidParameterValue")
	_, err = e.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("1234abcd-12ab-34cd-56ef-1234567890ab")})
	wantCode(t, err, "NotFoundException")
	if m, err := e.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/aws/ebs")}); err != nil || m.KeyMetadata.KeyManager != kmstypes.KeyManagerTypeAws {
		t.Fatalf("the AWS managed key: %+v %v", m, err)
	}
	_, err = e.kms.CreateKey(ctx, &kms.CreateKeyInput{Policy: aws.String(`{"Statement":[{"Effect":"Allow","Action":"kms:*"}]}`)})
	wantCode(t, err, "MalformedPolicyDocumentException")
}

// Service Quotas lists the quotas preflight reads, with configured values;
// a denied operation answers AccessDeniedException.
func TestServiceQuotas(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Quotas = map[string]float64{"Concurrent import image tasks": 2} })
	ctx := context.Background()
	l, err := e.quotas.ListServiceQuotas(ctx, &servicequotas.ListServiceQuotasInput{ServiceCode: aws.String("ec2")})
	if err != nil || len(l.Quotas) != 2 || aws.ToString(l.Quotas[0].QuotaName) != "Concurrent import image tasks" || aws.ToFloat64(l.Quotas[0].Value) != 2 ||
		aws.ToString(l.Quotas[1].QuotaName) != "Concurrent import snapshot tasks" || aws.ToFloat64(l.Quotas[1].Value) != 20 {
		t.Fatalf("ec2 quotas %+v %v", l, err)
	}
	q, err := e.quotas.GetServiceQuota(ctx, &servicequotas.GetServiceQuotaInput{ServiceCode: aws.String("ebs"), QuotaCode: aws.String("L-309BACF6")})
	if err != nil || aws.ToFloat64(q.Quota.Value) != 100000 {
		t.Fatalf("snapshots quota %+v %v", q, err)
	}
	_, err = e.quotas.ListServiceQuotas(ctx, &servicequotas.ListServiceQuotasInput{ServiceCode: aws.String("nosuch")})
	wantCode(t, err, "NoSuchResourceException")

	d := newEnv(t, func(c *Config) { c.DenyOperations = []string{"ListServiceQuotas", "SimulatePrincipalPolicy"} })
	_, err = d.quotas.ListServiceQuotas(ctx, &servicequotas.ListServiceQuotasInput{ServiceCode: aws.String("ec2")})
	wantCode(t, err, "AccessDeniedException")
	_, err = d.iam.SimulatePrincipalPolicy(ctx, &iam.SimulatePrincipalPolicyInput{PolicySourceArn: aws.String("arn:aws:iam::1:role/x"), ActionNames: []string{"s3:GetObject"}})
	wantCode(t, err, "AccessDenied")
}

// The policy simulator evaluates the role's IAM policies alone.
func TestSimulatePrincipalPolicy(t *testing.T) {
	e := newEnv(t, nil)
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	out, err := e.iam.SimulatePrincipalPolicy(context.Background(), &iam.SimulatePrincipalPolicyInput{
		PolicySourceArn: aws.String("arn:aws:iam::" + e.em.AccountID() + ":role/vmimport"),
		ActionNames:     []string{"s3:GetObject", "kms:Decrypt"},
		ResourceArns:    []string{"arn:aws:s3:::" + e.bucket + "/rehost/x"},
	})
	if err != nil || len(out.EvaluationResults) != 2 {
		t.Fatalf("%+v %v", out, err)
	}
	if out.EvaluationResults[0].EvalDecision != iamtypes.PolicyEvaluationDecisionTypeAllowed ||
		out.EvaluationResults[1].EvalDecision != iamtypes.PolicyEvaluationDecisionTypeImplicitDeny {
		t.Fatalf("decisions %s %s", out.EvaluationResults[0].EvalDecision, out.EvaluationResults[1].EvalDecision)
	}
}
