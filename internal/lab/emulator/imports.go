package emulator

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/vmimport"
)

// importKMSActions are what an encrypted import does with its key through
// the role.
var importKMSActions = []string{"kms:DescribeKey", "kms:CreateGrant", "kms:GenerateDataKeyWithoutPlaintext", "kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom"}

// Disk formats each import accepts, as AWS lists them.
var (
	imageFormats    = vmimport.Get().Formats.Image
	snapshotFormats = vmimport.Get().Formats.Snapshot
)

// importFailure ends a task with an AWS-worded StatusMessage.
type importFailure struct{ msg string }

func (f *importFailure) Error() string { return f.msg }

func fail(format string, args ...any) error {
	return &importFailure{msg: fmt.Sprintf(format, args...)}
}

func noAccess(code int) error {
	return fail("ClientError: Disk validation failed [We do not have access to the given resource. Reason %s]", statusText(code))
}

func roleMessage(role string) string {
	return fmt.Sprintf("The service role %s provided does not exist or does not have sufficient permissions", role)
}

func roleFailure(role string) error { return fail("ClientError: %s", roleMessage(role)) }

// unreadable is what VM Import reports for a disk whose content it cannot
// make sense of, which is also what users see when the role may not
// decrypt an SSE-KMS object: the bytes it gets are not the image (see
// hashicorp/packer-plugin-amazon#457, "Unsupported OVA format" for a
// missing kms permission).
func unreadable(format string) error {
	switch format {
	case "OVA":
		return fail("ClientError: Disk validation failed [Unsupported OVA format]")
	case "VMDK", "VHD", "VHDX":
		return fail("ClientError: Disk validation failed [Unsupported %s File Format]", format)
	}
	return fail("ClientError: Disk validation failed [Unsupported specified file format]")
}

// diskFromParams reads one DiskContainer (ImportImage) or the DiskContainer
// (ImportSnapshot).
func diskFromParams(p params) ImportTaskDisk {
	d := ImportTaskDisk{
		Format:       strings.ToUpper(p.get("Format")),
		Bucket:       p.get("UserBucket.S3Bucket"),
		Key:          p.get("UserBucket.S3Key"),
		URL:          p.get("Url"),
		Description:  p.get("Description"),
		DeviceName:   p.get("DeviceName"),
		FromSnapshot: p.get("SnapshotId"),
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
	resourceType, formats, api := "import-image-task", imageFormats, "ImportImage"
	if kind == "image" {
		for _, dp := range p.items("DiskContainer") {
			disks = append(disks, diskFromParams(dp))
		}
	} else {
		resourceType, formats, api = "import-snapshot-task", snapshotFormats, "ImportSnapshot"
		if d := p.sub("DiskContainer"); len(d) > 0 {
			disks = append(disks, diskFromParams(d))
		}
	}
	if len(disks) == 0 {
		return nil, badRequest("MissingParameter", "The request must contain the parameter DiskContainer")
	}
	for i, d := range disks {
		if d.FromSnapshot != "" {
			if kind != "image" || d.Bucket != "" || d.URL != "" {
				return nil, badRequest("InvalidParameter", "Disk container %d: a SnapshotId is given alone, to ImportImage", i+1)
			}
			if !snapRE.MatchString(d.FromSnapshot) {
				return nil, malformed("InvalidSnapshotID.Malformed", d.FromSnapshot, "snap")
			}
			continue
		}
		if d.Bucket == "" || d.Key == "" {
			return nil, badRequest("InvalidParameter", "Disk container %d: either UserBucket (S3Bucket and S3Key) or an s3:// Url is required", i+1)
		}
		if d.Format != "" && !slices.Contains(formats, d.Format) {
			return nil, badRequest("InvalidParameter", "Unsupported disk format %s. %s supports: %s", d.Format, api, strings.Join(formats, ", "))
		}
		if d.Format == "OVA" && len(disks) > 1 {
			return nil, badRequest("InvalidParameter", "An OVA must be the only disk container of an import")
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
	enc, kms := p.boolean("Encrypted"), p.get("KmsKeyId")
	if kms != "" && !enc {
		return nil, badRequest("InvalidParameterCombination", "KmsKeyId requires Encrypted to be true")
	}
	if kms != "" {
		kms = e.kmsKeyARN(kms)
		if !e.kmsKnown(kms) {
			return nil, badRequest("InvalidParameterValue", "The specified KMS key is not accessible. If this is a default EBS CMK, please retry your request without specifying the key explicitly")
		}
	} else if enc {
		kms = e.kmsKeyARN("alias/aws/ebs")
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
	// Each kind of task has its region's quota of its own; a task beyond
	// it is refused, not queued.
	if limit := e.quotaValue(taskQuota[kind]); float64(e.activeTasksLocked(kind)) >= limit {
		if kind == "image" {
			e.st.ImportImageRefused++
		} else {
			e.st.ImportSnapshotRefused++
		}
		return nil, badRequest("ResourceCountLimitExceeded", "You have reached the maximum number of concurrent import %s tasks (%.0f) in this region", kind, limit)
	}
	// VM Import assumes the role when the task is created and refuses the
	// call outright when it cannot.
	if _, ok := e.assumeRoleLocked(role); !ok {
		return nil, badRequest("InvalidParameter", "%s", roleMessage(role))
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
		UsageOp: p.get("UsageOperation"), Encrypted: enc, KmsKeyID: kms,
		RoleName: role, Disks: disks, Tags: tags, Created: e.clock.Now().UTC(), Phases: []string{"pending"},
	}
	for _, ls := range p.items("LicenseSpecifications") {
		t.LicenseARNs = append(t.LicenseARNs, ls.get("LicenseConfigurationArn"))
	}
	for i := range t.Disks {
		t.Disks[i].Status, t.Disks[i].Progress = "active", "0"
	}
	e.st.Tasks[t.ID] = t
	if kind == "image" {
		e.st.PeakImportImageTasks = max(e.st.PeakImportImageTasks, e.activeTasksLocked(kind))
	} else {
		e.st.PeakImportSnapshotTasks = max(e.st.PeakImportSnapshotTasks, e.activeTasksLocked(kind))
	}
	e.log.Info("emulator: import task created", "task", t.ID, "disks", len(t.Disks), "role", role)
	e.startWorkerLocked(t)
	e.saveLocked()
	return t, nil
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

// A task's phases as DescribeImport*Tasks shows them, with the progress
// each starts at. Each phase begins when the work before it is done; only
// Config.SimulatedImportWait stands for work the emulator does not do.
const (
	phValidating = "validating"
	phValidated  = "validated"
	phConverting = "converting"
	phUpdating   = "updating"
	phBooting    = "booting"
	phPreparing  = "preparing ami"
)

var phaseProgress = map[string]int{
	phValidating: 2, phValidated: 19, phConverting: 28, phUpdating: 65, phBooting: 75, phPreparing: 90,
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
			e.removeSnapshotLocked(id)
		}
	}
	if t := e.st.Tasks[taskID]; t != nil {
		for i := range t.Disks {
			t.Disks[i].SnapshotID = ""
		}
	}
}

// update changes an active task under the lock; it returns
// context.Canceled when the task was cancelled or is gone.
func (e *Emulator) update(id string, f func(t *ImportTask)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.st.Tasks[id]
	if t == nil || t.Status != "active" {
		return context.Canceled
	}
	f(t)
	e.saveLocked()
	return nil
}

// enter moves the task to a phase.
func (e *Emulator) enter(id, phase string) error {
	return e.update(id, func(t *ImportTask) {
		t.StatusMessage, t.Progress = phase, strconv.Itoa(phaseProgress[phase])
		t.Phases = append(t.Phases, phase)
		for i := range t.Disks {
			if t.Disks[i].Status == "active" {
				t.Disks[i].StatusMessage, t.Disks[i].Progress = phase, t.Progress
			}
		}
	})
}

// simulatedWait waits out Config.SimulatedImportWait.
func (e *Emulator) simulatedWait(ctx context.Context) error {
	d := e.cfg.SimulatedImportWait
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
	role, ok := e.assumeRoleLocked(task.RoleName)
	e.mu.Unlock()
	if !ok {
		// The role changed since the task was created.
		return roleFailure(task.RoleName)
	}
	if err := e.enter(id, phValidating); err != nil {
		return err
	}
	if err := e.validate(ctx, task, role); err != nil {
		return err
	}
	if err := e.enter(id, phValidated); err != nil {
		return err
	}
	if err := e.enter(id, phConverting); err != nil {
		return err
	}
	if task.Encrypted {
		// The snapshots are written with the key through the role.
		for _, a := range importKMSActions {
			if !e.kmsAllows(role, a, task.KmsKeyID) {
				return roleFailure(task.RoleName)
			}
		}
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
		snaps = append(snaps, s...)
		if err := e.update(id, func(t *ImportTask) {
			t.Progress = strconv.Itoa(phaseProgress[phConverting] + (35*(i+1))/len(task.Disks))
			t.Disks[i].DiskImageSize = s[0].diskImageSize
			if task.Kind == "snapshot" {
				t.Disks[i].Progress = t.Progress
			}
		}); err != nil {
			return err
		}
	}
	if !role.mayAll(e, e.ec2ARN("snapshot"), "ec2:CopySnapshot", "ec2:ModifySnapshotAttribute") ||
		!role.may(e, "ec2:DescribeSnapshots", "*") {
		return roleFailure(task.RoleName)
	}
	if task.Kind == "snapshot" {
		if err := e.simulatedWait(ctx); err != nil {
			return err
		}
		return e.completeImport(id, snaps, nil)
	}
	if err := e.enter(id, phUpdating); err != nil {
		return err
	}
	guest, err := e.inspect(snaps, task.BootMode)
	if err != nil {
		return err
	}
	if err := e.enter(id, phBooting); err != nil {
		return err
	}
	if err := e.simulatedWait(ctx); err != nil {
		return err
	}
	if err := e.enter(id, phPreparing); err != nil {
		return err
	}
	if !role.may(e, "ec2:RegisterImage", e.ec2ARN("image")) || !role.may(e, "ec2:DescribeImages", "*") {
		return roleFailure(task.RoleName)
	}
	return e.completeImport(id, snaps, &guest)
}

// inspect reads the converted boot disk as VM Import's "updating" phase
// does: its partitions, file systems and operating system.
func (e *Emulator) inspect(snaps []*snapshotWithSize, bootMode string) (Guest, error) {
	boot := snaps[0]
	e.mu.Lock()
	f := e.contentLocked(boot.Snapshot)
	e.mu.Unlock()
	defer f.Close()
	sizes := make([]int64, len(snaps))
	for i, s := range snaps {
		sizes[i] = s.SourceSize
	}
	return inspectBootDisk(io.NewSectionReader(f, 0, boot.SourceSize), sizes, bootMode)
}

// validate is what VM Import checks before converting, with the role's
// rights: the number of volumes, the bucket (region, permissions), and each
// object's presence, size and encryption.
func (e *Emulator) validate(ctx context.Context, t ImportTask, role *importRole) error {
	if err := checkVolumes(len(t.Disks)); err != nil {
		return err
	}
	if e.s3 == nil && slices.ContainsFunc(t.Disks, func(d ImportTaskDisk) bool { return d.FromSnapshot == "" }) {
		return fail("ClientError: Disk validation failed [We do not have access to the given resource. Reason 503 Service Unavailable]")
	}
	for _, d := range t.Disks {
		if d.FromSnapshot != "" {
			if err := e.snapshotSource(d.FromSnapshot); err != nil {
				return err
			}
			continue
		}
		bucketARN := e.s3ARN(d.Bucket, "")
		if !role.may(e, "s3:GetBucketLocation", bucketARN) || !role.may(e, "s3:ListBucket", bucketARN) {
			return roleFailure(t.RoleName)
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
		if !role.may(e, "s3:GetObject", e.s3ARN(d.Bucket, d.Key)) {
			return noAccess(http.StatusForbidden)
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
		if info.sse == "aws:kms" || info.sse == "aws:kms:dsse" {
			if !e.kmsAllows(role, "kms:Decrypt", cmp.Or(info.kmsKey, "alias/aws/s3")) {
				return unreadable(cmp.Or(d.Format, "RAW"))
			}
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
	// detail describes the disk in the task's snapshot details (an OVA's
	// disks each get one).
	detail ImportTaskDisk
}

// convertDisk reads disk container i from S3, parses it and stores each
// virtual disk in it (one, or an OVA's several) as a new snapshot
// registered under the task, so a failure or cancel removes it.
func (e *Emulator) convertDisk(ctx context.Context, t ImportTask, i int) ([]*snapshotWithSize, error) {
	d := t.Disks[i]
	if d.FromSnapshot != "" {
		s, err := e.importEBSSnapshot(t, d)
		if err != nil {
			return nil, err
		}
		return []*snapshotWithSize{{Snapshot: s, diskImageSize: float64(s.SourceSize), detail: d}}, nil
	}
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
	var srcs []disk.Sparse
	if d.Format == "OVA" {
		if srcs, err = openOVA(f, n); err != nil {
			return nil, err
		}
	} else {
		src, err := openDeclared(f, n, d.Format)
		if err != nil {
			return nil, err
		}
		srcs = []disk.Sparse{src}
	}
	var out []*snapshotWithSize
	for k, src := range srcs {
		if err := checkVolumeSize(i+k, src.Size()); err != nil {
			return nil, err
		}
		s, err := e.storeSnapshot(t, src, d.Format)
		if err != nil {
			return nil, err
		}
		detail := d
		if d.Format == "OVA" {
			detail.Format, detail.Description = "VMDK", fmt.Sprintf("disk %d of %s", k+1, d.Key)
		}
		out = append(out, &snapshotWithSize{Snapshot: s, diskImageSize: float64(n), detail: detail})
	}
	return out, nil
}

// storeSnapshot writes a virtual disk as a snapshot of task t.
func (e *Emulator) storeSnapshot(t ImportTask, src disk.Sparse, format string) (*Snapshot, error) {
	id := newID("snap")
	blocks, sum, err := writeSnapshotFile(e.snapPath(id), src)
	if err != nil {
		var re *readError
		if errors.As(err, &re) {
			return nil, corruptData(format, src)
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
	return s, nil
}

// snapshotSource checks an EBS snapshot an import names as a disk: it
// must exist and be completed.
func (e *Emulator) snapshotSource(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.st.Snapshots[id]
	if !ok {
		return fail("ClientError: Disk validation failed [The snapshot %s does not exist]", id)
	}
	if e.ebsStateLocked(s) != "completed" {
		return fail("ClientError: Disk validation failed [The snapshot %s is %s, not completed]", id, s.State)
	}
	return nil
}

// importEBSSnapshot converts the EBS snapshot a disk container names into
// a snapshot of task t: the volume's raw content, shared with its source
// (the emulator changes no byte of a guest it converts).
func (e *Emulator) importEBSSnapshot(t ImportTask, d ImportTaskDisk) (*Snapshot, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if cur := e.st.Tasks[t.ID]; cur == nil || cur.Status != "active" {
		return nil, context.Canceled
	}
	src, ok := e.st.Snapshots[d.FromSnapshot]
	if !ok {
		return nil, fail("ClientError: Disk validation failed [The snapshot %s does not exist]", d.FromSnapshot)
	}
	c, err := e.copySnapshotLocked(src, "Created by AWS-VMImport service for "+t.ID)
	if err != nil {
		return nil, err
	}
	c.ImportTaskID, c.Encrypted, c.KmsKeyID = t.ID, src.Encrypted || t.Encrypted, cmp.Or(t.KmsKeyID, src.KmsKeyID)
	c.CopiedFrom = ""
	e.saveLocked()
	return c, nil
}

// openDeclared opens the object as the format the task declared, with VM
// Import's rules (stream-optimized VMDK only; fixed or dynamic VHD; VHDX;
// raw), worded as VM Import words a disk it refuses.
func openDeclared(f *os.File, size int64, format string) (disk.Sparse, error) {
	if format == "RAW" {
		return disk.NewRaw(f, size), nil
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
		if err != nil || detected != "VMDK" || img.Info().Subformat != "streamOptimized" {
			// monolithicSparse and the flat kinds are refused: AWS takes
			// only stream-optimized VMDK.
			return nil, unreadable("VMDK")
		}
	case "VHD":
		var head [8]byte
		f.ReadAt(head[:], 0)
		if err != nil || detected != "VHD" {
			if string(head[:]) == "conectix" {
				return nil, fail("ClientError: Footers not identical")
			}
			return nil, unreadable("VHD")
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
			return nil, unreadable("VHDX")
		}
	case "RAW":
		return disk.NewRaw(f, size), nil
	default:
		return nil, unreadable("")
	}
	return img, nil
}

// corruptData words a failure to read the content of a disk whose headers
// parsed.
func corruptData(format string, src disk.Sparse) error {
	if format == "" || format == "OVA" {
		if im, ok := src.(disk.Image); ok {
			format = strings.ToUpper(string(im.Info().Format))
		}
	}
	switch format {
	case "VMDK":
		return fail("ClientError: Uncompressed data has invalid length.")
	case "VHD", "VHDX":
		return unreadable(format)
	default:
		return fail("ClientError: Disk validation failed [Unable to read the disk image]")
	}
}

// completeImport turns the converted snapshots into the task's result: the
// AMI for ImportImage (guest is what the boot disk holds), the snapshot for
// ImportSnapshot.
func (e *Emulator) completeImport(id string, snaps []*snapshotWithSize, guest *Guest) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.st.Tasks[id]
	if t == nil || t.Status != "active" {
		return context.Canceled
	}
	now := e.clock.Now().UTC()
	if len(snaps) != len(t.Disks) {
		// An OVA: one detail per disk it held.
		t.Disks = nil
		for _, s := range snaps {
			t.Disks = append(t.Disks, s.detail)
		}
	}
	for i, s := range snaps {
		t.Disks[i].SnapshotID = s.ID
		t.Disks[i].DiskImageSize = s.diskImageSize
		t.Disks[i].Status, t.Disks[i].StatusMessage, t.Disks[i].Progress = "completed", "", ""
	}
	if t.Kind == "image" {
		t.Guest = guest
		// The platform is what the disk holds, whatever the caller said.
		t.Platform, t.BootMode = guest.Platform, guest.BootMode
		if t.Architecture == "" {
			t.Architecture = "x86_64"
		}
		if t.LicenseType == "" || strings.EqualFold(t.LicenseType, "Auto") {
			t.LicenseType = "BYOL"
			if t.Platform == "Windows" {
				t.LicenseType = "AWS"
			}
		}
		if t.UsageOp == "" {
			t.UsageOp = "RunInstances"
		}
		if t.Description == "" {
			// As VM Import describes what it found.
			t.Description = "AWS-VMImport service: " + strings.TrimSuffix(guest.Platform+" - "+guest.Distribution, " - ")
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
	t.Phases = append(t.Phases, "completed")
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

// taskQuota names the quota that limits each kind of import task.
var taskQuota = map[string]string{"image": "Concurrent import image tasks", "snapshot": "Concurrent import snapshot tasks"}

// activeTasksLocked counts the tasks of a kind ("image", "snapshot") that
// hold one of the region's concurrent task slots: those not yet completed
// or deleted.
func (e *Emulator) activeTasksLocked(kind string) int {
	n := 0
	for _, t := range e.st.Tasks {
		if t.Kind == kind && (t.Status == "active" || t.Status == "deleting") {
			n++
		}
	}
	return n
}

// ImportImageLoad is what the emulator saw of the concurrent import image
// task quota: the most tasks active at once and how many ImportImage calls
// it refused for being beyond the quota.
func (e *Emulator) ImportImageLoad() (peak, refused int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.st.PeakImportImageTasks, e.st.ImportImageRefused
}

// ImportSnapshotLoad is ImportImageLoad for ImportSnapshot tasks and their
// quota (each disk imported as a snapshot is one task).
func (e *Emulator) ImportSnapshotLoad() (peak, refused int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.st.PeakImportSnapshotTasks, e.st.ImportSnapshotRefused
}
