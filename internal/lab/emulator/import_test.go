package emulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/internal/lab/s3peer"
)

const diskSize = 5<<20 + 64<<10 // not a whole number of 512 KiB blocks

func TestImportImageContent(t *testing.T) {
	e := newEnv(t, nil)
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	raw := guestDisk(t, guestdisk.BIOS)
	for _, format := range []string{"vmdk", "vhd", "vhd-fixed", "raw"} {
		t.Run(format, func(t *testing.T) {
			key := "vm-1/disk0." + strings.TrimSuffix(format, "-fixed")
			e.put(key, encode(t, format, raw))
			id := e.importImage(key)
			if !strings.HasPrefix(id, "import-ami-") {
				t.Fatalf("task id %q", id)
			}
			task := e.waitImage(id)
			if aws.ToString(task.Status) != "completed" {
				t.Fatalf("task %s: %s: %s", id, aws.ToString(task.Status), aws.ToString(task.StatusMessage))
			}
			if task.BootMode != "legacy-bios" {
				t.Errorf("boot mode %q", task.BootMode)
			}
			if aws.ToString(task.Platform) != "Linux" || aws.ToString(task.Architecture) != "x86_64" || aws.ToString(task.LicenseType) != "BYOL" {
				t.Errorf("task platform %q arch %q license %q", aws.ToString(task.Platform), aws.ToString(task.Architecture), aws.ToString(task.LicenseType))
			}
			if d := aws.ToString(task.Description); d != "AWS-VMImport service: Linux - Debian GNU/Linux 12 (bookworm)" {
				t.Errorf("task description %q does not name the distribution", d)
			}
			imgs, err := e.ec2.DescribeImages(context.Background(), &ec2.DescribeImagesInput{ImageIds: []string{aws.ToString(task.ImageId)}, Owners: []string{"self"}})
			if err != nil {
				t.Fatal(err)
			}
			im := imgs.Images[0]
			if im.State != ec2types.ImageStateAvailable || len(im.BlockDeviceMappings) != 1 || aws.ToString(im.RootDeviceName) != "/dev/sda1" {
				t.Fatalf("image %+v", im)
			}
			bdm := im.BlockDeviceMappings[0]
			snap := aws.ToString(bdm.Ebs.SnapshotId)
			if aws.ToString(task.SnapshotDetails[0].SnapshotId) != snap || aws.ToInt32(bdm.Ebs.VolumeSize) != 1 {
				t.Fatalf("snapshot %s in image, %s in task, volume size %d", snap, aws.ToString(task.SnapshotDetails[0].SnapshotId), aws.ToInt32(bdm.Ebs.VolumeSize))
			}
			sum, size, err := e.em.SnapshotSHA256(snap)
			if err != nil {
				t.Fatal(err)
			}
			if size != int64(len(raw)) || sum != sha(raw) {
				t.Fatalf("snapshot holds %d bytes hashing %s, want %d hashing %s", size, sum, len(raw), sha(raw))
			}
			if !bytes.Equal(e.content(snap), raw) {
				t.Fatal("snapshot content differs from the source disk")
			}
			st, err := FetchState(nil, e.url)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, s := range st.Snapshots {
				found = found || s.ID == snap && s.SHA256 == sha(raw)
			}
			if !found {
				t.Fatalf("debug state lacks %s: %+v", snap, st.Snapshots)
			}
		})
	}
}

func TestImportImageMultiDiskAndTags(t *testing.T) {
	e := newEnv(t, nil)
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	raw0, raw1 := guestDisk(t, guestdisk.EFI), rawDisk(3<<20, 3)
	e.put("d0.vmdk", encode(t, "vmdk", raw0))
	e.put("d1.vhd", encode(t, "vhd", raw1))
	out, err := e.ec2.ImportImage(context.Background(), &ec2.ImportImageInput{
		BootMode: ec2types.BootModeValuesUefi, Description: aws.String("db-01"), Encrypted: aws.Bool(true),
		DiskContainers: []ec2types.ImageDiskContainer{
			{Format: aws.String("vmdk"), UserBucket: &ec2types.UserBucket{S3Bucket: aws.String(e.bucket), S3Key: aws.String("d0.vmdk")}},
			{Format: aws.String("VHD"), Url: aws.String("s3://" + e.bucket + "/d1.vhd")},
		},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: "import-image-task", Tags: []ec2types.Tag{{Key: aws.String("rehost:run"), Value: aws.String("run-7")}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Tags) != 1 || aws.ToString(out.Tags[0].Value) != "run-7" || aws.ToString(out.Status) != "active" {
		t.Fatalf("ImportImage answered %+v", out)
	}
	task := e.waitImage(aws.ToString(out.ImportTaskId))
	if aws.ToString(task.Status) != "completed" || task.BootMode != "uefi" || !aws.ToBool(task.Encrypted) {
		t.Fatalf("task %+v", task)
	}
	// Filter the tasks by tag, as the connector finds its leftovers.
	byTag, err := e.ec2.DescribeImportImageTasks(context.Background(), &ec2.DescribeImportImageTasksInput{
		Filters: []ec2types.Filter{{Name: aws.String("tag:rehost:run"), Values: []string{"run-7"}}}})
	if err != nil || len(byTag.ImportImageTasks) != 1 {
		t.Fatalf("by tag: %v %+v", err, byTag)
	}
	none, err := e.ec2.DescribeImportImageTasks(context.Background(), &ec2.DescribeImportImageTasksInput{
		Filters: []ec2types.Filter{{Name: aws.String("tag:rehost:run"), Values: []string{"run-8"}}}})
	if err != nil || len(none.ImportImageTasks) != 0 {
		t.Fatalf("by other tag: %v %+v", err, none)
	}
	imgs, err := e.ec2.DescribeImages(context.Background(), &ec2.DescribeImagesInput{ImageIds: []string{aws.ToString(task.ImageId)}})
	if err != nil {
		t.Fatal(err)
	}
	im := imgs.Images[0]
	if im.BootMode != "uefi" || aws.ToString(im.Description) != "db-01" || len(im.BlockDeviceMappings) != 2 {
		t.Fatalf("image %+v", im)
	}
	if d := im.BlockDeviceMappings[1]; aws.ToString(d.DeviceName) != "/dev/sdb" || !aws.ToBool(d.Ebs.Encrypted) {
		t.Fatalf("second mapping %+v", d)
	}
	for i, raw := range [][]byte{raw0, raw1} {
		if got := e.content(aws.ToString(im.BlockDeviceMappings[i].Ebs.SnapshotId)); !bytes.Equal(got, raw) {
			t.Fatalf("disk %d content differs", i)
		}
	}
}

func TestImportSnapshotThenRegisterImage(t *testing.T) {
	e := newEnv(t, nil)
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	raw := rawDisk(diskSize, 4)
	e.put("s.vmdk", encode(t, "vmdk", raw))
	ctx := context.Background()
	out, err := e.ec2.ImportSnapshot(ctx, &ec2.ImportSnapshotInput{
		DiskContainer:     &ec2types.SnapshotDiskContainer{Format: aws.String("VMDK"), UserBucket: &ec2types.UserBucket{S3Bucket: aws.String(e.bucket), S3Key: aws.String("s.vmdk")}},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: "import-snapshot-task", Tags: []ec2types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	task := e.waitSnapshotTask(aws.ToString(out.ImportTaskId))
	if aws.ToString(task.SnapshotTaskDetail.Status) != "completed" {
		t.Fatalf("task %+v", task.SnapshotTaskDetail)
	}
	snap := aws.ToString(task.SnapshotTaskDetail.SnapshotId)
	if !bytes.Equal(e.content(snap), raw) {
		t.Fatal("imported snapshot content differs")
	}
	if aws.ToFloat64(task.SnapshotTaskDetail.DiskImageSize) <= 0 {
		t.Fatalf("disk image size %v", aws.ToFloat64(task.SnapshotTaskDetail.DiskImageSize))
	}
	reg, err := e.ec2.RegisterImage(ctx, &ec2.RegisterImageInput{
		Name: aws.String("vm-1-run-7"), RootDeviceName: aws.String("/dev/sda1"), Architecture: ec2types.ArchitectureValuesX8664,
		VirtualizationType: aws.String("hvm"), EnaSupport: aws.Bool(true), BootMode: ec2types.BootModeValuesUefi,
		BlockDeviceMappings: []ec2types.BlockDeviceMapping{{DeviceName: aws.String("/dev/sda1"), Ebs: &ec2types.EbsBlockDevice{SnapshotId: aws.String(snap), VolumeType: ec2types.VolumeTypeGp3}}},
		TagSpecifications:   []ec2types.TagSpecification{{ResourceType: "image", Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String("vm-1")}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []ec2types.Filter{{Name: aws.String("tag:Name"), Values: []string{"vm-1"}}}})
	if err != nil || len(imgs.Images) != 1 || aws.ToString(imgs.Images[0].ImageId) != aws.ToString(reg.ImageId) {
		t.Fatalf("describe by tag: %v %+v", err, imgs)
	}
	im := imgs.Images[0]
	if aws.ToString(im.BlockDeviceMappings[0].Ebs.SnapshotId) != snap || im.BlockDeviceMappings[0].Ebs.VolumeType != ec2types.VolumeTypeGp3 || im.BootMode != "uefi" {
		t.Fatalf("image %+v", im)
	}
	// The snapshot is in use now.
	_, err = e.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snap)})
	wantCode(t, err, "InvalidSnapshot.InUse")
	// A duplicate name is refused.
	_, err = e.ec2.RegisterImage(ctx, &ec2.RegisterImageInput{Name: aws.String("vm-1-run-7"), RootDeviceName: aws.String("/dev/sda1"),
		BlockDeviceMappings: []ec2types.BlockDeviceMapping{{DeviceName: aws.String("/dev/sda1"), Ebs: &ec2types.EbsBlockDevice{SnapshotId: aws.String(snap)}}}})
	wantCode(t, err, "InvalidAMIName.Duplicate")
	// Deregister with its snapshots leaves nothing.
	dr, err := e.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: reg.ImageId, DeleteAssociatedSnapshots: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if len(dr.DeleteSnapshotResults) != 1 || dr.DeleteSnapshotResults[0].ReturnCode != "success" {
		t.Fatalf("deregister results %+v", dr.DeleteSnapshotResults)
	}
	if n := len(e.em.Images()) + len(e.em.Snapshots()); n != 0 {
		t.Fatalf("%d images and snapshots left", n)
	}
	_, err = e.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: reg.ImageId})
	wantCode(t, err, "InvalidAMIID.Unavailable")
}

func TestImportCorruptImages(t *testing.T) {
	e := newEnv(t, nil)
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	raw := rawDisk(diskSize, 5)
	vmdk := encode(t, "vmdk", raw)
	vhd := encode(t, "vhd", raw)

	flipped := append([]byte(nil), vmdk...)
	// The first grain marker follows the 64 KiB header region; its
	// compressed bytes start 12 bytes later.
	for i := 65536 + 12 + 20; i < 65536+12+60; i++ {
		flipped[i] ^= 0x5a
	}
	footerless := append([]byte(nil), vhd...)
	footerless[len(footerless)-100] ^= 0xff
	cases := []struct {
		name, key string
		data      []byte
		want      string
	}{
		{"grain", "flip.vmdk", flipped, "ClientError: Uncompressed data has invalid length."},
		{"truncated", "trunc.vmdk", vmdk[:len(vmdk)/2], "ClientError: Disk validation failed [Unsupported VMDK File Format]"},
		{"not-vmdk", "raw-as.vmdk", raw, "ClientError: Disk validation failed [Unsupported VMDK File Format]"},
		{"vhd-footer", "bad.vhd", footerless, "ClientError: Footers not identical"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.put(c.key, c.data)
			task := e.waitImage(e.importImage(c.key))
			if aws.ToString(task.Status) != "deleted" || aws.ToString(task.StatusMessage) != c.want {
				t.Fatalf("task ended %s: %q, want deleted: %q", aws.ToString(task.Status), aws.ToString(task.StatusMessage), c.want)
			}
			if n := len(e.em.Snapshots()); n != 0 {
				t.Fatalf("%d snapshots left behind", n)
			}
		})
	}
}

func TestImportFailures(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.put("d.vmdk", encode(t, "vmdk", rawDisk(1<<20, 6)))
	dc := func(key string) []ec2types.ImageDiskContainer {
		return []ec2types.ImageDiskContainer{{Format: aws.String("VMDK"), UserBucket: &ec2types.UserBucket{S3Bucket: aws.String(e.bucket), S3Key: aws.String(key)}}}
	}

	// No role at all: VM Import refuses the call.
	_, err := e.ec2.ImportImage(ctx, &ec2.ImportImageInput{DiskContainers: dc("d.vmdk")})
	wantCode(t, err, "InvalidParameter")
	if !strings.Contains(err.Error(), "The service role vmimport provided does not exist or does not have sufficient permissions") {
		t.Fatalf("message: %v", err)
	}
	// A trust policy for another external id is as good as none.
	e.role("other", strings.Replace(trustPolicy, `"vmimport"`, `"someone-else"`, 1), rolePolicy(e.bucket))
	_, err = e.ec2.ImportImage(ctx, &ec2.ImportImageInput{RoleName: aws.String("other"), DiskContainers: dc("d.vmdk")})
	wantCode(t, err, "InvalidParameter")

	// A role that cannot list the bucket.
	e.role("nolist", trustPolicy, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::`+e.bucket+`/*"}]}`)
	// A role that may not read the object.
	e.role("noget", trustPolicy, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetBucketLocation","s3:ListBucket"],"Resource":"arn:aws:s3:::`+e.bucket+`"}]}`)
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))

	run := func(t *testing.T, role, key, want string) {
		t.Helper()
		out, err := e.ec2.ImportImage(ctx, &ec2.ImportImageInput{RoleName: aws.String(role), DiskContainers: dc(key)})
		if err != nil {
			t.Fatal(err)
		}
		task := e.waitImage(aws.ToString(out.ImportTaskId))
		if aws.ToString(task.Status) != "deleted" || aws.ToString(task.StatusMessage) != want {
			t.Fatalf("task ended %s: %q, want deleted: %q", aws.ToString(task.Status), aws.ToString(task.StatusMessage), want)
		}
		if d := task.SnapshotDetails[0]; aws.ToString(d.Status) != "deleted" || aws.ToString(d.StatusMessage) != want {
			t.Fatalf("disk detail %+v", d)
		}
	}
	t.Run("no-list", func(t *testing.T) {
		run(t, "nolist", "d.vmdk", "ClientError: The service role nolist provided does not exist or does not have sufficient permissions")
	})
	t.Run("no-get", func(t *testing.T) {
		run(t, "noget", "d.vmdk", "ClientError: Disk validation failed [We do not have access to the given resource. Reason 403 Forbidden]")
	})
	t.Run("missing-object", func(t *testing.T) {
		run(t, "vmimport", "nope.vmdk", "ClientError: Disk validation failed [We do not have access to the given resource. Reason 404 Not Found]")
	})
	t.Run("sse-c", func(t *testing.T) {
		peer.Front.Inject("HeadObject", peer.Front.Count("HeadObject")+1, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Amz-Server-Side-Encryption-Customer-Algorithm", "AES256")
			peer.Front.Forward(w, r)
		})
		run(t, "vmimport", "d.vmdk", sseCFailure().Error())
	})
	t.Run("other-region", func(t *testing.T) {
		peer.Front.Inject("GetBucketLocation", peer.Front.Count("GetBucketLocation")+1, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/xml")
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">eu-west-1</LocationConstraint>`)
		})
		run(t, "vmimport", "d.vmdk", "ClientError: The S3 bucket "+e.bucket+" is in region eu-west-1; VM Import reads only buckets in the import task's region us-east-1")
	})
	t.Run("injected", func(t *testing.T) {
		e.em.InjectImportFault(func(taskID string, disk int) error {
			return errors.New("ServerError: injected conversion failure on disk " + fmt.Sprint(disk))
		})
		defer e.em.InjectImportFault(nil)
		run(t, "vmimport", "d.vmdk", "ServerError: injected conversion failure on disk 0")
	})
	t.Run("too-many-volumes", func(t *testing.T) {
		var many []ec2types.ImageDiskContainer
		for i := 0; i < 22; i++ {
			many = append(many, dc("d.vmdk")...)
		}
		out, err := e.ec2.ImportImage(ctx, &ec2.ImportImageInput{DiskContainers: many})
		if err != nil {
			t.Fatal(err)
		}
		task := e.waitImage(aws.ToString(out.ImportTaskId))
		if aws.ToString(task.Status) != "deleted" || !strings.Contains(aws.ToString(task.StatusMessage), "at most 21") {
			t.Fatalf("task %s: %q", aws.ToString(task.Status), aws.ToString(task.StatusMessage))
		}
	})
	if n := len(e.em.Snapshots()) + len(e.em.Images()); n != 0 {
		t.Fatalf("%d images and snapshots left behind by failed tasks", n)
	}
}

func TestCancelAndClientToken(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SimulatedImportWait = 30 * time.Second })
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	e.put("d.vmdk", encode(t, "vmdk", guestDisk(t, guestdisk.BIOS)))
	ctx := context.Background()
	in := &ec2.ImportImageInput{ClientToken: aws.String("run-42-disk-0"), DiskContainers: []ec2types.ImageDiskContainer{
		{Format: aws.String("VMDK"), UserBucket: &ec2types.UserBucket{S3Bucket: aws.String(e.bucket), S3Key: aws.String("d.vmdk")}}}}
	a, err := e.ec2.ImportImage(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.ec2.ImportImage(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(a.ImportTaskId) != aws.ToString(b.ImportTaskId) || len(e.em.ImportTasks()) != 1 {
		t.Fatalf("same client token gave tasks %s and %s", aws.ToString(a.ImportTaskId), aws.ToString(b.ImportTaskId))
	}
	c, err := e.ec2.CancelImportTask(ctx, &ec2.CancelImportTaskInput{ImportTaskId: a.ImportTaskId})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(c.State) != "deleting" || aws.ToString(c.PreviousState) != "active" {
		t.Fatalf("cancel answered %+v", c)
	}
	task := e.waitImage(aws.ToString(a.ImportTaskId))
	if aws.ToString(task.Status) != "deleted" || aws.ToString(task.StatusMessage) != "User cancelled" {
		t.Fatalf("cancelled task: %s %q", aws.ToString(task.Status), aws.ToString(task.StatusMessage))
	}
	if n := len(e.em.Snapshots()) + len(e.em.Images()); n != 0 {
		t.Fatalf("cancel left %d resources", n)
	}
	_, err = e.ec2.CancelImportTask(ctx, &ec2.CancelImportTaskInput{ImportTaskId: a.ImportTaskId})
	wantCode(t, err, "IncorrectState")
	_, err = e.ec2.DescribeImportImageTasks(ctx, &ec2.DescribeImportImageTasksInput{ImportTaskIds: []string{"import-ami-0123456789abcdef0"}})
	wantCode(t, err, "InvalidConversionTaskId")
}

// TestImportProgress checks that a task passes through VM Import's phases
// in order, each entered when the work before it is done, with progress
// that never goes back.
func TestImportProgress(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SimulatedImportWait = 300 * time.Millisecond })
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	e.put("d.raw", guestDisk(t, guestdisk.BIOS))
	id := e.importImage("d.raw")
	last := -1
	for {
		out, err := e.ec2.DescribeImportImageTasks(context.Background(), &ec2.DescribeImportImageTasksInput{ImportTaskIds: []string{id}})
		if err != nil {
			t.Fatal(err)
		}
		task := out.ImportImageTasks[0]
		if aws.ToString(task.Status) != "active" {
			if aws.ToString(task.Status) != "completed" {
				t.Fatalf("ended %s %q", aws.ToString(task.Status), aws.ToString(task.StatusMessage))
			}
			break
		}
		var p int
		fmt.Sscan(aws.ToString(task.Progress), &p)
		if p < last {
			t.Fatalf("progress went back from %d to %d", last, p)
		}
		last = p
		time.Sleep(25 * time.Millisecond)
	}
	phases := e.em.ImportTasks()[0].Phases
	want := []string{"pending", "validating", "validated", "converting", "updating", "booting", "preparing ami", "completed"}
	if strings.Join(phases, ",") != strings.Join(want, ",") {
		t.Fatalf("phases %q, want %q", phases, want)
	}
}

func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, func(c *Config) { c.DataDir = dir })
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	raw := guestDisk(t, guestdisk.BIOS)
	e.put("d.vhd", encode(t, "vhd", raw))
	task := e.waitImage(e.importImage("d.vhd"))
	ak, sk := e.em.Credentials()
	acct := e.em.AccountID()
	e.em.Close()

	em2, err := New(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer em2.Close()
	ak2, sk2 := em2.Credentials()
	if ak2 != ak || sk2 != sk || em2.AccountID() != acct {
		t.Fatal("restart changed the account or its keys")
	}
	imgs := em2.Images()
	if len(imgs) != 1 || imgs[0].ID != aws.ToString(task.ImageId) {
		t.Fatalf("images after restart: %+v", imgs)
	}
	r, size, err := em2.SnapshotContent(imgs[0].Devices[0].SnapshotID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make([]byte, size)
	r.ReadAt(got, 0)
	if !bytes.Equal(got, raw) {
		t.Fatal("content changed across restart")
	}
	u, err := em2.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, iamc, _, _ := clients(u, em2.Region(), ak, sk)
	if _, err := iamc.GetRole(context.Background(), &iam.GetRoleInput{RoleName: aws.String("vmimport")}); err != nil {
		t.Fatalf("role lost across restart: %v", err)
	}
}

func TestImportOverTLS(t *testing.T) {
	tp := s3peer.Start(t, s3peer.Options{TLS: true})
	e := newEnv(t, func(c *Config) {
		c.S3Endpoint, c.S3AccessKey, c.S3SecretKey, c.S3HTTPClient = tp.URL, tp.AccessKeyID, tp.SecretAccessKey, tp.HTTPClient()
	})
	// newEnv made its bucket on the shared plain-HTTP peer; stage on the TLS one.
	e.s3 = tp.S3Client()
	if _, err := e.s3.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(e.bucket)}); err != nil {
		t.Fatal(err)
	}
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	raw := guestDisk(t, guestdisk.BIOS)
	e.put("d.vmdk", encode(t, "vmdk", raw))
	task := e.waitImage(e.importImage("d.vmdk"))
	if aws.ToString(task.Status) != "completed" {
		t.Fatalf("task %s: %q", aws.ToString(task.Status), aws.ToString(task.StatusMessage))
	}
	if !bytes.Equal(e.content(aws.ToString(task.SnapshotDetails[0].SnapshotId)), raw) {
		t.Fatal("content differs")
	}
}

// TestImportResumesAfterRestart stops the emulator mid-task: the task stays
// active in state.json and completes after New on the same directory.
func TestImportResumesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, func(c *Config) { c.DataDir, c.SimulatedImportWait = dir, time.Hour })
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	raw := guestDisk(t, guestdisk.BIOS)
	e.put("d.vmdk", encode(t, "vmdk", raw))
	id := e.importImage("d.vmdk")
	time.Sleep(100 * time.Millisecond)
	e.em.Close()
	if ts := e.em.ImportTasks(); len(ts) != 1 || ts[0].Status != "active" {
		t.Fatalf("tasks after close: %+v", ts)
	}
	em2, err := New(Config{DataDir: dir, S3Endpoint: peer.URL,
		S3AccessKey: peer.AccessKeyID, S3SecretKey: peer.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	defer em2.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ts := em2.ImportTasks()
		if ts[0].ID != id {
			t.Fatalf("task %s after restart, want %s", ts[0].ID, id)
		}
		if ts[0].Status == "completed" {
			e.em = em2
			if !bytes.Equal(e.content(ts[0].Disks[0].SnapshotID), raw) {
				t.Fatal("content differs after resume")
			}
			if n := len(em2.Snapshots()); n != 1 {
				t.Fatalf("%d snapshots after resume, want 1", n)
			}
			return
		}
		if ts[0].Status != "active" || time.Now().After(deadline) {
			t.Fatalf("task %s %q", ts[0].Status, ts[0].StatusMessage)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCrashedTaskLeavesNoOrphans copies the data dir of a running emulator
// mid-task (what a SIGKILL leaves) and starts a new one on the copy: the
// half-made snapshot goes, and the task completes with exactly one.
func TestCrashedTaskLeavesNoOrphans(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SimulatedImportWait = time.Hour })
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	raw := guestDisk(t, guestdisk.BIOS)
	e.put("d.vmdk", encode(t, "vmdk", raw))
	id := e.importImage("d.vmdk")
	deadline := time.Now().Add(30 * time.Second)
	// Copy once the task waits in "booting": its snapshot is made and
	// state.json is not being rewritten under the copy.
	for ts := e.em.ImportTasks(); len(ts) == 0 || ts[0].StatusMessage != "booting"; ts = e.em.ImportTasks() {
		if time.Now().After(deadline) {
			t.Fatal("the task did not reach booting in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(e.em.Snapshots()) != 1 {
		t.Fatalf("%d snapshots before the copy, want the converted one", len(e.em.Snapshots()))
	}
	crashed := t.TempDir()
	if err := os.CopyFS(crashed, os.DirFS(e.em.DataDir())); err != nil {
		t.Fatal(err)
	}
	em2, err := New(Config{DataDir: crashed, S3Endpoint: peer.URL,
		S3AccessKey: peer.AccessKeyID, S3SecretKey: peer.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	defer em2.Close()
	for {
		ts := em2.ImportTasks()
		if ts[0].ID != id || ts[0].Status != "active" && ts[0].Status != "completed" || time.Now().After(deadline) {
			t.Fatalf("task %s %s %q", ts[0].ID, ts[0].Status, ts[0].StatusMessage)
		}
		if ts[0].Status == "completed" {
			snaps := em2.Snapshots()
			if len(snaps) != 1 || snaps[0].ID != ts[0].Disks[0].SnapshotID {
				t.Fatalf("snapshots after recovery: %+v", snaps)
			}
			files, _ := os.ReadDir(filepath.Join(crashed, "snapshots"))
			if len(files) != 1 {
				t.Fatalf("%d snapshot files after recovery", len(files))
			}
			sum, _, err := em2.SnapshotSHA256(snaps[0].ID)
			if err != nil || sum != sha(raw) {
				t.Fatalf("recovered content hash %s (%v)", sum, err)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
