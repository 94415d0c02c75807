package emulator

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

func (e *Emulator) ec2Actions() map[string]queryAction {
	return map[string]queryAction{
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
		ok := false
		for _, h := range have {
			if anyMatch(f.values, h, false) {
				ok = true
				break
			}
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

func (e *Emulator) importImage(p params, x *xmlWriter) error {
	t, err := e.createImportTask("image", p)
	if err != nil {
		return err
	}
	e.mu.Lock()
	c := copyTask(t)
	e.mu.Unlock()
	writeImageTaskFields(x, c)
	return nil
}

func (e *Emulator) importSnapshot(p params, x *xmlWriter) error {
	t, err := e.createImportTask("snapshot", p)
	if err != nil {
		return err
	}
	e.mu.Lock()
	c := copyTask(t)
	e.mu.Unlock()
	writeSnapshotTaskFields(x, c)
	return nil
}

func writeUserBucket(x *xmlWriter, d ImportTaskDisk) {
	if d.URL != "" {
		x.text("url", d.URL)
		return
	}
	x.open("userBucket")
	x.text("s3Bucket", d.Bucket)
	x.text("s3Key", d.Key)
	x.close("userBucket")
}

func writeImageTaskFields(x *xmlWriter, t ImportTask) {
	x.text("importTaskId", t.ID)
	x.opt("architecture", t.Architecture)
	x.opt("bootMode", t.BootMode)
	x.opt("description", t.Description)
	x.boolean("encrypted", t.Encrypted)
	x.opt("hypervisor", t.Hypervisor)
	x.opt("imageId", t.ImageID)
	x.opt("kmsKeyId", t.KmsKeyID)
	if len(t.LicenseARNs) > 0 {
		x.open("licenseSpecifications")
		for _, a := range t.LicenseARNs {
			x.open("item")
			x.text("licenseConfigurationArn", a)
			x.close("item")
		}
		x.close("licenseSpecifications")
	}
	x.opt("licenseType", t.LicenseType)
	x.opt("platform", t.Platform)
	x.opt("progress", t.Progress)
	x.open("snapshotDetailSet")
	for _, d := range t.Disks {
		x.open("item")
		x.opt("description", d.Description)
		x.opt("deviceName", d.DeviceName)
		x.text("diskImageSize", strconv.FormatFloat(d.DiskImageSize, 'f', 1, 64))
		x.opt("format", d.Format)
		x.opt("progress", d.Progress)
		x.opt("snapshotId", d.SnapshotID)
		x.opt("status", d.Status)
		x.opt("statusMessage", d.StatusMessage)
		writeUserBucket(x, d)
		x.close("item")
	}
	x.close("snapshotDetailSet")
	x.text("status", t.Status)
	x.opt("statusMessage", t.StatusMessage)
	x.tagSet(t.Tags)
	x.opt("usageOperation", t.UsageOp)
}

func writeSnapshotTaskFields(x *xmlWriter, t ImportTask) {
	x.text("importTaskId", t.ID)
	x.opt("description", t.Description)
	d := t.Disks[0]
	x.open("snapshotTaskDetail")
	x.opt("description", d.Description)
	x.text("diskImageSize", strconv.FormatFloat(d.DiskImageSize, 'f', 1, 64))
	x.boolean("encrypted", t.Encrypted)
	x.opt("format", d.Format)
	x.opt("kmsKeyId", t.KmsKeyID)
	x.opt("progress", t.Progress)
	x.opt("snapshotId", d.SnapshotID)
	x.text("status", t.Status)
	x.opt("statusMessage", t.StatusMessage)
	writeUserBucket(x, d)
	x.close("snapshotTaskDetail")
	x.tagSet(t.Tags)
}

func (e *Emulator) describeImportTasks(kind string) queryAction {
	setName := "importImageTaskSet"
	if kind == "snapshot" {
		setName = "importSnapshotTaskSet"
	}
	return func(p params, x *xmlWriter) error {
		ids := p.list("ImportTaskId")
		fs := p.filters("Filters")
		e.mu.Lock()
		var tasks []ImportTask
		if len(ids) > 0 {
			for _, id := range ids {
				if !importTaskRE.MatchString(id) {
					e.mu.Unlock()
					return badRequest("InvalidConversionTaskId.Malformed", "Invalid id: \"%s\"", id)
				}
				t, ok := e.st.Tasks[id]
				if !ok || t.Kind != kind {
					e.mu.Unlock()
					return badRequest("InvalidConversionTaskId", "The task ID '%s' does not exist", id)
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
		sort.Slice(tasks, func(i, j int) bool {
			return tasks[i].Created.Before(tasks[j].Created) || tasks[i].Created.Equal(tasks[j].Created) && tasks[i].ID < tasks[j].ID
		})
		var out []ImportTask
		for _, t := range tasks {
			ok, err := matchFilters(fs, t.Tags, map[string][]string{"task-state": {t.Status}})
			if err != nil {
				return err
			}
			if ok {
				out = append(out, t)
			}
		}
		start, end, next, err := page(p, len(out))
		if err != nil {
			return err
		}
		x.open(setName)
		for _, t := range out[start:end] {
			x.open("item")
			if kind == "image" {
				writeImageTaskFields(x, t)
			} else {
				writeSnapshotTaskFields(x, t)
			}
			x.close("item")
		}
		x.close(setName)
		x.opt("nextToken", next)
		return nil
	}
}

func (e *Emulator) cancelImportTask(p params, x *xmlWriter) error {
	id := p.get("ImportTaskId")
	if !importTaskRE.MatchString(id) {
		return badRequest("InvalidConversionTaskId.Malformed", "Invalid id: \"%s\"", id)
	}
	prev, err := e.cancelImport(id)
	if err != nil {
		return err
	}
	x.text("importTaskId", id)
	x.text("previousState", prev)
	x.text("state", "deleting")
	return nil
}

func (e *Emulator) writeImage(x *xmlWriter, im *Image) {
	x.open("item")
	x.text("imageId", im.ID)
	x.text("imageLocation", e.cfg.AccountID+"/"+im.Name)
	x.text("imageState", e.imageStateLocked(im))
	x.text("imageOwnerId", e.cfg.AccountID)
	x.text("creationDate", im.Created.Format(ec2Time))
	x.boolean("isPublic", false)
	x.text("architecture", im.Architecture)
	x.text("imageType", "machine")
	x.opt("platform", im.Platform)
	if im.Platform == "windows" {
		x.text("platformDetails", "Windows")
	} else {
		x.text("platformDetails", "Linux/UNIX")
	}
	x.opt("usageOperation", im.UsageOp)
	x.text("name", im.Name)
	x.opt("description", im.Description)
	x.text("rootDeviceType", "ebs")
	x.text("rootDeviceName", im.RootDeviceName)
	x.open("blockDeviceMapping")
	for _, d := range im.Devices {
		x.open("item")
		x.text("deviceName", d.DeviceName)
		x.open("ebs")
		x.text("snapshotId", d.SnapshotID)
		x.text("volumeSize", strconv.FormatInt(d.VolumeSize, 10))
		x.boolean("deleteOnTermination", d.DeleteOnTermination)
		x.text("volumeType", d.VolumeType)
		x.boolean("encrypted", d.Encrypted)
		x.opt("kmsKeyId", d.KmsKeyID)
		x.close("ebs")
		x.close("item")
	}
	x.close("blockDeviceMapping")
	x.text("virtualizationType", "hvm")
	x.tagSet(im.Tags)
	x.text("hypervisor", "xen")
	x.boolean("enaSupport", im.EnaSupport)
	x.opt("bootMode", im.BootMode)
	x.opt("sourceImageId", im.SourceImageID)
	if im.SourceImageID != "" {
		x.text("sourceImageRegion", e.cfg.Region)
	}
	x.close("item")
}

func (e *Emulator) describeImages(p params, x *xmlWriter) error {
	ids := p.list("ImageId")
	fs := p.filters("Filter")
	for _, o := range p.list("Owner") {
		if o != "self" && o != e.cfg.AccountID {
			// Only the account's own images exist here.
			x.open("imagesSet")
			x.close("imagesSet")
			return nil
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var ims []*Image
	if len(ids) > 0 {
		for _, id := range ids {
			if !amiRE.MatchString(id) {
				return malformed("InvalidAMIID.Malformed", id, "ami")
			}
			im, ok := e.st.Images[id]
			if !ok || e.imageStateLocked(im) == "deregistered" {
				return amiNotFound(id)
			}
			ims = append(ims, im)
		}
	} else {
		for _, im := range e.st.Images {
			if e.imageStateLocked(im) != "deregistered" {
				ims = append(ims, im)
			}
		}
	}
	sort.Slice(ims, func(i, j int) bool { return ims[i].ID < ims[j].ID })
	var out []*Image
	for _, im := range ims {
		var snaps, devs []string
		for _, d := range im.Devices {
			snaps, devs = append(snaps, d.SnapshotID), append(devs, d.DeviceName)
		}
		ok, err := matchFilters(fs, im.Tags, map[string][]string{
			"name": {im.Name}, "image-id": {im.ID}, "state": {e.imageStateLocked(im)}, "description": {im.Description},
			"architecture": {im.Architecture}, "owner-id": {e.cfg.AccountID}, "block-device-mapping.snapshot-id": snaps,
			"block-device-mapping.device-name": devs, "image-type": {"machine"}, "is-public": {"false"},
		})
		if err != nil {
			return err
		}
		if ok {
			out = append(out, im)
		}
	}
	start, end, next, err := page(p, len(out))
	if err != nil {
		return err
	}
	x.open("imagesSet")
	for _, im := range out[start:end] {
		e.writeImage(x, im)
	}
	x.close("imagesSet")
	x.opt("nextToken", next)
	return nil
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
	sort.Strings(users)
	return users
}

func (e *Emulator) deregisterImage(p params, x *xmlWriter) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	im, err := e.imageForChangeLocked(p.get("ImageId"))
	if err != nil {
		return err
	}
	im.State = "deregistered"
	type result struct{ id, code string }
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
	x.boolean("return", true)
	if len(results) > 0 {
		x.open("deleteSnapshotResultSet")
		for _, r := range results {
			x.open("item")
			x.text("snapshotId", r.id)
			x.text("returnCode", r.code)
			x.close("item")
		}
		x.close("deleteSnapshotResultSet")
	}
	return nil
}

func (e *Emulator) removeSnapshotLocked(id string) {
	os.Remove(e.snapPath(id))
	delete(e.st.Snapshots, id)
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

func (e *Emulator) registerImage(p params, x *xmlWriter) error {
	name := p.get("Name")
	if name == "" {
		return badRequest("MissingParameter", "The request must contain the parameter name")
	}
	tags, err := e.resourceTags(p, "image")
	if err != nil {
		return err
	}
	arch := p.get("Architecture")
	if arch == "" {
		arch = "x86_64"
	}
	root := p.get("RootDeviceName")
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.nameFreeLocked(name); err != nil {
		return err
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
			return malformed("InvalidSnapshotID.Malformed", d.SnapshotID, "snap")
		}
		s, ok := e.st.Snapshots[d.SnapshotID]
		if !ok {
			return snapNotFound(d.SnapshotID)
		}
		if s.State != "completed" {
			return badRequest("IncorrectState", "Snapshot %s is in state %s, not completed", s.ID, s.State)
		}
		d.VolumeSize = s.VolumeSize
		if v := bp.get("Ebs.VolumeSize"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < s.VolumeSize {
				return badRequest("InvalidBlockDeviceMapping", "Volume of size %s is smaller than snapshot '%s', expect size >= %d", v, s.ID, s.VolumeSize)
			}
			d.VolumeSize = n
		}
		if d.VolumeType == "" {
			d.VolumeType = "gp2"
		}
		d.Encrypted, d.KmsKeyID = s.Encrypted, s.KmsKeyID
		if d.DeviceName == "" {
			return badRequest("MissingParameter", "The request must contain the parameter BlockDeviceMapping.DeviceName")
		}
		rootFound = rootFound || d.DeviceName == root
		im.Devices = append(im.Devices, d)
	}
	if len(im.Devices) == 0 {
		return badRequest("InvalidParameterCombination", "RegisterImage needs a block device mapping with a snapshot for an EBS-backed image")
	}
	if root == "" {
		im.RootDeviceName = im.Devices[0].DeviceName
	} else if !rootFound {
		return badRequest("InvalidBlockDeviceMapping", "Root device name %s has no block device mapping", root)
	}
	e.st.Images[im.ID] = im
	e.saveLocked()
	x.text("imageId", im.ID)
	return nil
}

func (e *Emulator) nameFreeLocked(name string) error {
	for _, other := range e.st.Images {
		if other.Name == name && e.imageStateLocked(other) != "deregistered" {
			return badRequest("InvalidAMIName.Duplicate", "AMI name %s is already in use by AMI %s", name, other.ID)
		}
	}
	return nil
}

func (e *Emulator) copyImage(p params, x *xmlWriter) error {
	if r := p.get("SourceRegion"); r != e.cfg.Region {
		return badRequest("InvalidRequest", "The emulator serves only region %s; cannot copy from %s", e.cfg.Region, r)
	}
	name := p.get("Name")
	if name == "" {
		return badRequest("MissingParameter", "The request must contain the parameter name")
	}
	tags, err := e.resourceTags(p, "image", "snapshot")
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	token := p.get("ClientToken")
	if token != "" {
		for _, im := range e.st.Images {
			if im.ClientToken == token {
				x.text("imageId", im.ID)
				return nil
			}
		}
	}
	src, err := e.imageForChangeLocked(p.get("SourceImageId"))
	if err != nil {
		return err
	}
	if e.imageStateLocked(src) != "available" {
		return badRequest("IncorrectState", "Image %s is not available", src.ID)
	}
	if err := e.nameFreeLocked(name); err != nil {
		return err
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
			return fmt.Errorf("copy image %s: snapshot %s of %s is gone", src.ID, d.SnapshotID, d.DeviceName)
		}
		c, err := e.copySnapshotLocked(ss, "Copied for DestinationAmi "+im.ID+" from SourceAmi "+src.ID)
		if err != nil {
			for _, id := range made {
				e.removeSnapshotLocked(id)
			}
			return fmt.Errorf("copy image %s: %w", src.ID, err)
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
	x.text("imageId", im.ID)
	return nil
}

func (e *Emulator) writeSnapshot(x *xmlWriter, s *Snapshot) {
	x.open("item")
	x.text("snapshotId", s.ID)
	x.text("volumeId", "vol-ffffffff")
	x.text("status", s.State)
	x.text("startTime", s.Started.Format(ec2Time))
	x.text("progress", s.Progress)
	x.text("ownerId", e.cfg.AccountID)
	x.text("volumeSize", strconv.FormatInt(s.VolumeSize, 10))
	x.opt("description", s.Description)
	x.boolean("encrypted", s.Encrypted)
	x.opt("kmsKeyId", s.KmsKeyID)
	x.text("storageTier", "standard")
	x.tagSet(s.Tags)
	x.close("item")
}

func (e *Emulator) describeSnapshots(p params, x *xmlWriter) error {
	ids := p.list("SnapshotId")
	fs := p.filters("Filter")
	for _, o := range p.list("Owner") {
		if o != "self" && o != e.cfg.AccountID {
			x.open("snapshotSet")
			x.close("snapshotSet")
			return nil
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var snaps []*Snapshot
	if len(ids) > 0 {
		for _, id := range ids {
			if !snapRE.MatchString(id) {
				return malformed("InvalidSnapshotID.Malformed", id, "snap")
			}
			s, ok := e.st.Snapshots[id]
			if !ok {
				return snapNotFound(id)
			}
			snaps = append(snaps, s)
		}
	} else {
		for _, s := range e.st.Snapshots {
			snaps = append(snaps, s)
		}
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].ID < snaps[j].ID })
	var out []*Snapshot
	for _, s := range snaps {
		ok, err := matchFilters(fs, s.Tags, map[string][]string{
			"snapshot-id": {s.ID}, "status": {s.State}, "description": {s.Description},
			"volume-size": {strconv.FormatInt(s.VolumeSize, 10)}, "owner-id": {e.cfg.AccountID},
			"encrypted": {strconv.FormatBool(s.Encrypted)}, "volume-id": {"vol-ffffffff"},
		})
		if err != nil {
			return err
		}
		if ok {
			out = append(out, s)
		}
	}
	start, end, next, err := page(p, len(out))
	if err != nil {
		return err
	}
	x.open("snapshotSet")
	for _, s := range out[start:end] {
		e.writeSnapshot(x, s)
	}
	x.close("snapshotSet")
	x.opt("nextToken", next)
	return nil
}

func (e *Emulator) deleteSnapshot(p params, x *xmlWriter) error {
	id := p.get("SnapshotId")
	if !snapRE.MatchString(id) {
		return malformed("InvalidSnapshotID.Malformed", id, "snap")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.st.Snapshots[id]; !ok {
		return snapNotFound(id)
	}
	if users := e.snapshotUsersLocked(id); len(users) > 0 {
		return badRequest("InvalidSnapshot.InUse", "The snapshot %s is currently in use by %s", id, users[0])
	}
	e.removeSnapshotLocked(id)
	e.saveLocked()
	x.boolean("return", true)
	return nil
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

func (e *Emulator) createTags(p params, x *xmlWriter) error {
	ids, tags := p.list("ResourceId"), p.tags("Tag")
	for _, t := range tags {
		if t.Key == "" || strings.HasPrefix(strings.ToLower(t.Key), "aws:") {
			return badRequest("InvalidParameterValue", "Tag key '%s' is not allowed", t.Key)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var lists []*[]Tag
	for _, id := range ids {
		l, err := e.taggableLocked(id)
		if err != nil {
			return err
		}
		lists = append(lists, l)
	}
	for _, l := range lists {
		*l = setTags(*l, tags)
	}
	e.saveLocked()
	x.boolean("return", true)
	return nil
}

func (e *Emulator) deleteTags(p params, x *xmlWriter) error {
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
			return err
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
	x.boolean("return", true)
	return nil
}
