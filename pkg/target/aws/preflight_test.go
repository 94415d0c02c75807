package aws

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/rehost/rehost/internal/lab/emulator"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/pkg/preflight"
)

func findingCodes(fs []preflight.Finding, levels ...preflight.Level) []string {
	var out []string
	for _, f := range fs {
		for _, l := range levels {
			if f.Level == l {
				out = append(out, string(f.Level)+":"+f.Code)
			}
		}
	}
	return out
}

func wantFindings(t *testing.T, fs []preflight.Finding, want ...string) {
	t.Helper()
	got := strings.Join(findingCodes(fs, preflight.Blocker, preflight.Warning), " ")
	if got != strings.Join(want, " ") {
		t.Fatalf("findings %q, want %q:\n%+v", got, strings.Join(want, " "), fs)
	}
}

// adminClients are the SDK clients an administrator of the emulated
// account would use.
func (a *account) kmsClient() *kms.Client {
	cfg := sdk.Config{Region: a.emu.Region(), Credentials: credentials.NewStaticCredentialsProvider(a.srv.AccessKeyID, a.srv.SecretAccessKey, ""), RetryMaxAttempts: 1}
	return kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = sdk.String(a.base) })
}

func (a *account) iamClient() *iam.Client {
	cfg := sdk.Config{Region: a.emu.Region(), Credentials: credentials.NewStaticCredentialsProvider(a.srv.AccessKeyID, a.srv.SecretAccessKey, ""), RetryMaxAttempts: 1}
	return iam.NewFromConfig(cfg, func(o *iam.Options) { o.BaseEndpoint = sdk.String(a.base) })
}

// A registered account passes; each broken part is reported with its code.
func TestAccountPreflight(t *testing.T) {
	acc := readyAccount(t, emulator.Config{})
	ctx := context.Background()
	fs := acc.t.Preflight(ctx, AccountCheck{ImportSlots: 5, Snapshots: 30})
	wantFindings(t, fs)

	admin := acc.iamClient()
	t.Run("trust without the external id", func(t *testing.T) {
		wide := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"vmie.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
		if _, err := admin.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: sdk.String("vmimport"), PolicyDocument: sdk.String(wide)}); err != nil {
			t.Fatal(err)
		}
		wantFindings(t, acc.t.Preflight(ctx, AccountCheck{}), "warning:ROLE_TRUST_CONDITION")
	})
	t.Run("trust with another external id", func(t *testing.T) {
		wrong := strings.Replace(trustDoc(), `"vmimport"`, `"vm-import"`, 1)
		if _, err := admin.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: sdk.String("vmimport"), PolicyDocument: sdk.String(wrong)}); err != nil {
			t.Fatal(err)
		}
		wantFindings(t, acc.t.Preflight(ctx, AccountCheck{}), "blocker:ROLE_TRUST")
		if _, err := admin.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: sdk.String("vmimport"), PolicyDocument: sdk.String(trustDoc())}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("no permissions", func(t *testing.T) {
		name := sdk.String(rolePolicyName("staging"))
		pol, err := admin.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: sdk.String("vmimport"), PolicyName: name})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: sdk.String("vmimport"), PolicyName: name}); err != nil {
			t.Fatal(err)
		}
		fs := acc.t.Preflight(ctx, AccountCheck{})
		wantFindings(t, fs, "blocker:ROLE_PERMISSIONS")
		if m := fs[0].Message; !strings.Contains(m, "s3:GetObject on arn:aws:s3:::staging/rehost/") || !strings.Contains(m, "ec2:RegisterImage") {
			t.Errorf("the denied actions are not named: %s", m)
		}
		doc, _ := url.QueryUnescape(sdk.ToString(pol.PolicyDocument))
		if _, err := admin.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: sdk.String("vmimport"), PolicyName: name, PolicyDocument: sdk.String(doc)}); err != nil {
			t.Fatal(err)
		}
		wantFindings(t, acc.t.Preflight(ctx, AccountCheck{}))
	})
	t.Run("bucket", func(t *testing.T) {
		// (The role's policy names the registered bucket only.)
		wantFindings(t, acc.t.Preflight(ctx, AccountCheck{Bucket: "no-such-bucket"}), "blocker:BUCKET_MISSING", "blocker:ROLE_PERMISSIONS")
		if _, err := acc.srv.S3Client().CreateBucket(ctx, createBucket("bare")); err != nil {
			t.Fatal(err)
		}
		wantFindings(t, acc.t.Preflight(ctx, AccountCheck{Bucket: "bare"}),
			"blocker:ROLE_PERMISSIONS", "warning:BUCKET_PUBLIC_ACCESS", "warning:BUCKET_ENCRYPTION", "warning:BUCKET_POLICY", "warning:BUCKET_LIFECYCLE")
	})
}

func trustDoc() string {
	t, _ := policyDocuments("aws", "staging", "")
	return t
}

// The quotas that bound a wave, VM Import and EBS direct in the region,
// and checks the credentials may not make.
func TestAccountPreflightServicesAndQuotas(t *testing.T) {
	ctx := context.Background()
	acc := readyAccount(t, emulator.Config{Quotas: map[string]float64{"Concurrent import image tasks": 2, "Concurrent import snapshot tasks": 4, "Snapshots per Region": 10}})
	wantFindings(t, acc.t.Preflight(ctx, AccountCheck{ImportSlots: 5, SnapshotImportSlots: 20, Snapshots: 30}),
		"warning:QUOTA_IMPORT_TASKS", "warning:QUOTA_IMPORT_SNAPSHOT_TASKS", "warning:QUOTA_SNAPSHOTS")
	wantFindings(t, acc.t.Preflight(ctx, AccountCheck{ImportSlots: 2, SnapshotImportSlots: 4, Snapshots: 10}))

	denied := readyAccount(t, emulator.Config{DenyOperations: []string{"ListServiceQuotas", "DescribeImportImageTasks", "SimulatePrincipalPolicy"}})
	fs := denied.t.Preflight(ctx, AccountCheck{ImportSlots: 5})
	wantFindings(t, fs, "blocker:VMIMPORT_UNAVAILABLE")
	if n := findingCodes(fs, preflight.Note); !strings.Contains(strings.Join(n, " "), "QUOTAS_UNREADABLE") {
		t.Errorf("no note on the unreadable quotas: %v", n)
	}

	// EBS direct: a closed endpoint.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	noEBS := newAccount(t, emulator.Config{}, Config{Endpoints: Endpoints{EBS: closed}, RetryAttempts: 2, IAMPropagation: 200 * time.Millisecond})
	if _, err := noEBS.t.Setup(ctx, SetupOptions{Bucket: "staging", CreateRole: true}); err != nil {
		t.Fatal(err)
	}
	fs = noEBS.t.Preflight(ctx, AccountCheck{})
	wantFindings(t, fs)
	if n := strings.Join(findingCodes(fs, preflight.Note), " "); !strings.Contains(n, "EBS_DIRECT_UNAVAILABLE") {
		t.Errorf("no note on EBS direct: %v", n)
	}
	wantFindings(t, noEBS.t.Preflight(ctx, AccountCheck{Incremental: true}), "blocker:EBS_DIRECT_UNAVAILABLE")
}

// A registration with a KMS key the role cannot use is reported, with the
// grant to add; once an administrator adds it, preflight passes — and the
// emulator's VM Import agrees both times.
func TestAccountPreflightKMSGrant(t *testing.T) {
	ctx := context.Background()
	acc := newAccount(t, emulator.Config{}, Config{IAMPropagation: 200 * time.Millisecond})
	kc := acc.kmsClient()
	account := acc.emu.AccountID()
	key, err := kc.CreateKey(ctx, &kms.CreateKeyInput{Policy: sdk.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow",` +
		`"Principal":{"AWS":"arn:aws:iam::` + account + `:user/key-admin"},"Action":"kms:*","Resource":"*"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	keyARN := sdk.ToString(key.KeyMetadata.Arn)
	if _, err := acc.t.Setup(ctx, SetupOptions{Bucket: "staging", CreateRole: true}); err != nil {
		t.Fatal(err)
	}
	fs := acc.t.Preflight(ctx, AccountCheck{JobKeys: []string{keyARN}})
	wantFindings(t, fs, "blocker:KMS_KEY_ROLE")
	grant := fs[0].Action
	if !strings.Contains(grant, "aws kms create-grant --key-id "+keyARN+" --grantee-principal arn:aws:iam::"+account+":role/vmimport --operations ") {
		t.Fatalf("no grant to add in %q", grant)
	}
	encrypted := func(token string) error {
		d0, _ := stageGuest(t, acc, StagingKey("job-k", token, 0, "raw"), guestdisk.BIOS)
		imp, err := acc.t.StartImport(ctx, ImportInput{Disks: []Object{d0}, BootMode: "legacy-bios", Platform: "Linux", ClientToken: token,
			Encrypted: true, KMSKeyID: keyARN})
		if err != nil {
			return err
		}
		_, err = acc.t.Wait(ctx, imp, nil)
		return err
	}
	if err := encrypted("run-before-grant"); err == nil || !strings.Contains(err.Error(), "sufficient permissions") {
		t.Fatalf("VM Import with the key before the grant: %v", err)
	}
	// The grant, as the finding words it.
	ops := strings.Fields(grant[strings.Index(grant, "--operations ")+len("--operations "):])
	var gops []kmstypes.GrantOperation
	for _, o := range ops {
		gops = append(gops, kmstypes.GrantOperation(strings.TrimSuffix(o, ".")))
	}
	if _, err := kc.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: sdk.String(keyARN), GranteePrincipal: sdk.String("arn:aws:iam::" + account + ":role/vmimport"),
		Operations: gops}); err != nil {
		t.Fatal(err)
	}
	wantFindings(t, acc.t.Preflight(ctx, AccountCheck{JobKeys: []string{keyARN}}))
	if err := encrypted("run-after-grant"); err != nil {
		t.Fatalf("VM Import with the key after the grant: %v", err)
	}

	// A key that does not exist, and a disabled one.
	wantFindings(t, acc.t.Preflight(ctx, AccountCheck{JobKeys: []string{"1234abcd-0000-0000-0000-000000000000"}}), "blocker:KMS_KEY_MISSING")
	if _, err := kc.DisableKey(ctx, &kms.DisableKeyInput{KeyId: sdk.String(keyARN)}); err != nil {
		t.Fatal(err)
	}
	wantFindings(t, acc.t.Preflight(ctx, AccountCheck{JobKeys: []string{keyARN}}), "blocker:KMS_KEY_DISABLED")
}

func TestKeyPolicyAllows(t *testing.T) {
	role, account := "arn:aws:iam::111122223333:role/vmimport", "111122223333"
	for _, c := range []struct {
		doc  string
		want keyAccess
	}{
		{`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}`, keyDelegated},
		{`{"Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:role/vmimport"]},"Action":["kms:Decrypt"],"Resource":"*"}]}`, keyDirect},
		{`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/admin"},"Action":"kms:*","Resource":"*"}]}`, keyNone},
		{`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*"}]}`, keyDenied},
		{`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/vmimport"},"Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:ViaService":"ec2.us-east-1.amazonaws.com"}}}]}`, keyConditional},
		{`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:Encrypt","Resource":"*"}]}`, keyNone},
	} {
		if got := keyPolicyAllows(c.doc, "kms:Decrypt", role, account); got != c.want {
			t.Errorf("%s: %d, want %d", c.doc, got, c.want)
		}
	}
}

// More disks than ImportImage takes are imported one by one, as preflight's
// VOLUMES_OVER_IMAGE_LIMIT warning says, and every disk arrives: 23 tasks
// under a snapshot import quota of 5, admitted five at a time, none refused.
func TestImportOverVolumeLimit(t *testing.T) {
	acc := readyAccount(t, emulator.Config{Quotas: map[string]float64{"Concurrent import snapshot tasks": 5}})
	ctx := context.Background()
	disks, sums := overLimitDisks(t, acc, "job-w", 23)
	imp, res, err := acc.t.ImportAdmitted(ctx, ImportInput{Disks: disks, BootMode: "legacy-bios", Platform: "Linux", ClientToken: "job-w-run-1"}, nil, Admission{Limit: 5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if imp.Mode != ModeImportSnapshot || len(imp.TaskIDs) != 23 {
		t.Fatalf("import %s with %d tasks, want snapshot mode with 23", imp.Mode, len(imp.TaskIDs))
	}
	if got := snapshotSums(t, acc, res.SnapshotIDs); strings.Join(got, ",") != strings.Join(sums, ",") {
		t.Fatalf("snapshot contents differ from the staged disks")
	}
	if peak, refused := acc.emu.ImportSnapshotLoad(); peak > 5 || refused != 0 {
		t.Fatalf("peak %d snapshot tasks, %d refused; want at most 5 and none refused", peak, refused)
	}
}

// A run killed between tasks (once after recording an intent, before the
// start; once after a start, before its id was recorded) resumes from its
// ledger: every disk ends with exactly one task, and the snapshots hold the
// staged bytes.
func TestImportAdmittedResumesWithoutDuplicates(t *testing.T) {
	acc := readyAccount(t, emulator.Config{Quotas: map[string]float64{"Concurrent import snapshot tasks": 3}})
	ctx := context.Background()
	disks, sums := overLimitDisks(t, acc, "job-c", 8)
	in := ImportInput{Disks: disks, BootMode: "legacy-bios", Platform: "Linux", ClientToken: "job-c-run-1"}
	ledger := map[int]string{} // disk -> task id; an entry of "" is an intent
	killed := errors.New("killed")
	record := func(killIntent, killStarted int) Admission {
		return Admission{Limit: 3,
			Intend: func(_ context.Context, i int, token string) error {
				if token != DiskToken(in.ClientToken, i) {
					t.Errorf("disk %d intent token %q", i, token)
				}
				if _, ok := ledger[i]; !ok {
					ledger[i] = ""
				}
				if i == killIntent {
					return killed
				}
				return nil
			},
			Started: func(_ context.Context, i int, id string) error {
				if i == killStarted {
					return killed
				}
				ledger[i] = id
				return nil
			}}
	}
	known := func() []string {
		out := make([]string, len(disks))
		for i, id := range ledger {
			out[i] = id
		}
		return out
	}
	if _, _, err := acc.t.ImportAdmitted(ctx, in, known(), record(4, -1), nil); !errors.Is(err, killed) {
		t.Fatalf("first run: %v, want killed", err)
	}
	if _, _, err := acc.t.ImportAdmitted(ctx, in, known(), record(-1, 6), nil); !errors.Is(err, killed) {
		t.Fatalf("second run: %v, want killed", err)
	}
	imp, res, err := acc.t.ImportAdmitted(ctx, in, known(), record(-1, -1), nil)
	if err != nil {
		t.Fatal(err)
	}
	found, err := acc.t.FindImports(ctx, FindImportsInput{ClientToken: in.ClientToken})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || strings.Join(found[0].TaskIDs, ",") != strings.Join(imp.TaskIDs, ",") {
		t.Fatalf("tasks at VM Import %v, want exactly the run's %v", found, imp.TaskIDs)
	}
	if got := snapshotSums(t, acc, res.SnapshotIDs); strings.Join(got, ",") != strings.Join(sums, ",") {
		t.Fatalf("snapshot contents differ from the staged disks")
	}
	if _, refused := acc.emu.ImportSnapshotLoad(); refused != 0 {
		t.Fatalf("%d snapshot tasks refused", refused)
	}
}

// A run killed between tasks is undone by cancelling what it started: the
// tasks its ledger names, and one started but not yet recorded, found by
// its token; none is left active.
func TestImportAdmittedUndoCancelsWhatStarted(t *testing.T) {
	acc := readyAccount(t, emulator.Config{Quotas: map[string]float64{"Concurrent import snapshot tasks": 3}})
	ctx := context.Background()
	disks, _ := overLimitDisks(t, acc, "job-u", 6)
	in := ImportInput{Disks: disks, BootMode: "legacy-bios", Platform: "Linux", ClientToken: "job-u-run-1"}
	killed := errors.New("killed")
	started := 0
	imp, _, err := acc.t.ImportAdmitted(ctx, in, nil, Admission{Limit: 3, Started: func(context.Context, int, string) error {
		if started++; started == 2 {
			return killed
		}
		return nil
	}}, nil)
	if !errors.Is(err, killed) || len(imp.TaskIDs) != 2 {
		t.Fatalf("killed run: %v with tasks %v, want killed with 2", err, imp.TaskIDs)
	}
	rem, err := acc.t.CancelImport(ctx, imp)
	if err == nil {
		err = acc.t.DeleteImage(ctx, rem.ImageID, rem.SnapshotIDs)
	}
	if err != nil {
		t.Fatal(err)
	}
	active, err := acc.t.FindImports(ctx, FindImportsInput{ClientToken: in.ClientToken, States: []string{"active"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 0 {
		t.Fatalf("tasks left active after undo: %v", active)
	}
}

// overLimitDisks stages a bootable disk and n-1 small data disks.
func overLimitDisks(t *testing.T, acc *account, job string, n int) ([]Object, []string) {
	d0, s0 := stageGuest(t, acc, StagingKey(job, "run-1", 0, "raw"), guestdisk.BIOS)
	disks, sums := []Object{d0}, []string{s0}
	for i := 1; i < n; i++ {
		d, s := stageRaw(t, acc, StagingKey(job, "run-1", i, "raw"), uint64(i), 64<<10)
		disks, sums = append(disks, d), append(sums, s)
	}
	return disks, sums
}
