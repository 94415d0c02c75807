package aws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/rehost/rehost/pkg/awsregion"
)

// Staging lifecycle: objects expire after a week, unfinished uploads after a day.
const (
	lifecycleRuleID    = "rehost-staging"
	expireAfterDays    = 7
	abortUploadsAfterD = 1
)

// SetupOptions say what account setup should ensure.
type SetupOptions struct {
	// Bucket is the staging bucket; default rehost-staging-<account>-<region>.
	Bucket string
	// KMSKeyID makes the bucket default to SSE-KMS with this key (an ARN or a
	// key id) and bucket keys; empty means SSE-S3 (AES256). Default: Config.KMSKeyID.
	KMSKeyID string
	// FixBucket changes a pre-existing bucket whose settings are weaker than
	// wanted; otherwise they are only reported as warnings.
	FixBucket bool
	// RoleName is the VM Import service role; default "vmimport".
	RoleName string
	// CreateRole creates the role when missing and puts its inline policy;
	// otherwise the role is only checked.
	CreateRole bool
}

// SetupReport says what Setup found and changed.
type SetupReport struct {
	Account string `json:"account"`
	Region  string `json:"region"`
	Bucket  string `json:"bucket"`
	// RoleName and RoleARN name the VM Import service role (ARN empty when
	// the role could not be read).
	RoleName string `json:"roleName"`
	RoleARN  string `json:"roleArn,omitempty"`
	// Changes lists, in order, what Setup changed; empty on a re-run over a
	// correct account.
	Changes []string `json:"changes"`
	// Warnings list what is weaker than wanted and was left alone, and what
	// an administrator must do.
	Warnings []string `json:"warnings"`
	// RoleDocuments is set when the role is missing or incomplete and this
	// caller could not (or was not asked to) fix it: the exact documents to
	// hand to an administrator.
	RoleDocuments *RoleDocuments `json:"roleDocuments,omitempty"`
}

// RoleDocuments are the IAM documents of the VM Import service role.
type RoleDocuments struct {
	RoleName    string `json:"roleName"`
	TrustPolicy string `json:"trustPolicy"`
	PolicyName  string `json:"policyName"`
	Policy      string `json:"policy"`
}

func (r *SetupReport) change(format string, args ...any) {
	r.Changes = append(r.Changes, fmt.Sprintf(format, args...))
}

func (r *SetupReport) warn(format string, args ...any) {
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
}

// Setup prepares the account for staging and import: the staging bucket
// (region, Block Public Access, default encryption, a policy denying non-TLS
// access, a lifecycle rule expiring staged objects after 7 days and
// unfinished uploads after 1 day) and the VM Import service role.
//
// Each call is retried under the target's policy, as every AWS call is.
// Idempotent: a re-run over a correct account changes nothing. A
// pre-existing bucket with weaker settings is changed only with FixBucket.
// On success the Target stages into the bucket (and with the key) set up.
// Not to be called concurrently with staging.
func (t *Target) Setup(ctx context.Context, opts SetupOptions) (SetupReport, error) {
	rep := SetupReport{Region: t.cfg.Region, Changes: []string{}, Warnings: []string{}}
	var id *sts.GetCallerIdentityOutput
	err := t.call(ctx, "GetCallerIdentity", func(ctx context.Context) (err error) {
		id, err = t.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		return err
	})
	if err != nil {
		return rep, fmt.Errorf("setup: identify the account (sts GetCallerIdentity): %w", err)
	}
	rep.Account = sdk.ToString(id.Account)
	if opts.KMSKeyID == "" {
		opts.KMSKeyID = t.cfg.KMSKeyID
	}
	if opts.KMSKeyID != "" && !strings.HasPrefix(opts.KMSKeyID, "arn:") {
		if strings.HasPrefix(opts.KMSKeyID, "alias/") {
			return rep, fmt.Errorf("setup: KMS key %q: give the key ARN or key id, not an alias (IAM policies and grants need the key itself)", opts.KMSKeyID)
		}
		opts.KMSKeyID = fmt.Sprintf("arn:%s:kms:%s:%s:key/%s", awsregion.Partition(rep.Region), rep.Region, rep.Account, opts.KMSKeyID)
	}
	rep.Bucket = opts.Bucket
	if rep.Bucket == "" {
		rep.Bucket = fmt.Sprintf("rehost-staging-%s-%s", rep.Account, rep.Region)
	}
	rep.RoleName = opts.RoleName
	if rep.RoleName == "" {
		rep.RoleName = ImportRoleName
	}
	if err := t.setupBucket(ctx, &rep, opts); err != nil {
		return rep, fmt.Errorf("setup bucket %s: %w", rep.Bucket, err)
	}
	t.cfg.Bucket = rep.Bucket
	t.cfg.KMSKeyID = opts.KMSKeyID
	if err := t.setupRole(ctx, &rep, opts); err != nil {
		return rep, fmt.Errorf("setup role %s: %w", rep.RoleName, err)
	}
	return rep, nil
}

// bucketSetting is one property of the staging bucket. Its check reads and
// its apply puts whole documents, so either may be run again after a
// transient failure: setupBucket runs them under the target's policy.
type bucketSetting struct {
	name string
	// code is account preflight's finding code when the setting is off.
	code string
	want string
	// feature names the S3 feature (as S3's documentation does) behind it.
	feature string
	// check returns ok, and a description of the current state when not ok.
	check func(ctx context.Context) (bool, string, error)
	apply func(ctx context.Context) error
}

func (t *Target) setupBucket(ctx context.Context, rep *SetupReport, opts SetupOptions) error {
	bucket := rep.Bucket
	created, err := t.ensureBucket(ctx, rep)
	if err != nil {
		return err
	}
	var applied []string
	for _, s := range t.bucketSettings(bucket, rep.Region, opts.KMSKeyID) {
		apply := func() error { return t.call(ctx, "set "+s.name, s.apply) }
		if created {
			if err := apply(); err != nil {
				return t.undoCreate(ctx, rep, applied, fmt.Errorf("set %s: %w", s.name, lacking(s, err)))
			}
			applied = append(applied, s.want)
			continue
		}
		var ok bool
		var have string
		err := t.call(ctx, "check "+s.name, func(ctx context.Context) (err error) {
			ok, have, err = s.check(ctx)
			return err
		})
		if err != nil {
			return fmt.Errorf("check %s: %w", s.name, lacking(s, err))
		}
		if ok {
			continue
		}
		if !opts.FixBucket {
			rep.warn("bucket %s: %s is %s, want %s (re-run with --fix-bucket to change it)", bucket, s.name, have, s.want)
			continue
		}
		if err := apply(); err != nil {
			return fmt.Errorf("set %s: %w", s.name, lacking(s, err))
		}
		rep.change("bucket %s: %s changed from %s to %s", bucket, s.name, have, s.want)
	}
	if created {
		names := []string{}
		for _, s := range t.bucketSettings(bucket, rep.Region, opts.KMSKeyID) {
			names = append(names, s.want)
		}
		rep.change("bucket %s: configured %s", bucket, strings.Join(names, "; "))
	}
	return nil
}

// undoCreate removes a bucket Setup created when configuring it failed, so
// a failed setup leaves no half-configured bucket; when it cannot, the
// report says what was set.
func (t *Target) undoCreate(ctx context.Context, rep *SetupReport, applied []string, cause error) error {
	bucket := rep.Bucket
	err := t.call(ctx, "DeleteBucket", func(ctx context.Context) error {
		_, err := t.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: sdk.String(bucket)})
		return err
	})
	if err != nil {
		if len(applied) > 0 {
			rep.change("bucket %s: configured %s", bucket, strings.Join(applied, "; "))
		}
		return fmt.Errorf("%w (the bucket created for it could not be removed again: %v)", cause, err)
	}
	rep.change("bucket %s: removed again, as configuring it failed", bucket)
	return cause
}

// lacking words an S3 endpoint's 501 Not Implemented for a bucket setting
// as the feature it lacks.
func lacking(s bucketSetting, err error) error {
	if httpStatus(err) != 501 && apiCode(err) != "NotImplemented" {
		return err
	}
	return fmt.Errorf("the S3 endpoint does not implement %s (%s answered 501 Not Implemented); the staging bucket needs "+
		"Block Public Access, default encryption, a bucket policy and lifecycle rules: use Amazon S3, or an S3-compatible "+
		"server that has them (versitygw lacks some: put it behind `rehost-lab s3`, see docs/lab.md): %w", s.feature, s.name, err)
}

// ensureBucket creates the bucket unless it exists in the right region; it
// reports whether it created it.
func (t *Target) ensureBucket(ctx context.Context, rep *SetupReport) (bool, error) {
	bucket, region := rep.Bucket, rep.Region
	err := t.call(ctx, "HeadBucket", func(ctx context.Context) error {
		_, err := t.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: sdk.String(bucket)})
		return err
	})
	switch {
	case err == nil:
		var loc *s3.GetBucketLocationOutput
		err := t.call(ctx, "GetBucketLocation", func(ctx context.Context) (err error) {
			loc, err = t.s3.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: sdk.String(bucket)})
			return err
		})
		if err != nil {
			return false, fmt.Errorf("get bucket location: %w", err)
		}
		have := string(loc.LocationConstraint)
		switch have {
		case "":
			have = "us-east-1"
		case "EU":
			have = "eu-west-1"
		}
		if have != region {
			return false, fmt.Errorf("bucket is in %s but imports run in %s: VM Import reads only from a bucket in its own region; choose another bucket name", have, region)
		}
		return false, nil
	case httpStatus(err) == 403:
		return false, fmt.Errorf("bucket exists but is not accessible with these credentials (another account may own the name): choose another bucket name: %w", err)
	case httpStatus(err) == 301:
		return false, fmt.Errorf("bucket exists in another region: VM Import reads only from a bucket in %s; choose another bucket name", region)
	case httpStatus(err) != 404 && apiCode(err) != "NotFound" && apiCode(err) != "NoSuchBucket":
		return false, fmt.Errorf("head bucket: %w", err)
	}
	in := &s3.CreateBucketInput{Bucket: sdk.String(bucket)}
	if region != "us-east-1" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(region)}
	}
	// A retry after a create whose answer was lost is told
	// BucketAlreadyOwnedByYou: the bucket is the one this call created.
	tries := 0
	err = t.call(ctx, "CreateBucket", func(ctx context.Context) error {
		tries++
		_, err := t.s3.CreateBucket(ctx, in)
		return err
	})
	if err != nil && (apiCode(err) != "BucketAlreadyOwnedByYou" || tries == 1) {
		switch apiCode(err) {
		case "BucketAlreadyOwnedByYou":
			return false, nil
		case "BucketAlreadyExists":
			return false, fmt.Errorf("the bucket name is taken by another account: choose another bucket name")
		}
		return false, fmt.Errorf("create bucket: %w", err)
	}
	rep.change("bucket %s: created in %s", bucket, region)
	return true, nil
}

func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func (t *Target) bucketSettings(bucket, region, kmsKey string) []bucketSetting {
	b := sdk.String(bucket)
	partition := awsregion.Partition(region)
	bucketARN := "arn:" + partition + ":s3:::" + bucket

	wantEnc := "SSE-S3 (AES256) default encryption"
	if kmsKey != "" {
		wantEnc = "SSE-KMS default encryption with key " + kmsKey + " and bucket keys"
	}
	return []bucketSetting{
		{
			name:    "block public access",
			code:    CodeBucketPublicAccess,
			feature: "Block Public Access (PutPublicAccessBlock)",
			want:    "all four Block Public Access settings on",
			check: func(ctx context.Context) (bool, string, error) {
				out, err := t.s3.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: b})
				if apiCode(err) == "NoSuchPublicAccessBlockConfiguration" {
					return false, "not configured", nil
				}
				if err != nil {
					return false, "", err
				}
				c := out.PublicAccessBlockConfiguration
				if c == nil {
					return false, "not configured", nil
				}
				var off []string
				for name, v := range map[string]*bool{"BlockPublicAcls": c.BlockPublicAcls, "IgnorePublicAcls": c.IgnorePublicAcls,
					"BlockPublicPolicy": c.BlockPublicPolicy, "RestrictPublicBuckets": c.RestrictPublicBuckets} {
					if !sdk.ToBool(v) {
						off = append(off, name)
					}
				}
				if len(off) > 0 {
					slices.Sort(off)
					return false, "partly off (" + strings.Join(off, ", ") + ")", nil
				}
				return true, "", nil
			},
			apply: func(ctx context.Context) error {
				_, err := t.s3.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{Bucket: b,
					PublicAccessBlockConfiguration: &types.PublicAccessBlockConfiguration{
						BlockPublicAcls: sdk.Bool(true), IgnorePublicAcls: sdk.Bool(true),
						BlockPublicPolicy: sdk.Bool(true), RestrictPublicBuckets: sdk.Bool(true)}})
				return err
			},
		},
		{
			name:    "default encryption",
			code:    CodeBucketEncryption,
			feature: "default bucket encryption (PutBucketEncryption)",
			want:    wantEnc,
			check: func(ctx context.Context) (bool, string, error) {
				out, err := t.s3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: b})
				if apiCode(err) == "ServerSideEncryptionConfigurationNotFoundError" {
					return false, "not configured", nil
				}
				if err != nil {
					return false, "", err
				}
				have := "not configured"
				if c := out.ServerSideEncryptionConfiguration; c != nil {
					for _, r := range c.Rules {
						d := r.ApplyServerSideEncryptionByDefault
						if d == nil {
							continue
						}
						alg, key := d.SSEAlgorithm, sdk.ToString(d.KMSMasterKeyID)
						isKMS := alg == types.ServerSideEncryptionAwsKms || alg == types.ServerSideEncryptionAwsKmsDsse
						switch {
						case kmsKey == "" && (alg == types.ServerSideEncryptionAes256 || isKMS):
							return true, "", nil
						case kmsKey != "" && isKMS && sameKey(key, kmsKey):
							return true, "", nil
						case isKMS:
							have = "SSE-KMS with key " + key
						default:
							have = "SSE-S3 (" + string(alg) + ")"
						}
					}
				}
				return false, have, nil
			},
			apply: func(ctx context.Context) error {
				def := &types.ServerSideEncryptionByDefault{SSEAlgorithm: types.ServerSideEncryptionAes256}
				var bk *bool
				if kmsKey != "" {
					def = &types.ServerSideEncryptionByDefault{SSEAlgorithm: types.ServerSideEncryptionAwsKms, KMSMasterKeyID: sdk.String(kmsKey)}
					bk = sdk.Bool(true)
				}
				_, err := t.s3.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: b,
					ServerSideEncryptionConfiguration: &types.ServerSideEncryptionConfiguration{
						Rules: []types.ServerSideEncryptionRule{{ApplyServerSideEncryptionByDefault: def, BucketKeyEnabled: bk}}}})
				return err
			},
		},
		{
			name:    "bucket policy",
			code:    CodeBucketPolicy,
			feature: "bucket policies (PutBucketPolicy)",
			want:    "a statement denying s3:* without TLS (aws:SecureTransport false)",
			check: func(ctx context.Context) (bool, string, error) {
				doc, err := t.bucketPolicy(ctx, bucket)
				if err != nil {
					return false, "", err
				}
				if doc == nil {
					return false, "absent", nil
				}
				for _, st := range doc.statements() {
					if deniesInsecure(st, bucketARN) {
						return true, "", nil
					}
				}
				return false, "without a deny on non-TLS access", nil
			},
			apply: func(ctx context.Context) error {
				doc, err := t.bucketPolicy(ctx, bucket)
				if err != nil {
					return err
				}
				ours := bucketPolicyStatement(partition, bucket)
				var stmts []any
				if doc != nil {
					for _, st := range doc.Statement {
						if m, ok := st.(map[string]any); ok && m["Sid"] == denyInsecureSid {
							continue
						}
						stmts = append(stmts, st)
					}
				}
				stmts = append(stmts, ours)
				out := policyDoc{Version: "2012-10-17", Statement: stmts}
				if doc != nil && doc.Version != "" {
					out.Version = doc.Version
				}
				body, err := json.Marshal(out)
				if err != nil {
					return err
				}
				_, err = t.s3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: b, Policy: sdk.String(string(body))})
				return err
			},
		},
		{
			name:    "lifecycle",
			code:    CodeBucketLifecycle,
			feature: "lifecycle configuration (PutBucketLifecycleConfiguration)",
			want:    fmt.Sprintf("objects under %s expire after %d days and unfinished uploads are aborted after %d day", StagingPrefix, expireAfterDays, abortUploadsAfterD),
			check: func(ctx context.Context) (bool, string, error) {
				rules, err := t.lifecycleRules(ctx, bucket)
				if err != nil {
					return false, "", err
				}
				if len(rules) == 0 {
					return false, "absent", nil
				}
				expires, aborts := false, false
				for _, r := range rules {
					if r.Status != types.ExpirationStatusEnabled || !coversPrefix(r, StagingPrefix) {
						continue
					}
					if e := r.Expiration; e != nil && sdk.ToInt32(e.Days) > 0 && sdk.ToInt32(e.Days) <= expireAfterDays {
						expires = true
					}
					if a := r.AbortIncompleteMultipartUpload; a != nil && sdk.ToInt32(a.DaysAfterInitiation) > 0 &&
						sdk.ToInt32(a.DaysAfterInitiation) <= abortUploadsAfterD {
						aborts = true
					}
				}
				switch {
				case expires && aborts:
					return true, "", nil
				case expires:
					return false, "expiring objects but not aborting unfinished uploads within a day", nil
				case aborts:
					return false, "aborting unfinished uploads but not expiring objects within a week", nil
				}
				return false, "without a rule expiring staged objects", nil
			},
			apply: func(ctx context.Context) error {
				rules, err := t.lifecycleRules(ctx, bucket)
				if err != nil {
					return err
				}
				var keep []types.LifecycleRule
				for _, r := range rules {
					if sdk.ToString(r.ID) != lifecycleRuleID {
						keep = append(keep, r)
					}
				}
				keep = append(keep, types.LifecycleRule{
					ID:                             sdk.String(lifecycleRuleID),
					Status:                         types.ExpirationStatusEnabled,
					Filter:                         &types.LifecycleRuleFilter{Prefix: sdk.String(StagingPrefix)},
					Expiration:                     &types.LifecycleExpiration{Days: sdk.Int32(expireAfterDays)},
					AbortIncompleteMultipartUpload: &types.AbortIncompleteMultipartUpload{DaysAfterInitiation: sdk.Int32(abortUploadsAfterD)},
				})
				_, err = t.s3.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{Bucket: b,
					LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: keep}})
				return err
			},
		},
	}
}

// coversPrefix reports whether a lifecycle rule applies to every object under prefix.
func coversPrefix(r types.LifecycleRule, prefix string) bool {
	if f := r.Filter; f != nil {
		if f.Tag != nil || f.And != nil || f.ObjectSizeGreaterThan != nil || f.ObjectSizeLessThan != nil {
			return false
		}
		return strings.HasPrefix(prefix, sdk.ToString(f.Prefix))
	}
	return strings.HasPrefix(prefix, sdk.ToString(r.Prefix)) //nolint:staticcheck // legacy rules carry Prefix
}

func (t *Target) lifecycleRules(ctx context.Context, bucket string) ([]types.LifecycleRule, error) {
	out, err := t.s3.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: sdk.String(bucket)})
	if apiCode(err) == "NoSuchLifecycleConfiguration" {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return out.Rules, nil
}

type parsedPolicy struct {
	Version   string `json:"Version"`
	Statement []any  `json:"Statement"`
}

func (p *parsedPolicy) statements() []map[string]any {
	var out []map[string]any
	for _, s := range p.Statement {
		if m, ok := s.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// bucketPolicy reads and parses the bucket policy; nil when there is none.
func (t *Target) bucketPolicy(ctx context.Context, bucket string) (*parsedPolicy, error) {
	out, err := t.s3.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: sdk.String(bucket)})
	if apiCode(err) == "NoSuchBucketPolicy" {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	raw := sdk.ToString(out.Policy)
	if strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	var p parsedPolicy
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return nil, fmt.Errorf("parse bucket policy: %w", err)
	}
	// A single statement may be given as an object rather than a list.
	if p.Statement == nil {
		var one struct {
			Statement map[string]any `json:"Statement"`
		}
		if json.Unmarshal([]byte(raw), &one) == nil && one.Statement != nil {
			p.Statement = []any{one.Statement}
		}
	}
	return &p, nil
}

// sameKey compares KMS key references loosely: an ARN and a bare key id of
// the same key match.
func sameKey(a, b string) bool {
	tail := func(s string) string {
		if i := strings.LastIndex(s, "key/"); i >= 0 {
			return s[i+4:]
		}
		return s
	}
	return a == b || (a != "" && tail(a) == tail(b))
}

// rolePolicyName is the inline policy Setup manages on the service role:
// one per staging bucket, so other users of the vmimport role keep theirs.
func rolePolicyName(bucket string) string {
	n := "rehost-" + bucket
	if len(n) > 128 {
		n = n[:128]
	}
	return n
}

func (t *Target) setupRole(ctx context.Context, rep *SetupReport, opts SetupOptions) error {
	trust, policy := policyDocuments(awsregion.Partition(rep.Region), rep.Bucket, opts.KMSKeyID)
	docs := &RoleDocuments{RoleName: rep.RoleName, TrustPolicy: trust, PolicyName: rolePolicyName(rep.Bucket), Policy: policy}
	name := rep.RoleName
	needAdmin := func(format string, args ...any) {
		rep.warn(format, args...)
		rep.RoleDocuments = docs
	}

	role, err := t.getRole(ctx, name)
	switch {
	case isAccessDenied(err):
		needAdmin("role %s: these credentials may not read IAM roles; ask an administrator to make sure the role exists with the trust policy and inline policy %s shown", rep.RoleName, docs.PolicyName)
		return nil
	case apiCode(err) == "NoSuchEntity":
		if !opts.CreateRole {
			needAdmin("role %s does not exist; create it with the documents shown (or re-run with --create-role)", rep.RoleName)
			return nil
		}
		// A retry after a create whose answer was lost is told
		// EntityAlreadyExists, and the role is then read as it is.
		out, err := t.createRole(ctx, name, trust, "EC2 VM Import service role (created by rehost)")
		if isAccessDenied(err) {
			needAdmin("role %s does not exist and these credentials may not create roles; ask an administrator to create it with the documents shown", rep.RoleName)
			return nil
		}
		if apiCode(err) == "EntityAlreadyExists" {
			return t.setupRole(ctx, rep, opts)
		}
		if err != nil {
			return fmt.Errorf("create role: %w", err)
		}
		rep.RoleARN = out.Arn
		rep.change("role %s: created with the vmie.amazonaws.com trust policy", rep.RoleName)
	case err != nil:
		return fmt.Errorf("get role: %w", err)
	default:
		rep.RoleARN = role.Arn
		if !trustsVMIE(role.trustPolicy()) {
			needAdmin("role %s does not let vmie.amazonaws.com assume it with external id vmimport; replace its trust policy with the one shown", rep.RoleName)
		}
	}

	have, err := t.getRolePolicy(ctx, name, docs.PolicyName)
	switch {
	case err == nil:
	case apiCode(err) == "NoSuchEntity":
	case isAccessDenied(err):
		needAdmin("role %s: these credentials may not read its policies; make sure inline policy %s matches the one shown", rep.RoleName, docs.PolicyName)
		return nil
	default:
		return fmt.Errorf("get role policy %s: %w", docs.PolicyName, err)
	}
	if have != "" && sameJSON(have, policy) {
		return nil
	}
	what := "missing"
	if have != "" {
		what = "different from what this bucket and key need"
	}
	if !opts.CreateRole {
		needAdmin("role %s: inline policy %s is %s; put the policy shown (or re-run with --create-role)", rep.RoleName, docs.PolicyName, what)
		return nil
	}
	// A just-created role may not be visible to PutRolePolicy yet.
	deadline := time.Now().Add(t.cfg.IAMPropagation)
	propagation := t.policy("PutRolePolicy").With(func(err error) bool {
		return apiCode(err) == "NoSuchEntity" && time.Now().Before(deadline)
	})
	propagation.Attempts = 1 << 20 // the deadline ends it
	err = propagation.Do(ctx, func(ctx context.Context) error {
		return t.putRolePolicy(ctx, name, docs.PolicyName, policy)
	})
	if isAccessDenied(err) {
		needAdmin("role %s: these credentials may not change its policies; ask an administrator to put inline policy %s shown", rep.RoleName, docs.PolicyName)
		return nil
	}
	if err != nil {
		return fmt.Errorf("put role policy %s: %w", docs.PolicyName, err)
	}
	if have == "" {
		rep.change("role %s: added inline policy %s, which lets VM Import read bucket %s", rep.RoleName, docs.PolicyName, rep.Bucket)
	} else {
		rep.change("role %s: replaced inline policy %s, which did not match what bucket %s (and its key) need", rep.RoleName, docs.PolicyName, rep.Bucket)
	}
	return nil
}

func isAccessDenied(err error) bool {
	switch apiCode(err) {
	case "AccessDenied", "AccessDeniedException", "UnauthorizedOperation":
		return true
	}
	return false
}

// trustsVMIE reports whether a trust policy lets VM Import assume the role.
func trustsVMIE(doc string) bool {
	var p parsedPolicy
	if json.Unmarshal([]byte(doc), &p) != nil {
		return false
	}
	for _, st := range p.statements() {
		if e, _ := st["Effect"].(string); e != "Allow" || !contains(asList(st["Action"]), "sts:AssumeRole") {
			continue
		}
		pr, _ := st["Principal"].(map[string]any)
		if contains(asList(pr["Service"]), "vmie.amazonaws.com") {
			return true
		}
	}
	return false
}
