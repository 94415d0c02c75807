package aws

import (
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rehost/rehost/internal/lab/emulator"
	"github.com/rehost/rehost/internal/lab/s3peer"
)

var update = flag.Bool("update", false, "rewrite the policy/ golden files")

// TestPolicyFiles keeps the documents shipped under policy/ equal to what
// PolicyDocuments and BucketPolicy generate.
func TestPolicyFiles(t *testing.T) {
	const bucket = "rehost-staging-111122223333-us-east-1"
	const key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	trust, pol := PolicyDocuments(bucket, "")
	_, polKMS := PolicyDocuments(bucket, key)
	files := map[string]string{
		"vmimport-trust-policy.json":    trust,
		"vmimport-role-policy.json":     pol,
		"vmimport-role-policy-kms.json": polKMS,
		"staging-bucket-policy.json":    BucketPolicy(bucket),
	}
	for name, want := range files {
		p := filepath.Join("policy", name)
		if *update {
			if err := os.WriteFile(p, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (run go test -run TestPolicyFiles -update)", err)
		}
		if string(got) != want {
			t.Errorf("%s is stale: run go test ./pkg/target/aws -run TestPolicyFiles -update\n--- file\n%s\n--- generated\n%s", p, got, want)
		}
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(polKMS), &doc); err != nil {
		t.Fatalf("role policy is not JSON: %v", err)
	}
	if !strings.Contains(polKMS, `"kms:GenerateDataKey*"`) || strings.Contains(pol, "kms:") {
		t.Fatal("KMS statement must appear exactly when a key is given")
	}
	if !strings.Contains(trust, `"vmie.amazonaws.com"`) || !strings.Contains(trust, `"sts:ExternalId": "vmimport"`) {
		t.Fatalf("trust policy: %s", trust)
	}
}

func TestSetupEmptyAccount(t *testing.T) {
	acc := newAccount(t, emulator.Config{}, Config{})
	ctx := context.Background()
	rep, err := acc.t.Setup(ctx, SetupOptions{CreateRole: true})
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	wantBucket := "rehost-staging-" + acc.emu.AccountID() + "-us-east-1"
	if rep.Bucket != wantBucket || acc.t.Bucket() != wantBucket || rep.Account != acc.emu.AccountID() {
		t.Fatalf("report bucket %q account %q, target bucket %q", rep.Bucket, rep.Account, acc.t.Bucket())
	}
	if len(rep.Warnings) != 0 || rep.RoleDocuments != nil {
		t.Fatalf("warnings on an empty account: %q", rep.Warnings)
	}
	joined := strings.Join(rep.Changes, "\n")
	for _, want := range []string{"created in us-east-1", "Block Public Access", "SSE-S3", "aws:SecureTransport", "expire after 7 days",
		"role vmimport: created", "inline policy rehost-" + wantBucket} {
		if !strings.Contains(joined, want) {
			t.Errorf("changes lack %q:\n%s", want, joined)
		}
	}
	checkBucketSettings(t, acc.srv, wantBucket, "")

	roles := acc.emu.Roles()
	if len(roles) != 1 || roles[0].Name != "vmimport" {
		t.Fatalf("emulator roles: %+v", roles)
	}
	trust, pol := PolicyDocuments(wantBucket, "")
	if !sameJSON(roles[0].TrustPolicy, trust) || !sameJSON(roles[0].Policies["rehost-"+wantBucket], pol) {
		t.Fatalf("role documents differ from PolicyDocuments:\n%s\n%v", roles[0].TrustPolicy, roles[0].Policies)
	}

	// Re-running changes nothing.
	again, err := acc.t.Setup(ctx, SetupOptions{CreateRole: true})
	if err != nil {
		t.Fatalf("second setup: %v", err)
	}
	if len(again.Changes) != 0 || len(again.Warnings) != 0 {
		t.Fatalf("re-run changed %q, warned %q", again.Changes, again.Warnings)
	}
	if again.RoleARN == "" || !strings.HasSuffix(again.RoleARN, ":role/vmimport") {
		t.Fatalf("role ARN %q", again.RoleARN)
	}
}

// checkBucketSettings verifies what the front recorded and versitygw stores.
func checkBucketSettings(t *testing.T, srv *s3peer.Server, bucket, kmsKey string) {
	t.Helper()
	enc := string(srv.Front.Config(bucket, s3peer.SubEncryption))
	if kmsKey == "" {
		if !strings.Contains(enc, "<SSEAlgorithm>AES256</SSEAlgorithm>") {
			t.Errorf("encryption recorded: %s", enc)
		}
	} else if !strings.Contains(enc, "<SSEAlgorithm>aws:kms</SSEAlgorithm>") || !strings.Contains(enc, kmsKey) ||
		!strings.Contains(enc, "<BucketKeyEnabled>true</BucketKeyEnabled>") {
		t.Errorf("encryption recorded: %s", enc)
	}
	lc := string(srv.Front.Config(bucket, s3peer.SubLifecycle))
	for _, want := range []string{"<Days>7</Days>", "<DaysAfterInitiation>1</DaysAfterInitiation>", "<Prefix>rehost/</Prefix>", "<Status>Enabled</Status>"} {
		if !strings.Contains(lc, want) {
			t.Errorf("lifecycle recorded lacks %s: %s", want, lc)
		}
	}
	// The rule Setup wrote covers every key a run stages, whatever its ids.
	for _, key := range []string{StagingKey("sms-job-1", "sms-run-1", 0, "vmdk"), StagingKey("../x", "/", 9, "vhdx")} {
		if !lifecycleCovers(t, lc, key) {
			t.Errorf("staged key %s falls outside the lifecycle rule: %s", key, lc)
		}
	}
	pab := string(srv.Front.Config(bucket, s3peer.SubPublicAccessBlock))
	for _, f := range []string{"BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"} {
		if !strings.Contains(pab, "<"+f+">true</"+f+">") {
			t.Errorf("public access block lacks %s: %s", f, pab)
		}
	}
	pol, err := srv.S3Client().GetBucketPolicy(context.Background(), &s3.GetBucketPolicyInput{Bucket: sdk.String(bucket)})
	if err != nil {
		t.Fatalf("bucket policy from versitygw: %v", err)
	}
	var doc parsedPolicy
	if err := json.Unmarshal([]byte(sdk.ToString(pol.Policy)), &doc); err != nil {
		t.Fatalf("bucket policy: %v", err)
	}
	found := false
	for _, st := range doc.statements() {
		found = found || deniesInsecure(st, "arn:aws:s3:::"+bucket)
	}
	if !found {
		t.Errorf("bucket policy does not deny non-TLS access: %s", sdk.ToString(pol.Policy))
	}
}

func TestSetupWeakBucket(t *testing.T) {
	acc := newAccount(t, emulator.Config{}, Config{})
	ctx := context.Background()
	c := acc.srv.S3Client()
	const bucket = "weak-bucket"
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: sdk.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	other := `{"Sid":"KeepMe","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::weak-bucket/*"}`
	if _, err := c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: sdk.String(bucket),
		Policy: sdk.String(`{"Version":"2012-10-17","Statement":[` + other + `]}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{Bucket: sdk.String(bucket),
		LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: []types.LifecycleRule{{
			ID: sdk.String("logs"), Status: types.ExpirationStatusEnabled,
			Filter:     &types.LifecycleRuleFilter{Prefix: sdk.String("logs/")},
			Expiration: &types.LifecycleExpiration{Days: sdk.Int32(90)},
		}, {
			ID: sdk.String("slow"), Status: types.ExpirationStatusEnabled,
			Filter:     &types.LifecycleRuleFilter{Prefix: sdk.String("")},
			Expiration: &types.LifecycleExpiration{Days: sdk.Int32(30)},
		}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{Bucket: sdk.String(bucket),
		PublicAccessBlockConfiguration: &types.PublicAccessBlockConfiguration{BlockPublicAcls: sdk.Bool(true), IgnorePublicAcls: sdk.Bool(true)}}); err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for _, sub := range []string{s3peer.SubEncryption, s3peer.SubLifecycle, s3peer.SubPublicAccessBlock} {
		before[sub] = string(acc.srv.Front.Config(bucket, sub))
	}

	rep, err := acc.t.Setup(ctx, SetupOptions{Bucket: bucket})
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	if len(rep.Changes) != 0 {
		t.Fatalf("setup without FixBucket changed %q", rep.Changes)
	}
	w := strings.Join(rep.Warnings, "\n")
	for _, want := range []string{
		"block public access is partly off (BlockPublicPolicy, RestrictPublicBuckets)",
		"default encryption is not configured",
		"bucket policy is without a deny on non-TLS access",
		"lifecycle is without a rule expiring staged objects",
		"role vmimport does not exist",
		"--fix-bucket",
	} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	if rep.RoleDocuments == nil || !strings.Contains(rep.RoleDocuments.Policy, "arn:aws:s3:::weak-bucket/*") {
		t.Fatalf("role documents for the administrator: %+v", rep.RoleDocuments)
	}
	for sub, was := range before {
		if got := string(acc.srv.Front.Config(bucket, sub)); got != was {
			t.Fatalf("%s changed without FixBucket", sub)
		}
	}
	if len(acc.emu.Roles()) != 0 {
		t.Fatal("role created without CreateRole")
	}

	rep, err = acc.t.Setup(ctx, SetupOptions{Bucket: bucket, FixBucket: true, CreateRole: true})
	if err != nil {
		t.Fatalf("setup with FixBucket: %v", err)
	}
	if len(rep.Warnings) != 0 {
		t.Fatalf("warnings after fixing: %q", rep.Warnings)
	}
	if len(rep.Changes) != 6 {
		t.Fatalf("want 4 bucket changes + role + policy, got %q", rep.Changes)
	}
	if !strings.Contains(rep.Changes[0], "block public access changed from partly off") {
		t.Fatalf("first change: %q", rep.Changes[0])
	}
	checkBucketSettings(t, acc.srv, bucket, "")
	lc := string(acc.srv.Front.Config(bucket, s3peer.SubLifecycle))
	if !strings.Contains(lc, "<ID>logs</ID>") || !strings.Contains(lc, "<Days>90</Days>") {
		t.Fatalf("fixing the lifecycle dropped the bucket's own rules: %s", lc)
	}
	pol, _ := c.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: sdk.String(bucket)})
	if !strings.Contains(sdk.ToString(pol.Policy), "KeepMe") {
		t.Fatalf("fixing the policy dropped the bucket's own statement: %s", sdk.ToString(pol.Policy))
	}
}

func TestSetupKMSAndRoleDenied(t *testing.T) {
	acc := newAccount(t, emulator.Config{DenyCreateRole: true}, Config{})
	ctx := context.Background()
	const keyID = "1234abcd-12ab-34cd-56ef-1234567890ab"
	rep, err := acc.t.Setup(ctx, SetupOptions{Bucket: "kms-bucket", KMSKeyID: keyID, CreateRole: true})
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	keyARN := "arn:aws:kms:us-east-1:" + acc.emu.AccountID() + ":key/" + keyID
	checkBucketSettings(t, acc.srv, "kms-bucket", keyARN)
	if rep.RoleDocuments == nil {
		t.Fatalf("no role documents when CreateRole is denied: %+v", rep)
	}
	trust, pol := PolicyDocuments("kms-bucket", keyARN)
	if rep.RoleDocuments.TrustPolicy != trust || rep.RoleDocuments.Policy != pol {
		t.Fatalf("documents differ from PolicyDocuments")
	}
	if !strings.Contains(strings.Join(rep.Warnings, "\n"), "may not create roles") {
		t.Fatalf("warnings: %q", rep.Warnings)
	}
	// Staging now uses SSE-KMS with the key.
	obj, err := acc.t.Stage(ctx, StageInput{Key: "rehost/j/r/disk-0.raw", Body: strings.NewReader("data")})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range acc.srv.Front.Requests() {
		if r.Op == "CreateMultipartUpload" && (r.Header.Get("X-Amz-Server-Side-Encryption") != "aws:kms" ||
			r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id") != keyARN) {
			t.Fatalf("staging SSE headers: %v", r.Header)
		}
	}
	if obj.Size != 4 {
		t.Fatalf("object %+v", obj)
	}
}

func TestSetupOtherRegion(t *testing.T) {
	acc := newAccount(t, emulator.Config{Region: "eu-west-1"}, Config{})
	ctx := context.Background()
	rep, err := acc.t.Setup(ctx, SetupOptions{CreateRole: true})
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	if rep.Region != "eu-west-1" || !strings.HasSuffix(rep.Bucket, "-eu-west-1") || !strings.Contains(rep.Changes[0], "created in eu-west-1") {
		t.Fatalf("report: %+v", rep)
	}
	var sawConstraint bool
	for _, r := range acc.srv.Front.Requests() {
		sawConstraint = sawConstraint || r.Op == "CreateBucket"
	}
	loc, err := acc.srv.S3Client().GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: sdk.String(rep.Bucket)})
	if err != nil || loc.LocationConstraint != "eu-west-1" || !sawConstraint {
		t.Fatalf("bucket location: %+v, %v", loc, err)
	}
	again, err := acc.t.Setup(ctx, SetupOptions{CreateRole: true})
	if err != nil || len(again.Changes) != 0 {
		t.Fatalf("re-run: %q, %v", again.Changes, err)
	}
}

// Setup's calls are retried like every AWS call: a server error on the
// bucket lookup, a create whose answer was lost (the bucket made, the client
// told 500) and a failed lifecycle put still end in a bucket Setup reports
// created and configured, with no warning.
func TestSetupRetriesTransientFailures(t *testing.T) {
	acc := newAccount(t, emulator.Config{}, Config{})
	front := acc.srv.Front
	front.Inject("HeadBucket", 1, s3peer.Fail500)
	front.Inject("CreateBucket", 1, func(w http.ResponseWriter, r *http.Request) {
		front.Forward(httptest.NewRecorder(), r)
		s3peer.Fail500(w, r)
	})
	front.Inject("PutBucketLifecycleConfiguration", 1, s3peer.Fail500)
	rep, err := acc.t.Setup(context.Background(), SetupOptions{Bucket: "staging-flaky", CreateRole: true})
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	joined := strings.Join(rep.Changes, "\n")
	if len(rep.Warnings) != 0 || !strings.Contains(joined, "created in us-east-1") || !strings.Contains(joined, "configured") {
		t.Fatalf("changes %q, warnings %q", rep.Changes, rep.Warnings)
	}
	checkBucketSettings(t, acc.srv, "staging-flaky", "")
	for _, op := range []string{"HeadBucket", "CreateBucket", "PutBucketLifecycleConfiguration"} {
		if n := front.Count(op); n != 2 {
			t.Errorf("%s sent %d times, want 2 (one failure, one retry)", op, n)
		}
	}
}

// Against an S3 server lacking a feature the staging bucket needs (bare
// versitygw answers 501 to Block Public Access), Setup says which, and
// removes the bucket it created rather than leave it half configured.
func TestSetupEndpointLackingAFeature(t *testing.T) {
	acc := newAccountOn(t, s3peer.Options{TLS: true, NoFront: true}, emulator.Config{}, Config{})
	rep, err := acc.t.Setup(context.Background(), SetupOptions{Bucket: "staging-bare", CreateRole: true})
	if err == nil || !strings.Contains(err.Error(), "does not implement Block Public Access (PutPublicAccessBlock)") ||
		!strings.Contains(err.Error(), "rehost-lab s3") {
		t.Fatalf("setup against bare versitygw: %v", err)
	}
	if len(rep.Changes) != 2 || !strings.Contains(rep.Changes[0], "created") || !strings.Contains(rep.Changes[1], "removed again") {
		t.Fatalf("changes reported: %q", rep.Changes)
	}
	if _, err := acc.srv.S3Client().HeadBucket(context.Background(), &s3.HeadBucketInput{Bucket: sdk.String("staging-bare")}); err == nil {
		t.Fatal("the half-configured bucket is still there")
	}
}
