// Package aws is rehost's AWS target: it prepares an account (staging bucket,
// vmimport service role), streams disk images into S3 as resumable multipart
// uploads, drives EC2 VM Import, names, tags, retains and deletes the
// resulting AMIs, and launches applications' CloudFormation stacks.
//
// Every AWS API is reached through a narrow interface of only the methods
// used (S3API, IAMAPI, STSAPI; SSMAPI, and QueryAPI for EC2 and
// CloudFormation; KMSAPI, QuotasAPI and EBSAPI for
// account preflight), so fakes and emulators stay small; New builds them
// (from the SDK, or over the wire protocol, see wire.go: EC2, EBS direct,
// IAM, KMS, Service Quotas, SSM, CloudFormation), NewWithClients takes any
// implementation.
package aws

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// S3API is the part of the S3 client the target uses.
type S3API interface {
	CreateBucket(context.Context, *s3.CreateBucketInput, ...func(*s3.Options)) (*s3.CreateBucketOutput, error)
	DeleteBucket(context.Context, *s3.DeleteBucketInput, ...func(*s3.Options)) (*s3.DeleteBucketOutput, error)
	HeadBucket(context.Context, *s3.HeadBucketInput, ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
	GetBucketLocation(context.Context, *s3.GetBucketLocationInput, ...func(*s3.Options)) (*s3.GetBucketLocationOutput, error)
	GetPublicAccessBlock(context.Context, *s3.GetPublicAccessBlockInput, ...func(*s3.Options)) (*s3.GetPublicAccessBlockOutput, error)
	PutPublicAccessBlock(context.Context, *s3.PutPublicAccessBlockInput, ...func(*s3.Options)) (*s3.PutPublicAccessBlockOutput, error)
	GetBucketEncryption(context.Context, *s3.GetBucketEncryptionInput, ...func(*s3.Options)) (*s3.GetBucketEncryptionOutput, error)
	PutBucketEncryption(context.Context, *s3.PutBucketEncryptionInput, ...func(*s3.Options)) (*s3.PutBucketEncryptionOutput, error)
	GetBucketPolicy(context.Context, *s3.GetBucketPolicyInput, ...func(*s3.Options)) (*s3.GetBucketPolicyOutput, error)
	PutBucketPolicy(context.Context, *s3.PutBucketPolicyInput, ...func(*s3.Options)) (*s3.PutBucketPolicyOutput, error)
	GetBucketLifecycleConfiguration(context.Context, *s3.GetBucketLifecycleConfigurationInput, ...func(*s3.Options)) (*s3.GetBucketLifecycleConfigurationOutput, error)
	PutBucketLifecycleConfiguration(context.Context, *s3.PutBucketLifecycleConfigurationInput, ...func(*s3.Options)) (*s3.PutBucketLifecycleConfigurationOutput, error)
	CreateMultipartUpload(context.Context, *s3.CreateMultipartUploadInput, ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(context.Context, *s3.UploadPartInput, ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CompleteMultipartUpload(context.Context, *s3.CompleteMultipartUploadInput, ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(context.Context, *s3.AbortMultipartUploadInput, ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	ListParts(context.Context, *s3.ListPartsInput, ...func(*s3.Options)) (*s3.ListPartsOutput, error)
	ListMultipartUploads(context.Context, *s3.ListMultipartUploadsInput, ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error)
	ListObjectsV2(context.Context, *s3.ListObjectsV2Input, ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	DeleteObject(context.Context, *s3.DeleteObjectInput, ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	// Application templates and the scripts they carry (stack.go).
	PutObject(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// IAMAPI is IAM as registration (setup.go) and account preflight use it:
// the Query actions GetRole, CreateRole, GetRolePolicy, PutRolePolicy and
// SimulatePrincipalPolicy.
type IAMAPI = QueryAPI

// STSAPI is the part of the STS client the target uses.
type STSAPI interface {
	GetCallerIdentity(context.Context, *sts.GetCallerIdentityInput, ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error)
}

// Clients are the API implementations a Target uses. EBS may be nil for
// a target that only stages through S3 (account preflight then skips its
// check); KMS and Quotas serve account preflight only, nil skips theirs.
type Clients struct {
	S3  S3API
	IAM IAMAPI
	STS STSAPI
	// CloudFormation is used by application launches only; nil leaves
	// them unavailable. SSM runs their optional validation commands.
	// EC2Query is EC2 over its Query protocol: imports, images and
	// snapshots (ec2query.go), the queries launches make (instance.go).
	CloudFormation QueryAPI
	SSM            SSMAPI
	EC2Query       QueryAPI
	KMS            KMSAPI
	Quotas         QuotasAPI
	EBS            EBSAPI
}

// Endpoints override service endpoints (emulators, VPC endpoints). Empty
// means the SDK's default for the region.
type Endpoints struct {
	S3, EC2, IAM, STS, EBS, KMS, Quotas, CloudFormation, SSM string
}

// Config says how to reach an account and how to stage into it.
type Config struct {
	Region string
	// AccessKeyID, SecretAccessKey and SessionToken are static credentials;
	// when AccessKeyID is empty LoadConfig's chain (environment,
	// Profile, instance role; no SSO) is used. They are never logged.
	AccessKeyID, SecretAccessKey, SessionToken string
	Profile                                    string
	// AssumeRoleARN is a role assumed with those credentials (refreshed
	// before they expire); ExternalID goes with it when set.
	AssumeRoleARN, ExternalID string
	Endpoints                 Endpoints
	// S3PathStyle addresses buckets in the path, not the host name.
	S3PathStyle bool
	HTTPClient  *http.Client

	// Bucket is the staging bucket; Setup fills it in when empty.
	Bucket string
	// KMSKeyID encrypts staged objects with SSE-KMS (and bucket keys); empty
	// means SSE-S3 (AES256).
	KMSKeyID string
	// Concurrency is the number of parts uploaded at once (default 4).
	// Staging holds Concurrency+1 part buffers in memory.
	Concurrency int
	// PartSize is the smallest part size (default 16 MiB, at least 5 MiB;
	// at least 8 MiB for streams of unknown length so that 10,000 growing
	// parts still cover 5 TiB).
	PartSize int64
	// BufferBytes bounds the part buffers one Stage holds (default 192
	// MiB): when Concurrency+1 parts do not fit, fewer are in flight (at
	// least one, beside the one being filled).
	BufferBytes int64
	// Buffers is the pool the part buffers of every Stage come from and
	// go back to (one pool for all of a connector's runs, whichever target
	// they use); nil gives the target a pool of its own of
	// DefaultBufferPool bytes.
	Buffers *Buffers
	// RetryAttempts per AWS call, a part upload included (default 8);
	// RetryBaseDelay is the first backoff (default 500ms, doubled per
	// attempt, capped at 30s, with jitter). See pkg/retry.
	RetryAttempts  int
	RetryBaseDelay time.Duration
	// PollInitial and PollMax bound the import polling interval (defaults
	// 2s and 30s); it grows by half each poll without progress.
	PollInitial, PollMax time.Duration
	// ImportMode is how StartImport makes AMIs when ImportInput.Mode is
	// empty (default ModeImportImage).
	ImportMode ImportMode
	// IAMPropagation bounds how long Setup and StartImport wait for a new
	// role to become usable (default 2 minutes).
	IAMPropagation time.Duration
	Logger         *slog.Logger
}

// Target is one AWS account and region. Its methods are safe for concurrent
// use, except Setup, which changes the staging bucket and key.
type Target struct {
	cfg  Config
	s3   S3API
	iam  IAMAPI
	sts  STSAPI
	cf   QueryAPI
	ssm  SSMAPI
	ec2q QueryAPI
	// Account preflight's (nil where not given).
	kms    KMSAPI
	quotas QuotasAPI
	ebs    EBSAPI
	bufs   *Buffers
	log    *slog.Logger
}

// New builds SDK clients for cfg.
func New(ctx context.Context, cfg Config) (*Target, error) {
	var static sdk.CredentialsProvider
	if cfg.AccessKeyID != "" {
		static = credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)
	}
	// The SDK's retryer is off: every call is retried once, by the
	// target's own policy (retry.go), which re-sends a part from its buffer
	// and never nests inside another retry.
	// A caller's client carries its own trust.
	var hc sdk.HTTPClient
	if cfg.HTTPClient != nil {
		hc = withWriteBuffer(cfg.HTTPClient)
	} else {
		hc = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.WriteBufferSize = writeBufferSize
		})
	}
	ac, err := LoadConfig(ctx, cfg.Region, cfg.Profile, LoadOptions{Static: static, HTTPClient: hc, STSEndpoint: cfg.Endpoints.STS})
	if err != nil {
		return nil, err
	}
	if ac.Region == "" {
		return nil, errors.New("load aws configuration: no region set (give one or set AWS_REGION)")
	}
	cfg.Region = ac.Region
	ep := nilIfEmpty
	if cfg.AssumeRoleARN != "" {
		base := sts.NewFromConfig(ac, func(o *sts.Options) { o.BaseEndpoint = ep(cfg.Endpoints.STS) })
		ac.Credentials = sdk.NewCredentialsCache(stscreds.NewAssumeRoleProvider(base, cfg.AssumeRoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = "rehost-connector"
			if cfg.ExternalID != "" {
				o.ExternalID = sdk.String(cfg.ExternalID)
			}
		}))
	}
	cl := Clients{
		S3: s3.NewFromConfig(ac, func(o *s3.Options) {
			o.HTTPClient = s3HTTPClient(hc)
			o.BaseEndpoint = ep(cfg.Endpoints.S3)
			o.UsePathStyle = cfg.S3PathStyle
		}),
		IAM:            queryClient{newIAMWire(ac, cfg.Endpoints.IAM), "2010-05-08", "Result"},
		STS:            sts.NewFromConfig(ac, func(o *sts.Options) { o.BaseEndpoint = ep(cfg.Endpoints.STS) }),
		CloudFormation: queryClient{newWire(ac, "CloudFormation", "cloudformation", cfg.Endpoints.CloudFormation), "2010-05-15", "Result"},
		EC2Query:       queryClient{newWire(ac, "EC2", "ec2", cfg.Endpoints.EC2), "2016-11-15", "Response"},
		SSM:            jsonClient{newWire(ac, "SSM", "ssm", cfg.Endpoints.SSM), "AmazonSSM"},
		KMS:            jsonClient{newWire(ac, "KMS", "kms", cfg.Endpoints.KMS), "TrentService"},
		Quotas:         jsonClient{newWire(ac, "Service Quotas", "servicequotas", cfg.Endpoints.Quotas), "ServiceQuotasV20190624"},
		EBS:            ebsClient{newWire(ac, "EBS", "ebs", cfg.Endpoints.EBS)},
	}
	return NewWithClients(cfg, cl), nil
}

// writeBufferSize is the HTTP transport's write buffer. Go's default (4
// KiB) makes a part's body go out as 4 KiB TLS records, one write system
// call each; a larger buffer lets TLS fill whole 16 KiB records, a quarter
// of the calls and of the per-record sealing.
const writeBufferSize = 256 << 10

// withWriteBuffer returns c using a copy of its transport with the larger
// write buffer, when the transport is Go's own and leaves the size unset.
func withWriteBuffer(c *http.Client) *http.Client {
	return withTransport(c, func(tr *http.Transport) bool {
		if tr.WriteBufferSize != 0 {
			return false
		}
		tr.WriteBufferSize = writeBufferSize
		return true
	})
}

// withTransport is c with a clone of its transport changed by edit, or c
// itself when its transport is not Go's or edit leaves it (returns false).
func withTransport(c *http.Client, edit func(*http.Transport) bool) *http.Client {
	tr, ok := c.Transport.(*http.Transport)
	if c.Transport == nil {
		tr, ok = http.DefaultTransport.(*http.Transport), true
	}
	if !ok {
		return c
	}
	tr = tr.Clone()
	if !edit(tr) {
		return c
	}
	cc := *c
	cc.Transport = tr
	return &cc
}

// NewWithClients uses the given API implementations; cfg supplies region,
// bucket and tuning (its credentials and endpoints are ignored).
func NewWithClients(cfg Config, c Clients) *Target {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.PartSize <= 0 {
		cfg.PartSize = 16 << 20
	}
	if cfg.PartSize < MinPartSize {
		cfg.PartSize = MinPartSize
	}
	if cfg.PartSize > MaxPartSize {
		cfg.PartSize = MaxPartSize
	}
	if cfg.BufferBytes <= 0 {
		cfg.BufferBytes = 192 << 20
	}
	if cfg.RetryAttempts <= 0 {
		cfg.RetryAttempts = 8
	}
	if cfg.RetryBaseDelay <= 0 {
		cfg.RetryBaseDelay = 500 * time.Millisecond
	}
	if cfg.PollInitial <= 0 {
		cfg.PollInitial = 2 * time.Second
	}
	if cfg.PollMax <= 0 {
		cfg.PollMax = 30 * time.Second
	}
	if cfg.PollMax < cfg.PollInitial {
		cfg.PollMax = cfg.PollInitial
	}
	if cfg.ImportMode == "" {
		cfg.ImportMode = ModeImportImage
	}
	if cfg.IAMPropagation <= 0 {
		cfg.IAMPropagation = 2 * time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Target{cfg: cfg, s3: c.S3, iam: c.IAM, sts: c.STS, cf: c.CloudFormation, ssm: c.SSM, ec2q: c.EC2Query,
		kms: c.KMS, quotas: c.Quotas, ebs: c.EBS, bufs: cmp.Or(cfg.Buffers, NewBuffers(0)), log: log}
}

// Region is the target's region.
func (t *Target) Region() string { return t.cfg.Region }

// Bucket is the staging bucket (empty before Setup when not configured).
func (t *Target) Bucket() string { return t.cfg.Bucket }

func (t *Target) bucket() (string, error) {
	if t.cfg.Bucket == "" {
		return "", errors.New("no staging bucket configured (run setup first)")
	}
	return t.cfg.Bucket, nil
}
