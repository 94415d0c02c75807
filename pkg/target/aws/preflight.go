package aws

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/rehost/rehost/pkg/awsregion"
	"github.com/rehost/rehost/pkg/preflight"
)

// KMSAPI is KMS as account preflight uses it: the AWS JSON 1.1
// operations DescribeKey, GetKeyPolicy and ListGrants.
type KMSAPI = JSONAPI

// QuotasAPI is Service Quotas as account preflight uses it: the AWS JSON
// 1.1 operation ListServiceQuotas.
type QuotasAPI = JSONAPI

// Account finding codes.
const (
	CodeCredentials         = "AWS_CREDENTIALS"
	CodeBucketMissing       = "BUCKET_MISSING"
	CodeBucketUnreachable   = "BUCKET_UNREACHABLE"
	CodeBucketRegion        = "BUCKET_REGION"
	CodeBucketUnverified    = "BUCKET_UNVERIFIED"
	CodeBucketPublicAccess  = "BUCKET_PUBLIC_ACCESS"
	CodeBucketEncryption    = "BUCKET_ENCRYPTION"
	CodeBucketPolicy        = "BUCKET_POLICY"
	CodeBucketLifecycle     = "BUCKET_LIFECYCLE"
	CodeRoleMissing         = "ROLE_MISSING"
	CodeRoleUnreadable      = "ROLE_UNREADABLE"
	CodeRoleTrust           = "ROLE_TRUST"
	CodeRoleTrustCondition  = "ROLE_TRUST_CONDITION"
	CodeRolePermissions     = "ROLE_PERMISSIONS"
	CodeRolePolicy          = "ROLE_POLICY_UNVERIFIED"
	CodeKMSMissing          = "KMS_KEY_MISSING"
	CodeKMSDisabled         = "KMS_KEY_DISABLED"
	CodeKMSRole             = "KMS_KEY_ROLE"
	CodeKMSUnverified       = "KMS_KEY_UNVERIFIED"
	CodeVMImport            = "VMIMPORT_UNAVAILABLE"
	CodeEBSDirect           = "EBS_DIRECT_UNAVAILABLE"
	CodeImportQuota         = "QUOTA_IMPORT_TASKS"
	CodeSnapshotImportQuota = "QUOTA_IMPORT_SNAPSHOT_TASKS"
	CodeSnapshotQuota       = "QUOTA_SNAPSHOTS"
	CodeQuotasUnreadable    = "QUOTAS_UNREADABLE"
)

// Service Quotas names of the quotas that bound a wave.
const (
	quotaImportTasks         = "concurrent import image tasks"
	quotaSnapshotImportTasks = "concurrent import snapshot tasks"
	quotaSnapshots           = "snapshots per region"
	// defaultImportTasks is VM Import's concurrent task limit when Service
	// Quotas does not say: AWS's default quota, and the scheduler's
	// default slot count (scheduler.DefaultImportLimit).
	defaultImportTasks = 20
)

// importKMSOperations are what VM Import does with the key of an encrypted
// import, through the role; the grant preflight proposes gives them.
var importKMSOperations = []string{"Decrypt", "Encrypt", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo", "CreateGrant", "DescribeKey"}

// AccountCheck says what Preflight checks besides the target's own
// registration.
type AccountCheck struct {
	// Bucket, RoleName and KMSKeyID default to the target's.
	Bucket, RoleName, KMSKeyID string
	// JobKeys are the KMS keys replication jobs encrypt their AMIs with.
	JobKeys []string
	// ImportSlots is how many ImportImage tasks rehost runs at once in the
	// region, SnapshotImportSlots how many ImportSnapshot tasks; Snapshots
	// how many EBS snapshots the jobs keep (AMIs kept × disks). Each is
	// compared with its quota; zero skips the comparison.
	ImportSlots, SnapshotImportSlots, Snapshots int
	// Incremental: a job copies changes with EBS direct, so a region
	// without it is a blocker rather than a warning.
	Incremental bool
}

type accountRun struct {
	t        *Target
	c        AccountCheck
	account  string
	region   string
	roleARN  string
	fs       []preflight.Finding
	simulate bool // SimulatePrincipalPolicy answered
}

func (a *accountRun) add(l preflight.Level, code, action, format string, args ...any) {
	a.fs = append(a.fs, preflight.Finding{Level: l, Code: code, Message: fmt.Sprintf(format, args...), Action: action})
}

// Preflight checks, without changing anything, what registration set up
// and what the runs will need: the credentials, the staging bucket (region,
// Block Public Access, encryption, TLS-only policy, lifecycle), the
// vmimport role (trust policy, permissions as IAM's policy simulator
// evaluates them), each KMS key (its state, key policy and grants for the
// role), VM Import and EBS direct in the region, and the quotas that bound
// a wave (from Service Quotas, where the credentials may read them). Each
// call is retried under the target's policy; a check that cannot be made
// is reported as a finding, never as an error, so one missing permission
// does not hide the rest.
func (t *Target) Preflight(ctx context.Context, c AccountCheck) []preflight.Finding {
	a := &accountRun{t: t, c: c, region: t.cfg.Region}
	a.c.Bucket = cmp.Or(c.Bucket, t.cfg.Bucket)
	a.c.RoleName = cmp.Or(c.RoleName, ImportRoleName)
	a.c.KMSKeyID = cmp.Or(c.KMSKeyID, t.cfg.KMSKeyID)
	var id *sts.GetCallerIdentityOutput
	err := t.call(ctx, "GetCallerIdentity", func(ctx context.Context) (err error) {
		id, err = t.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		return err
	})
	if err != nil {
		a.add(preflight.Blocker, CodeCredentials, "Check the registration's credentials ('rehost register') and the network path to AWS.",
			"AWS refused the registration's credentials or could not be reached: %v.", err)
		return a.fs
	}
	a.account = sdk.ToString(id.Account)
	a.roleARN = fmt.Sprintf("arn:%s:iam::%s:role/%s", awsregion.Partition(a.region), a.account, a.c.RoleName)
	a.bucket(ctx)
	a.role(ctx)
	for _, k := range a.keys() {
		a.key(ctx, k)
	}
	a.services(ctx)
	a.quotas(ctx)
	preflight.Sort(a.fs)
	return a.fs
}

// keys are the distinct KMS keys to check, as ARNs.
func (a *accountRun) keys() []string {
	var out []string
	for _, k := range append([]string{a.c.KMSKeyID}, a.c.JobKeys...) {
		if k == "" {
			continue
		}
		if !strings.HasPrefix(k, "arn:") && !strings.HasPrefix(k, "alias/") {
			k = fmt.Sprintf("arn:%s:kms:%s:%s:key/%s", awsregion.Partition(a.region), a.region, a.account, k)
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

func (a *accountRun) bucket(ctx context.Context) {
	t, bucket := a.t, a.c.Bucket
	if bucket == "" {
		a.add(preflight.Blocker, CodeBucketMissing, "Run 'rehost register': it creates the staging bucket.", "No staging bucket is registered.")
		return
	}
	err := t.call(ctx, "HeadBucket", func(ctx context.Context) error {
		_, err := t.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: sdk.String(bucket)})
		return err
	})
	switch {
	case httpStatus(err) == 404 || apiCode(err) == "NotFound" || apiCode(err) == "NoSuchBucket":
		a.add(preflight.Blocker, CodeBucketMissing, "Run 'rehost register' again: it creates the bucket with its settings.", "The staging bucket %s does not exist.", bucket)
		return
	case httpStatus(err) == 301:
		a.add(preflight.Blocker, CodeBucketRegion, "Register with a bucket in "+a.region+" ('rehost register --bucket NAME').",
			"The staging bucket %s is in another region; VM Import reads only buckets in %s.", bucket, a.region)
		return
	case err != nil:
		a.add(preflight.Blocker, CodeBucketUnreachable, "Check that the registration's credentials may use the bucket (s3:ListBucket, s3:PutObject).",
			"The staging bucket %s cannot be reached with the registration's credentials: %v.", bucket, err)
		return
	}
	for _, s := range t.bucketSettings(bucket, a.region, a.c.KMSKeyID) {
		var ok bool
		var have string
		err := t.call(ctx, "check "+s.name, func(ctx context.Context) (err error) {
			ok, have, err = s.check(ctx)
			return err
		})
		switch {
		case err != nil:
			a.add(preflight.Note, CodeBucketUnverified, "", "The staging bucket's %s could not be read: %v.", s.name, lacking(s, err))
		case !ok:
			a.add(preflight.Warning, s.code, "Run 'rehost register --fix-bucket' to set it, or set it yourself.",
				"The staging bucket %s's %s is %s, not %s.", bucket, s.name, have, s.want)
		}
	}
}

func (a *accountRun) role(ctx context.Context) {
	t := a.t
	regKey := ""
	if a.c.KMSKeyID != "" {
		regKey = a.keys()[0]
	}
	_, policy := policyDocuments(awsregion.Partition(a.region), a.c.Bucket, regKey)
	role, err := t.getRole(ctx, a.c.RoleName)
	switch {
	case apiCode(err) == "NoSuchEntity":
		a.add(preflight.Blocker, CodeRoleMissing, "Run 'rehost register --create-role', or have an administrator create it with the documents 'rehost register' shows.",
			"The VM Import service role %s does not exist.", a.c.RoleName)
		return
	case isAccessDenied(err):
		a.add(preflight.Warning, CodeRoleUnreadable, "Allow the registration's credentials iam:GetRole on the role, or check the role by hand against 'rehost register's documents.",
			"The role %s could not be read with the registration's credentials, so its trust and permissions were not checked.", a.c.RoleName)
		return
	case err != nil:
		a.add(preflight.Warning, CodeRoleUnreadable, "Re-run 'rehost preflight' when IAM answers.", "The role %s could not be read: %v.", a.c.RoleName, err)
		return
	}
	a.roleARN = role.Arn
	switch tr := trustOf(role.trustPolicy(), a.account); {
	case !tr.allows:
		a.add(preflight.Blocker, CodeRoleTrust, "Replace the role's trust policy with the one 'rehost register' shows (aws iam update-assume-role-policy).",
			"The role %s does not let VM Import (vmie.amazonaws.com, external id vmimport) assume it%s.", a.c.RoleName, tr.why)
	case tr.weak != "":
		a.add(preflight.Warning, CodeRoleTrustCondition, "Add the condition to the trust policy: {\"StringEquals\": {\"sts:ExternalId\": \"vmimport\"}}, as AWS documents it.",
			"The role %s's trust policy %s.", a.c.RoleName, tr.weak)
	}
	a.permissions(ctx, policy)
}

// permissions asks IAM's policy simulator whether the role may do what an
// import does; where the simulator may not be called, it compares the
// inline policy registration manages with what it should be.
func (a *accountRun) permissions(ctx context.Context, want string) {
	bucketARN := "arn:" + awsregion.Partition(a.region) + ":s3:::" + a.c.Bucket
	checks := []struct {
		resource string
		actions  []string
	}{
		{bucketARN, []string{"s3:GetBucketLocation", "s3:ListBucket"}},
		{bucketARN + "/" + StagingPrefix + "x", []string{"s3:GetObject"}},
		{"*", []string{"ec2:ModifySnapshotAttribute", "ec2:CopySnapshot", "ec2:RegisterImage", "ec2:DescribeSnapshots", "ec2:DescribeImages"}},
	}
	var denied []string
	for _, c := range checks {
		d, err := a.simulateDenied(ctx, c.resource, c.actions)
		if isAccessDenied(err) {
			a.inlinePolicy(ctx, want)
			return
		}
		if err != nil {
			a.add(preflight.Warning, CodeRolePolicy, "Re-run 'rehost preflight' when IAM answers.", "The role %s's permissions could not be checked: %v.", a.c.RoleName, err)
			return
		}
		denied = append(denied, d...)
	}
	a.simulate = true
	if len(denied) > 0 {
		a.add(preflight.Blocker, CodeRolePermissions, "Put the inline policy 'rehost register' shows on the role (or re-run it with --create-role).",
			"The role %s may not %s, which VM Import does with it.", a.c.RoleName, strings.Join(denied, ", "))
	}
}

// simulateDenied returns the actions IAM's policy simulator does not allow
// the role on resource.
func (a *accountRun) simulateDenied(ctx context.Context, resource string, actions []string) ([]string, error) {
	results, err := a.t.simulatePrincipalPolicy(ctx, a.roleARN, resource, actions)
	if err != nil {
		return nil, err
	}
	var denied []string
	for _, r := range results {
		if r.EvalDecision != "allowed" {
			denied = append(denied, r.EvalActionName+" on "+r.EvalResourceName)
		}
	}
	return denied, nil
}

func (a *accountRun) inlinePolicy(ctx context.Context, want string) {
	t, name := a.t, rolePolicyName(a.c.Bucket)
	have, err := t.getRolePolicy(ctx, a.c.RoleName, name)
	if err != nil || have == "" || !sameJSON(have, want) {
		a.add(preflight.Warning, CodeRolePolicy, "Allow the registration's credentials iam:SimulatePrincipalPolicy, or make sure the role may do what the policy 'rehost register' shows allows.",
			"IAM's policy simulator may not be called with these credentials, and the role's inline policy %s is missing or differs from what registration puts, so the role's permissions are not known.", name)
	}
}

type trust struct {
	allows bool
	why    string // when !allows
	weak   string // allows, but should say more
}

// trustOf evaluates a trust policy for VM Import's AssumeRole (principal
// vmie.amazonaws.com, external id vmimport, from account) as far as its
// conditions are ones VM Import's call carries.
func trustOf(doc, account string) trust {
	var p parsedPolicy
	if json.Unmarshal([]byte(doc), &p) != nil {
		return trust{why: ": the trust policy is not valid JSON"}
	}
	var tr trust
	for _, st := range p.statements() {
		acts := asList(st["Action"])
		if !contains(acts, "sts:AssumeRole") && !contains(acts, "sts:*") && !contains(acts, "*") {
			continue
		}
		pr, _ := st["Principal"].(map[string]any)
		if !contains(asList(pr["Service"]), "vmie.amazonaws.com") && st["Principal"] != "*" {
			continue
		}
		holds, external, unknown := trustConditions(st["Condition"], account)
		switch e, _ := st["Effect"].(string); {
		case e == "Deny" && holds:
			return trust{why: ": a statement denies it"}
		case e != "Allow":
		case !holds:
			tr.why = ": its conditions do not hold for VM Import's call (external id vmimport, source account " + account + ")"
		case unknown != "":
			tr.allows, tr.weak = true, "has a condition on "+unknown+" that preflight cannot evaluate; VM Import decides at import"
			return tr
		default:
			tr.allows = true
			if !external {
				tr.weak = "does not require the external id vmimport, so it is wider than AWS documents"
			}
			return tr
		}
	}
	return tr
}

// trustConditions evaluates a statement's Condition for VM Import's call:
// whether it holds, whether it checks the external id, and a condition key
// it cannot evaluate.
func trustConditions(c any, account string) (holds, external bool, unknown string) {
	m, _ := c.(map[string]any)
	holds = true
	for op, kv := range m {
		keys, _ := kv.(map[string]any)
		for k, v := range keys {
			var have string
			switch strings.ToLower(k) {
			case "sts:externalid":
				have, external = "vmimport", true
			case "aws:sourceaccount":
				have = account
			default:
				unknown = k
				continue
			}
			match := false
			for _, want := range asList(v) {
				switch op {
				case "StringEquals":
					match = match || want == have
				case "StringEqualsIgnoreCase":
					match = match || strings.EqualFold(want, have)
				case "StringLike":
					match = match || globMatch(want, have)
				default:
					unknown = op + " " + k
					match = true
				}
			}
			holds = holds && match
		}
	}
	return holds, external, unknown
}

// globMatch matches IAM's * and ? wildcards.
func globMatch(pattern, s string) bool {
	if pattern == "" {
		return s == ""
	}
	switch pattern[0] {
	case '*':
		for i := 0; i <= len(s); i++ {
			if globMatch(pattern[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return s != "" && globMatch(pattern[1:], s[1:])
	}
	return s != "" && pattern[0] == s[0] && globMatch(pattern[1:], s[1:])
}

func (a *accountRun) key(ctx context.Context, key string) {
	t := a.t
	if t.kms == nil {
		a.add(preflight.Note, CodeKMSUnverified, "", "KMS key %s was not checked: this connector has no KMS client.", key)
		return
	}
	var d struct {
		KeyMetadata struct{ Arn, KeyState, KeyManager string }
	}
	err := t.call(ctx, "DescribeKey", func(ctx context.Context) error {
		return t.kms.Call(ctx, "DescribeKey", map[string]string{"KeyId": key}, &d)
	})
	switch {
	case apiCode(err) == "NotFoundException":
		a.add(preflight.Blocker, CodeKMSMissing, "Register (or create the job) with a key of this account and region.",
			"KMS key %s does not exist in %s.", key, a.region)
		return
	case isAccessDenied(err):
		a.add(preflight.Warning, CodeKMSUnverified, "Allow the registration's credentials kms:DescribeKey, kms:GetKeyPolicy and kms:ListGrants on the key.",
			"KMS key %s could not be read with the registration's credentials, so whether the role may use it is not known.", key)
		return
	case err != nil:
		a.add(preflight.Warning, CodeKMSUnverified, "Re-run 'rehost preflight' when KMS answers.", "KMS key %s could not be read: %v.", key, err)
		return
	}
	md := d.KeyMetadata
	if md.KeyState != "Enabled" {
		a.add(preflight.Blocker, CodeKMSDisabled, "Enable the key (aws kms enable-key), or register with another.", "KMS key %s is %s.", key, md.KeyState)
		return
	}
	if md.KeyManager == "AWS" {
		return // an AWS managed key: every principal of the account uses it through the service
	}
	arn := md.Arn
	var pol struct{ Policy string }
	err = t.call(ctx, "GetKeyPolicy", func(ctx context.Context) error {
		return t.kms.Call(ctx, "GetKeyPolicy", map[string]string{"KeyId": arn, "PolicyName": "default"}, &pol)
	})
	if err != nil {
		a.add(preflight.Warning, CodeKMSUnverified, "Allow the registration's credentials kms:GetKeyPolicy and kms:ListGrants on the key.",
			"KMS key %s's key policy could not be read (%v), so whether the role may use it is not known.", key, err)
		return
	}
	granted := map[string]bool{}
	type grants struct {
		Grants []struct {
			GranteePrincipal string
			Operations       []string
		}
		NextMarker string
	}
	in := map[string]string{"KeyId": arn, "GranteePrincipal": a.roleARN}
	err = pages(ctx, t, t.kms, "ListGrants", in, "Marker", func(page *grants) string {
		for _, g := range page.Grants {
			if g.GranteePrincipal != a.roleARN {
				continue
			}
			for _, op := range g.Operations {
				granted[op] = true
			}
		}
		return page.NextMarker
	})
	if err != nil {
		a.add(preflight.Warning, CodeKMSUnverified, "Allow the registration's credentials kms:ListGrants on the key.",
			"KMS key %s's grants could not be listed (%v), so whether the role may use it is not known.", key, err)
		return
	}
	var missing, unverified []string
	var iamDenied []string
	for _, op := range importKMSOperations {
		if granted[op] {
			continue
		}
		switch keyPolicyAllows(pol.Policy, "kms:"+op, a.roleARN, a.account) {
		case keyDirect:
		case keyDelegated:
			if !a.simulate {
				unverified = append(unverified, op)
				continue
			}
			d, err := a.simulateDenied(ctx, arn, []string{"kms:" + op})
			if err != nil {
				unverified = append(unverified, op)
			} else if len(d) > 0 {
				iamDenied = append(iamDenied, op)
			}
		case keyConditional:
			unverified = append(unverified, op)
		default:
			missing = append(missing, op)
		}
	}
	grant := fmt.Sprintf("aws kms create-grant --key-id %s --grantee-principal %s --operations %s", arn, a.roleARN, strings.Join(importKMSOperations, " "))
	switch {
	case len(missing) > 0:
		a.add(preflight.Blocker, CodeKMSRole, "Add this grant (or name the role in the key policy): "+grant+".",
			"The role %s may not use KMS key %s for %s: the key policy neither names the role nor defers to IAM, and no grant gives it.",
			a.c.RoleName, key, strings.Join(missing, ", "))
	case len(iamDenied) > 0:
		a.add(preflight.Blocker, CodeKMSRole, "Put the inline policy 'rehost register' shows (it names the key), or add this grant: "+grant+".",
			"The role %s may not use KMS key %s for %s: the key policy defers to IAM, and the role's IAM policies do not allow it.",
			a.c.RoleName, key, strings.Join(iamDenied, ", "))
	case len(unverified) > 0:
		a.add(preflight.Warning, CodeKMSUnverified, "If imports fail on the key, add this grant: "+grant+".",
			"Whether the role %s may use KMS key %s for %s depends on conditions or IAM policies preflight could not evaluate.",
			a.c.RoleName, key, strings.Join(unverified, ", "))
	}
}

type keyAccess int

const (
	keyNone        keyAccess = iota
	keyDirect                // a statement allows the role by name (or everyone)
	keyDelegated             // a statement allows the account: IAM policies decide
	keyConditional           // only a statement with conditions allows it
	keyDenied                // a statement denies it
)

// keyPolicyAllows reads a key policy for the role's use of action.
func keyPolicyAllows(doc, action, roleARN, account string) keyAccess {
	var p parsedPolicy
	if json.Unmarshal([]byte(doc), &p) != nil {
		return keyNone
	}
	best := keyNone
	root := "arn:" + strings.SplitN(roleARN, ":", 3)[1] + ":iam::" + account + ":root"
	for _, st := range p.statements() {
		if !slices.ContainsFunc(asList(st["Action"]), func(a string) bool { return globMatch(strings.ToLower(a), strings.ToLower(action)) || a == "*" }) {
			continue
		}
		var who []string
		if s, ok := st["Principal"].(string); ok {
			who = []string{s}
		} else if m, ok := st["Principal"].(map[string]any); ok {
			who = asList(m["AWS"])
		}
		access := keyNone
		for _, w := range who {
			switch {
			case w == roleARN || w == "*":
				access = keyDirect
			case (w == root || w == account) && access == keyNone:
				access = keyDelegated
			}
		}
		if access == keyNone {
			continue
		}
		_, conditional := st["Condition"]
		switch e, _ := st["Effect"].(string); {
		case e == "Deny" && !conditional:
			return keyDenied
		case e != "Allow":
		case conditional:
			if best == keyNone {
				best = keyConditional
			}
		case access == keyDirect:
			return keyDirect
		default:
			best = keyDelegated
		}
	}
	return best
}

func (a *accountRun) services(ctx context.Context) {
	t := a.t
	err := t.ec2Call(ctx, "DescribeImportImageTasks", url.Values{"MaxResults": {"5"}}, nil)
	if err != nil {
		a.add(preflight.Blocker, CodeVMImport, "Register in a region where VM Import is available and enabled for the account (an opt-in region must be enabled), with credentials that may call ec2:DescribeImportImageTasks and ec2:ImportImage.",
			"VM Import could not be used in %s: %v.", a.region, err)
	}
	level := preflight.Note
	if a.c.Incremental {
		level = preflight.Blocker
	}
	if t.ebs == nil {
		a.add(preflight.Note, CodeEBSDirect, "", "EBS direct was not checked: this connector has no EBS client.")
		return
	}
	// The same probe an incremental run makes before its first block.
	if err := t.CheckEBSDirect(ctx); err != nil {
		a.add(level, CodeEBSDirect, "Use a region with the EBS direct APIs, and credentials that may call ebs:ListSnapshotBlocks and ebs:PutSnapshotBlock, for incremental jobs.",
			"Incremental replication cannot write its replicas: %v.", err)
	}
}

func (a *accountRun) quotas(ctx context.Context) {
	t := a.t
	if t.quotas == nil {
		a.add(preflight.Note, CodeQuotasUnreadable, "", "Service quotas were not read: this connector has no Service Quotas client.")
		return
	}
	found := map[string]float64{}
	for _, svc := range []string{"ec2", "ebs"} {
		type quotas struct {
			Quotas []struct {
				QuotaName string
				Value     float64
			}
			NextToken string
		}
		err := pages(ctx, t, t.quotas, "ListServiceQuotas", map[string]string{"ServiceCode": svc}, "NextToken", func(page *quotas) string {
			for _, q := range page.Quotas {
				if n := strings.ToLower(q.QuotaName); n == quotaImportTasks || n == quotaSnapshotImportTasks || n == quotaSnapshots {
					found[n] = q.Value
				}
			}
			return page.NextToken
		})
		if err != nil {
			a.add(preflight.Note, CodeQuotasUnreadable, "Allow the registration's credentials servicequotas:ListServiceQuotas to have the quotas checked.",
				"The %s quotas could not be read (%v); VM Import's default of %d concurrent import tasks is assumed.", svc, err, defaultImportTasks)
			return
		}
	}
	imports, ok := found[quotaImportTasks]
	if !ok {
		imports = defaultImportTasks
	}
	if a.c.ImportSlots > 0 && float64(a.c.ImportSlots) > imports {
		a.add(preflight.Warning, CodeImportQuota, fmt.Sprintf("Lower the connector's concurrent imports to %.0f, or raise the quota in Service Quotas.", imports),
			"The connector runs up to %d imports at once in %s, but the account's quota allows %.0f: the others fail with ResourceCountLimitExceeded.", a.c.ImportSlots, a.region, imports)
	}
	if q, ok := found[quotaSnapshotImportTasks]; ok && a.c.SnapshotImportSlots > 0 && float64(a.c.SnapshotImportSlots) > q {
		a.add(preflight.Warning, CodeSnapshotImportQuota, fmt.Sprintf("Lower the connector's concurrent snapshot imports (--snapshot-import-limit) to %.0f, or raise the quota in Service Quotas.", q),
			"The connector runs up to %d ImportSnapshot tasks (one per disk imported as a snapshot) at once in %s, but the account's quota allows %.0f: the others fail with ResourceCountLimitExceeded.", a.c.SnapshotImportSlots, a.region, q)
	}
	if snaps, ok := found[quotaSnapshots]; ok && a.c.Snapshots > 0 && float64(a.c.Snapshots) > snaps {
		a.add(preflight.Warning, CodeSnapshotQuota, "Keep fewer AMIs per job, or raise the EBS snapshot quota in Service Quotas.",
			"The jobs keep up to %d EBS snapshots, more than the account's quota of %.0f in %s.", a.c.Snapshots, snaps, a.region)
	}
}
