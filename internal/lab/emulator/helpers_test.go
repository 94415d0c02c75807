package emulator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/servicequotas"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/internal/lab/s3peer"
	"github.com/rehost/rehost/pkg/disk"
)

// peer is one versitygw shared by the package's tests (startup costs
// seconds); each test uses buckets of its own.
var peer *s3peer.Server

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		// Fuzzing runs only the fuzz target, in many worker processes.
		os.Exit(m.Run())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	var err error
	peer, err = s3peer.StartProcess(ctx, s3peer.Options{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start versitygw:", err)
		os.Exit(1)
	}
	code := m.Run()
	peer.Close()
	os.Exit(code)
}

type env struct {
	t      *testing.T
	em     *Emulator
	url    string
	ec2    *ec2.Client
	iam    *iam.Client
	sts    *sts.Client
	ebs    *ebs.Client
	kms    *kms.Client
	quotas *servicequotas.Client
	s3     *s3.Client
	bucket string
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	cfg := Config{
		S3Endpoint: peer.URL, S3AccessKey: peer.AccessKeyID, S3SecretKey: peer.SecretAccessKey,
		S3HTTPClient: peer.HTTPClient(), DataDir: t.TempDir(),
	}
	if mod != nil {
		mod(&cfg)
	}
	em, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := em.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { em.Close() })
	ak, sk := em.Credentials()
	e := &env{t: t, em: em, url: u, s3: peer.S3Client()}
	e.ec2, e.iam, e.sts, e.ebs = clients(u, em.Region(), ak, sk)
	sdkCfg := aws.Config{Region: em.Region(), Credentials: credentials.NewStaticCredentialsProvider(ak, sk, ""), RetryMaxAttempts: 1}
	e.kms = kms.NewFromConfig(sdkCfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(u) })
	e.quotas = servicequotas.NewFromConfig(sdkCfg, func(o *servicequotas.Options) { o.BaseEndpoint = aws.String(u) })
	e.bucket = strings.ToLower(fmt.Sprintf("b-%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano()%1e6))
	if len(e.bucket) > 60 {
		e.bucket = e.bucket[:60]
	}
	e.bucket = strings.Trim(strings.ReplaceAll(e.bucket, "_", "-"), "-")
	if _, err := e.s3.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(e.bucket)}); err != nil {
		t.Fatalf("create bucket %s: %v", e.bucket, err)
	}
	return e
}

func clients(u, region, ak, sk string) (*ec2.Client, *iam.Client, *sts.Client, *ebs.Client) {
	cfg := aws.Config{Region: region, Credentials: credentials.NewStaticCredentialsProvider(ak, sk, ""), RetryMaxAttempts: 1}
	return ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = aws.String(u) }),
		iam.NewFromConfig(cfg, func(o *iam.Options) { o.BaseEndpoint = aws.String(u) }),
		sts.NewFromConfig(cfg, func(o *sts.Options) { o.BaseEndpoint = aws.String(u) }),
		ebs.NewFromConfig(cfg, func(o *ebs.Options) { o.BaseEndpoint = aws.String(u) })
}

const trustPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"vmie.amazonaws.com"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:Externalid":"vmimport"}}}]}`

func rolePolicy(bucket string) string {
	return `{"Version":"2012-10-17","Statement":[
	{"Effect":"Allow","Action":["s3:GetBucketLocation","s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::` + bucket + `","arn:aws:s3:::` + bucket + `/*"]},
	{"Effect":"Allow","Action":["ec2:ModifySnapshotAttribute","ec2:CopySnapshot","ec2:RegisterImage","ec2:Describe*"],"Resource":"*"}]}`
}

// key creates a customer managed KMS key with the given key policy (the
// default one when empty) and returns its ARN.
func (e *env) key(policy string) string {
	e.t.Helper()
	in := &kms.CreateKeyInput{Description: aws.String("test key")}
	if policy != "" {
		in.Policy = aws.String(policy)
	}
	out, err := e.kms.CreateKey(context.Background(), in)
	if err != nil {
		e.t.Fatal(err)
	}
	return aws.ToString(out.KeyMetadata.Arn)
}

// role creates the vmimport role the way the connector does.
func (e *env) role(name, trust, policy string) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trust)}); err != nil {
		e.t.Fatalf("create role: %v", err)
	}
	if policy != "" {
		if _, err := e.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String("vmimport"), PolicyDocument: aws.String(policy)}); err != nil {
			e.t.Fatalf("put role policy: %v", err)
		}
	}
}

func (e *env) put(key string, data []byte) {
	e.t.Helper()
	_, err := e.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key), Body: bytes.NewReader(data)})
	if err != nil {
		e.t.Fatalf("put %s: %v", key, err)
	}
}

// guests caches the guest disks the tests import as boot disks, by
// firmware: building one runs sfdisk and mkfs.
var guests sync.Map

// guestDisk is a real guest disk (partition table for fw, ext4 root with
// /etc/os-release and 1 MiB of seeded data) as raw bytes.
func guestDisk(t *testing.T, fw string) []byte {
	t.Helper()
	if b, ok := guests.Load(fw); ok {
		return b.([]byte)
	}
	size := int64(32 << 20)
	if fw == guestdisk.EFI {
		size = 48 << 20
	}
	path := filepath.Join(t.TempDir(), "guest.raw")
	if _, err := guestdisk.Build(context.Background(), path, guestdisk.Options{Size: size, Firmware: fw, DataBytes: 1 << 20, Seed: 42}); err != nil {
		t.Fatalf("build guest disk: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	guests.Store(fw, b)
	return b
}

// rawDisk is a virtual disk of size bytes with data in a few regions and
// holes elsewhere, deterministic from seed.
func rawDisk(size int64, seed int64) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewSource(seed))
	for _, reg := range [][2]int64{{0, 70 << 10}, {size / 3, 600 << 10}, {size - 4096, 4096}} {
		end := min(reg[0]+reg[1], size)
		r.Read(b[reg[0]:end])
	}
	return b
}

func encode(t *testing.T, format string, raw []byte) []byte {
	t.Helper()
	src := disk.NewRaw(bytes.NewReader(raw), int64(len(raw)))
	var buf bytes.Buffer
	var err error
	switch format {
	case "vmdk":
		_, err = disk.WriteStreamOptimized(&buf, src)
	case "vhd":
		_, err = disk.WriteVHD(&buf, src, true)
	case "vhd-fixed":
		_, err = disk.WriteVHD(&buf, src, false)
	case "raw":
		buf.Write(raw)
	default:
		t.Fatalf("unknown fixture format %s", format)
	}
	if err != nil {
		t.Fatalf("encode %s: %v", format, err)
	}
	return buf.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (e *env) waitImage(id string) ec2types.ImportImageTask {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := e.ec2.DescribeImportImageTasks(context.Background(), &ec2.DescribeImportImageTasksInput{ImportTaskIds: []string{id}})
		if err != nil {
			e.t.Fatalf("describe import image task %s: %v", id, err)
		}
		if len(out.ImportImageTasks) != 1 {
			e.t.Fatalf("describe %s: %d tasks", id, len(out.ImportImageTasks))
		}
		task := out.ImportImageTasks[0]
		if s := aws.ToString(task.Status); s == "completed" || s == "deleted" {
			return task
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("task %s still %s (%s)", id, aws.ToString(task.Status), aws.ToString(task.StatusMessage))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) waitSnapshotTask(id string) ec2types.ImportSnapshotTask {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := e.ec2.DescribeImportSnapshotTasks(context.Background(), &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{id}})
		if err != nil {
			e.t.Fatalf("describe import snapshot task %s: %v", id, err)
		}
		task := out.ImportSnapshotTasks[0]
		if s := aws.ToString(task.SnapshotTaskDetail.Status); s == "completed" || s == "deleted" {
			return task
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("task %s still %s", id, aws.ToString(task.SnapshotTaskDetail.Status))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) importImage(keys ...string) string {
	e.t.Helper()
	return e.importImageWith(&ec2.ImportImageInput{}, keys...)
}

// importImageWith starts an ImportImage of in with the keys as its disks.
func (e *env) importImageWith(in *ec2.ImportImageInput, keys ...string) string {
	e.t.Helper()
	for _, k := range keys {
		in.DiskContainers = append(in.DiskContainers, ec2types.ImageDiskContainer{Format: aws.String(formatOf(k)), UserBucket: &ec2types.UserBucket{S3Bucket: aws.String(e.bucket), S3Key: aws.String(k)}})
	}
	out, err := e.ec2.ImportImage(context.Background(), in)
	if err != nil {
		e.t.Fatalf("import image: %v", err)
	}
	return aws.ToString(out.ImportTaskId)
}

// formatOf maps a fixture key's extension to the Format VM Import takes.
func formatOf(key string) string {
	switch {
	case strings.HasSuffix(key, ".vmdk"):
		return "VMDK"
	case strings.HasSuffix(key, ".vhd"):
		return "VHD"
	case strings.HasSuffix(key, ".vhdx"):
		return "VHDX"
	case strings.HasSuffix(key, ".ova"):
		return "OVA"
	default:
		return "RAW"
	}
}

// content reads the first size bytes of a snapshot.
func (e *env) content(id string) []byte {
	e.t.Helper()
	r, size, err := e.em.SnapshotContent(id)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.NewSectionReader(r, 0, size))
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	if got := apiCode(err); got != code {
		t.Fatalf("got error %v (code %q), want code %s", err, got, code)
	}
}

func unescape(t *testing.T, s string) string {
	t.Helper()
	u, err := url.QueryUnescape(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
