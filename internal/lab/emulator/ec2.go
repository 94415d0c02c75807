package emulator

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/rehost/rehost/internal/lab/iampolicy"
)

func (e *Emulator) ec2Actions() map[string]queryAction {
	actions := map[string]queryAction{
		"ImportImage":                 e.importImage,
		"ImportSnapshot":              e.importSnapshot,
		"DescribeImportImageTasks":    e.describeImportTasks("image"),
		"DescribeImportSnapshotTasks": e.describeImportTasks("snapshot"),
		"CancelImportTask":            e.cancelImportTask,
		"RegisterImage":               e.registerImage,
		"DescribeImages":              e.describeImages,
		"DeregisterImage":             e.deregisterImage,
		"CopyImage":                   e.copyImage,
		"DescribeSnapshots":           e.describeSnapshots,
		"DeleteSnapshot":              e.deleteSnapshot,
		"CreateTags":                  e.createTags,
		"DeleteTags":                  e.deleteTags,
	}
	maps.Copy(actions, e.vpcActions())
	maps.Copy(actions, e.instanceActions())
	return actions
}

var (
	amiRE        = regexp.MustCompile(`^ami-([0-9a-f]{8}|[0-9a-f]{17})$`)
	snapRE       = regexp.MustCompile(`^snap-([0-9a-f]{8}|[0-9a-f]{17})$`)
	importTaskRE = regexp.MustCompile(`^import-(ami|snap)-([0-9a-f]{8}|[0-9a-f]{17})$`)
)

const ec2Time = "2006-01-02T15:04:05.000Z"

func malformed(code, id, prefix string) *apiError {
	return badRequest(code, "Invalid id: \"%s\" (expecting \"%s-...\")", id, prefix)
}

func amiNotFound(id string) *apiError {
	return badRequest("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
}

func snapNotFound(id string) *apiError {
	return badRequest("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
}

// idKind is how a Describe call checks an id it is given: its form (re;
// else a malformed error with code, naming prefix) and that it exists.
type idKind struct {
	re       *regexp.Regexp
	code     string
	prefix   string
	notFound func(id string) *apiError
}

var (
	amiKind  = idKind{amiRE, "InvalidAMIID.Malformed", "ami", amiNotFound}
	snapKind = idKind{snapRE, "InvalidSnapshotID.Malformed", "snap", snapNotFound}
)

// describeLocked is the part Describe calls share: the resources of all
// that ids name (an id malformed, unknown or not live is an error) or,
// without ids, every live one; in id order; those matching the filters by
// the tags and attributes fields gives; the page p asks for, and the next
// page's token.
func describeLocked[T any](p params, ids []string, fs []filter, kind idKind, all map[string]T, live func(T) bool,
	fields func(T) (id string, tags []Tag, attrs map[string][]string)) ([]T, string, error) {
	var picked []T
	for _, id := range ids {
		if !kind.re.MatchString(id) {
			return nil, "", malformed(kind.code, id, kind.prefix)
		}
		v, ok := all[id]
		if !ok || !live(v) {
			return nil, "", kind.notFound(id)
		}
		picked = append(picked, v)
	}
	if len(ids) == 0 {
		for _, v := range all {
			if live(v) {
				picked = append(picked, v)
			}
		}
	}
	idOf := func(v T) string { id, _, _ := fields(v); return id }
	slices.SortFunc(picked, func(a, b T) int { return cmp.Compare(idOf(a), idOf(b)) })
	var out []T
	for _, v := range picked {
		_, tags, attrs := fields(v)
		ok, err := matchFilters(fs, tags, attrs)
		if err != nil {
			return nil, "", err
		}
		if ok {
			out = append(out, v)
		}
	}
	start, end, next, err := page(p, len(out))
	if err != nil {
		return nil, "", err
	}
	return out[start:end], next, nil
}

// page applies MaxResults/NextToken to n items.
func page(p params, n int) (start, end int, next string, err error) {
	if tok := p.get("NextToken"); tok != "" {
		start, err = strconv.Atoi(tok)
		if err != nil || start < 0 || start > n {
			return 0, 0, "", badRequest("InvalidParameterValue", "The token '%s' is invalid.", tok)
		}
	}
	end = n
	if m := p.get("MaxResults"); m != "" {
		max, err := strconv.Atoi(m)
		if err != nil || max < 1 {
			return 0, 0, "", badRequest("InvalidParameterValue", "Value (%s) for parameter maxResults is invalid.", m)
		}
		if start+max < n {
			end, next = start+max, strconv.Itoa(start+max)
		}
	}
	return start, end, next, nil
}

// matchFilters applies EC2 filters: a resource matches when every filter
// has a value matching one of the resource's values for that name (tag:K,
// tag-key and attribute names); values take * and ? wildcards.
func matchFilters(fs []filter, tags []Tag, attrs map[string][]string) (bool, error) {
	for _, f := range fs {
		var have []string
		switch {
		case strings.HasPrefix(f.name, "tag:"):
			for _, t := range tags {
				if t.Key == f.name[4:] {
					have = append(have, t.Value)
				}
			}
		case f.name == "tag-key":
			for _, t := range tags {
				have = append(have, t.Key)
			}
		default:
			v, ok := attrs[f.name]
			if !ok {
				return false, badRequest("InvalidParameterValue", "The filter '%s' is invalid", f.name)
			}
			have = v
		}
		if !slices.ContainsFunc(have, func(h string) bool {
			return slices.ContainsFunc(f.values, func(p string) bool { return iampolicy.Wildcard(p, h) })
		}) {
			return false, nil
		}
	}
	return true, nil
}

func (e *Emulator) importImage(p params) (any, error) {
	t, err := e.createImportTask("image", p)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	c := copyTask(t)
	e.mu.Unlock()
	return imageTaskXML(c), nil
}

func (e *Emulator) importSnapshot(p params) (any, error) {
	t, err := e.createImportTask("snapshot", p)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	c := copyTask(t)
	e.mu.Unlock()
	return snapshotTaskXML(c), nil
}

type userBucketXML struct {
	S3Bucket string `xml:"s3Bucket"`
	S3Key    string `xml:"s3Key"`
}

// diskDetailXML is a disk of an import task in EC2's shape (a
// snapshotDetailSet item, or an ImportSnapshot's snapshotTaskDetail): the
// disk's own fields (their xml tags are ImportTaskDisk's) with its size in
// EC2's format and its S3 object.
type diskDetailXML struct {
	ImportTaskDisk
	DiskImageSize string         `xml:"diskImageSize"`
	Encrypted     *bool          `xml:"encrypted,omitempty"`
	KmsKeyID      string         `xml:"kmsKeyId,omitempty"`
	UserBucket    *userBucketXML `xml:"userBucket,omitempty"`
}

func diskDetail(d ImportTaskDisk) diskDetailXML {
	x := diskDetailXML{ImportTaskDisk: d, DiskImageSize: strconv.FormatFloat(d.DiskImageSize, 'f', 1, 64)}
	if d.URL == "" {
		x.UserBucket = &userBucketXML{d.Bucket, d.Key}
	}
	return x
}

// imageTaskFields is an item of DescribeImportImageTasks' importImageTaskSet:
// the task's own fields (their xml tags are ImportTask's) with its disks and
// tags in EC2's shapes.
type imageTaskFields struct {
	ImportTask
	Snapshots []diskDetailXML `xml:"snapshotDetailSet>item"`
	Tags      []xmlTag        `xml:"tagSet>item"`
}

func imageTaskXML(t ImportTask) imageTaskFields {
	x := imageTaskFields{ImportTask: t, Tags: xmlTags(t.Tags)}
	for _, d := range t.Disks {
		x.Snapshots = append(x.Snapshots, diskDetail(d))
	}
	return x
}

type snapshotTaskFields struct {
	ImportTaskID string        `xml:"importTaskId"`
	Description  string        `xml:"description,omitempty"`
	Detail       diskDetailXML `xml:"snapshotTaskDetail"`
	Tags         []xmlTag      `xml:"tagSet>item"`
}

func snapshotTaskXML(t ImportTask) snapshotTaskFields {
	d := t.Disks[0]
	x := snapshotTaskFields{ImportTaskID: t.ID, Description: t.Description, Detail: diskDetail(d), Tags: xmlTags(t.Tags)}
	x.Detail.DeviceName = ""
	x.Detail.Encrypted, x.Detail.KmsKeyID = &t.Encrypted, t.KmsKeyID
	x.Detail.Progress, x.Detail.Status, x.Detail.StatusMessage = t.Progress, t.Status, t.StatusMessage
	return x
}

func (e *Emulator) describeImportTasks(kind string) queryAction {
	return func(p params) (any, error) {
		ids := p.list("ImportTaskId")
		fs := p.filters("Filters")
		e.mu.Lock()
		var tasks []ImportTask
		if len(ids) > 0 {
			for _, id := range ids {
				if !importTaskRE.MatchString(id) {
					e.mu.Unlock()
					return nil, badRequest("InvalidConversionTaskId.Malformed", "Invalid id: \"%s\"", id)
				}
				t, ok := e.st.Tasks[id]
				if !ok || t.Kind != kind {
					e.mu.Unlock()
					return nil, badRequest("InvalidConversionTaskId", "The task ID '%s' does not exist", id)
				}
				tasks = append(tasks, copyTask(t))
			}
		} else {
			for _, t := range e.st.Tasks {
				if t.Kind == kind {
					tasks = append(tasks, copyTask(t))
				}
			}
		}
		e.mu.Unlock()
		slices.SortFunc(tasks, func(a, b ImportTask) int {
			return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
		})
		var out []ImportTask
		for _, t := range tasks {
			ok, err := matchFilters(fs, t.Tags, map[string][]string{"task-state": {t.Status}})
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, t)
			}
		}
		start, end, next, err := page(p, len(out))
		if err != nil {
			return nil, err
		}
		if kind == "image" {
			r := struct {
				Tasks     []imageTaskFields `xml:"importImageTaskSet>item"`
				NextToken string            `xml:"nextToken,omitempty"`
			}{NextToken: next}
			for _, t := range out[start:end] {
				r.Tasks = append(r.Tasks, imageTaskXML(t))
			}
			return r, nil
		}
		r := struct {
			Tasks     []snapshotTaskFields `xml:"importSnapshotTaskSet>item"`
			NextToken string               `xml:"nextToken,omitempty"`
		}{NextToken: next}
		for _, t := range out[start:end] {
			r.Tasks = append(r.Tasks, snapshotTaskXML(t))
		}
		return r, nil
	}
}

func (e *Emulator) cancelImportTask(p params) (any, error) {
	id := p.get("ImportTaskId")
	if !importTaskRE.MatchString(id) {
		return nil, badRequest("InvalidConversionTaskId.Malformed", "Invalid id: \"%s\"", id)
	}
	prev, err := e.cancelImport(id)
	if err != nil {
		return nil, err
	}
	return struct {
		ImportTaskID  string `xml:"importTaskId"`
		PreviousState string `xml:"previousState"`
		State         string `xml:"state"`
	}{id, prev, "deleting"}, nil
}

type ebsXML struct {
	SnapshotID          string `xml:"snapshotId"`
	VolumeSize          int64  `xml:"volumeSize"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
	VolumeType          string `xml:"volumeType"`
	Encrypted           bool   `xml:"encrypted"`
	KmsKeyID            string `xml:"kmsKeyId,omitempty"`
}

type imageXML struct {
	ImageID         string `xml:"imageId"`
	ImageLocation   string `xml:"imageLocation"`
	ImageState      string `xml:"imageState"`
	ImageOwnerID    string `xml:"imageOwnerId"`
	CreationDate    string `xml:"creationDate"`
	IsPublic        bool   `xml:"isPublic"`
	Architecture    string `xml:"architecture"`
	ImageType       string `xml:"imageType"`
	Platform        string `xml:"platform,omitempty"`
	PlatformDetails string `xml:"platformDetails"`
	UsageOperation  string `xml:"usageOperation,omitempty"`
	Name            string `xml:"name"`
	Description     string `xml:"description,omitempty"`
	RootDeviceType  string `xml:"rootDeviceType"`
	RootDeviceName  string `xml:"rootDeviceName"`
	BlockDevices    []struct {
		DeviceName string `xml:"deviceName"`
		EBS        ebsXML `xml:"ebs"`
	} `xml:"blockDeviceMapping>item"`
	VirtualizationType string   `xml:"virtualizationType"`
	Tags               []xmlTag `xml:"tagSet>item"`
	Hypervisor         string   `xml:"hypervisor"`
	EnaSupport         bool     `xml:"enaSupport"`
	BootMode           string   `xml:"bootMode,omitempty"`
	SourceImageID      string   `xml:"sourceImageId,omitempty"`
	SourceImageRegion  string   `xml:"sourceImageRegion,omitempty"`
}

func (e *Emulator) imageXMLLocked(im *Image) imageXML {
	x := imageXML{ImageID: im.ID, ImageLocation: e.cfg.AccountID + "/" + im.Name, ImageState: e.imageStateLocked(im),
		ImageOwnerID: e.cfg.AccountID, CreationDate: im.Created.Format(ec2Time), Architecture: im.Architecture,
		ImageType: "machine", Platform: im.Platform, PlatformDetails: "Linux/UNIX", UsageOperation: im.UsageOp,
		Name: im.Name, Description: im.Description, RootDeviceType: "ebs", RootDeviceName: im.RootDeviceName,
		VirtualizationType: "hvm", Tags: xmlTags(im.Tags), Hypervisor: "xen", EnaSupport: im.EnaSupport,
		BootMode: im.BootMode, SourceImageID: im.SourceImageID}
	if im.Platform == "windows" {
		x.PlatformDetails = "Windows"
	}
	if im.SourceImageID != "" {
		x.SourceImageRegion = e.cfg.Region
	}
	for _, d := range im.Devices {
		x.BlockDevices = append(x.BlockDevices, struct {
			DeviceName string `xml:"deviceName"`
			EBS        ebsXML `xml:"ebs"`
		}{d.DeviceName, ebsXML{d.SnapshotID, d.VolumeSize, d.DeleteOnTermination, d.VolumeType, d.Encrypted, d.KmsKeyID}})
	}
	return x
}

type imagesXML struct {
	Images    []imageXML `xml:"imagesSet>item"`
	NextToken string     `xml:"nextToken,omitempty"`
}

func (e *Emulator) describeImages(p params) (any, error) {
	ids := p.list("ImageId")
	fs := p.filters("Filter")
	for _, o := range p.list("Owner") {
		if o != "self" && o != e.cfg.AccountID {
			// Only the account's own images exist here.
			return imagesXML{}, nil
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ims, next, err := describeLocked(p, ids, fs, amiKind, e.st.Images, func(im *Image) bool { return e.imageStateLocked(im) != "deregistered" },
		func(im *Image) (string, []Tag, map[string][]string) {
			var snaps, devs []string
			for _, d := range im.Devices {
				snaps, devs = append(snaps, d.SnapshotID), append(devs, d.DeviceName)
			}
			return im.ID, im.Tags, map[string][]string{
				"name": {im.Name}, "image-id": {im.ID}, "state": {e.imageStateLocked(im)}, "description": {im.Description},
				"architecture": {im.Architecture}, "owner-id": {e.cfg.AccountID}, "block-device-mapping.snapshot-id": snaps,
				"block-device-mapping.device-name": devs, "image-type": {"machine"}, "is-public": {"false"},
			}
		})
	if err != nil {
		return nil, err
	}
	r := imagesXML{NextToken: next}
	for _, im := range ims {
		r.Images = append(r.Images, e.imageXMLLocked(im))
	}
	return r, nil
}

func (e *Emulator) imageForChangeLocked(id string) (*Image, error) {
	if !amiRE.MatchString(id) {
		return nil, malformed("InvalidAMIID.Malformed", id, "ami")
	}
	im, ok := e.st.Images[id]
	if !ok {
		return nil, amiNotFound(id)
	}
	if e.imageStateLocked(im) == "deregistered" {
		return nil, badRequest("InvalidAMIID.Unavailable", "AMI %s is no longer available", id)
	}
	return im, nil
}

// snapshotUsersLocked returns the registered images using snapshot id.
func (e *Emulator) snapshotUsersLocked(id string) []string {
	var users []string
	for _, im := range e.st.Images {
		if e.imageStateLocked(im) == "deregistered" {
			continue
		}
		for _, d := range im.Devices {
			if d.SnapshotID == id {
				users = append(users, im.ID)
				break
			}
		}
	}
	slices.Sort(users)
	return users
}

func (e *Emulator) deregisterImage(p params) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	im, err := e.imageForChangeLocked(p.get("ImageId"))
	if err != nil {
		return nil, err
	}
	im.State = "deregistered"
	type result struct {
		ID   string `xml:"snapshotId"`
		Code string `xml:"returnCode"`
	}
	var results []result
	if p.boolean("DeleteAssociatedSnapshots") {
		for _, d := range im.Devices {
			code := "success"
			switch {
			case e.st.Snapshots[d.SnapshotID] == nil:
				code = "error-snapshot-not-found"
			case len(e.snapshotUsersLocked(d.SnapshotID)) > 0:
				code = "error-snapshot-in-use"
			default:
				e.removeSnapshotLocked(d.SnapshotID)
			}
			results = append(results, result{d.SnapshotID, code})
		}
	}
	e.saveLocked()
	return struct {
		Return  bool     `xml:"return"`
		Results []result `xml:"deleteSnapshotResultSet>item"`
	}{true, results}, nil
}

func (e *Emulator) resourceTags(p params, resourceTypes ...string) (map[string][]Tag, error) {
	out := map[string][]Tag{}
	for _, ts := range p.items("TagSpecification") {
		rt := ts.get("ResourceType")
		ok := false
		for _, want := range resourceTypes {
			ok = ok || rt == want
		}
		if !ok {
			return nil, badRequest("InvalidParameterValue", "'%s' is not a valid taggable resource type for this operation.", rt)
		}
		out[rt] = setTags(out[rt], ts.tags("Tag"))
	}
	return out, nil
}

func (e *Emulator) registerImage(p params) (any, error) {
	name := p.get("Name")
	if name == "" {
		return nil, badRequest("MissingParameter", "The request must contain the parameter name")
	}
	tags, err := e.resourceTags(p, "image")
	if err != nil {
		return nil, err
	}
	arch := p.get("Architecture")
	if arch == "" {
		arch = "x86_64"
	}
	root := p.get("RootDeviceName")
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.nameFreeLocked(name); err != nil {
		return nil, err
	}
	now := e.clock.Now().UTC()
	im := &Image{ID: newID("ami"), Name: name, Description: p.get("Description"), State: "pending",
		Created: now, AvailableAt: now.Add(e.cfg.ImageDelay), Architecture: arch, BootMode: p.get("BootMode"),
		RootDeviceName: root, EnaSupport: p.boolean("EnaSupport"), UsageOp: "RunInstances", Tags: tags["image"]}
	rootFound := false
	for _, bp := range p.items("BlockDeviceMapping") {
		d := BlockDevice{DeviceName: bp.get("DeviceName"), SnapshotID: bp.get("Ebs.SnapshotId"),
			VolumeType: bp.get("Ebs.VolumeType"), DeleteOnTermination: !bp.has("Ebs.DeleteOnTermination") || bp.boolean("Ebs.DeleteOnTermination")}
		if d.SnapshotID == "" {
			// Ephemeral and NoDevice mappings carry no content.
			continue
		}
		if !snapRE.MatchString(d.SnapshotID) {
			return nil, malformed("InvalidSnapshotID.Malformed", d.SnapshotID, "snap")
		}
		s, ok := e.st.Snapshots[d.SnapshotID]
		if !ok {
			return nil, snapNotFound(d.SnapshotID)
		}
		if s.State != "completed" {
			return nil, badRequest("IncorrectState", "Snapshot %s is in state %s, not completed", s.ID, s.State)
		}
		d.VolumeSize = s.VolumeSize
		if v := bp.get("Ebs.VolumeSize"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < s.VolumeSize {
				return nil, badRequest("InvalidBlockDeviceMapping", "Volume of size %s is smaller than snapshot '%s', expect size >= %d", v, s.ID, s.VolumeSize)
			}
			d.VolumeSize = n
		}
		if d.VolumeType == "" {
			d.VolumeType = "gp2"
		}
		d.Encrypted, d.KmsKeyID = s.Encrypted, s.KmsKeyID
		if d.DeviceName == "" {
			return nil, badRequest("MissingParameter", "The request must contain the parameter BlockDeviceMapping.DeviceName")
		}
		rootFound = rootFound || d.DeviceName == root
		im.Devices = append(im.Devices, d)
	}
	if len(im.Devices) == 0 {
		return nil, badRequest("InvalidParameterCombination", "RegisterImage needs a block device mapping with a snapshot for an EBS-backed image")
	}
	if root == "" {
		im.RootDeviceName = im.Devices[0].DeviceName
	} else if !rootFound {
		return nil, badRequest("InvalidBlockDeviceMapping", "Root device name %s has no block device mapping", root)
	}
	e.st.Images[im.ID] = im
	e.saveLocked()
	return imageIDXML{im.ID}, nil
}

func (e *Emulator) nameFreeLocked(name string) error {
	for _, other := range e.st.Images {
		if other.Name == name && e.imageStateLocked(other) != "deregistered" {
			return badRequest("InvalidAMIName.Duplicate", "AMI name %s is already in use by AMI %s", name, other.ID)
		}
	}
	return nil
}

type imageIDXML struct {
	ImageID string `xml:"imageId"`
}

func (e *Emulator) copyImage(p params) (any, error) {
	if r := p.get("SourceRegion"); r != e.cfg.Region {
		return nil, badRequest("InvalidRequest", "The emulator serves only region %s; cannot copy from %s", e.cfg.Region, r)
	}
	name := p.get("Name")
	if name == "" {
		return nil, badRequest("MissingParameter", "The request must contain the parameter name")
	}
	tags, err := e.resourceTags(p, "image", "snapshot")
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	token := p.get("ClientToken")
	if token != "" {
		for _, im := range e.st.Images {
			if im.ClientToken == token {
				return imageIDXML{im.ID}, nil
			}
		}
	}
	src, err := e.imageForChangeLocked(p.get("SourceImageId"))
	if err != nil {
		return nil, err
	}
	if e.imageStateLocked(src) != "available" {
		return nil, badRequest("IncorrectState", "Image %s is not available", src.ID)
	}
	if err := e.nameFreeLocked(name); err != nil {
		return nil, err
	}
	enc, kms := p.boolean("Encrypted"), p.get("KmsKeyId")
	if enc && kms == "" {
		kms = "arn:aws:kms:" + e.cfg.Region + ":" + e.cfg.AccountID + ":alias/aws/ebs"
	}
	now := e.clock.Now().UTC()
	im := &Image{ID: newID("ami"), Name: name, Description: p.get("Description"), State: "pending",
		Created: now, AvailableAt: now.Add(e.cfg.ImageDelay), Architecture: src.Architecture, BootMode: src.BootMode,
		Platform: src.Platform, RootDeviceName: src.RootDeviceName, EnaSupport: src.EnaSupport, UsageOp: src.UsageOp,
		SourceImageID: src.ID, ClientToken: token}
	if p.boolean("CopyImageTags") {
		im.Tags = append(im.Tags, src.Tags...)
	}
	im.Tags = setTags(im.Tags, tags["image"])
	var made []string
	for _, d := range src.Devices {
		ss := e.st.Snapshots[d.SnapshotID]
		if ss == nil {
			for _, id := range made {
				e.removeSnapshotLocked(id)
			}
			return nil, fmt.Errorf("copy image %s: snapshot %s of %s is gone", src.ID, d.SnapshotID, d.DeviceName)
		}
		c, err := e.copySnapshotLocked(ss, "Copied for DestinationAmi "+im.ID+" from SourceAmi "+src.ID)
		if err != nil {
			for _, id := range made {
				e.removeSnapshotLocked(id)
			}
			return nil, fmt.Errorf("copy image %s: %w", src.ID, err)
		}
		made = append(made, c.ID)
		if enc {
			c.Encrypted, c.KmsKeyID = true, kms
		}
		c.Tags = setTags(nil, tags["snapshot"])
		nd := d
		nd.SnapshotID, nd.Encrypted, nd.KmsKeyID = c.ID, c.Encrypted, c.KmsKeyID
		im.Devices = append(im.Devices, nd)
	}
	e.st.Images[im.ID] = im
	e.saveLocked()
	return imageIDXML{im.ID}, nil
}

type snapshotXML struct {
	SnapshotID  string   `xml:"snapshotId"`
	VolumeID    string   `xml:"volumeId"`
	Status      string   `xml:"status"`
	StartTime   string   `xml:"startTime"`
	Progress    string   `xml:"progress"`
	OwnerID     string   `xml:"ownerId"`
	VolumeSize  int64    `xml:"volumeSize"`
	Description string   `xml:"description,omitempty"`
	Encrypted   bool     `xml:"encrypted"`
	KmsKeyID    string   `xml:"kmsKeyId,omitempty"`
	StorageTier string   `xml:"storageTier"`
	Tags        []xmlTag `xml:"tagSet>item"`
}

func (e *Emulator) snapshotXML(s *Snapshot) snapshotXML {
	return snapshotXML{SnapshotID: s.ID, VolumeID: "vol-ffffffff", Status: s.State, StartTime: s.Started.Format(ec2Time),
		Progress: s.Progress, OwnerID: e.cfg.AccountID, VolumeSize: s.VolumeSize, Description: s.Description,
		Encrypted: s.Encrypted, KmsKeyID: s.KmsKeyID, StorageTier: "standard", Tags: xmlTags(s.Tags)}
}

type snapshotsXML struct {
	Snapshots []snapshotXML `xml:"snapshotSet>item"`
	NextToken string        `xml:"nextToken,omitempty"`
}

func (e *Emulator) describeSnapshots(p params) (any, error) {
	ids := p.list("SnapshotId")
	fs := p.filters("Filter")
	for _, o := range p.list("Owner") {
		if o != "self" && o != e.cfg.AccountID {
			return snapshotsXML{}, nil
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	snaps, next, err := describeLocked(p, ids, fs, snapKind, e.st.Snapshots, func(*Snapshot) bool { return true },
		func(s *Snapshot) (string, []Tag, map[string][]string) {
			return s.ID, s.Tags, map[string][]string{
				"snapshot-id": {s.ID}, "status": {s.State}, "description": {s.Description},
				"volume-size": {strconv.FormatInt(s.VolumeSize, 10)}, "owner-id": {e.cfg.AccountID},
				"encrypted": {strconv.FormatBool(s.Encrypted)}, "volume-id": {"vol-ffffffff"},
			}
		})
	if err != nil {
		return nil, err
	}
	r := snapshotsXML{NextToken: next}
	for _, s := range snaps {
		r.Snapshots = append(r.Snapshots, e.snapshotXML(s))
	}
	return r, nil
}

func (e *Emulator) deleteSnapshot(p params) (any, error) {
	id := p.get("SnapshotId")
	if !snapRE.MatchString(id) {
		return nil, malformed("InvalidSnapshotID.Malformed", id, "snap")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.st.Snapshots[id]; !ok {
		return nil, snapNotFound(id)
	}
	if users := e.snapshotUsersLocked(id); len(users) > 0 {
		return nil, badRequest("InvalidSnapshot.InUse", "The snapshot %s is currently in use by %s", id, users[0])
	}
	e.removeSnapshotLocked(id)
	e.saveLocked()
	return returnXML{true}, nil
}

// taggableLocked returns the tag list of a resource id.
func (e *Emulator) taggableLocked(id string) (*[]Tag, error) {
	switch {
	case strings.HasPrefix(id, "ami-"):
		im, err := e.imageForChangeLocked(id)
		if err != nil {
			return nil, err
		}
		return &im.Tags, nil
	case strings.HasPrefix(id, "snap-"):
		if !snapRE.MatchString(id) {
			return nil, malformed("InvalidSnapshotID.Malformed", id, "snap")
		}
		s, ok := e.st.Snapshots[id]
		if !ok {
			return nil, snapNotFound(id)
		}
		return &s.Tags, nil
	case strings.HasPrefix(id, "import-"):
		t, ok := e.st.Tasks[id]
		if !ok {
			return nil, badRequest("InvalidID", "The ID '%s' is not valid", id)
		}
		return &t.Tags, nil
	}
	return nil, badRequest("InvalidID", "The ID '%s' is not valid", id)
}

type returnXML struct {
	Return bool `xml:"return"`
}

func (e *Emulator) createTags(p params) (any, error) {
	ids, tags := p.list("ResourceId"), p.tags("Tag")
	for _, t := range tags {
		if t.Key == "" || strings.HasPrefix(strings.ToLower(t.Key), "aws:") {
			return nil, badRequest("InvalidParameterValue", "Tag key '%s' is not allowed", t.Key)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var lists []*[]Tag
	for _, id := range ids {
		l, err := e.taggableLocked(id)
		if err != nil {
			return nil, err
		}
		lists = append(lists, l)
	}
	for _, l := range lists {
		*l = setTags(*l, tags)
	}
	e.saveLocked()
	return returnXML{true}, nil
}

func (e *Emulator) deleteTags(p params) (any, error) {
	ids := p.list("ResourceId")
	var del []struct {
		key, value string
		any        bool
	}
	for _, it := range p.items("Tag") {
		del = append(del, struct {
			key, value string
			any        bool
		}{it.get("Key"), it.get("Value"), !it.has("Value")})
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		l, err := e.taggableLocked(id)
		if err != nil {
			return nil, err
		}
		var keep []Tag
		for _, t := range *l {
			drop := len(del) == 0
			for _, d := range del {
				if d.key == t.Key && (d.any || d.value == t.Value) {
					drop = true
				}
			}
			if !drop {
				keep = append(keep, t)
			}
		}
		*l = keep
	}
	e.saveLocked()
	return returnXML{true}, nil
}
