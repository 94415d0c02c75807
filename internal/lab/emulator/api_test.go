package emulator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/rand"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// newBare is an emulator without S3, for the APIs that do not import.
func newBare(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	cfg := Config{DataDir: t.TempDir()}
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
	e := &env{t: t, em: em, url: u}
	e.ec2, e.iam, e.sts, e.ebs = clients(u, em.Region(), ak, sk)
	return e
}

func TestAuth(t *testing.T) {
	e := newBare(t, nil)
	ctx := context.Background()
	id, err := e.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(id.Account) != e.em.AccountID() || aws.ToString(id.Arn) != "arn:aws:iam::"+e.em.AccountID()+":root" {
		t.Fatalf("caller identity %+v", id)
	}
	ec2c, iamc, stsc, ebsc := clients(e.url, "us-east-1", "AKIAUNKNOWN000000000", "secret")
	_, err = ec2c.DescribeImages(ctx, &ec2.DescribeImagesInput{})
	wantCode(t, err, "AuthFailure")
	_, err = stsc.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	wantCode(t, err, "InvalidClientTokenId")
	_, err = iamc.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("vmimport")})
	wantCode(t, err, "InvalidClientTokenId")
	_, err = ebsc.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)})
	wantCode(t, err, "UnrecognizedClientException")

	// The right key with the wrong secret fails the signature check.
	ak, _ := e.em.Credentials()
	ec2c, _, stsc, _ = clients(e.url, "us-east-1", ak, "wrong-secret")
	_, err = ec2c.DescribeImages(ctx, &ec2.DescribeImagesInput{})
	wantCode(t, err, "AuthFailure")
	_, err = stsc.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	wantCode(t, err, "SignatureDoesNotMatch")

	// Unsigned requests are refused too.
	resp, err := http.Post(e.url+"/", "application/x-www-form-urlencoded", strings.NewReader("Action=DescribeImages&Version=2016-11-15"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !bytes.Contains(body, []byte("<Code>MissingAuthenticationToken</Code>")) {
		t.Fatalf("unsigned request: %d %s", resp.StatusCode, body)
	}
}

func TestIAMRoles(t *testing.T) {
	e := newBare(t, nil)
	ctx := context.Background()
	_, err := e.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("vmimport")})
	wantCode(t, err, "NoSuchEntity")
	cr, err := e.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("vmimport"), AssumeRolePolicyDocument: aws.String(trustPolicy), Description: aws.String("VM Import")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(cr.Role.Arn) != "arn:aws:iam::"+e.em.AccountID()+":role/vmimport" || cr.Role.CreateDate == nil {
		t.Fatalf("created %+v", cr.Role)
	}
	_, err = e.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("vmimport"), AssumeRolePolicyDocument: aws.String(trustPolicy)})
	wantCode(t, err, "EntityAlreadyExists")
	_, err = e.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("bad"), AssumeRolePolicyDocument: aws.String("{not json")})
	wantCode(t, err, "MalformedPolicyDocument")
	gr, err := e.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("vmimport")})
	if err != nil {
		t.Fatal(err)
	}
	// IAM hands policy documents back URL-encoded.
	enc := aws.ToString(gr.Role.AssumeRolePolicyDocument)
	if strings.Contains(enc, "{") || unescape(t, enc) != trustPolicy {
		t.Fatalf("trust policy came back as %q", enc)
	}
	pol := rolePolicy("bucket-1")
	if _, err := e.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("vmimport"), PolicyName: aws.String("vmimport"), PolicyDocument: aws.String(pol)}); err != nil {
		t.Fatal(err)
	}
	gp, err := e.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String("vmimport"), PolicyName: aws.String("vmimport")})
	if err != nil || unescape(t, aws.ToString(gp.PolicyDocument)) != pol {
		t.Fatalf("get role policy: %v %+v", err, gp)
	}
	lp, err := e.iam.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String("vmimport")})
	if err != nil || len(lp.PolicyNames) != 1 || lp.PolicyNames[0] != "vmimport" {
		t.Fatalf("list role policies: %v %+v", err, lp)
	}
	_, err = e.iam.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String("vmimport")})
	wantCode(t, err, "DeleteConflict")
	if _, err := e.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String("vmimport"), PolicyName: aws.String("vmimport")}); err != nil {
		t.Fatal(err)
	}
	_, err = e.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String("vmimport"), PolicyName: aws.String("vmimport")})
	wantCode(t, err, "NoSuchEntity")
	if _, err := e.iam.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String("vmimport")}); err != nil {
		t.Fatal(err)
	}
	if len(e.em.Roles()) != 0 {
		t.Fatal("role still there")
	}

	d := newBare(t, func(c *Config) { c.DenyCreateRole = true })
	_, err = d.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("vmimport"), AssumeRolePolicyDocument: aws.String(trustPolicy)})
	wantCode(t, err, "AccessDenied")
}

// putBlocks writes blocks (index → data) to a snapshot with the SDK and
// returns the LINEAR aggregated checksum.
func putBlocks(t *testing.T, c *ebs.Client, snap string, blocks map[int32][]byte, order []int32) string {
	t.Helper()
	var sums []byte
	for _, i := range order {
		sum := sha256.Sum256(blocks[i])
		sums = append(sums, sum[:]...)
		_, err := c.PutSnapshotBlock(context.Background(), &ebs.PutSnapshotBlockInput{
			SnapshotId: aws.String(snap), BlockIndex: aws.Int32(i), BlockData: bytes.NewReader(blocks[i]),
			DataLength: aws.Int32(BlockSize), Checksum: aws.String(base64.StdEncoding.EncodeToString(sum[:])),
			ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
		})
		if err != nil {
			t.Fatalf("put block %d: %v", i, err)
		}
	}
	agg := sha256.Sum256(sums)
	return base64.StdEncoding.EncodeToString(agg[:])
}

func randomBlock(r *rand.Rand) []byte {
	b := make([]byte, BlockSize)
	r.Read(b)
	return b
}

func TestEBSDirect(t *testing.T) {
	e := newBare(t, nil)
	ctx := context.Background()
	r := rand.New(rand.NewSource(11))
	start, err := e.ebs.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), ClientToken: aws.String("seed-1"), Description: aws.String("seed"),
		Tags: []ebstypes.Tag{{Key: aws.String("rehost:job"), Value: aws.String("j-1")}}})
	if err != nil {
		t.Fatal(err)
	}
	snap := aws.ToString(start.SnapshotId)
	if start.Status != ebstypes.StatusPending || aws.ToInt32(start.BlockSize) != BlockSize || aws.ToString(start.OwnerId) != e.em.AccountID() {
		t.Fatalf("start answered %+v", start)
	}
	again, err := e.ebs.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), ClientToken: aws.String("seed-1")})
	if err != nil || aws.ToString(again.SnapshotId) != snap {
		t.Fatalf("client token: %v %v", err, again)
	}
	full := map[int32][]byte{0: randomBlock(r), 5: randomBlock(r), 2047: randomBlock(r)}
	agg := putBlocks(t, e.ebs, snap, full, []int32{0, 5, 2047})

	// A block whose checksum lies is refused.
	bad := randomBlock(r)
	_, err = e.ebs.PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{SnapshotId: aws.String(snap), BlockIndex: aws.Int32(7), BlockData: bytes.NewReader(bad),
		DataLength: aws.Int32(BlockSize), Checksum: aws.String(base64.StdEncoding.EncodeToString(make([]byte, 32))), ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256})
	wantCode(t, err, "ValidationException")

	// The snapshot is pending in EC2 until completed.
	ds, err := e.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{snap}})
	if err != nil || ds.Snapshots[0].State != ec2types.SnapshotStatePending {
		t.Fatalf("describe pending: %v %+v", err, ds)
	}
	_, err = e.ebs.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{SnapshotId: aws.String(snap), ChangedBlocksCount: aws.Int32(2)})
	wantCode(t, err, "ValidationException")
	cs, err := e.ebs.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{SnapshotId: aws.String(snap), ChangedBlocksCount: aws.Int32(3),
		Checksum: aws.String(agg), ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256, ChecksumAggregationMethod: ebstypes.ChecksumAggregationMethodChecksumAggregationLinear})
	if err != nil || cs.Status != ebstypes.StatusCompleted {
		t.Fatalf("complete: %v %+v", err, cs)
	}

	// Content: the emulator's view and GetSnapshotBlock agree with what was put.
	for i, b := range full {
		if !bytes.Equal(e.block(snap, i), b) {
			t.Fatalf("block %d content differs", i)
		}
	}
	if !bytes.Equal(e.block(snap, 6), make([]byte, BlockSize)) {
		t.Fatal("an unwritten block is not zero")
	}
	lb, err := e.ebs.ListSnapshotBlocks(ctx, &ebs.ListSnapshotBlocksInput{SnapshotId: aws.String(snap)})
	if err != nil || len(lb.Blocks) != 3 || aws.ToInt32(lb.Blocks[2].BlockIndex) != 2047 || aws.ToInt64(lb.VolumeSize) != 1 {
		t.Fatalf("list blocks: %v %+v", err, lb)
	}
	gb, err := e.ebs.GetSnapshotBlock(ctx, &ebs.GetSnapshotBlockInput{SnapshotId: aws.String(snap), BlockIndex: lb.Blocks[1].BlockIndex, BlockToken: lb.Blocks[1].BlockToken})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(gb.BlockData)
	gb.BlockData.Close()
	if !bytes.Equal(got, full[5]) {
		t.Fatal("GetSnapshotBlock returned other data")
	}
	_, err = e.ebs.GetSnapshotBlock(ctx, &ebs.GetSnapshotBlockInput{SnapshotId: aws.String(snap), BlockIndex: aws.Int32(5), BlockToken: lb.Blocks[0].BlockToken})
	wantCode(t, err, "ValidationException")

	// An incremental child changes block 5 and adds block 9.
	child, err := e.ebs.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), ParentSnapshotId: aws.String(snap)})
	if err != nil {
		t.Fatal(err)
	}
	csnap := aws.ToString(child.SnapshotId)
	delta := map[int32][]byte{5: randomBlock(r), 9: randomBlock(r)}
	putBlocks(t, e.ebs, csnap, delta, []int32{5, 9})
	if _, err := e.ebs.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{SnapshotId: aws.String(csnap), ChangedBlocksCount: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	ch, err := e.ebs.ListChangedBlocks(ctx, &ebs.ListChangedBlocksInput{FirstSnapshotId: aws.String(snap), SecondSnapshotId: aws.String(csnap)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.ChangedBlocks) != 2 || aws.ToInt32(ch.ChangedBlocks[0].BlockIndex) != 5 || ch.ChangedBlocks[0].FirstBlockToken == nil ||
		aws.ToInt32(ch.ChangedBlocks[1].BlockIndex) != 9 || ch.ChangedBlocks[1].FirstBlockToken != nil {
		t.Fatalf("changed blocks %+v", ch.ChangedBlocks)
	}
	for i, want := range map[int32][]byte{0: full[0], 5: delta[5], 9: delta[9], 2047: full[2047]} {
		if !bytes.Equal(e.block(csnap, i), want) {
			t.Fatalf("child block %d content differs", i)
		}
	}
	// Without a first snapshot every block of the second is listed.
	all, err := e.ebs.ListChangedBlocks(ctx, &ebs.ListChangedBlocksInput{SecondSnapshotId: aws.String(csnap)})
	if err != nil || len(all.ChangedBlocks) != 4 {
		t.Fatalf("all blocks: %v %+v", err, all)
	}
	_, err = e.ebs.ListSnapshotBlocks(ctx, &ebs.ListSnapshotBlocksInput{SnapshotId: aws.String("snap-0123456789abcdef0")})
	wantCode(t, err, "ResourceNotFoundException")
}

// block reads block i of a snapshot's content.
func (e *env) block(id string, i int32) []byte {
	e.t.Helper()
	r, size, err := e.em.SnapshotContent(id)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Close()
	if size != gib {
		e.t.Fatalf("snapshot %s has size %d", id, size)
	}
	b := make([]byte, BlockSize)
	if _, err := r.ReadAt(b, int64(i)*BlockSize); err != nil {
		e.t.Fatal(err)
	}
	return b
}

// ebsSnapshot makes a completed 1 GiB snapshot holding one random block.
func ebsSnapshot(t *testing.T, e *env, seed int64) string {
	t.Helper()
	ctx := context.Background()
	s, err := e.ebs.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)})
	if err != nil {
		t.Fatal(err)
	}
	putBlocks(t, e.ebs, aws.ToString(s.SnapshotId), map[int32][]byte{1: randomBlock(rand.New(rand.NewSource(seed)))}, []int32{1})
	if _, err := e.ebs.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{SnapshotId: s.SnapshotId, ChangedBlocksCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(s.SnapshotId)
}

func TestImagesAndSnapshots(t *testing.T) {
	e := newBare(t, nil)
	ctx := context.Background()
	snap := ebsSnapshot(t, e, 1)
	spare := ebsSnapshot(t, e, 2)

	_, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{"ami-xyz"}})
	wantCode(t, err, "InvalidAMIID.Malformed")
	_, err = e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{"ami-0123456789abcdef0"}})
	wantCode(t, err, "InvalidAMIID.NotFound")
	_, err = e.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String("ami-0123456789abcdef0")})
	wantCode(t, err, "InvalidAMIID.NotFound")
	_, err = e.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{"snap-0123456789abcdef0"}})
	wantCode(t, err, "InvalidSnapshot.NotFound")
	_, err = e.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String("snap-bad")})
	wantCode(t, err, "InvalidSnapshotID.Malformed")
	_, err = e.ec2.RegisterImage(ctx, &ec2.RegisterImageInput{Name: aws.String("x"), RootDeviceName: aws.String("/dev/sda1"),
		BlockDeviceMappings: []ec2types.BlockDeviceMapping{{DeviceName: aws.String("/dev/sda1"), Ebs: &ec2types.EbsBlockDevice{SnapshotId: aws.String("snap-0123456789abcdef0")}}}})
	wantCode(t, err, "InvalidSnapshot.NotFound")
	_, err = e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{DryRun: aws.Bool(true)})
	wantCode(t, err, "DryRunOperation")

	reg, err := e.ec2.RegisterImage(ctx, &ec2.RegisterImageInput{Name: aws.String("web-01"), RootDeviceName: aws.String("/dev/sda1"), Description: aws.String("web"),
		BlockDeviceMappings: []ec2types.BlockDeviceMapping{{DeviceName: aws.String("/dev/sda1"), Ebs: &ec2types.EbsBlockDevice{SnapshotId: aws.String(snap), VolumeSize: aws.Int32(8)}}}})
	if err != nil {
		t.Fatal(err)
	}
	ami := aws.ToString(reg.ImageId)
	if _, err := e.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{ami, snap}, Tags: []ec2types.Tag{{Key: aws.String("rehost:job"), Value: aws.String("j-9")}}}); err != nil {
		t.Fatal(err)
	}
	_, err = e.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{"ami-0123456789abcdef0"}, Tags: []ec2types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}})
	wantCode(t, err, "InvalidAMIID.NotFound")
	for _, f := range []ec2types.Filter{
		{Name: aws.String("tag:rehost:job"), Values: []string{"j-9"}},
		{Name: aws.String("tag-key"), Values: []string{"rehost:job"}},
		{Name: aws.String("name"), Values: []string{"web-*"}},
	} {
		out, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []ec2types.Filter{f}})
		if err != nil || len(out.Images) != 1 || aws.ToString(out.Images[0].ImageId) != ami {
			t.Fatalf("filter %s: %v %+v", aws.ToString(f.Name), err, out)
		}
	}
	none, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(none.Images) != 0 {
		t.Fatalf("owner amazon: %v %+v", err, none)
	}
	ss, err := e.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, Filters: []ec2types.Filter{{Name: aws.String("tag:rehost:job"), Values: []string{"j-9"}}}})
	if err != nil || len(ss.Snapshots) != 1 || aws.ToString(ss.Snapshots[0].SnapshotId) != snap || ss.Snapshots[0].State != ec2types.SnapshotStateCompleted {
		t.Fatalf("snapshots by tag: %v %+v", err, ss)
	}
	page1, err := e.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{MaxResults: aws.Int32(5)})
	if err != nil || len(page1.Snapshots) != 2 {
		t.Fatalf("describe all snapshots: %v %+v", err, page1)
	}
	if _, err := e.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{snap}, Tags: []ec2types.Tag{{Key: aws.String("rehost:job")}}}); err != nil {
		t.Fatal(err)
	}
	if tags := e.em.Snapshots(); len(tags[0].Tags)+len(tags[1].Tags) != 0 {
		t.Fatalf("tags left after DeleteTags: %+v", tags)
	}

	// CopyImage duplicates content into new snapshots.
	cp, err := e.ec2.CopyImage(ctx, &ec2.CopyImageInput{Name: aws.String("web-01-enc"), SourceImageId: aws.String(ami), SourceRegion: aws.String("us-east-1"),
		Encrypted: aws.Bool(true), CopyImageTags: aws.Bool(true), ClientToken: aws.String("copy-1")})
	if err != nil {
		t.Fatal(err)
	}
	cp2, err := e.ec2.CopyImage(ctx, &ec2.CopyImageInput{Name: aws.String("web-01-enc"), SourceImageId: aws.String(ami), SourceRegion: aws.String("us-east-1"), ClientToken: aws.String("copy-1")})
	if err != nil || aws.ToString(cp2.ImageId) != aws.ToString(cp.ImageId) {
		t.Fatalf("copy client token: %v", err)
	}
	ci, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{aws.ToString(cp.ImageId)}})
	if err != nil {
		t.Fatal(err)
	}
	cm := ci.Images[0].BlockDeviceMappings[0]
	if !aws.ToBool(cm.Ebs.Encrypted) || aws.ToString(cm.Ebs.SnapshotId) == snap || len(ci.Images[0].Tags) != 1 || aws.ToInt32(cm.Ebs.VolumeSize) != 8 {
		t.Fatalf("copy %+v", ci.Images[0])
	}
	if !bytes.Equal(e.block(aws.ToString(cm.Ebs.SnapshotId), 1), e.block(snap, 1)) {
		t.Fatal("copied snapshot content differs")
	}

	_, err = e.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snap)})
	wantCode(t, err, "InvalidSnapshot.InUse")
	if _, err := e.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(spare)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(ami)}); err != nil {
		t.Fatal(err)
	}
	_, err = e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{ami}})
	wantCode(t, err, "InvalidAMIID.NotFound")
	_, err = e.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(ami)})
	wantCode(t, err, "InvalidAMIID.Unavailable")
	if _, err := e.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snap)}); err != nil {
		t.Fatalf("snapshot of a deregistered image: %v", err)
	}

	// The debug endpoint reflects the model.
	resp, err := http.Get(e.url + "/_emulator/state")
	if err != nil {
		t.Fatal(err)
	}
	var st StateView
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if len(st.Images) != 1 || st.Images[0].ID != aws.ToString(cp.ImageId) || len(st.Snapshots) != 1 {
		t.Fatalf("debug state %+v", st)
	}
}
