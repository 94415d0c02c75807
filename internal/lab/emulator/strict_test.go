package emulator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// rewrite is a transport that changes a request after the SDK signed it,
// as a man in the middle or a buggy proxy would.
type rewrite func(r *http.Request)

func (f rewrite) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	f(r)
	return http.DefaultTransport.RoundTrip(r)
}

func setBody(r *http.Request, body string) {
	r.Body = io.NopCloser(strings.NewReader(body))
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
}

func cfgFor(e *env, region string, mod func(*aws.Config)) aws.Config {
	ak, sk := e.em.Credentials()
	c := aws.Config{Region: region, Credentials: credentials.NewStaticCredentialsProvider(ak, sk, ""), RetryMaxAttempts: 1,
		BaseEndpoint: aws.String(e.url)}
	if mod != nil {
		mod(&c)
	}
	return c
}

// offsetClock is the wall clock moved by d: the emulator's idea of now
// when the client's clock is off.
type offsetClock time.Duration

func (o offsetClock) Now() time.Time                         { return time.Now().Add(time.Duration(o)) }
func (o offsetClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// A request is verified as AWS verifies it: the body against the signed
// payload hash, the date against the clock, the scope's region.
func TestSignatureStrict(t *testing.T) {
	ctx := context.Background()
	t.Run("tampered body", func(t *testing.T) {
		e := newBare(t, nil)
		// Signed as GetRole, carrying a CreateRole body.
		c := iam.NewFromConfig(cfgFor(e, e.em.Region(), func(c *aws.Config) {
			c.HTTPClient = &http.Client{Transport: rewrite(func(r *http.Request) {
				setBody(r, "Action=CreateRole&RoleName=evil&AssumeRolePolicyDocument="+uriEncode(trustPolicy)+"&Version=2010-05-08")
			})}
		}))
		_, err := c.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("x")})
		wantCode(t, err, "SignatureDoesNotMatch")
		if len(e.em.Roles()) != 0 {
			t.Fatal("the tampered request created a role")
		}
	})
	t.Run("tampered body with its hash claimed", func(t *testing.T) {
		e := newBare(t, nil)
		body := "Action=GetCallerIdentity&Version=2011-06-15&Extra=1"
		c := sts.NewFromConfig(cfgFor(e, e.em.Region(), func(c *aws.Config) {
			c.HTTPClient = &http.Client{Transport: rewrite(func(r *http.Request) {
				sum := sha256.Sum256([]byte(body))
				r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
				setBody(r, body)
			})}
		}))
		_, err := c.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		wantCode(t, err, "SignatureDoesNotMatch")
		// EBS direct signs a hash of its JSON body.
		eb := ebs.NewFromConfig(cfgFor(e, e.em.Region(), func(c *aws.Config) {
			c.HTTPClient = &http.Client{Transport: rewrite(func(r *http.Request) {
				if r.Method == http.MethodPost {
					setBody(r, `{"VolumeSize":2}`)
				}
			})}
		}))
		_, err = eb.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)})
		wantCode(t, err, "InvalidSignatureException")
		if n := len(e.em.Snapshots()); n != 0 {
			t.Fatalf("a tampered StartSnapshot made %d snapshots", n)
		}
	})
	t.Run("stale date", func(t *testing.T) {
		// The client's clock is 20 minutes behind the emulator's.
		e := newBare(t, func(c *Config) { c.Clock = offsetClock(20 * time.Minute) })
		_, err := e.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		wantCode(t, err, "SignatureDoesNotMatch")
		if !strings.Contains(err.Error(), "Signature expired") {
			t.Errorf("message: %v", err)
		}
		_, err = e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{})
		wantCode(t, err, "RequestExpired")
		_, err = e.ebs.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)})
		wantCode(t, err, "InvalidSignatureException")
	})
	t.Run("wrong region", func(t *testing.T) {
		e := newBare(t, func(c *Config) { c.Region = "eu-west-1" })
		cfg := cfgFor(e, "eu-central-1", nil)
		_, err := ec2.NewFromConfig(cfg).DescribeImages(ctx, &ec2.DescribeImagesInput{})
		wantCode(t, err, "AuthFailure")
		_, err = sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		wantCode(t, err, "SignatureDoesNotMatch")
		if !strings.Contains(err.Error(), "scoped to a valid region") {
			t.Errorf("message: %v", err)
		}
		_, err = iam.NewFromConfig(cfg).GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("vmimport")})
		wantCode(t, err, "SignatureDoesNotMatch")
		// IAM is global: signed for us-east-1, as AWS signs it, it is
		// answered in any region of the partition.
		_, err = iam.NewFromConfig(cfgFor(e, "us-east-1", nil)).GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("vmimport")})
		wantCode(t, err, "NoSuchEntity")
	})
	t.Run("temporary credentials", func(t *testing.T) {
		e := newBare(t, nil)
		ak, sk := e.em.Credentials()
		c := sts.NewFromConfig(cfgFor(e, e.em.Region(), func(c *aws.Config) {
			c.Credentials = credentials.NewStaticCredentialsProvider(ak, sk, "session-token-from-elsewhere")
		}))
		_, err := c.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		wantCode(t, err, "InvalidClientTokenId")
	})
}

// Config.Delays holds a named call before it is answered, and only it.
func TestDelays(t *testing.T) {
	d, err := ParseDelays("DeregisterImage=1h, DeleteSnapshot=500ms")
	if err != nil || d["DeregisterImage"] != time.Hour || d["DeleteSnapshot"] != 500*time.Millisecond {
		t.Fatalf("ParseDelays: %v %v", d, err)
	}
	for _, bad := range []string{"DeregisterImage", "=2s", "X=soon", "X=-1s"} {
		if _, err := ParseDelays(bad); err == nil {
			t.Errorf("ParseDelays(%q) accepted", bad)
		}
	}
	e := newBare(t, func(c *Config) { c.Delays = d })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{}); err != nil {
		t.Fatalf("an undelayed call: %v", err)
	}
	_, err = e.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String("ami-0123456789abcdef0")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call delayed by an hour answered before the deadline: %v", err)
	}
}

// A policy the evaluator cannot fully evaluate is refused when put, as
// IAM refuses it, so no Deny is ever silently skipped.
func TestMalformedPoliciesRefused(t *testing.T) {
	e := newBare(t, nil)
	ctx := context.Background()
	if _, err := e.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("vmimport"), AssumeRolePolicyDocument: aws.String(trustPolicy)}); err != nil {
		t.Fatal(err)
	}
	for name, doc := range map[string]string{
		"unknown operator": `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:*","Resource":"*","Condition":{"StringEqualsSometimes":{"aws:SourceIp":"1.2.3.4"}}}]}`,
		"principal":        `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}]}`,
		"no resource":      `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*"}]}`,
	} {
		_, err := e.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("vmimport"), PolicyName: aws.String("p"), PolicyDocument: aws.String(doc)})
		if apiCode(err) != "MalformedPolicyDocument" {
			t.Errorf("%s: %v, want MalformedPolicyDocument", name, err)
		}
	}
	_, err := e.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("other"),
		AssumeRolePolicyDocument: aws.String(`{"Statement":[{"Effect":"Allow","Principal":{"Service":"vmie.amazonaws.com"},"Action":"sts:AssumeRole","Resource":"*"}]}`)})
	wantCode(t, err, "MalformedPolicyDocument")
}

// The role's policies are evaluated for every call the import makes: an
// explicit Deny wins over the Allow, conditions see the request's context
// (here: the emulator reads S3 over plain HTTP).
func TestImportRoleDenyWins(t *testing.T) {
	e := newEnv(t, nil)
	e.put("d.raw", guestDisk(t, "bios"))
	deny := `{"Version":"2012-10-17","Statement":[
	{"Effect":"Allow","Action":"s3:*","Resource":"*"},
	{"Effect":"Allow","Action":"ec2:*","Resource":"*"},
	{"Effect":"Deny","Action":"s3:GetObject","Resource":"arn:aws:s3:::` + e.bucket + `/*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}`
	e.role("vmimport", trustPolicy, deny)
	task := e.waitImage(e.importImage("d.raw"))
	if want := "ClientError: Disk validation failed [We do not have access to the given resource. Reason 403 Forbidden]"; aws.ToString(task.StatusMessage) != want {
		t.Fatalf("task %s: %q, want %q", aws.ToString(task.Status), aws.ToString(task.StatusMessage), want)
	}
}

// The import's EC2 calls are the role's too: without ec2:RegisterImage an
// image import fails, a snapshot import (which registers nothing) does not.
func TestImportRoleEC2Permissions(t *testing.T) {
	e := newEnv(t, nil)
	e.put("d.raw", guestDisk(t, "bios"))
	e.role("vmimport", trustPolicy, `{"Version":"2012-10-17","Statement":[
	{"Effect":"Allow","Action":["s3:GetBucketLocation","s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::`+e.bucket+`","arn:aws:s3:::`+e.bucket+`/*"]},
	{"Effect":"Allow","Action":["ec2:ModifySnapshotAttribute","ec2:CopySnapshot","ec2:Describe*"],"Resource":"*"}]}`)
	task := e.waitImage(e.importImage("d.raw"))
	if want := "ClientError: The service role vmimport provided does not exist or does not have sufficient permissions"; aws.ToString(task.StatusMessage) != want {
		t.Fatalf("image import: %s %q", aws.ToString(task.Status), aws.ToString(task.StatusMessage))
	}
	out, err := e.ec2.ImportSnapshot(context.Background(), &ec2.ImportSnapshotInput{DiskContainer: snapContainer(e, "d.raw", "RAW")})
	if err != nil {
		t.Fatal(err)
	}
	if st := e.waitSnapshotTask(aws.ToString(out.ImportTaskId)); aws.ToString(st.SnapshotTaskDetail.Status) != "completed" {
		t.Fatalf("snapshot import: %q", aws.ToString(st.SnapshotTaskDetail.StatusMessage))
	}
	if n := len(e.em.Images()); n != 0 {
		t.Fatalf("%d images made without ec2:RegisterImage", n)
	}
}

// An encrypted import with a customer managed key writes the snapshots
// through the role, which needs the key.
func TestImportRoleKMSForEncryptedImage(t *testing.T) {
	e := newEnv(t, nil)
	key := e.key("")
	raw := guestDisk(t, "bios")
	e.put("d.raw", raw)
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	in := func() *ec2.ImportImageInput {
		return &ec2.ImportImageInput{Encrypted: aws.Bool(true), KmsKeyId: aws.String(key)}
	}
	task := e.waitImage(e.importImageWith(in(), "d.raw"))
	if want := "ClientError: The service role vmimport provided does not exist or does not have sufficient permissions"; aws.ToString(task.StatusMessage) != want {
		t.Fatalf("without the key: %s %q", aws.ToString(task.Status), aws.ToString(task.StatusMessage))
	}
	if _, err := e.iam.PutRolePolicy(context.Background(), &iam.PutRolePolicyInput{RoleName: aws.String("vmimport"),
		PolicyName: aws.String("kms"), PolicyDocument: aws.String(kmsPolicy(key))}); err != nil {
		t.Fatal(err)
	}
	task = e.waitImage(e.importImageWith(in(), "d.raw"))
	if aws.ToString(task.Status) != "completed" {
		t.Fatalf("with the key: %q", aws.ToString(task.StatusMessage))
	}
	snap := aws.ToString(task.SnapshotDetails[0].SnapshotId)
	for _, s := range e.em.Snapshots() {
		if s.ID == snap && (!s.Encrypted || s.KmsKeyID != key) {
			t.Fatalf("snapshot %+v not encrypted with the key", s)
		}
	}
	if !bytes.Equal(e.content(snap), raw) {
		t.Fatal("content differs")
	}
	// A key of another region is not accessible at all.
	other := strings.Replace(key, "us-east-1", "eu-west-1", 1)
	_, err := e.ec2.ImportImage(context.Background(), &ec2.ImportImageInput{Encrypted: aws.Bool(true), KmsKeyId: aws.String(other),
		DiskContainers: []ec2types.ImageDiskContainer{{Format: aws.String("RAW"), UserBucket: &ec2types.UserBucket{S3Bucket: aws.String(e.bucket), S3Key: aws.String("d.raw")}}}})
	wantCode(t, err, "InvalidParameterValue")
}

// kmsPolicy grants the role the use of key, as the VM Import documentation
// lists it.
func kmsPolicy(key string) string {
	return `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:CreateGrant","kms:Decrypt","kms:DescribeKey","kms:Encrypt","kms:GenerateDataKey*","kms:ReEncrypt*"],"Resource":"` + key + `"}]}`
}

func snapContainer(e *env, key, format string) *ec2types.SnapshotDiskContainer {
	return &ec2types.SnapshotDiskContainer{Format: aws.String(format), UserBucket: &ec2types.UserBucket{S3Bucket: aws.String(e.bucket), S3Key: aws.String(key)}}
}

// An SSE-KMS object is read through the role: without kms:Decrypt on the
// object's key the import fails with what users then see, the content not
// being an image.
func TestImportRoleKMSDecrypt(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	key := e.key("")
	if _, err := e.s3.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: aws.String(e.bucket),
		ServerSideEncryptionConfiguration: &s3types.ServerSideEncryptionConfiguration{Rules: []s3types.ServerSideEncryptionRule{{
			ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAwsKms, KMSMasterKeyID: aws.String(key)}}}}}); err != nil {
		t.Fatal(err)
	}
	raw := guestDisk(t, "bios")
	e.put("d.vmdk", encode(t, "vmdk", raw))
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	task := e.waitImage(e.importImage("d.vmdk"))
	if want := "ClientError: Disk validation failed [Unsupported VMDK File Format]"; aws.ToString(task.StatusMessage) != want {
		t.Fatalf("without kms:Decrypt: %s %q, want %q", aws.ToString(task.Status), aws.ToString(task.StatusMessage), want)
	}
	if _, err := e.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("vmimport"),
		PolicyName: aws.String("kms"), PolicyDocument: aws.String(kmsPolicy(key))}); err != nil {
		t.Fatal(err)
	}
	task = e.waitImage(e.importImage("d.vmdk"))
	if aws.ToString(task.Status) != "completed" || !bytes.Equal(e.content(aws.ToString(task.SnapshotDetails[0].SnapshotId)), raw) {
		t.Fatalf("with kms:Decrypt: %s %q", aws.ToString(task.Status), aws.ToString(task.StatusMessage))
	}
}
