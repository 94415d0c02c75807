package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"
)

// Tag is an EC2 tag.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// ImportTaskDisk is one disk of an import task.
type ImportTaskDisk struct {
	Format string `json:"format,omitempty" xml:"format,omitempty"`
	Bucket string `json:"bucket,omitempty" xml:"-"`
	Key    string `json:"key,omitempty" xml:"-"`
	URL    string `json:"url,omitempty" xml:"url,omitempty"`
	// FromSnapshot is the EBS snapshot an ImportImage disk container names
	// instead of an S3 object (its SnapshotId).
	FromSnapshot  string  `json:"fromSnapshot,omitempty" xml:"-"`
	Description   string  `json:"description,omitempty" xml:"description,omitempty"`
	DeviceName    string  `json:"deviceName,omitempty" xml:"deviceName,omitempty"`
	DiskImageSize float64 `json:"diskImageSize,omitempty" xml:"-"` // bytes of the object read
	SnapshotID    string  `json:"snapshotId,omitempty" xml:"snapshotId,omitempty"`
	Status        string  `json:"status,omitempty" xml:"status,omitempty"`
	StatusMessage string  `json:"statusMessage,omitempty" xml:"statusMessage,omitempty"`
	Progress      string  `json:"progress,omitempty" xml:"progress,omitempty"`
}

// ImportTask is an ImportImage ("import-ami-…") or ImportSnapshot
// ("import-snap-…") task. Its xml tags are the fields of an
// importImageTaskSet item (imageTaskXML adds the disks and tags in EC2's
// shapes); the fields tagged "-" are the emulator's own.
type ImportTask struct {
	ID            string           `json:"id" xml:"importTaskId"`
	Kind          string           `json:"kind" xml:"-"` // "image" or "snapshot"
	ClientToken   string           `json:"clientToken,omitempty" xml:"-"`
	Status        string           `json:"status" xml:"status"` // active, completed, deleting, deleted
	StatusMessage string           `json:"statusMessage,omitempty" xml:"statusMessage,omitempty"`
	Progress      string           `json:"progress,omitempty" xml:"progress,omitempty"`
	Description   string           `json:"description,omitempty" xml:"description,omitempty"`
	Architecture  string           `json:"architecture,omitempty" xml:"architecture,omitempty"`
	BootMode      string           `json:"bootMode,omitempty" xml:"bootMode,omitempty"`
	Platform      string           `json:"platform,omitempty" xml:"platform,omitempty"`
	LicenseType   string           `json:"licenseType,omitempty" xml:"licenseType,omitempty"`
	Hypervisor    string           `json:"hypervisor,omitempty" xml:"hypervisor,omitempty"`
	UsageOp       string           `json:"usageOperation,omitempty" xml:"usageOperation,omitempty"`
	LicenseARNs   []string         `json:"licenseArns,omitempty" xml:"licenseSpecifications>item>licenseConfigurationArn"`
	Encrypted     bool             `json:"encrypted,omitempty" xml:"encrypted"`
	KmsKeyID      string           `json:"kmsKeyId,omitempty" xml:"kmsKeyId,omitempty"`
	RoleName      string           `json:"roleName" xml:"-"`
	Disks         []ImportTaskDisk `json:"disks" xml:"-"`
	Tags          []Tag            `json:"tags,omitempty" xml:"-"`
	ImageID       string           `json:"imageId,omitempty" xml:"imageId,omitempty"`
	Created       time.Time        `json:"created" xml:"-"`
	// Phases lists the status messages the task went through, in order.
	Phases []string `json:"phases,omitempty" xml:"-"`
	// Guest is what the boot disk holds, found by an ImportImage.
	Guest *Guest `json:"guest,omitempty" xml:"-"`
}

// BlockDevice is a block device mapping of an image.
type BlockDevice struct {
	DeviceName          string `json:"deviceName"`
	SnapshotID          string `json:"snapshotId"`
	VolumeSize          int64  `json:"volumeSize"` // GiB
	VolumeType          string `json:"volumeType"`
	DeleteOnTermination bool   `json:"deleteOnTermination"`
	Encrypted           bool   `json:"encrypted"`
	KmsKeyID            string `json:"kmsKeyId,omitempty"`
}

// Image is an AMI.
type Image struct {
	ID             string        `json:"id"`
	Name           string        `json:"name"`
	Description    string        `json:"description,omitempty"`
	State          string        `json:"state"` // pending, available, deregistered
	Created        time.Time     `json:"created"`
	AvailableAt    time.Time     `json:"availableAt"`
	Architecture   string        `json:"architecture"`
	BootMode       string        `json:"bootMode,omitempty"`
	Platform       string        `json:"platform,omitempty"` // "windows" or empty
	RootDeviceName string        `json:"rootDeviceName"`
	EnaSupport     bool          `json:"enaSupport,omitempty"`
	UsageOp        string        `json:"usageOperation,omitempty"`
	Devices        []BlockDevice `json:"devices"`
	Tags           []Tag         `json:"tags,omitempty"`
	ImportTaskID   string        `json:"importTaskId,omitempty"`
	SourceImageID  string        `json:"sourceImageId,omitempty"`
	ClientToken    string        `json:"clientToken,omitempty"`
}

// Snapshot is an EBS snapshot; its content is a sparse file in the data dir.
type Snapshot struct {
	ID          string    `json:"id"`
	Description string    `json:"description,omitempty"`
	State       string    `json:"state"` // pending, completed, error
	Progress    string    `json:"progress"`
	Started     time.Time `json:"started"`
	VolumeSize  int64     `json:"volumeSize"` // GiB
	// SourceSize is the virtual size of the disk the snapshot was imported
	// from (the bytes SnapshotSHA256 hashes); VolumeSize*GiB for EBS direct.
	SourceSize int64  `json:"sourceSize"`
	SHA256     string `json:"sha256,omitempty"` // of the first SourceSize bytes, once completed
	Encrypted  bool   `json:"encrypted,omitempty"`
	KmsKeyID   string `json:"kmsKeyId,omitempty"`
	Tags       []Tag  `json:"tags,omitempty"`
	// Blocks maps each 512 KiB block index holding data to the id of the
	// snapshot that wrote it, whose file holds the block: a child shares its
	// parent's blocks rather than copying them, and ListChangedBlocks
	// compares snapshots of a chain without reading them.
	Blocks       map[int32]string `json:"blocks,omitempty"`
	Parent       string           `json:"parent,omitempty"`
	ImportTaskID string           `json:"importTaskId,omitempty"`
	CopiedFrom   string           `json:"copiedFrom,omitempty"`
	ClientToken  string           `json:"clientToken,omitempty"`
	Written      int32            `json:"written,omitempty"` // blocks put by EBS direct
	// PutBytes is the block data PutSnapshotBlock accepted for this
	// snapshot, a block put again counted again: what a client sent.
	PutBytes int64 `json:"putBytes,omitempty"`
	// Checksums are the base64 SHA-256 of the blocks this snapshot wrote
	// with EBS direct, as they were put: CompleteSnapshot checks the
	// aggregate of them and GetSnapshotBlock answers them.
	Checksums map[int32]string `json:"checksums,omitempty"`
	// TimeoutMinutes cancels a pending EBS direct snapshot (state error)
	// that long after its last write or its start; LastWrite is when a
	// block was last put.
	TimeoutMinutes int       `json:"timeoutMinutes,omitempty"`
	LastWrite      time.Time `json:"lastWrite,omitzero"`
}

// Role is an IAM role with its inline policies.
type Role struct {
	Name        string            `json:"name"`
	ID          string            `json:"id"`
	Path        string            `json:"path"`
	Description string            `json:"description,omitempty"`
	Created     time.Time         `json:"created"`
	TrustPolicy string            `json:"trustPolicy"`
	Policies    map[string]string `json:"policies,omitempty"`
}

type state struct {
	AccountID       string                    `json:"accountId"`
	AccessKeyID     string                    `json:"accessKeyId"`
	SecretAccessKey string                    `json:"secretAccessKey"`
	Tasks           map[string]*ImportTask    `json:"tasks"`
	Images          map[string]*Image         `json:"images"`
	Snapshots       map[string]*Snapshot      `json:"snapshots"`
	Roles           map[string]*Role          `json:"roles"`
	Keys            map[string]*KMSKey        `json:"keys,omitempty"`
	Vpcs            map[string]*Vpc           `json:"vpcs"`
	Subnets         map[string]*Subnet        `json:"subnets"`
	SecurityGroups  map[string]*SecurityGroup `json:"securityGroups"`
	Instances       map[string]*Instance      `json:"instances"`
	Stacks          map[string]*Stack         `json:"stacks"`
	// Handles are the wait condition handles' signals, by URL token.
	Handles map[string]*WaitHandle `json:"handles"`
	// Commands are Run Command invocations, by command id.
	Commands map[string]*Command `json:"commands"`
	// Retained are deleted snapshots whose files hold blocks a snapshot
	// of the same lineage still uses, with the checksums of those blocks.
	Retained map[string]map[int32]string `json:"retained,omitempty"`
	// PeakImportImageTasks is the most ImportImage tasks active at once;
	// ImportImageRefused counts those refused beyond the quota.
	PeakImportImageTasks int `json:"peakImportImageTasks,omitempty"`
	ImportImageRefused   int `json:"importImageRefused,omitempty"`
	// The same of ImportSnapshot tasks.
	PeakImportSnapshotTasks int `json:"peakImportSnapshotTasks,omitempty"`
	ImportSnapshotRefused   int `json:"importSnapshotRefused,omitempty"`
}

func loadState(path string) (*state, error) {
	st := &state{}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("emulator: read state: %w", err)
	default:
		if err := json.Unmarshal(b, st); err != nil {
			return nil, fmt.Errorf("emulator: parse state %s: %w", path, err)
		}
	}
	if st.Tasks == nil {
		st.Tasks = map[string]*ImportTask{}
	}
	if st.Images == nil {
		st.Images = map[string]*Image{}
	}
	if st.Snapshots == nil {
		st.Snapshots = map[string]*Snapshot{}
	}
	if st.Roles == nil {
		st.Roles = map[string]*Role{}
	}
	if st.Keys == nil {
		st.Keys = map[string]*KMSKey{}
	}
	if st.Vpcs == nil {
		st.Vpcs = map[string]*Vpc{}
	}
	if st.Subnets == nil {
		st.Subnets = map[string]*Subnet{}
	}
	if st.SecurityGroups == nil {
		st.SecurityGroups = map[string]*SecurityGroup{}
	}
	if st.Instances == nil {
		st.Instances = map[string]*Instance{}
	}
	if st.Stacks == nil {
		st.Stacks = map[string]*Stack{}
	}
	if st.Handles == nil {
		st.Handles = map[string]*WaitHandle{}
	}
	if st.Commands == nil {
		st.Commands = map[string]*Command{}
	}
	return st, nil
}

// saveLocked writes state.json atomically; a failure is logged, not
// returned, because the in-memory model stays authoritative.
func (e *Emulator) saveLocked() {
	b, err := json.MarshalIndent(e.st, "", " ")
	if err == nil {
		tmp := e.statePath() + ".tmp"
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, e.statePath())
		}
	}
	if err != nil {
		e.log.Error("emulator: save state", "err", err)
	}
}

// imageStateLocked brings a pending image to available once its time came.
func (e *Emulator) imageStateLocked(im *Image) string {
	if im.State == "pending" && !e.clock.Now().Before(im.AvailableAt) {
		im.State = "available"
	}
	return im.State
}

// Images returns copies of the registered (not deregistered) images, sorted by id.
func (e *Emulator) Images() []Image {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Image
	for _, im := range e.st.Images {
		if e.imageStateLocked(im) == "deregistered" {
			continue
		}
		c := *im
		c.Devices = append([]BlockDevice(nil), im.Devices...)
		c.Tags = append([]Tag(nil), im.Tags...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Snapshots returns copies of the existing snapshots, sorted by id.
func (e *Emulator) Snapshots() []Snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Snapshot
	for _, s := range e.st.Snapshots {
		c := *s
		c.Tags = append([]Tag(nil), s.Tags...)
		c.Blocks, c.Checksums = nil, nil
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ImportTasks returns copies of all import tasks, sorted by id.
func (e *Emulator) ImportTasks() []ImportTask {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []ImportTask
	for _, t := range e.st.Tasks {
		out = append(out, copyTask(t))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Roles returns copies of the IAM roles, sorted by name.
func (e *Emulator) Roles() []Role {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Role
	for _, r := range e.st.Roles {
		c := *r
		c.Policies = map[string]string{}
		for k, v := range r.Policies {
			c.Policies[k] = v
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func copyTask(t *ImportTask) ImportTask {
	c := *t
	c.Disks = append([]ImportTaskDisk(nil), t.Disks...)
	c.Tags = append([]Tag(nil), t.Tags...)
	c.LicenseARNs = append([]string(nil), t.LicenseARNs...)
	c.Phases = append([]string(nil), t.Phases...)
	if t.Guest != nil {
		g := *t.Guest
		c.Guest = &g
	}
	return c
}

func setTags(tags []Tag, add []Tag) []Tag {
	for _, a := range add {
		found := false
		for i := range tags {
			if tags[i].Key == a.Key {
				tags[i].Value, found = a.Value, true
			}
		}
		if !found {
			tags = append(tags, a)
		}
	}
	return tags
}
