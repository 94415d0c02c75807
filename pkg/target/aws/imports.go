package aws

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

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

// DiskToken derives disk i's client token from the import's, within EC2's
// 64-character limit: the token disk i's ImportSnapshot task is started
// with, so a caller can record it before the task starts.
func DiskToken(base string, i int) string {
	t := fmt.Sprintf("%s-d%d", base, i)
	if len(t) <= 64 {
		return t
	}
	h := sha256.Sum256([]byte(t))
	return base[:min(len(base), 31)] + "-" + hex.EncodeToString(h[:16])
}

// roleNotReady reports VM Import's refusal of a role that may just not have
// propagated yet.
func roleNotReady(err error) bool {
	return strings.Contains(apiMessage(err), "does not exist or does not have sufficient permissions")
}

// mode is how StartImport imports in: in.Mode, else the configured mode.
func (t *Target) mode(in ImportInput) ImportMode {
	mode := in.Mode
	if mode == "" {
		mode = t.cfg.ImportMode
		if mode == ModeImportSnapshot && len(in.Snapshots) > 0 {
			// Snapshots are disks already: importing them means converting.
			mode = ModeImportImage
		}
	}
	if limit := vmimport.Get().Limits.ImageVolumes; mode == ModeImportImage && len(in.Disks) > limit {
		// ImportImage refuses more volumes; VM Import's documented way is
		// one ImportSnapshot per disk. Preflight says so beforehand.
		mode = ModeImportSnapshot
	}
	return cmp.Or(mode, ModeImportImage)
}

// ImportTasks are the VM Import tasks an import runs at once, by kind: AWS
// limits each kind per region by a quota of its own ("Concurrent import
// image tasks", "Concurrent import snapshot tasks").
type ImportTasks struct {
	Image, Snapshot int
}

// Tasks are the tasks StartImport starts for in: one ImportImage task, one
// ImportSnapshot task per disk, or none for a registration.
func (t *Target) Tasks(in ImportInput) ImportTasks {
	return tasksOf(t.mode(in), len(in.Disks))
}

// Tasks are the tasks imp runs until it ends.
func (imp Import) Tasks() ImportTasks { return tasksOf(imp.Mode, len(imp.TaskIDs)) }

func tasksOf(mode ImportMode, disks int) ImportTasks {
	switch mode {
	case ModeImportImage:
		return ImportTasks{Image: 1}
	case ModeImportSnapshot:
		return ImportTasks{Snapshot: disks}
	}
	return ImportTasks{}
}

// StartImport starts VM Import for the disks. Idempotent through the client
// token: a repeated call returns the tasks the first one started. A role
// VM Import cannot use yet is retried for Config.IAMPropagation (IAM is
// eventually consistent), then reported with VM Import's message.
func (t *Target) StartImport(ctx context.Context, in ImportInput) (Import, error) {
	if err := in.validate(); err != nil {
		return Import{}, fmt.Errorf("start import: %w", err)
	}
	if in.Mode = t.mode(in); in.Mode == ModeImportSnapshot && len(in.Disks) > vmimport.Get().Limits.ImageVolumes {
		t.log.Info("more disks than ImportImage takes: importing them one by one", "disks", len(in.Disks), "limit", vmimport.Get().Limits.ImageVolumes, "token", in.ClientToken)
	}
	in, imp, tags := prepare(in)
	if in.Mode == ModeRegister {
		// Nothing to start: Wait registers the AMI, idempotent by name.
		imp.Snapshots = in.Snapshots
		return imp, nil
	}
	q, err := t.ec2Query()
	if err != nil {
		return Import{}, fmt.Errorf("start import: %w", err)
	}
	start := func(action string, params url.Values) (string, error) {
		return t.startTask(ctx, q, in, action, params)
	}
	if in.Mode == ModeImportImage {
		params := url.Values{"ClientToken": {in.ClientToken}, "Architecture": {in.Architecture}}
		n := 0
		for i, s := range in.Snapshots {
			n++
			p := "DiskContainer." + strconv.Itoa(n) + "."
			params.Set(p+"SnapshotId", s)
			params.Set(p+"Description", fmt.Sprintf("disk %d", i))
		}
		for i, d := range in.Disks {
			n++
			p := "DiskContainer." + strconv.Itoa(n) + "."
			params.Set(p+"Format", importFormats[d.Format])
			params.Set(p+"UserBucket.S3Bucket", d.Bucket)
			params.Set(p+"UserBucket.S3Key", d.Key)
			params.Set(p+"Description", fmt.Sprintf("disk %d", i))
		}
		setOpt(params, "LicenseType", in.LicenseType)
		setOpt(params, "BootMode", in.BootMode)
		setOpt(params, "Platform", in.Platform)
		setTagSpec(params, "import-image-task", tags)
		id, err := start("ImportImage", params)
		if err != nil {
			return Import{}, fmt.Errorf("start import (ImportImage of %d disks): %w", n, err)
		}
		imp.TaskIDs = []string{id}
		return imp, nil
	}

	for i := range in.Disks {
		id, err := t.startDisk(ctx, q, in, tags, i)
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
			return Import{}, err
		}
		imp.TaskIDs = append(imp.TaskIDs, id)
	}
	return imp, nil
}

// prepare fills in's defaults and makes the Import StartImport returns
// (without its tasks) and the tags its tasks carry.
func prepare(in ImportInput) (ImportInput, Import, map[string]string) {
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
	if in.Mode == ModeImportSnapshot {
		tags[tagPlatform], tags[tagBootMode], tags[tagArch], tags[tagAMIName] = in.Platform, in.BootMode, in.Architecture, in.Name
	}
	return in, imp, tags
}

// startTask sends ImportImage or ImportSnapshot, retrying a role VM Import
// cannot use yet until the propagation deadline.
func (t *Target) startTask(ctx context.Context, q QueryAPI, in ImportInput, action string, params url.Values) (string, error) {
	params.Set("RoleName", in.RoleName)
	params.Set("Encrypted", strconv.FormatBool(in.Encrypted))
	setOpt(params, "KmsKeyId", in.KMSKeyID)
	setOpt(params, "Description", in.Description)
	deadline := time.Now().Add(t.cfg.IAMPropagation)
	p := t.policy(action).With(func(err error) bool {
		return roleNotReady(err) && time.Now().Before(deadline)
	})
	p.Attempts = max(p.Attempts, int(t.cfg.IAMPropagation/time.Second)) // the deadline ends it
	var out struct {
		ImportTaskID string `xml:"importTaskId"`
	}
	err := p.Do(ctx, func(ctx context.Context) error { return q.Query(ctx, action, params, &out) })
	return out.ImportTaskID, err
}

// startDisk starts disk i's ImportSnapshot task under its own client token
// (DiskToken): started again, it is the same task.
func (t *Target) startDisk(ctx context.Context, q QueryAPI, in ImportInput, tags map[string]string, i int) (string, error) {
	d := in.Disks[i]
	dt := map[string]string{tagDisk: strconv.Itoa(i)}
	for k, v := range tags {
		dt[k] = v
	}
	params := url.Values{"ClientToken": {DiskToken(in.ClientToken, i)},
		"DiskContainer.Format": {importFormats[d.Format]}, "DiskContainer.UserBucket.S3Bucket": {d.Bucket},
		"DiskContainer.UserBucket.S3Key": {d.Key}, "DiskContainer.Description": {fmt.Sprintf("disk %d", i)}}
	setTagSpec(params, "import-snapshot-task", dt)
	id, err := t.startTask(ctx, q, in, "ImportSnapshot", params)
	if err != nil {
		return "", fmt.Errorf("start import (ImportSnapshot of disk %d, %s): %w", i, d.Key, err)
	}
	return id, nil
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
	params := url.Values{}
	setList(params, "ImportTaskId", ids)
	var out imageTasksPage
	if err := t.ec2Call(ctx, "DescribeImportImageTasks", params, &out); err != nil {
		return nil, nil, err
	}
	byID := map[string]imageTaskXML{}
	for _, it := range out.Tasks {
		byID[it.ImportTaskID] = it
	}
	var res []TaskStatus
	done := map[string]imageTaskResult{}
	for _, id := range ids {
		it, ok := byID[id]
		if !ok {
			return nil, nil, fmt.Errorf("import task %s not found", id)
		}
		p, _ := strconv.Atoi(it.Progress)
		res = append(res, TaskStatus{TaskID: id, Status: it.Status, StatusMessage: it.StatusMessage, Progress: p})
		r := imageTaskResult{imageID: it.ImageID}
		for _, sd := range it.Snapshots {
			r.snapshots = append(r.snapshots, sd.SnapshotID)
		}
		done[id] = r
	}
	return res, done, nil
}

func (t *Target) describeSnapshotTasks(ctx context.Context, ids []string) ([]TaskStatus, error) {
	params := url.Values{}
	setList(params, "ImportTaskId", ids)
	var out snapshotTasksPage
	if err := t.ec2Call(ctx, "DescribeImportSnapshotTasks", params, &out); err != nil {
		return nil, err
	}
	byID := map[string]snapshotTaskXML{}
	for _, it := range out.Tasks {
		byID[it.ImportTaskID] = it
	}
	var res []TaskStatus
	for _, id := range ids {
		it, ok := byID[id]
		if !ok || it.Detail == nil {
			return nil, fmt.Errorf("import task %s not found", id)
		}
		d := it.Detail
		p, _ := strconv.Atoi(d.Progress)
		res = append(res, TaskStatus{TaskID: id, Status: d.Status, StatusMessage: d.StatusMessage,
			Progress: p, SnapshotID: d.SnapshotID})
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
	if im, err := t.describeImages(ctx, nil, []filter{{"name", []string{imp.Name}}}); err != nil {
		return "", err
	} else if len(im) > 0 {
		return im[0].ID, nil
	}
	if len(snaps) > 26 {
		return "", fmt.Errorf("%d disks: more than the device names available", len(snaps))
	}
	names := deviceNames(imp.Platform, len(snaps))
	params := url.Values{"Name": {imp.Name}, "Architecture": {cmp.Or(imp.Architecture, "x86_64")},
		"RootDeviceName": {names[0]}, "EnaSupport": {"true"}, "VirtualizationType": {"hvm"}}
	setOpt(params, "Description", imp.Description)
	setOpt(params, "BootMode", imp.BootMode)
	for i, s := range snaps {
		p := "BlockDeviceMapping." + strconv.Itoa(i+1) + "."
		params.Set(p+"DeviceName", names[i])
		params.Set(p+"Ebs.SnapshotId", s)
		params.Set(p+"Ebs.DeleteOnTermination", "true")
		params.Set(p+"Ebs.VolumeType", "gp3")
	}
	setTagSpec(params, "image", imp.Tags)
	var out struct {
		ImageID string `xml:"imageId"`
	}
	err := t.ec2Call(ctx, "RegisterImage", params, &out)
	if apiCode(err) == "InvalidAMIName.Duplicate" {
		// A retried call whose first attempt went through.
		if im, derr := t.describeImages(ctx, nil, []filter{{"name", []string{imp.Name}}}); derr == nil && len(im) > 0 {
			return im[0].ID, nil
		}
	}
	if err != nil {
		return "", err
	}
	return out.ImageID, nil
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
		err := t.ec2Call(ctx, "CancelImportTask", url.Values{"ImportTaskId": {id}}, nil)
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
		imgs, err := t.describeImages(ctx, nil, []filter{{"name", []string{imp.Name}}})
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
		imgs, err := t.describeImages(ctx, nil, []filter{{"name", []string{imp.Name}}})
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
	params := url.Values{}
	if len(in.States) > 0 {
		setFilters(params, "Filters", []filter{{"task-state", in.States}})
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
	err := ec2Pages(ctx, t, "DescribeImportImageTasks", params, func(p imageTasksPage) {
		for _, it := range p.Tasks {
			tags := ec2Tags(it.Tags)
			if !match(tags) {
				continue
			}
			imps = append(imps, Import{Mode: ModeImportImage, TaskIDs: []string{it.ImportTaskID},
				ClientToken: tags[TagClientToken], Description: it.Description, Platform: it.Platform,
				BootMode: it.BootMode, Architecture: it.Architecture, Tags: userTags(tags)})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("find imports: %w", err)
	}
	type diskTask struct {
		disk int
		id   string
	}
	groups := map[string][]diskTask{}
	heads := map[string]Import{}
	var order []string
	err = ec2Pages(ctx, t, "DescribeImportSnapshotTasks", params, func(p snapshotTasksPage) {
		for _, it := range p.Tasks {
			tags := ec2Tags(it.Tags)
			if !match(tags) {
				continue
			}
			key := cmp.Or(tags[TagClientToken], it.ImportTaskID)
			if _, ok := heads[key]; !ok {
				order = append(order, key)
				heads[key] = Import{Mode: ModeImportSnapshot, ClientToken: tags[TagClientToken], Name: tags[tagAMIName],
					Description: it.Description, Platform: tags[tagPlatform], BootMode: tags[tagBootMode],
					Architecture: tags[tagArch], Tags: userTags(tags)}
			}
			n, _ := strconv.Atoi(tags[tagDisk])
			groups[key] = append(groups[key], diskTask{n, it.ImportTaskID})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("find imports: %w", err)
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

// imageTaskXML is an item of DescribeImportImageTasks' importImageTaskSet.
type imageTaskXML struct {
	ImportTaskID  string `xml:"importTaskId"`
	Status        string `xml:"status"`
	StatusMessage string `xml:"statusMessage"`
	Progress      string `xml:"progress"`
	ImageID       string `xml:"imageId"`
	Snapshots     []struct {
		SnapshotID string `xml:"snapshotId"`
	} `xml:"snapshotDetailSet>item"`
	Description  string   `xml:"description"`
	Platform     string   `xml:"platform"`
	BootMode     string   `xml:"bootMode"`
	Architecture string   `xml:"architecture"`
	Tags         []ec2Tag `xml:"tagSet>item"`
}

type imageTasksPage struct {
	Tasks     []imageTaskXML `xml:"importImageTaskSet>item"`
	NextToken string         `xml:"nextToken"`
}

func (p imageTasksPage) next() string { return p.NextToken }

// snapshotTaskXML is an item of DescribeImportSnapshotTasks'
// importSnapshotTaskSet.
type snapshotTaskXML struct {
	ImportTaskID string `xml:"importTaskId"`
	Detail       *struct {
		Status        string `xml:"status"`
		StatusMessage string `xml:"statusMessage"`
		Progress      string `xml:"progress"`
		SnapshotID    string `xml:"snapshotId"`
	} `xml:"snapshotTaskDetail"`
	Description string   `xml:"description"`
	Tags        []ec2Tag `xml:"tagSet>item"`
}

type snapshotTasksPage struct {
	Tasks     []snapshotTaskXML `xml:"importSnapshotTaskSet>item"`
	NextToken string            `xml:"nextToken"`
}

func (p snapshotTasksPage) next() string { return p.NextToken }

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
