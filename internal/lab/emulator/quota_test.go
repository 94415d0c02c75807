package emulator

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/rehost/rehost/internal/lab/guestdisk"
)

// TestImportImageQuota: ImportImage refuses a task beyond the region's
// concurrent import image task quota (it does not queue it), accepts one
// again once a task ended, answers a retry of an existing task by its
// client token even at the quota, and reports the peak it saw.
func TestImportImageQuota(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.SimulatedImportWait = 30 * time.Second
		c.Quotas = map[string]float64{"Concurrent import image tasks": 2}
	})
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	e.put("d.vmdk", encode(t, "vmdk", guestDisk(t, guestdisk.BIOS)))
	ctx := context.Background()
	start := func(token string) (string, error) {
		out, err := e.ec2.ImportImage(ctx, &ec2.ImportImageInput{ClientToken: aws.String(token), DiskContainers: []ec2types.ImageDiskContainer{
			{Format: aws.String("VMDK"), UserBucket: &ec2types.UserBucket{S3Bucket: aws.String(e.bucket), S3Key: aws.String("d.vmdk")}}}})
		if err != nil {
			return "", err
		}
		return aws.ToString(out.ImportTaskId), nil
	}
	a, err := start("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := start("b"); err != nil {
		t.Fatal(err)
	}
	_, err = start("c")
	wantCode(t, err, "ResourceCountLimitExceeded")
	if again, err := start("a"); err != nil || again != a {
		t.Fatalf("retry of task %s by its client token at the quota: %s, %v", a, again, err)
	}
	if _, err := e.ec2.CancelImportTask(ctx, &ec2.CancelImportTaskInput{ImportTaskId: aws.String(a)}); err != nil {
		t.Fatal(err)
	}
	e.waitImage(a)
	if _, err := start("c"); err != nil {
		t.Fatalf("a task after one ended: %v", err)
	}
	if peak, refused := e.em.ImportImageLoad(); peak != 2 || refused != 1 {
		t.Fatalf("ImportImageLoad() = %d, %d; want 2, 1", peak, refused)
	}
}

// TestImportSnapshotQuota: ImportSnapshot tasks have a quota of their own,
// as AWS counts them: at it, another ImportSnapshot is refused while an
// ImportImage is still accepted (and the other way round), a retry by
// client token is answered, and a task ending frees its slot.
func TestImportSnapshotQuota(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.SimulatedImportWait = 30 * time.Second
		c.Quotas = map[string]float64{"Concurrent import snapshot tasks": 2, "Concurrent import image tasks": 1}
	})
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	e.put("d.vmdk", encode(t, "vmdk", guestDisk(t, guestdisk.BIOS)))
	ctx := context.Background()
	snap := func(token string) (string, error) {
		out, err := e.ec2.ImportSnapshot(ctx, &ec2.ImportSnapshotInput{ClientToken: aws.String(token), DiskContainer: &ec2types.SnapshotDiskContainer{
			Format: aws.String("VMDK"), UserBucket: &ec2types.UserBucket{S3Bucket: aws.String(e.bucket), S3Key: aws.String("d.vmdk")}}})
		if err != nil {
			return "", err
		}
		return aws.ToString(out.ImportTaskId), nil
	}
	image := func(token string) error {
		_, err := e.ec2.ImportImage(ctx, &ec2.ImportImageInput{ClientToken: aws.String(token), DiskContainers: []ec2types.ImageDiskContainer{
			{Format: aws.String("VMDK"), UserBucket: &ec2types.UserBucket{S3Bucket: aws.String(e.bucket), S3Key: aws.String("d.vmdk")}}}})
		return err
	}
	a, err := snap("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snap("b"); err != nil {
		t.Fatal(err)
	}
	_, err = snap("c")
	wantCode(t, err, "ResourceCountLimitExceeded")
	if err := image("i"); err != nil {
		t.Fatalf("an ImportImage with the snapshot quota taken: %v", err)
	}
	if _, err := snap("c"); err == nil {
		t.Fatal("an ImportSnapshot beyond its quota was accepted once an image task started")
	}
	wantCode(t, image("j"), "ResourceCountLimitExceeded")
	if again, err := snap("a"); err != nil || again != a {
		t.Fatalf("retry of task %s by its client token at the quota: %s, %v", a, again, err)
	}
	if _, err := e.ec2.CancelImportTask(ctx, &ec2.CancelImportTaskInput{ImportTaskId: aws.String(a)}); err != nil {
		t.Fatal(err)
	}
	e.waitSnapshotTask(a)
	if _, err := snap("c"); err != nil {
		t.Fatalf("a task after one ended: %v", err)
	}
	if peak, refused := e.em.ImportSnapshotLoad(); peak != 2 || refused != 2 {
		t.Fatalf("ImportSnapshotLoad() = %d, %d; want 2, 2", peak, refused)
	}
	if peak, refused := e.em.ImportImageLoad(); peak != 1 || refused != 1 {
		t.Fatalf("ImportImageLoad() = %d, %d; want 1, 1", peak, refused)
	}
}
