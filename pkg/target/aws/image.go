package aws

import (
	"context"
	"errors"
	"fmt"
	"sort"
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
}

func (t *Target) describeImages(ctx context.Context, ids []string, filters []ec2types.Filter) ([]Image, error) {
	var imgs []Image
	var token *string
	for {
		var out *ec2.DescribeImagesOutput
		err := t.withRetry(ctx, "DescribeImages", nil, func(ctx context.Context) error {
			var err error
			out, err = t.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: ids, Filters: filters,
				Owners: []string{"self"}, NextToken: token})
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, im := range out.Images {
			if im.State == ec2types.ImageStateDeregistered {
				continue
			}
			i := Image{ID: sdk.ToString(im.ImageId), Name: sdk.ToString(im.Name), State: string(im.State), Tags: ec2Tags(im.Tags)}
			i.CreationDate, _ = time.Parse(time.RFC3339, sdk.ToString(im.CreationDate))
			for _, b := range im.BlockDeviceMappings {
				if b.Ebs != nil && sdk.ToString(b.Ebs.SnapshotId) != "" {
					i.SnapshotIDs = append(i.SnapshotIDs, sdk.ToString(b.Ebs.SnapshotId))
				}
			}
			imgs = append(imgs, i)
		}
		if token = out.NextToken; token == nil || *token == "" {
			return imgs, nil
		}
	}
}

// image returns one AMI, or nil when it does not exist (any more).
func (t *Target) image(ctx context.Context, id string) (*Image, error) {
	imgs, err := t.describeImages(ctx, []string{id}, nil)
	if apiCode(err) == "InvalidAMIID.NotFound" || apiCode(err) == "InvalidAMIID.Unavailable" {
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

// FindImages lists the account's AMIs carrying all the given tags.
func (t *Target) FindImages(ctx context.Context, tags map[string]string) ([]Image, error) {
	var filters []ec2types.Filter
	for k, v := range tags {
		filters = append(filters, ec2types.Filter{Name: sdk.String("tag:" + k), Values: []string{v}})
	}
	sort.Slice(filters, func(i, j int) bool { return *filters[i].Name < *filters[j].Name })
	imgs, err := t.describeImages(ctx, nil, filters)
	if err != nil {
		return nil, fmt.Errorf("find images tagged %v: %w", tags, err)
	}
	return imgs, nil
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
	all := map[string]string{}
	for k, v := range tags {
		all[k] = v
	}
	if name != "" {
		all["Name"] = name
	}
	if len(all) == 0 {
		return nil
	}
	var ts []ec2types.Tag
	for _, k := range sortedKeys(all) {
		ts = append(ts, ec2types.Tag{Key: sdk.String(k), Value: sdk.String(all[k])})
	}
	resources := append([]string{imageID}, im.SnapshotIDs...)
	err = t.withRetry(ctx, "CreateTags", nil, func(ctx context.Context) error {
		_, err := t.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: resources, Tags: ts})
		return err
	})
	if err != nil {
		return fmt.Errorf("finalize AMI %s: tag it and its snapshots: %w", imageID, err)
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// DeleteImage deregisters an AMI and deletes its snapshots. Idempotent: an
// unknown image (or snapshot) is not an error.
func (t *Target) DeleteImage(ctx context.Context, imageID string) error {
	im, err := t.image(ctx, imageID)
	if err != nil {
		return fmt.Errorf("delete AMI %s: %w", imageID, err)
	}
	if im == nil {
		return nil
	}
	err = t.withRetry(ctx, "DeregisterImage", nil, func(ctx context.Context) error {
		_, err := t.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: sdk.String(imageID)})
		return err
	})
	if err != nil && apiCode(err) != "InvalidAMIID.NotFound" && apiCode(err) != "InvalidAMIID.Unavailable" {
		return fmt.Errorf("delete AMI %s: deregister: %w", imageID, err)
	}
	var errs []error
	for _, s := range im.SnapshotIDs {
		// Right after a deregistration a snapshot may still count as in use.
		err := t.withRetry(ctx, "DeleteSnapshot", func(err error) bool {
			return transient(err) || apiCode(err) == "InvalidSnapshot.InUse"
		}, func(ctx context.Context) error {
			_, err := t.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: sdk.String(s)})
			return err
		})
		if err != nil && apiCode(err) != "InvalidSnapshot.NotFound" {
			errs = append(errs, fmt.Errorf("delete snapshot %s of AMI %s: %w", s, imageID, err))
		}
	}
	return errors.Join(errs...)
}

// Retain keeps the keep most recent AMIs (by creation date) tagged
// tagKey=tagValue and deletes the older ones with their snapshots,
// returning the ids removed. keep < 1 is refused: retention never deletes
// every image.
func (t *Target) Retain(ctx context.Context, tagKey, tagValue string, keep int) ([]string, error) {
	if keep < 1 {
		return nil, fmt.Errorf("retain AMIs tagged %s=%s: keep must be at least 1, got %d", tagKey, tagValue, keep)
	}
	imgs, err := t.FindImages(ctx, map[string]string{tagKey: tagValue})
	if err != nil {
		return nil, fmt.Errorf("retain AMIs: %w", err)
	}
	sort.Slice(imgs, func(i, j int) bool {
		if !imgs[i].CreationDate.Equal(imgs[j].CreationDate) {
			return imgs[i].CreationDate.After(imgs[j].CreationDate)
		}
		return imgs[i].ID > imgs[j].ID
	})
	var removed []string
	for _, im := range imgs[min(keep, len(imgs)):] {
		if err := t.DeleteImage(ctx, im.ID); err != nil {
			return removed, fmt.Errorf("retain %d AMIs tagged %s=%s: %w", keep, tagKey, tagValue, err)
		}
		removed = append(removed, im.ID)
	}
	return removed, nil
}
