package aws

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/servicequotas"
	smithyauth "github.com/aws/smithy-go/auth"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/rehost/rehost/pkg/awsregion"
)

// newAccountFront is a target whose every service but S3 is the emulator
// behind a front; S3 is a closed port, so a bucket check fails fast.
func newAccountFront(t *testing.T) (*Target, *front, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	tg, f := newFrontTarget(t, Config{RetryAttempts: 3, Endpoints: Endpoints{S3: closed}})
	return tg, f, tg.cfg.Endpoints.IAM
}

// kmsAdmin is an administrator's SDK client for the emulator behind f.
func kmsAdmin(tg *Target, base string) *kms.Client {
	c := tg.cfg
	return kms.NewFromConfig(sdk.Config{Region: c.Region, Credentials: credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, ""),
		HTTPClient: c.HTTPClient, RetryMaxAttempts: 1}, func(o *kms.Options) { o.BaseEndpoint = sdk.String(base) })
}

// The thin IAM, KMS and Service Quotas clients against the emulator, as
// registration and account preflight use them: AWS's codes and messages
// in the SDK's shapes, throttles and 5xx retried by the target's policy
// alone, IAM's propagation wait, URL-encoded IAM documents, and every
// page of ListGrants, ListServiceQuotas and SimulatePrincipalPolicy.
func TestThinAccountClients(t *testing.T) {
	ctx := context.Background()
	tg, f, base := newAccountFront(t)

	_, err := tg.getRole(ctx, "nobody")
	if apiCode(err) != "NoSuchEntity" || !strings.Contains(apiMessage(err), "nobody cannot be found") ||
		!strings.Contains(err.Error(), "operation error IAM: GetRole") || transient(err) || f.count("GetRole") != 1 {
		t.Fatalf("an unknown role: %v (code %q), %d calls", err, apiCode(err), f.count("GetRole"))
	}

	// Registration creates the role: GetRole is throttled once, and the
	// new role is not visible to PutRolePolicy at first.
	f.inject("GetRole", queryFault(http.StatusBadRequest, "Throttling", "Rate exceeded"))
	f.inject("PutRolePolicy", queryFault(http.StatusNotFound, "NoSuchEntity", "The role with name vmimport cannot be found."))
	rep := &SetupReport{Region: tg.Region(), Bucket: "staging", RoleName: ImportRoleName}
	if err := tg.setupRole(ctx, rep, SetupOptions{CreateRole: true}); err != nil {
		t.Fatal(err)
	}
	roleARN := "arn:aws:iam::" + strings.Split(rep.RoleARN, ":")[4] + ":role/" + ImportRoleName
	if rep.RoleARN != roleARN || len(rep.Changes) != 2 || !strings.Contains(rep.Changes[0], "created") ||
		!strings.Contains(rep.Changes[1], "added inline policy "+rolePolicyName("staging")) || len(rep.Warnings) != 0 {
		t.Fatalf("setup of the role: %+v", rep)
	}
	for op, want := range map[string]int{"GetRole": 3, "CreateRole": 1, "GetRolePolicy": 1, "PutRolePolicy": 2} {
		if n := f.count(op); n != want {
			t.Errorf("%s sent %d times, want %d", op, n, want)
		}
	}
	// Again: the role and its policy are read back (decoded) as they are.
	rep = &SetupReport{Region: tg.Region(), Bucket: "staging", RoleName: ImportRoleName}
	if err := tg.setupRole(ctx, rep, SetupOptions{CreateRole: true}); err != nil || len(rep.Changes)+len(rep.Warnings) != 0 || rep.RoleARN != roleARN {
		t.Fatalf("setup of a role already right: %+v, %v", rep, err)
	}

	// A key whose 51st grant (on ListGrants' second page) is the one
	// giving the role what VM Import does; a disabled key; no key.
	admin := kmsAdmin(tg, base)
	key, err := admin.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	keyARN := sdk.ToString(key.KeyMetadata.Arn)
	for i := range 51 {
		ops := []kmstypes.GrantOperation{kmstypes.GrantOperationDecrypt}
		if i == 50 {
			ops = nil
			for _, op := range importKMSOperations {
				ops = append(ops, kmstypes.GrantOperation(op))
			}
		}
		if _, err := admin.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: sdk.String(keyARN), GranteePrincipal: sdk.String(roleARN), Operations: ops}); err != nil {
			t.Fatal(err)
		}
	}
	off, err := admin.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.DisableKey(ctx, &kms.DisableKeyInput{KeyId: off.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}

	f.inject("DescribeKey", jsonFault(http.StatusInternalServerError, "KMSInternalException", "try again"))
	f.inject("ListGrants", jsonFault(http.StatusBadRequest, "ThrottlingException", "Rate exceeded"))
	// A first page of ec2 quotas the emulator does not have, with a token
	// the emulator's own next page accepts.
	f.inject("ListServiceQuotas", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		fmt.Fprint(w, `{"Quotas":[{"QuotaName":"Concurrent import image tasks","Value":2}],"NextToken":"1"}`)
	})
	// SimulatePrincipalPolicy's first answer is a page that denies one
	// action and says more follow; the next call must carry its marker.
	f.inject("SimulatePrincipalPolicy", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprint(w, `<SimulatePrincipalPolicyResponse><SimulatePrincipalPolicyResult><EvaluationResults><member>`+
			`<EvalActionName>s3:GetBucketAcl</EvalActionName><EvalResourceName>arn:aws:s3:::staging</EvalResourceName><EvalDecision>implicitDeny</EvalDecision>`+
			`</member></EvaluationResults><IsTruncated>true</IsTruncated><Marker>page-2</Marker></SimulatePrincipalPolicyResult></SimulatePrincipalPolicyResponse>`)
	}, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if form, err := url.ParseQuery(string(body)); err != nil || form.Get("Marker") != "page-2" {
			t.Errorf("the second page was asked without the marker: %v %v", form, err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.em.ServeHTTP(w, r)
	})
	fs := tg.Preflight(ctx, AccountCheck{Bucket: "staging", JobKeys: []string{keyARN, sdk.ToString(off.KeyMetadata.Arn), "0000aaaa-0000-0000-0000-000000000000"}, ImportSlots: 3})
	wantFindings(t, fs, "blocker:BUCKET_UNREACHABLE", "blocker:ROLE_PERMISSIONS", "blocker:KMS_KEY_DISABLED", "blocker:KMS_KEY_MISSING", "warning:QUOTA_IMPORT_TASKS")
	for _, fd := range fs {
		switch fd.Code {
		case CodeRolePermissions:
			if !strings.HasSuffix(fd.Message, "may not s3:GetBucketAcl on arn:aws:s3:::staging, which VM Import does with it.") {
				t.Errorf("the denied actions are those of every page: %s", fd.Message)
			}
		case CodeImportQuota:
			if !strings.Contains(fd.Message, "the account's quota allows 2") {
				t.Errorf("the quota from the first page: %s", fd.Message)
			}
		}
	}
	for op, want := range map[string]int{"DescribeKey": 4, "GetKeyPolicy": 1, "ListGrants": 3, "ListServiceQuotas": 3, "SimulatePrincipalPolicy": 4} {
		if n := f.count(op); n != want {
			t.Errorf("%s sent %d times, want %d", op, n, want)
		}
	}

	// Where the simulator may not be called, the role's inline policy is
	// read back and compared.
	f.inject("SimulatePrincipalPolicy", queryFault(http.StatusForbidden, "AccessDenied", "not authorized to perform: iam:SimulatePrincipalPolicy"))
	fs = tg.Preflight(ctx, AccountCheck{Bucket: "staging", JobKeys: []string{keyARN}})
	wantFindings(t, fs, "blocker:BUCKET_UNREACHABLE")
	if n := f.count("SimulatePrincipalPolicy"); n != 5 {
		t.Errorf("a refused simulation sent %d times in all, want 5 (once more)", n)
	}

	for _, c := range []struct {
		client       JSONAPI
		op, code, in string
	}{
		{tg.kms, "DescribeKey", "NotFoundException", "operation error KMS: DescribeKey"},
		{tg.quotas, "ListServiceQuotas", "NoSuchResourceException", "operation error Service Quotas: ListServiceQuotas"},
	} {
		err := c.client.Call(ctx, c.op, map[string]string{"KeyId": "alias/none", "ServiceCode": "none"}, &struct{}{})
		if apiCode(err) != c.code || apiMessage(err) == "" || !strings.Contains(err.Error(), c.in) || transient(err) {
			t.Errorf("%s of nothing: %v (code %q)", c.op, err, apiCode(err))
		}
	}
}

// Without an endpoint override, IAM, KMS and Service Quotas are reached
// where the SDK's endpoint rules say, signed for the region they say
// (IAM: the partition's global endpoint and region), in every partition.
func TestThinAccountEndpoints(t *testing.T) {
	ctx := context.Background()
	no := sdk.Bool(false)
	resolve := func(service, region string) (string, string) {
		var ep smithyendpoints.Endpoint
		var err error
		switch service {
		case "iam":
			ep, err = iam.NewDefaultEndpointResolverV2().ResolveEndpoint(ctx, iam.EndpointParameters{Region: &region, UseFIPS: no, UseDualStack: no})
		case "kms":
			ep, err = kms.NewDefaultEndpointResolverV2().ResolveEndpoint(ctx, kms.EndpointParameters{Region: &region, UseFIPS: no, UseDualStack: no})
		default:
			ep, err = servicequotas.NewDefaultEndpointResolverV2().ResolveEndpoint(ctx, servicequotas.EndpointParameters{Region: &region, UseFIPS: no, UseDualStack: no})
		}
		if err != nil {
			t.Fatalf("%s in %s: %v", service, region, err)
		}
		signing := region
		opts, _ := smithyauth.GetAuthOptions(&ep.Properties)
		for _, o := range opts {
			if r, ok := smithyhttp.GetSigV4SigningRegion(&o.SignerProperties); ok {
				signing = r
			}
		}
		return ep.URI.String(), signing
	}
	for _, region := range awsregion.Regions() {
		ac := sdk.Config{Region: region}
		for _, w := range []*wire{newIAMWire(ac, ""), newWire(ac, "KMS", "kms", ""), newWire(ac, "Service Quotas", "servicequotas", "")} {
			if ep, signing := resolve(w.signing, region); w.endpoint != ep || w.region != signing {
				t.Errorf("%s in %s: %s signed for %s; the SDK: %s signed for %s", w.signing, region, w.endpoint, w.region, ep, signing)
			}
		}
	}
	// An override is signed for the configuration's region, as the SDK
	// client signs it.
	if w := newIAMWire(sdk.Config{Region: "eu-west-1"}, "https://127.0.0.1:1"); w.endpoint != "https://127.0.0.1:1" || w.region != "eu-west-1" {
		t.Errorf("IAM at an override: %s signed for %s", w.endpoint, w.region)
	}
}
