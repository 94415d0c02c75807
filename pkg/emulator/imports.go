package emulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rehost/rehost/pkg/disk"
)

// maxImportDisks is the most volumes one ImportImage may carry.
const maxImportDisks = 21

// importFailure ends a task with an AWS-worded StatusMessage.
type importFailure struct{ msg string }

func (f *importFailure) Error() string { return f.msg }

func fail(format string, args ...any) error {
	return &importFailure{msg: fmt.Sprintf(format, args...)}
}

func noAccess(code int) error {
	return fail("ClientError: Disk validation failed [We do not have access to the given resource. Reason %s]", statusText(code))
}

func (e *Emulator) roleMessage(role string) string {
	return fmt.Sprintf("The service role %s provided does not exist or does not have sufficient permissions", role)
}

// diskFromParams reads one DiskContainer (ImportImage) or the DiskContainer
// (ImportSnapshot).
func diskFromParams(p params) ImportTaskDisk {
	d := ImportTaskDisk{
		Format:      strings.ToUpper(p.get("Format")),
		Bucket:      p.get("UserBucket.S3Bucket"),
		Key:         p.get("UserBucket.S3Key"),
		URL:         p.get("Url"),
		Description: p.get("Description"),
		DeviceName:  p.get("DeviceName"),
	}
	if d.Bucket == "" && d.URL != "" {
		if b, k, ok := parseS3URL(d.URL); ok {
			d.Bucket, d.Key = b, k
		}
	}
	return d
}

func (e *Emulator) taskTags(p params, resourceType string) ([]Tag, error) {
	var tags []Tag
	for _, ts := range p.items("TagSpecification") {
		if rt := ts.get("ResourceType"); rt != resourceType {
			return nil, badRequest("InvalidParameterValue", "'%s' is not a valid taggable resource type for this operation.", rt)
		}
		tags = setTags(tags, ts.tags("Tag"))
	}
	return tags, nil
}

// createImportTask is ImportImage and ImportSnapshot.
func (e *Emulator) createImportTask(kind string, p params) (*ImportTask, error) {
	var disks []ImportTaskDisk
	resourceType := "import-image-task"
	if kind == "image" {
		for _, dp := range p.items("DiskContainer") {
			disks = append(disks, diskFromParams(dp))
		}
	} else {
		resourceType = "import-snapshot-task"
		if d := p.sub("DiskContainer"); len(d) > 0 {
			disks = append(disks, diskFromParams(d))
		}
	}
	if len(disks) == 0 {
		return nil, badRequest("MissingParameter", "The request must contain the parameter DiskContainer")
	}
	for i, d := range disks {
		if d.Bucket == "" || d.Key == "" {
			return nil, badRequest("InvalidParameter", "Disk container %d: either UserBucket (S3Bucket and S3Key) or an s3:// Url is required", i+1)
		}
		switch d.Format {
		case "VMDK", "VHD", "VHDX", "RAW", "OVA", "":
		default:
			return nil, badRequest("InvalidParameter", "Unsupported disk format %s. Supported formats: VMDK, VHD, VHDX, RAW, OVA", d.Format)
		}
	}
	tags, err := e.taskTags(p, resourceType)
	if err != nil {
		return nil, err
	}
	role := p.get("RoleName")
	if role == "" {
		role = "vmimport"
	}
	bm := p.get("BootMode")
	switch bm {
	case "", "legacy-bios", "uefi", "uefi-preferred":
	default:
		return nil, badRequest("InvalidParameterValue", "Invalid value '%s' for BootMode", bm)
	}
	arch := p.get("Architecture")
	switch arch {
	case "", "x86_64", "i386", "arm64":
	default:
		return nil, badRequest("InvalidParameterValue", "Invalid value '%s' for Architecture", arch)
	}
	token := p.get("ClientToken")

	e.mu.Lock()
	defer e.mu.Unlock()
	if token != "" {
		for _, t := range e.st.Tasks {
			if t.ClientToken == token && t.Kind == kind {
				return t, nil
			}
		}
	}
	// VM Import assumes the role when the task is created and refuses the
	// call outright when it cannot.
	if !e.roleAssumableLocked(role) {
		return nil, badRequest("InvalidParameter", "%s", e.roleMessage(role))
	}
	prefix := "import-ami"
	if kind == "snapshot" {
		prefix = "import-snap"
	}
	t := &ImportTask{
		ID: newID(prefix), Kind: kind, ClientToken: token,
		Status: "active", StatusMessage: "pending", Progress: "0",
		Description: p.get("Description"), Architecture: arch, BootMode: bm,
		Platform: p.get("Platform"), LicenseType: p.get("LicenseType"), Hypervisor: p.get("Hypervisor"),
		UsageOp: p.get("UsageOperation"), Encrypted: p.boolean("Encrypted"), KmsKeyID: p.get("KmsKeyId"),
		RoleName: role, Disks: disks, Tags: tags, Created: e.clock.Now().UTC(),
	}
	for _, ls := range p.items("LicenseSpecifications") {
		t.LicenseARNs = append(t.LicenseARNs, ls.get("LicenseConfigurationArn"))
	}
	if t.Encrypted && t.KmsKeyID == "" {
		t.KmsKeyID = "arn:aws:kms:" + e.cfg.Region + ":" + e.cfg.AccountID + ":alias/aws/ebs"
	}
	for i := range t.Disks {
		t.Disks[i].Status, t.Disks[i].Progress = "active", "0"
	}
	e.st.Tasks[t.ID] = t
	e.log.Info("emulator: import task created", "task", t.ID, "disks", len(t.Disks), "role", role)
	e.startWorkerLocked(t)
	e.saveLocked()
	return t, nil
}

func (e *Emulator) roleAssumableLocked(role string) bool {
	r, ok := e.st.Roles[role]
	if !ok {
		return false
	}
	td, err := parsePolicy(r.TrustPolicy)
	return err == nil && allows([]*policyDoc{td}, request{action: "sts:AssumeRole", service: "vmie.amazonaws.com",
		condition: map[string]string{"sts:externalid": "vmimport", "aws:sourceaccount": e.cfg.AccountID}})
}

func (e *Emulator) startWorkerLocked(t *ImportTask) {
	if e.closed {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancels[t.ID] = cancel
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.runImport(ctx, t.ID)
	}()
}

// phase is a step of an import task's life as DescribeImport*Tasks shows it.
type phase struct {
	message  string
	progress int
	share    float64 // of Config.ImportDuration spent in this phase
}

var imagePhases = []phase{
	{"pending", 0, 0.05}, {"validating", 2, 0.10}, {"validated", 19, 0.05}, {"converting", 28, 0.30},
	{"updating", 65, 0.15}, {"booting", 75, 0.15}, {"preparing ami", 90, 0.20},
}

var snapshotPhases = []phase{
	{"pending", 0, 0.10}, {"validating", 3, 0.20}, {"validated", 19, 0.10}, {"converting", 28, 0.60},
}

func (e *Emulator) runImport(ctx context.Context, id string) {
	err := e.importSteps(ctx, id)
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.cancels, id)
	t := e.st.Tasks[id]
	if t == nil {
		return
	}
	switch {
	case err == nil:
		e.log.Info("emulator: import task completed", "task", id, "image", t.ImageID)
		return
	case t.Status == "deleting":
		e.log.Info("emulator: import task cancelled", "task", id)
		e.finishCancelLocked(t, t.StatusMessage)
	case ctx.Err() != nil:
		// Shutdown: the task stays active and restarts from the beginning
		// on the next New; what this attempt made goes.
		e.removeTaskSnapshotsLocked(id)
		e.saveLocked()
	default:
		msg := err.Error()
		var f *importFailure
		if !errors.As(err, &f) {
			e.log.Error("emulator: import task failed internally", "task", id, "err", err)
			msg = "ServerError: " + msg
		}
		e.log.Info("emulator: import task failed", "task", id, "statusMessage", msg)
		e.removeTaskSnapshotsLocked(id)
		t.Status, t.StatusMessage = "deleted", msg
		for i := range t.Disks {
			if t.Disks[i].Status != "completed" {
				t.Disks[i].Status, t.Disks[i].StatusMessage = "deleted", msg
			}
		}
		e.saveLocked()
	}
}

func (e *Emulator) finishCancelLocked(t *ImportTask, msg string) {
	e.removeTaskSnapshotsLocked(t.ID)
	t.Status, t.StatusMessage = "deleted", msg
	for i := range t.Disks {
		t.Disks[i].Status, t.Disks[i].StatusMessage, t.Disks[i].SnapshotID = "deleted", msg, ""
	}
	t.ImageID = ""
	e.saveLocked()
}

func (e *Emulator) removeTaskSnapshotsLocked(taskID string) {
	for id, s := range e.st.Snapshots {
		if s.ImportTaskID == taskID {
			os.Remove(e.snapPath(id))
			delete(e.st.Snapshots, id)
		}
	}
	if t := e.st.Tasks[taskID]; t != nil {
		for i := range t.Disks {
			t.Disks[i].SnapshotID = ""
		}
	}
}

// enter moves the task to phase ph and waits out its share of the import
// duration; it returns the context's error when cancelled.
func (e *Emulator) enter(ctx context.Context, id string, ph phase, wait bool) error {
	e.mu.Lock()
	t := e.st.Tasks[id]
	if t == nil || t.Status != "active" {
		e.mu.Unlock()
		return context.Canceled
	}
	t.StatusMessage, t.Progress = ph.message, strconv.Itoa(ph.progress)
	for i := range t.Disks {
		if t.Disks[i].Status == "active" {
			t.Disks[i].StatusMessage, t.Disks[i].Progress = ph.message, t.Progress
		}
	}
	e.saveLocked()
	e.mu.Unlock()
	if !wait {
		return nil
	}
	return e.sleep(ctx, time.Duration(float64(e.cfg.ImportDuration)*ph.share))
}

func (e *Emulator) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-e.clock.After(d):
		return nil
	}
}

func (e *Emulator) importSteps(ctx context.Context, id string) error {
	e.mu.Lock()
	t := e.st.Tasks[id]
	if t == nil {
		e.mu.Unlock()
		return nil
	}
	task := copyTask(t)
	e.mu.Unlock()
	phases := imagePhases
	if task.Kind == "snapshot" {
		phases = snapshotPhases
	}
	for _, ph := range phases[:2] {
		if err := e.enter(ctx, id, ph, true); err != nil {
			return err
		}
	}
	if err := e.validate(ctx, task); err != nil {
		return err
	}
	if err := e.enter(ctx, id, phases[2], true); err != nil {
		return err
	}
	if err := e.enter(ctx, id, phases[3], false); err != nil {
		return err
	}
	var snaps []*snapshotWithSize
	for i := range task.Disks {
		e.mu.Lock()
		fault := e.fault
		e.mu.Unlock()
		if fault != nil {
			if err := fault(id, i); err != nil {
				return &importFailure{msg: err.Error()}
			}
		}
		s, err := e.convertDisk(ctx, task, i)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		snaps = append(snaps, s)
		e.mu.Lock()
		if t := e.st.Tasks[id]; t != nil && t.Status == "active" {
			t.Progress = strconv.Itoa(phases[3].progress + (35*(i+1))/len(task.Disks))
			t.Disks[i].DiskImageSize = s.diskImageSize
			if task.Kind == "snapshot" {
				t.Disks[i].Progress = t.Progress
			}
			e.saveLocked()
		}
		e.mu.Unlock()
	}
	if err := e.sleep(ctx, time.Duration(float64(e.cfg.ImportDuration)*phases[3].share)); err != nil {
		return err
	}
	for _, ph := range phases[4:] {
		if err := e.enter(ctx, id, ph, true); err != nil {
			return err
		}
	}
	return e.completeImport(id, snaps)
}

// validate is what VM Import checks before converting: the number of
// volumes, the role's permissions, the bucket's region and each object's
// presence and encryption.
func (e *Emulator) validate(ctx context.Context, t ImportTask) error {
	if len(t.Disks) > maxImportDisks {
		return fail("ClientError: Too many volumes: the image has %d disks, the maximum is %d", len(t.Disks), maxImportDisks)
	}
	if e.s3 == nil {
		return fail("ClientError: Disk validation failed [We do not have access to the given resource. Reason 503 Service Unavailable]")
	}
	for _, d := range t.Disks {
		switch e.checkImportRole(t.RoleName, d.Bucket, d.Key) {
		case roleUnusable:
			return fail("ClientError: %s", e.roleMessage(t.RoleName))
		case objectDenied:
			return noAccess(http.StatusForbidden)
		}
		region, err := e.s3.bucketRegion(ctx, d.Bucket)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if st := s3Status(err); st != 0 {
				return noAccess(st)
			}
			return fmt.Errorf("get location of bucket %s: %w", d.Bucket, err)
		}
		if region != e.cfg.Region {
			return fail("ClientError: The S3 bucket %s is in region %s; VM Import reads only buckets in the import task's region %s", d.Bucket, region, e.cfg.Region)
		}
		info, err := e.s3.head(ctx, d.Bucket, d.Key)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			st := s3Status(err)
			if st == http.StatusBadRequest {
				// S3 refuses a HEAD without the customer key of an SSE-C object.
				return sseCFailure()
			}
			if st != 0 {
				return noAccess(st)
			}
			return fmt.Errorf("head object s3://%s/%s: %w", d.Bucket, d.Key, err)
		}
		if info.sseC {
			return sseCFailure()
		}
		if info.size == 0 {
			return fail("ClientError: Disk validation failed [Invalid disk size: the object is empty]")
		}
	}
	return nil
}

func sseCFailure() error {
	return fail("ClientError: Disk validation failed [We do not have access to the given resource. Reason 400 Bad Request: the object is encrypted with a customer-provided key (SSE-C), which VM Import cannot read]")
}

type snapshotWithSize struct {
	*Snapshot
	diskImageSize float64
}

// convertDisk reads disk i from S3, parses it and stores it as a new
// snapshot (registered under the task, so a failure or cancel removes it).
func (e *Emulator) convertDisk(ctx context.Context, t ImportTask, i int) (*snapshotWithSize, error) {
	d := t.Disks[i]
	tmp := filepath.Join(e.downloadDir(), fmt.Sprintf("%s-%d", t.ID, i))
	defer os.Remove(tmp)
	n, err := e.s3.download(ctx, d.Bucket, d.Key, tmp)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if st := s3Status(err); st != 0 {
			return nil, noAccess(st)
		}
		return nil, fmt.Errorf("download s3://%s/%s: %w", d.Bucket, d.Key, err)
	}
	f, err := os.Open(tmp)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	src, err := openDeclared(f, n, d.Format)
	if err != nil {
		return nil, err
	}
	id := newID("snap")
	blocks, sum, err := writeSnapshotFile(e.snapPath(id), src)
	if err != nil {
		var re *readError
		if errors.As(err, &re) {
			return nil, corruptData(d.Format, src)
		}
		return nil, fmt.Errorf("write snapshot %s: %w", id, err)
	}
	s := &Snapshot{
		ID: id, Description: "Created by AWS-VMImport service for " + t.ID, State: "completed", Progress: "100%",
		Started: e.clock.Now().UTC(), VolumeSize: volumeGiB(src.Size()), SourceSize: src.Size(), SHA256: sum,
		Encrypted: t.Encrypted, KmsKeyID: t.KmsKeyID, ImportTaskID: t.ID, Blocks: map[int32]string{},
	}
	for _, b := range blocks {
		s.Blocks[b] = id
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if cur := e.st.Tasks[t.ID]; cur == nil || cur.Status != "active" {
		os.Remove(e.snapPath(id))
		return nil, context.Canceled
	}
	e.st.Snapshots[id] = s
	e.saveLocked()
	return &snapshotWithSize{Snapshot: s, diskImageSize: float64(n)}, nil
}

// openDeclared opens the object as the format the task declared, worded as
// VM Import words a disk it cannot parse.
func openDeclared(f *os.File, size int64, format string) (disk.Sparse, error) {
	if format == "RAW" {
		return disk.NewRaw(f, size), nil
	}
	if format == "OVA" {
		return nil, fail("ClientError: Disk validation failed [OVA import is not supported by this emulator; import the VMDK inside it]")
	}
	img, err := disk.Open(f, size)
	detected := ""
	if err == nil {
		detected = strings.ToUpper(string(img.Info().Format))
	}
	if format == "" {
		format = detected
	}
	switch format {
	case "VMDK":
		if err != nil || detected != "VMDK" {
			return nil, fail("ClientError: Disk validation failed [Unsupported VMDK File Format]")
		}
	case "VHD":
		var head [8]byte
		f.ReadAt(head[:], 0)
		if err != nil || detected != "VHD" {
			if string(head[:]) == "conectix" {
				return nil, fail("ClientError: Footers not identical")
			}
			return nil, fail("ClientError: Disk validation failed [Unsupported VHD File Format]")
		}
		// A dynamic VHD carries a copy of its footer at the start.
		if img.Info().Subformat == "dynamic" && size >= 1024 {
			var first, last [512]byte
			f.ReadAt(first[:], 0)
			f.ReadAt(last[:], size-512)
			if !bytes.Equal(first[:], last[:]) {
				return nil, fail("ClientError: Footers not identical")
			}
		}
	case "VHDX":
		if err != nil || detected != "VHDX" {
			return nil, fail("ClientError: Disk validation failed [Unsupported VHDX File Format]")
		}
	case "RAW":
		return disk.NewRaw(f, size), nil
	default:
		return nil, fail("ClientError: Disk validation failed [Unsupported specified file format]")
	}
	return img, nil
}

// corruptData words a failure to read the content of a disk whose headers
// parsed.
func corruptData(format string, src disk.Sparse) error {
	if format == "" {
		if im, ok := src.(disk.Image); ok {
			format = strings.ToUpper(string(im.Info().Format))
		}
	}
	switch format {
	case "VMDK":
		return fail("ClientError: Uncompressed data has invalid length.")
	case "VHD", "VHDX":
		return fail("ClientError: Disk validation failed [Unsupported %s File Format]", format)
	default:
		return fail("ClientError: Disk validation failed [Unable to read the disk image]")
	}
}

// completeImport turns the converted snapshots into the task's result: the
// AMI for ImportImage, the snapshot for ImportSnapshot.
func (e *Emulator) completeImport(id string, snaps []*snapshotWithSize) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.st.Tasks[id]
	if t == nil || t.Status != "active" {
		return context.Canceled
	}
	now := e.clock.Now().UTC()
	for i, s := range snaps {
		t.Disks[i].SnapshotID = s.ID
		t.Disks[i].Status, t.Disks[i].StatusMessage, t.Disks[i].Progress = "completed", "", ""
	}
	if t.Kind == "image" {
		if t.Architecture == "" {
			t.Architecture = "x86_64"
		}
		if t.Platform == "" {
			t.Platform = "Linux"
		}
		if t.LicenseType == "" || strings.EqualFold(t.LicenseType, "Auto") {
			t.LicenseType = "BYOL"
			if t.Platform == "Windows" {
				t.LicenseType = "AWS"
			}
		}
		if t.BootMode == "" {
			t.BootMode = "legacy-bios"
		}
		if t.UsageOp == "" {
			t.UsageOp = "RunInstances"
		}
		im := &Image{
			ID: newID("ami"), Name: t.ID, Description: t.Description, State: "available",
			Created: now, AvailableAt: now, Architecture: t.Architecture, BootMode: t.BootMode,
			RootDeviceName: "/dev/sda1", EnaSupport: true, UsageOp: t.UsageOp, ImportTaskID: t.ID,
		}
		if t.Platform == "Windows" {
			im.Platform = "windows"
		}
		for i, s := range snaps {
			dev := "/dev/sda1"
			if i > 0 {
				dev = "/dev/sd" + string(rune('a'+i))
			}
			im.Devices = append(im.Devices, BlockDevice{DeviceName: dev, SnapshotID: s.ID, VolumeSize: s.VolumeSize,
				VolumeType: "gp2", DeleteOnTermination: true, Encrypted: s.Encrypted, KmsKeyID: s.KmsKeyID})
			t.Disks[i].DeviceName = dev
		}
		e.st.Images[im.ID] = im
		t.ImageID = im.ID
	}
	t.Status, t.StatusMessage, t.Progress = "completed", "", ""
	e.saveLocked()
	return nil
}

// cancelImport is CancelImportTask.
func (e *Emulator) cancelImport(id string) (previous string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.st.Tasks[id]
	if !ok {
		return "", badRequest("InvalidConversionTaskId", "The task ID '%s' does not exist", id)
	}
	if t.Status != "active" {
		return "", badRequest("IncorrectState", "The import task %s cannot be cancelled in state %s", id, t.Status)
	}
	previous = t.Status
	t.Status, t.StatusMessage = "deleting", "User cancelled"
	e.saveLocked()
	if c := e.cancels[id]; c != nil {
		c()
	} else {
		e.finishCancelLocked(t, "User cancelled")
	}
	return previous, nil
}
