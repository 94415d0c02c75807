package aws

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// Image is an AMI owned by the account.
type Image struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	State        string            `json:"state"`
	CreationDate time.Time         `json:"creationDate"`
	SnapshotIDs  []string          `json:"snapshotIds"`
	Tags         map[string]string `json:"tags,omitempty"`
	// RootDevice and Devices name the block devices (Devices in the
	// image's order); Platform is "windows" or empty.
	RootDevice string   `json:"rootDevice,omitempty"`
	Devices    []string `json:"devices,omitempty"`
	Platform   string   `json:"platform,omitempty"`
}

// Snapshot is an EBS snapshot owned by the account.
type Snapshot struct {
	ID        string            `json:"id"`
	State     string            `json:"state"`
	StartTime time.Time         `json:"startTime"`
	Tags      map[string]string `json:"tags,omitempty"`
}

func (t *Target) describeImages(ctx context.Context, ids []string, filters []ec2types.Filter) ([]Image, error) {
	var imgs []Image
	pages := ec2.NewDescribeImagesPaginator(t.ec2, &ec2.DescribeImagesInput{ImageIds: ids, Filters: filters, Owners: []string{"self"}})
	for pages.HasMorePages() {
		var out *ec2.DescribeImagesOutput
		if err := t.call(ctx, "DescribeImages", func(ctx context.Context) (err error) {
			out, err = pages.NextPage(ctx)
			return err
		}); err != nil {
			return nil, err
		}
		for _, im := range out.Images {
			if im.State == ec2types.ImageStateDeregistered {
				continue
			}
			i := Image{ID: sdk.ToString(im.ImageId), Name: sdk.ToString(im.Name), State: string(im.State), Tags: ec2Tags(im.Tags),
				RootDevice: sdk.ToString(im.RootDeviceName), Platform: string(im.Platform)}
			i.CreationDate, _ = time.Parse(time.RFC3339, sdk.ToString(im.CreationDate))
			for _, b := range im.BlockDeviceMappings {
				i.Devices = append(i.Devices, sdk.ToString(b.DeviceName))
				if b.Ebs != nil && sdk.ToString(b.Ebs.SnapshotId) != "" {
					i.SnapshotIDs = append(i.SnapshotIDs, sdk.ToString(b.Ebs.SnapshotId))
				}
			}
			imgs = append(imgs, i)
		}
	}
	return imgs, nil
}

// image returns one AMI, or nil when it does not exist (any more).
func (t *Target) image(ctx context.Context, id string) (*Image, error) {
	imgs, err := t.describeImages(ctx, []string{id}, nil)
	if notFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(imgs) == 0 {
		return nil, nil
	}
	return &imgs[0], nil
}

// tagFilters matches resources carrying every tag; an empty value matches
// any value of the key (a "tag-key" filter).
func tagFilters(tags map[string]string) []ec2types.Filter {
	var filters []ec2types.Filter
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if v := tags[k]; v != "" {
			filters = append(filters, ec2types.Filter{Name: sdk.String("tag:" + k), Values: []string{v}})
		} else {
			filters = append(filters, ec2types.Filter{Name: sdk.String("tag-key"), Values: []string{k}})
		}
	}
	return filters
}

// FindImages lists the account's AMIs carrying all the given tags (an
// empty value: any value of that key).
func (t *Target) FindImages(ctx context.Context, tags map[string]string) ([]Image, error) {
	imgs, err := t.describeImages(ctx, nil, tagFilters(tags))
	if err != nil {
		return nil, fmt.Errorf("find images tagged %v: %w", tags, err)
	}
	return imgs, nil
}

// FindSnapshots lists the account's EBS snapshots carrying all the given
// tags (an empty value: any value of that key).
func (t *Target) FindSnapshots(ctx context.Context, tags map[string]string) ([]Snapshot, error) {
	var snaps []Snapshot
	pages := ec2.NewDescribeSnapshotsPaginator(t.ec2, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, Filters: tagFilters(tags)})
	for pages.HasMorePages() {
		var out *ec2.DescribeSnapshotsOutput
		if err := t.call(ctx, "DescribeSnapshots", func(ctx context.Context) (err error) {
			out, err = pages.NextPage(ctx)
			return err
		}); err != nil {
			return nil, fmt.Errorf("find snapshots tagged %v: %w", tags, err)
		}
		for _, s := range out.Snapshots {
			snaps = append(snaps, Snapshot{ID: sdk.ToString(s.SnapshotId), State: string(s.State),
				StartTime: sdk.ToTime(s.StartTime), Tags: ec2Tags(s.Tags)})
		}
	}
	return snaps, nil
}

// Finalize names an AMI (its Name tag) and puts tags on it and on its
// snapshots. Idempotent.
func (t *Target) Finalize(ctx context.Context, imageID, name string, tags map[string]string) error {
	im, err := t.image(ctx, imageID)
	if err != nil {
		return fmt.Errorf("finalize AMI %s: %w", imageID, err)
	}
	if im == nil {
		return fmt.Errorf("finalize AMI %s: it does not exist", imageID)
	}
	all := maps.Clone(tags)
	if all == nil {
		all = map[string]string{}
	}
	if name != "" {
		all["Name"] = name
	}
	if len(all) == 0 {
		return nil
	}
	var ts []ec2types.Tag
	for _, k := range slices.Sorted(maps.Keys(all)) {
		ts = append(ts, ec2types.Tag{Key: sdk.String(k), Value: sdk.String(all[k])})
	}
	resources := append([]string{imageID}, im.SnapshotIDs...)
	err = t.call(ctx, "CreateTags", func(ctx context.Context) error {
		_, err := t.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: resources, Tags: ts})
		return err
	})
	if err != nil {
		return fmt.Errorf("finalize AMI %s: tag it and its snapshots: %w", imageID, err)
	}
	return nil
}

// DeleteImage deregisters an AMI and deletes the snapshots given. It does
// not look the snapshots up: a caller that must survive a crash between the
// two records them first (Image.SnapshotIDs, an import's Result) and calls
// again with the same list, when the image is already gone. imageID may be
// empty to delete snapshots alone. Idempotent: an unknown image or snapshot
// is not an error.
func (t *Target) DeleteImage(ctx context.Context, imageID string, snapshotIDs []string) error {
	if imageID != "" {
		err := t.call(ctx, "DeregisterImage", func(ctx context.Context) error {
			_, err := t.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: sdk.String(imageID)})
			return err
		})
		if err != nil && !notFound(err) {
			return fmt.Errorf("delete AMI %s: deregister: %w", imageID, err)
		}
	}
	// Right after a deregistration a snapshot may still count as in use.
	inUse := t.policy("DeleteSnapshot").With(func(err error) bool { return apiCode(err) == "InvalidSnapshot.InUse" })
	var errs []error
	for _, s := range snapshotIDs {
		err := inUse.Do(ctx, func(ctx context.Context) error {
			_, err := t.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: sdk.String(s)})
			return err
		})
		if err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("delete snapshot %s of AMI %s: %w", s, imageID, err))
		}
	}
	return errors.Join(errs...)
}

// notFound reports EC2's answers for an image or snapshot that does not
// exist (any more).
func notFound(err error) bool {
	switch apiCode(err) {
	case "InvalidAMIID.NotFound", "InvalidAMIID.Unavailable", "InvalidSnapshot.NotFound":
		return true
	}
	return false
}
