package aws

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"time"
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

// imageXML is an item of DescribeImages' imagesSet.
type imageXML struct {
	ImageID      string `xml:"imageId"`
	Name         string `xml:"name"`
	State        string `xml:"imageState"`
	CreationDate string `xml:"creationDate"`
	RootDevice   string `xml:"rootDeviceName"`
	Platform     string `xml:"platform"`
	Devices      []struct {
		Name       string `xml:"deviceName"`
		SnapshotID string `xml:"ebs>snapshotId"`
	} `xml:"blockDeviceMapping>item"`
	Tags []ec2Tag `xml:"tagSet>item"`
}

type imagesPage struct {
	Images    []imageXML `xml:"imagesSet>item"`
	NextToken string     `xml:"nextToken"`
}

func (p imagesPage) next() string { return p.NextToken }

func (t *Target) describeImages(ctx context.Context, ids []string, filters []filter) ([]Image, error) {
	params := url.Values{"Owner.1": {"self"}}
	setList(params, "ImageId", ids)
	setFilters(params, "Filter", filters)
	var imgs []Image
	err := ec2Pages(ctx, t, "DescribeImages", params, func(p imagesPage) {
		for _, im := range p.Images {
			if im.State == "deregistered" {
				continue
			}
			i := Image{ID: im.ImageID, Name: im.Name, State: im.State, Tags: ec2Tags(im.Tags),
				RootDevice: im.RootDevice, Platform: im.Platform}
			i.CreationDate, _ = time.Parse(time.RFC3339, im.CreationDate)
			for _, b := range im.Devices {
				i.Devices = append(i.Devices, b.Name)
				if b.SnapshotID != "" {
					i.SnapshotIDs = append(i.SnapshotIDs, b.SnapshotID)
				}
			}
			imgs = append(imgs, i)
		}
	})
	if err != nil {
		return nil, err
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
func tagFilters(tags map[string]string) []filter {
	var filters []filter
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if v := tags[k]; v != "" {
			filters = append(filters, filter{"tag:" + k, []string{v}})
		} else {
			filters = append(filters, filter{"tag-key", []string{k}})
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
	params := url.Values{"Owner.1": {"self"}}
	setFilters(params, "Filter", tagFilters(tags))
	var snaps []Snapshot
	err := ec2Pages(ctx, t, "DescribeSnapshots", params, func(p snapshotsPage) {
		for _, s := range p.Snapshots {
			st, _ := time.Parse(time.RFC3339, s.StartTime)
			snaps = append(snaps, Snapshot{ID: s.SnapshotID, State: s.State, StartTime: st, Tags: ec2Tags(s.Tags)})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("find snapshots tagged %v: %w", tags, err)
	}
	return snaps, nil
}

type snapshotsPage struct {
	Snapshots []struct {
		SnapshotID string   `xml:"snapshotId"`
		State      string   `xml:"status"`
		StartTime  string   `xml:"startTime"`
		Tags       []ec2Tag `xml:"tagSet>item"`
	} `xml:"snapshotSet>item"`
	NextToken string `xml:"nextToken"`
}

func (p snapshotsPage) next() string { return p.NextToken }

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
	params := url.Values{}
	setList(params, "ResourceId", append([]string{imageID}, im.SnapshotIDs...))
	setTags(params, "Tag", all)
	err = t.ec2Call(ctx, "CreateTags", params, nil)
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
		err := t.ec2Call(ctx, "DeregisterImage", url.Values{"ImageId": {imageID}}, nil)
		if err != nil && !notFound(err) {
			return fmt.Errorf("delete AMI %s: deregister: %w", imageID, err)
		}
	}
	// Right after a deregistration a snapshot may still count as in use.
	q, err := t.ec2Query()
	if err != nil && len(snapshotIDs) > 0 {
		return fmt.Errorf("delete the snapshots of AMI %s: %w", imageID, err)
	}
	inUse := t.policy("DeleteSnapshot").With(func(err error) bool { return apiCode(err) == "InvalidSnapshot.InUse" })
	var errs []error
	for _, s := range snapshotIDs {
		err := inUse.Do(ctx, func(ctx context.Context) error {
			return q.Query(ctx, "DeleteSnapshot", url.Values{"SnapshotId": {s}}, nil)
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
