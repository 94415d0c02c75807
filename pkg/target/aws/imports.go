package aws

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/vmimport"
)

// ImportMode chooses how disks become an AMI.
type ImportMode string

const (
	// ModeImportImage runs one ImportImage task over all disks: VM Import
	// also adapts the OS (drivers, licensing).
	ModeImportImage ImportMode = "image"
	// ModeImportSnapshot runs one ImportSnapshot task per disk, then
	// RegisterImage over the snapshots: the disks are taken as they are.
	ModeImportSnapshot ImportMode = "snapshot"
	// ModeRegister registers the AMI straight from EBS snapshots
	// (ImportInput.Snapshots, replicas written with EBS direct), with no
	// VM Import at all: for guests that need no conversion. The AMI's
	// snapshots are the given ones.
	ModeRegister ImportMode = "register"
)

// Tags StartImport puts on import tasks so FindImports can re-attach.
const (
	TagClientToken = "rehost:client-token"
	tagDisk        = "rehost:disk"
	tagPlatform    = "rehost:platform"
	tagBootMode    = "rehost:boot-mode"
	tagArch        = "rehost:architecture"
	tagAMIName     = "rehost:ami-name"
)

// ImportInput describes one VM's import.
type ImportInput struct {
	// Disks in boot order: the boot disk first. Each needs its Format.
	Disks []Object
	// Snapshots, instead of Disks, are EBS snapshots holding the disks raw
	// (replicas), in boot order: ModeImportImage converts them with VM
	// Import (ImportImage disk containers naming them) into new snapshots,
	// ModeRegister registers the AMI on them as they are.
	Snapshots []string
	// LicenseType is "AWS", "BYOL" or empty (VM Import decides).
	LicenseType string
	// BootMode is "legacy-bios", "uefi" or empty.
	BootMode string
	// Platform is "Linux" or "Windows".
	Platform string
	// Architecture is x86_64 (default), i386 or arm64.
	Architecture string
	Encrypted    bool
	KMSKeyID     string
	// RoleName is the service role; default "vmimport".
	RoleName string
	// ClientToken makes the start idempotent: derive it from the run id.
	// Required. Per-disk tokens are derived from it.
	ClientToken string
	Description string
	// Name is the AMI name RegisterImage uses in ModeImportSnapshot;
	// default "rehost-<ClientToken>". AMI names are unique per region.
	Name string
	Tags map[string]string
	Mode ImportMode
}

// Import identifies started import tasks; it is plain data to persist.
type Import struct {
	Mode ImportMode `json:"mode"`
	// TaskIDs: the image task, or one snapshot task per disk in disk order.
	TaskIDs     []string `json:"taskIds"`
	ClientToken string   `json:"clientToken"`
	// Snapshots are ModeRegister's disks.
	Snapshots []string `json:"snapshots,omitempty"`
	// RegisterImage parameters (ModeImportSnapshot).
	Name         string            `json:"name,omitempty"`
	Description  string            `json:"description,omitempty"`
	Platform     string            `json:"platform,omitempty"`
	BootMode     string            `json:"bootMode,omitempty"`
	Architecture string            `json:"architecture,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
}

// TaskStatus is one import task's state.
type TaskStatus struct {
	TaskID        string `json:"taskId"`
	Status        string `json:"status"` // active, completed, deleting, deleted
	StatusMessage string `json:"statusMessage,omitempty"`
	Progress      int    `json:"progress"`
	SnapshotID    string `json:"snapshotId,omitempty"`
}

// ImportStatus is the state of an Import as a whole.
type ImportStatus struct {
	// Status is "active", "registering", "completed" or "failed".
	Status        string       `json:"status"`
	StatusMessage string       `json:"statusMessage,omitempty"`
	Progress      int          `json:"progress"` // 0–100
	Tasks         []TaskStatus `json:"tasks"`
}

// Result is a finished import.
type Result struct {
	ImageID     string   `json:"imageId"`
	SnapshotIDs []string `json:"snapshotIds"`
}

// ImportError is an import task that ended in failure (deleted or
// deleting); StatusMessage is VM Import's own wording, the cause a user can
// act on.
type ImportError struct {
	TaskID        string
	Status        string
	StatusMessage string
}

func (e *ImportError) Error() string {
	msg := e.StatusMessage
	if msg == "" {
		msg = "no status message"
	}
	return fmt.Sprintf("import task %s %s: %s", e.TaskID, e.Status, msg)
}

var importFormats = map[disk.Format]string{disk.VMDK: "VMDK", disk.VHD: "VHD", disk.VHDX: "VHDX", disk.Raw: "RAW"}

func (in *ImportInput) validate() error {
	if len(in.Disks) == 0 && len(in.Snapshots) == 0 {
		return errors.New("no disks to import")
	}
	if len(in.Disks) > 0 && len(in.Snapshots) > 0 {
		return errors.New("staged disks and snapshots given together")
	}
	if in.ClientToken == "" {
		return errors.New("a client token (derived from the run id) is required")
	}
	for i, s := range in.Snapshots {
		if !strings.HasPrefix(s, "snap-") {
			return fmt.Errorf("disk %d: %q is not a snapshot id", i, s)
		}
	}
	switch {
	case in.Mode == ModeRegister && len(in.Snapshots) == 0:
		return errors.New("mode register takes snapshots, not staged disks")
	case in.Mode == ModeImportSnapshot && len(in.Snapshots) > 0:
		return errors.New("mode snapshot imports staged disks; give snapshots to mode image or register")
	}
	for i, d := range in.Disks {
		if d.Bucket == "" || d.Key == "" {
			return fmt.Errorf("disk %d: no staged object", i)
		}
		if _, ok := importFormats[d.Format]; !ok {
			return fmt.Errorf("disk %d (%s): format %q is not one of vmdk, vhd, vhdx, raw", i, d.Key, d.Format)
		}
	}
	switch in.LicenseType {
	case "", "AWS", "BYOL":
	default:
		return fmt.Errorf("license type %q is not AWS or BYOL", in.LicenseType)
	}
	switch in.BootMode {
	case "", "legacy-bios", "uefi":
	default:
		return fmt.Errorf("boot mode %q is not legacy-bios or uefi", in.BootMode)
	}
	switch in.Platform {
	case "", "Linux", "Windows":
	default:
		return fmt.Errorf("platform %q is not Linux or Windows", in.Platform)
	}
	switch in.Mode {
	case "", ModeImportImage, ModeImportSnapshot, ModeRegister:
	default:
		return fmt.Errorf("import mode %q is not image, snapshot or register", in.Mode)
	}
	return nil
}

// diskToken derives disk i's client token from the run's, within EC2's
// 64-character limit.
func diskToken(base string, i int) string {
	t := fmt.Sprintf("%s-d%d", base, i)
	if len(t) <= 64 {
		return t
	}
	h := sha256.Sum256([]byte(t))
	return base[:min(len(base), 31)] + "-" + hex.EncodeToString(h[:16])
}

func tagSpec(resource ec2types.ResourceType, tags map[string]string) []ec2types.TagSpecification {
	if len(tags) == 0 {
		return nil
	}
	ts := ec2types.TagSpecification{ResourceType: resource}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		ts.Tags = append(ts.Tags, ec2types.Tag{Key: sdk.String(k), Value: sdk.String(tags[k])})
	}
	return []ec2types.TagSpecification{ts}
}

// roleNotReady reports VM Import's refusal of a role that may just not have
// propagated yet.
func roleNotReady(err error) bool {
	return strings.Contains(apiMessage(err), "does not exist or does not have sufficient permissions")
}

// StartImport starts VM Import for the disks. Idempotent through the client
// token: a repeated call returns the tasks the first one started. A role
// VM Import cannot use yet is retried for Config.IAMPropagation (IAM is
// eventually consistent), then reported with VM Import's message.
func (t *Target) StartImport(ctx context.Context, in ImportInput) (Import, error) {
	if err := in.validate(); err != nil {
		return Import{}, fmt.Errorf("start import: %w", err)
	}
	if in.Mode == "" {
		in.Mode = t.cfg.ImportMode
		if in.Mode == ModeImportSnapshot && len(in.Snapshots) > 0 {
			// Snapshots are disks already: importing them means converting.
			in.Mode = ModeImportImage
		}
	}
	if limit := vmimport.Get().Limits.ImageVolumes; in.Mode == ModeImportImage && len(in.Disks) > limit {
		// ImportImage refuses more volumes; VM Import's documented way is
		// one ImportSnapshot per disk. Preflight says so beforehand.
		t.log.Info("more disks than ImportImage takes: importing them one by one", "disks", len(in.Disks), "limit", limit, "token", in.ClientToken)
		in.Mode = ModeImportSnapshot
	}
	if in.RoleName == "" {
		in.RoleName = ImportRoleName
	}
	if in.Architecture == "" {
		in.Architecture = "x86_64"
	}
	if in.Name == "" {
		in.Name = "rehost-" + in.ClientToken
	}
	imp := Import{Mode: in.Mode, ClientToken: in.ClientToken, Name: in.Name, Description: in.Description,
		Platform: in.Platform, BootMode: in.BootMode, Architecture: in.Architecture, Tags: in.Tags}
	tags := map[string]string{TagClientToken: in.ClientToken}
	for k, v := range in.Tags {
		tags[k] = v
	}
	var kms *string
	if in.KMSKeyID != "" {
		kms = sdk.String(in.KMSKeyID)
	}
	call := func(what string, fn func(context.Context) error) error {
		deadline := time.Now().Add(t.cfg.IAMPropagation)
		p := t.policy(what).With(func(err error) bool {
			return roleNotReady(err) && time.Now().Before(deadline)
		})
		p.Attempts = max(p.Attempts, int(t.cfg.IAMPropagation/time.Second)) // the deadline ends it
		return p.Do(ctx, fn)
	}
	if in.Mode == ModeRegister {
		// Nothing to start: Wait registers the AMI, idempotent by name.
		imp.Snapshots = in.Snapshots
		return imp, nil
	}
	if in.Mode == ModeImportImage {
		var dcs []ec2types.ImageDiskContainer
		for i, s := range in.Snapshots {
			dcs = append(dcs, ec2types.ImageDiskContainer{SnapshotId: sdk.String(s), Description: sdk.String(fmt.Sprintf("disk %d", i))})
		}
		for i, d := range in.Disks {
			dcs = append(dcs, ec2types.ImageDiskContainer{
				Format:      sdk.String(importFormats[d.Format]),
				UserBucket:  &ec2types.UserBucket{S3Bucket: sdk.String(d.Bucket), S3Key: sdk.String(d.Key)},
				Description: sdk.String(fmt.Sprintf("disk %d", i)),
			})
		}
		var out *ec2.ImportImageOutput
		err := call("ImportImage", func(ctx context.Context) error {
			var err error
			out, err = t.ec2.ImportImage(ctx, &ec2.ImportImageInput{
				DiskContainers: dcs, ClientToken: sdk.String(in.ClientToken), RoleName: sdk.String(in.RoleName),
				LicenseType: optString(in.LicenseType), BootMode: ec2types.BootModeValues(in.BootMode),
				Platform: optString(in.Platform), Architecture: sdk.String(in.Architecture),
				Encrypted: sdk.Bool(in.Encrypted), KmsKeyId: kms, Description: optString(in.Description),
				TagSpecifications: tagSpec(ec2types.ResourceTypeImportImageTask, tags),
			})
			return err
		})
		if err != nil {
			return Import{}, fmt.Errorf("start import (ImportImage of %d disks): %w", len(dcs), err)
		}
		imp.TaskIDs = []string{sdk.ToString(out.ImportTaskId)}
		return imp, nil
	}

	tags[tagPlatform], tags[tagBootMode], tags[tagArch], tags[tagAMIName] = in.Platform, in.BootMode, in.Architecture, in.Name
	for i, d := range in.Disks {
		dt := map[string]string{tagDisk: strconv.Itoa(i)}
		for k, v := range tags {
			dt[k] = v
		}
		var out *ec2.ImportSnapshotOutput
		err := call("ImportSnapshot", func(ctx context.Context) error {
			var err error
			out, err = t.ec2.ImportSnapshot(ctx, &ec2.ImportSnapshotInput{
				DiskContainer: &ec2types.SnapshotDiskContainer{
					Format:      sdk.String(importFormats[d.Format]),
					UserBucket:  &ec2types.UserBucket{S3Bucket: sdk.String(d.Bucket), S3Key: sdk.String(d.Key)},
					Description: sdk.String(fmt.Sprintf("disk %d", i)),
				},
				ClientToken: sdk.String(diskToken(in.ClientToken, i)), RoleName: sdk.String(in.RoleName),
				Encrypted: sdk.Bool(in.Encrypted), KmsKeyId: kms, Description: optString(in.Description),
				TagSpecifications: tagSpec(ec2types.ResourceTypeImportSnapshotTask, dt),
			})
			return err
		})
		if err != nil {
			if len(imp.TaskIDs) > 0 {
				// The caller finds these by tag too (FindImports) if this
				// best effort is cut short.
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
				res, cerr := t.CancelImport(cctx, imp)
				if cerr == nil {
					cerr = t.DeleteImage(cctx, res.ImageID, res.SnapshotIDs)
				}
				if cerr != nil {
					t.log.Warn("cancel the snapshot imports already started", "tasks", imp.TaskIDs, "err", cerr)
				}
				cancel()
			}
			return Import{}, fmt.Errorf("start import (ImportSnapshot of disk %d, %s): %w", i, d.Key, err)
		}
		imp.TaskIDs = append(imp.TaskIDs, sdk.ToString(out.ImportTaskId))
	}
	return imp, nil
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return sdk.String(s)
}

// Status describes the import's tasks once.
func (t *Target) Status(ctx context.Context, imp Import) (ImportStatus, error) {
	if imp.Mode == ModeRegister {
		return ImportStatus{Status: "completed", Progress: 100}, nil
	}
	if len(imp.TaskIDs) == 0 {
		return ImportStatus{}, errors.New("import status: no task ids")
	}
	var tasks []TaskStatus
	var err error
	if imp.Mode == ModeImportSnapshot {
		tasks, err = t.describeSnapshotTasks(ctx, imp.TaskIDs)
	} else {
		tasks, err = t.describeImageTasks(ctx, imp.TaskIDs)
	}
	if err != nil {
		return ImportStatus{}, fmt.Errorf("import status of %s: %w", strings.Join(imp.TaskIDs, ", "), err)
	}
	st := ImportStatus{Status: "completed", Tasks: tasks}
	sum := 0
	for _, ts := range tasks {
		switch ts.Status {
		case "completed":
			sum += 100
		case "deleted", "deleting":
			st.Status, st.StatusMessage = "failed", ts.StatusMessage
		default:
			sum += ts.Progress
			if st.Status == "completed" {
				st.Status = "active"
			}
			if st.StatusMessage == "" {
				st.StatusMessage = ts.StatusMessage
			}
		}
	}
	st.Progress = sum / len(tasks)
	return st, nil
}

// imageTaskResult keeps what a completed image task produced.
type imageTaskResult struct {
	imageID   string
	snapshots []string
}

func (t *Target) describeImageTasks(ctx context.Context, ids []string) ([]TaskStatus, error) {
	res, _, err := t.describeImageTasksFull(ctx, ids)
	return res, err
}

func (t *Target) describeImageTasksFull(ctx context.Context, ids []string) ([]TaskStatus, map[string]imageTaskResult, error) {
	var out *ec2.DescribeImportImageTasksOutput
	err := t.call(ctx, "DescribeImportImageTasks", func(ctx context.Context) error {
		var err error
		out, err = t.ec2.DescribeImportImageTasks(ctx, &ec2.DescribeImportImageTasksInput{ImportTaskIds: ids})
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	byID := map[string]ec2types.ImportImageTask{}
	for _, it := range out.ImportImageTasks {
		byID[sdk.ToString(it.ImportTaskId)] = it
	}
	var res []TaskStatus
	done := map[string]imageTaskResult{}
	for _, id := range ids {
		it, ok := byID[id]
		if !ok {
			return nil, nil, fmt.Errorf("import task %s not found", id)
		}
		p, _ := strconv.Atoi(sdk.ToString(it.Progress))
		res = append(res, TaskStatus{TaskID: id, Status: sdk.ToString(it.Status), StatusMessage: sdk.ToString(it.StatusMessage), Progress: p})
		r := imageTaskResult{imageID: sdk.ToString(it.ImageId)}
		for _, sd := range it.SnapshotDetails {
			r.snapshots = append(r.snapshots, sdk.ToString(sd.SnapshotId))
		}
		done[id] = r
	}
	return res, done, nil
}

func (t *Target) describeSnapshotTasks(ctx context.Context, ids []string) ([]TaskStatus, error) {
	var out *ec2.DescribeImportSnapshotTasksOutput
	err := t.call(ctx, "DescribeImportSnapshotTasks", func(ctx context.Context) error {
		var err error
		out, err = t.ec2.DescribeImportSnapshotTasks(ctx, &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: ids})
		return err
	})
	if err != nil {
		return nil, err
	}
	byID := map[string]ec2types.ImportSnapshotTask{}
	for _, it := range out.ImportSnapshotTasks {
		byID[sdk.ToString(it.ImportTaskId)] = it
	}
	var res []TaskStatus
	for _, id := range ids {
		it, ok := byID[id]
		if !ok || it.SnapshotTaskDetail == nil {
			return nil, fmt.Errorf("import task %s not found", id)
		}
		d := it.SnapshotTaskDetail
		p, _ := strconv.Atoi(sdk.ToString(d.Progress))
		res = append(res, TaskStatus{TaskID: id, Status: sdk.ToString(d.Status), StatusMessage: sdk.ToString(d.StatusMessage),
			Progress: p, SnapshotID: sdk.ToString(d.SnapshotId)})
	}
	return res, nil
}

// Wait polls the import until it completes or fails, calling onProgress
// (optional) whenever the status changes. The interval starts at
// Config.PollInitial and grows by half while nothing changes, up to
// Config.PollMax. A task ending deleted or deleting is an *ImportError
// carrying VM Import's StatusMessage; in snapshot mode the other tasks are
// then cancelled. When all snapshots are imported, Wait registers the AMI
// (idempotent by name). Cancelling ctx stops waiting, not the import.
func (t *Target) Wait(ctx context.Context, imp Import, onProgress func(ImportStatus)) (Result, error) {
	interval := t.cfg.PollInitial
	var last ImportStatus
	first := true
	for {
		st, err := t.Status(ctx, imp)
		if err != nil {
			return Result{}, fmt.Errorf("wait for import: %w", err)
		}
		changed := first || st.Status != last.Status || st.Progress != last.Progress || st.StatusMessage != last.StatusMessage
		first = false
		if changed && onProgress != nil {
			onProgress(st)
		}
		last = st
		switch st.Status {
		case "failed":
			for _, ts := range st.Tasks {
				if ts.Status == "deleted" || ts.Status == "deleting" {
					if imp.Mode == ModeImportSnapshot {
						cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
						// What completed is the caller's to delete:
						// CancelImport again returns it.
						t.CancelImport(cctx, imp)
						cancel()
					}
					return Result{}, &ImportError{TaskID: ts.TaskID, Status: ts.Status, StatusMessage: ts.StatusMessage}
				}
			}
		case "completed":
			res, err := t.finish(ctx, imp, st)
			if err != nil {
				return Result{}, err
			}
			if onProgress != nil {
				onProgress(ImportStatus{Status: "completed", Progress: 100, Tasks: st.Tasks})
			}
			return res, nil
		}
		if changed {
			interval = max(t.cfg.PollInitial, interval/2)
		} else {
			interval = min(t.cfg.PollMax, interval*3/2)
		}
		if err := sleep(ctx, interval); err != nil {
			return Result{}, fmt.Errorf("wait for import %s: %w", strings.Join(imp.TaskIDs, ", "), err)
		}
	}
}

func (t *Target) finish(ctx context.Context, imp Import, st ImportStatus) (Result, error) {
	if imp.Mode == ModeRegister {
		id, err := t.registerImage(ctx, imp, imp.Snapshots)
		if err != nil {
			return Result{}, fmt.Errorf("register AMI %s from snapshots %s: %w", imp.Name, strings.Join(imp.Snapshots, ", "), err)
		}
		return Result{ImageID: id, SnapshotIDs: imp.Snapshots}, nil
	}
	if imp.Mode != ModeImportSnapshot {
		_, done, err := t.describeImageTasksFull(ctx, imp.TaskIDs)
		if err != nil {
			return Result{}, fmt.Errorf("read finished import %s: %w", imp.TaskIDs[0], err)
		}
		r := done[imp.TaskIDs[0]]
		if r.imageID == "" {
			return Result{}, fmt.Errorf("import task %s completed without an image id", imp.TaskIDs[0])
		}
		return Result{ImageID: r.imageID, SnapshotIDs: r.snapshots}, nil
	}
	var snaps []string
	for _, ts := range st.Tasks {
		if ts.SnapshotID == "" {
			return Result{}, fmt.Errorf("import task %s completed without a snapshot id", ts.TaskID)
		}
		snaps = append(snaps, ts.SnapshotID)
	}
	id, err := t.registerImage(ctx, imp, snaps)
	if err != nil {
		return Result{}, fmt.Errorf("register AMI %s from snapshots %s: %w", imp.Name, strings.Join(snaps, ", "), err)
	}
	return Result{ImageID: id, SnapshotIDs: snaps}, nil
}

// deviceNames are the root and data device names for a platform.
func deviceNames(platform string, n int) []string {
	root, prefix := "/dev/xvda", "/dev/xvd"
	if platform == "Windows" {
		root, prefix = "/dev/sda1", "/dev/sd"
	}
	names := []string{root}
	for i := 1; i < n; i++ {
		names = append(names, prefix+string(rune('a'+i)))
	}
	return names
}

func (t *Target) registerImage(ctx context.Context, imp Import, snaps []string) (string, error) {
	// RegisterImage takes no client token: the AMI name is the idempotency key.
	if im, err := t.describeImages(ctx, nil, []ec2types.Filter{{Name: sdk.String("name"), Values: []string{imp.Name}}}); err != nil {
		return "", err
	} else if len(im) > 0 {
		return im[0].ID, nil
	}
	if len(snaps) > 26 {
		return "", fmt.Errorf("%d disks: more than the device names available", len(snaps))
	}
	names := deviceNames(imp.Platform, len(snaps))
	var bdm []ec2types.BlockDeviceMapping
	for i, s := range snaps {
		bdm = append(bdm, ec2types.BlockDeviceMapping{DeviceName: sdk.String(names[i]), Ebs: &ec2types.EbsBlockDevice{
			SnapshotId: sdk.String(s), DeleteOnTermination: sdk.Bool(true), VolumeType: ec2types.VolumeTypeGp3}})
	}
	arch := imp.Architecture
	if arch == "" {
		arch = "x86_64"
	}
	var out *ec2.RegisterImageOutput
	err := t.call(ctx, "RegisterImage", func(ctx context.Context) error {
		var err error
		out, err = t.ec2.RegisterImage(ctx, &ec2.RegisterImageInput{
			Name: sdk.String(imp.Name), Description: optString(imp.Description),
			Architecture: ec2types.ArchitectureValues(arch), BootMode: ec2types.BootModeValues(imp.BootMode),
			RootDeviceName: sdk.String(names[0]), BlockDeviceMappings: bdm,
			EnaSupport: sdk.Bool(true), VirtualizationType: sdk.String("hvm"),
			TagSpecifications: tagSpec(ec2types.ResourceTypeImage, imp.Tags),
		})
		return err
	})
	if apiCode(err) == "InvalidAMIName.Duplicate" {
		// A retried call whose first attempt went through.
		if im, derr := t.describeImages(ctx, nil, []ec2types.Filter{{Name: sdk.String("name"), Values: []string{imp.Name}}}); derr == nil && len(im) > 0 {
			return im[0].ID, nil
		}
	}
	if err != nil {
		return "", err
	}
	return sdk.ToString(out.ImageId), nil
}

// CancelImport cancels every task of the import that is still active and
// returns what the import had already made, for the caller to delete: the
// image of a completed image task, or the snapshots of the disks whose
// snapshot tasks completed (and the image registered from them, if any). A
// task already finished, cancelled or unknown is not an error. Idempotent:
// a second call returns the same remains.
func (t *Target) CancelImport(ctx context.Context, imp Import) (Result, error) {
	var errs []error
	for _, id := range imp.TaskIDs {
		err := t.call(ctx, "CancelImportTask", func(ctx context.Context) error {
			_, err := t.ec2.CancelImportTask(ctx, &ec2.CancelImportTaskInput{ImportTaskId: sdk.String(id)})
			return err
		})
		switch apiCode(err) {
		case "", "InvalidConversionTaskId", "IncorrectState":
			continue
		}
		// Some finished tasks answer other codes: accept the refusal when
		// the task is indeed no longer active.
		one := Import{Mode: imp.Mode, TaskIDs: []string{id}}
		if st, serr := t.Status(ctx, one); serr == nil && st.Status != "active" {
			continue
		}
		errs = append(errs, fmt.Errorf("cancel import task %s: %w", id, err))
	}
	if err := errors.Join(errs...); err != nil {
		return Result{}, err
	}
	return t.remains(ctx, imp)
}

// remains is what an ended import made.
func (t *Target) remains(ctx context.Context, imp Import) (Result, error) {
	var res Result
	if imp.Mode == ModeRegister {
		// The snapshots were the caller's before: only the image is the
		// import's.
		imgs, err := t.describeImages(ctx, nil, []ec2types.Filter{{Name: sdk.String("name"), Values: []string{imp.Name}}})
		if err != nil {
			return res, fmt.Errorf("look for the image %s of the cancelled registration: %w", imp.Name, err)
		}
		if len(imgs) > 0 {
			res.ImageID = imgs[0].ID
		}
		return res, nil
	}
	if imp.Mode != ModeImportSnapshot {
		tasks, done, err := t.describeImageTasksFull(ctx, imp.TaskIDs)
		if err != nil {
			return res, fmt.Errorf("read the cancelled import %s: %w", strings.Join(imp.TaskIDs, ", "), err)
		}
		for _, ts := range tasks {
			if ts.Status == "completed" {
				r := done[ts.TaskID]
				res.ImageID = r.imageID
				res.SnapshotIDs = append(res.SnapshotIDs, r.snapshots...)
			}
		}
		return res, nil
	}
	tasks, err := t.describeSnapshotTasks(ctx, imp.TaskIDs)
	if err != nil {
		return res, fmt.Errorf("read the cancelled import %s: %w", strings.Join(imp.TaskIDs, ", "), err)
	}
	for _, ts := range tasks {
		if ts.Status == "completed" && ts.SnapshotID != "" {
			res.SnapshotIDs = append(res.SnapshotIDs, ts.SnapshotID)
		}
	}
	if imp.Name != "" {
		imgs, err := t.describeImages(ctx, nil, []ec2types.Filter{{Name: sdk.String("name"), Values: []string{imp.Name}}})
		if err != nil {
			return res, fmt.Errorf("look for the image %s of the cancelled import: %w", imp.Name, err)
		}
		if len(imgs) > 0 {
			res.ImageID = imgs[0].ID
		}
	}
	return res, nil
}

// FindImportsInput selects import tasks to re-attach to after a crash.
type FindImportsInput struct {
	// ClientToken matches tasks StartImport started with this token.
	ClientToken string
	// TagKey/TagValue match tasks carrying that tag.
	TagKey, TagValue string
	// States limits by task state (active, completed, deleting, deleted);
	// empty means all.
	States []string
}

// FindImports lists import tasks matching the input, grouped into Imports
// (snapshot tasks of one client token form one Import, in disk order; their
// RegisterImage parameters come back from the tags StartImport set).
func (t *Target) FindImports(ctx context.Context, in FindImportsInput) ([]Import, error) {
	if in.ClientToken == "" && in.TagKey == "" {
		return nil, errors.New("find imports: give a client token or a tag")
	}
	// VM Import documents only the task-state filter: match tags here.
	var filters []ec2types.Filter
	if len(in.States) > 0 {
		filters = append(filters, ec2types.Filter{Name: sdk.String("task-state"), Values: in.States})
	}
	match := func(tags map[string]string) bool {
		if in.ClientToken != "" && tags[TagClientToken] != in.ClientToken {
			return false
		}
		if in.TagKey != "" {
			if v, ok := tags[in.TagKey]; !ok || v != in.TagValue {
				return false
			}
		}
		return true
	}
	var imps []Import
	images := ec2.NewDescribeImportImageTasksPaginator(t.ec2, &ec2.DescribeImportImageTasksInput{Filters: filters})
	for images.HasMorePages() {
		var out *ec2.DescribeImportImageTasksOutput
		if err := t.call(ctx, "DescribeImportImageTasks", func(ctx context.Context) (err error) {
			out, err = images.NextPage(ctx)
			return err
		}); err != nil {
			return nil, fmt.Errorf("find imports: %w", err)
		}
		for _, it := range out.ImportImageTasks {
			tags := ec2Tags(it.Tags)
			if !match(tags) {
				continue
			}
			imps = append(imps, Import{Mode: ModeImportImage, TaskIDs: []string{sdk.ToString(it.ImportTaskId)},
				ClientToken: tags[TagClientToken], Description: sdk.ToString(it.Description), Platform: sdk.ToString(it.Platform),
				BootMode: string(it.BootMode), Architecture: sdk.ToString(it.Architecture), Tags: userTags(tags)})
		}
	}
	type diskTask struct {
		disk int
		id   string
	}
	groups := map[string][]diskTask{}
	heads := map[string]Import{}
	var order []string
	snaps := ec2.NewDescribeImportSnapshotTasksPaginator(t.ec2, &ec2.DescribeImportSnapshotTasksInput{Filters: filters})
	for snaps.HasMorePages() {
		var out *ec2.DescribeImportSnapshotTasksOutput
		if err := t.call(ctx, "DescribeImportSnapshotTasks", func(ctx context.Context) (err error) {
			out, err = snaps.NextPage(ctx)
			return err
		}); err != nil {
			return nil, fmt.Errorf("find imports: %w", err)
		}
		for _, it := range out.ImportSnapshotTasks {
			tags := ec2Tags(it.Tags)
			if !match(tags) {
				continue
			}
			key := tags[TagClientToken]
			if key == "" {
				key = sdk.ToString(it.ImportTaskId)
			}
			if _, ok := heads[key]; !ok {
				order = append(order, key)
				heads[key] = Import{Mode: ModeImportSnapshot, ClientToken: tags[TagClientToken], Name: tags[tagAMIName],
					Description: sdk.ToString(it.Description), Platform: tags[tagPlatform], BootMode: tags[tagBootMode],
					Architecture: tags[tagArch], Tags: userTags(tags)}
			}
			n, _ := strconv.Atoi(tags[tagDisk])
			groups[key] = append(groups[key], diskTask{n, sdk.ToString(it.ImportTaskId)})
		}
	}
	for _, key := range order {
		g := groups[key]
		slices.SortFunc(g, func(a, b diskTask) int { return cmp.Compare(a.disk, b.disk) })
		imp := heads[key]
		for _, d := range g {
			imp.TaskIDs = append(imp.TaskIDs, d.id)
		}
		imps = append(imps, imp)
	}
	return imps, nil
}

func ec2Tags(ts []ec2types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range ts {
		m[sdk.ToString(t.Key)] = sdk.ToString(t.Value)
	}
	return m
}

// userTags drops the bookkeeping tags StartImport adds.
func userTags(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		switch k {
		case TagClientToken, tagDisk, tagPlatform, tagBootMode, tagArch, tagAMIName:
			continue
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
