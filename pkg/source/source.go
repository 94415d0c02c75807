// Package source defines what rehost needs from a hypervisor: an inventory of
// VMs, a point-in-time checkpoint of one VM, and each disk of that checkpoint as
// a stream. Implementations live in subpackages (vsphere, hyperv, azure) and all
// pass the conformance suite in sourcetest.
package source

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/rehost/rehost/pkg/disk"
)

// Errors a Source wraps so callers can classify failures.
var (
	// ErrNotFound: the VM (or checkpoint) does not exist. Permanent.
	ErrNotFound = errors.New("not found")
	// ErrAuth: the credentials were refused. Permanent until the user fixes them.
	ErrAuth = errors.New("authentication failed")
	// ErrUnreachable: the hypervisor could not be reached. Transient: it
	// reports so to pkg/retry's classifier.
	ErrUnreachable error = transientError("unreachable")
	// ErrCertificate: the server's certificate is untrusted or its thumbprint
	// changed. Permanent until the user accepts the new certificate.
	ErrCertificate = errors.New("certificate not trusted")
)

type transientError string

func (e transientError) Error() string { return string(e) }

// Transient marks the error as worth retrying (pkg/retry.Marker).
func (transientError) Transient() bool { return true }

// Firmware of a VM, which decides the boot mode of its AMI.
const (
	FirmwareBIOS = "bios"
	FirmwareEFI  = "efi"
)

// VM is one entry of a source's inventory.
type VM struct {
	ID           string `json:"id"` // stable id: the vSphere instance UUID, Hyper-V VM id, Azure resource id
	Name         string `json:"name"`
	Path         string `json:"path"` // inventory path
	GuestOS      string `json:"guestOS"`
	CPUs         int    `json:"cpus"`
	MemoryMiB    int64  `json:"memoryMiB"`
	Firmware     string `json:"firmware"`   // FirmwareBIOS or FirmwareEFI
	PowerState   string `json:"powerState"` // poweredOn, poweredOff, suspended
	ToolsRunning bool   `json:"toolsRunning"`
	// CBTEnabled is set when the VM's changes are tracked, so a run can
	// copy only what changed: vSphere CBT on, Hyper-V resilient change
	// tracking (configuration version 6.2 or later, managed from the host),
	// Azure managed disks (incremental snapshots) always.
	CBTEnabled bool   `json:"cbtEnabled"`
	Disks      []Disk `json:"disks"`
	NICs       []NIC  `json:"nics"`
	// ManagerType names what manages the VM as SMS's vmServer.vmManagerType
	// does (VSPHERE, HYPERV-MANAGER, SCVMM, AZURE); Host is the hypervisor host
	// running it, where the source knows.
	ManagerType string `json:"vmManagerType,omitempty"`
	Host        string `json:"host,omitempty"`
	// SecureBoot is set when the VM boots with UEFI secure boot.
	SecureBoot bool `json:"secureBoot,omitempty"`
	// Attributes are the platform's own facts worth showing in the catalog
	// (an Azure VM's size, location, security type).
	Attributes map[string]string `json:"attributes,omitempty"`
	// Warnings say what replication will refuse or not carry over (a
	// trusted launch VM's vTPM), for the user to read before migrating.
	Warnings []string `json:"warnings,omitempty"`

	// What preflight reads besides the above; empty where the platform
	// does not say.

	// GuestID is the platform's own identifier of the guest OS (vSphere's
	// guestId: the guest's own when Tools run, else the configured one).
	GuestID string `json:"guestId,omitempty"`
	// GuestVersion is the OS version the guest reports ("22.04"), where
	// the platform has it (vSphere 8's detailed guest data, Azure's
	// instance view).
	GuestVersion string `json:"guestVersion,omitempty"`
	// HardwareVersion is the VM's virtual hardware or configuration
	// version: vSphere "vmx-19", Hyper-V "9.0".
	HardwareVersion string `json:"hardwareVersion,omitempty"`
	// Snapshots counts the VM's existing checkpoints (vSphere snapshots,
	// Hyper-V checkpoints), rehost's own included.
	Snapshots int `json:"snapshots,omitempty"`
}

// Disk is a virtual disk of a VM, in the order the VM presents them (the first
// is the boot disk).
type Disk struct {
	Key           string `json:"key"` // source-specific stable key (vSphere device key)
	Label         string `json:"label"`
	CapacityBytes int64  `json:"capacityBytes"`
	Controller    string `json:"controller"` // e.g. "scsi0:1", "ide0:0", "nvme0:0"
	Backing       string `json:"backing"`    // e.g. "[datastore1] vm/vm.vmdk"
	// Mode is DiskIndependent or DiskIndependentNonpersistent for a disk
	// the platform leaves out of checkpoints; empty for a disk that is
	// checkpointed with the VM.
	Mode string `json:"mode,omitempty"`
	// RawDevice names the physical device behind a raw device mapping or a
	// pass-through disk ("physical RDM naa.6000…", "physical disk 3");
	// empty for a virtual disk.
	RawDevice string `json:"rawDevice,omitempty"`
	// Shared is set for a disk other VMs write too (vSphere multi-writer,
	// a shared VHDX or VHD Set, an Azure shared disk).
	Shared bool `json:"shared,omitempty"`
	// Encrypted is set for a disk the platform encrypts (vSphere VM
	// encryption), whose export is refused.
	Encrypted bool `json:"encrypted,omitempty"`
}

// Disk modes (Disk.Mode) of disks left out of checkpoints.
const (
	DiskIndependent              = "independent-persistent"
	DiskIndependentNonpersistent = "independent-nonpersistent"
)

// DiskReader is the optional capability of sources that can read a few
// MiB of a VM's disk cheaply, without a checkpoint (a file share holding
// the VM's disk files): preflight reads the boot disk's partition table
// and file systems through it.
type DiskReader interface {
	// ReadDisk opens the virtual content of disk diskKey of VM vmID as it
	// is now (crash-consistent at best: for inspection, not replication).
	// The caller closes it. An unknown VM or disk wraps ErrNotFound; a disk
	// the source cannot open (locked, not a virtual disk file) returns an
	// error saying why.
	ReadDisk(ctx context.Context, vmID, diskKey string) (DiskContent, error)
}

// Pager is the optional capability of sources whose inventory comes in
// pages (vCenter's property collector), so that a catalog import writes
// one page while the next is read, holding no more than a few pages.
type Pager interface {
	// InventoryPages calls fn with the VMs Inventory lists, a page at a
	// time in no particular order, each call after the previous one
	// returned; an error of fn stops the listing and is returned.
	InventoryPages(ctx context.Context, fn func([]VM) error) error
}

// Watcher is the optional capability of sources that report changes of
// their inventory as they happen (vCenter's property collector), so a
// catalog stays current without listing everything again.
type Watcher interface {
	// Watch calls fn with the whole inventory first (a Change with Full
	// set), then with each batch of changes as the source reports them,
	// until ctx ends (it then returns ctx's cause) or fn fails (it returns
	// fn's error). When the source loses track (a session lost, its
	// version of the updates no longer known) Watch lists everything again
	// and goes on with another Full change; while the source cannot be
	// reached it retries, backing off, and says so to fn with a Change
	// carrying Err.
	Watch(ctx context.Context, fn func(Change) error) error
}

// Fingerprinter is the optional capability of sources that cannot report
// their changes but can list their VMs far more cheaply than Inventory
// does with a fingerprint of each (Hyper-V without the disk chains and the
// guests' KVP items, Azure without the disks and network interfaces), so a
// poll that finds nothing changed costs little and one that does reads
// only the VMs that changed.
type Fingerprinter interface {
	// Fingerprints returns the ID of every VM Inventory would list, each
	// with a fingerprint: an opaque string that changes when what Inventory
	// says of the VM changes, but for what the source's documentation
	// names (a disk resized in place, where reading the disk's size is
	// what makes Inventory costly), which a caller catches by calling
	// Inventory now and then. Its errors are Inventory's.
	Fingerprints(ctx context.Context) (map[string]string, error)
}

// Change is a batch of inventory changes a Watcher reports.
type Change struct {
	// Full: VMs is the whole inventory; VMs not in it are gone.
	Full bool
	// VMs are the VMs added or changed (all of them when Full).
	VMs []VM
	// Gone are the ids of VMs removed from the source.
	Gone []string
	// Moved are VMs whose inventory path changed and nothing else of
	// theirs (a folder, vApp or datacenter above them renamed or moved):
	// their other properties are as last reported.
	Moved []Move
	// Err says why the source cannot be watched right now (VMs, Gone and
	// Moved are then empty); the watch goes on.
	Err error
}

// Move is a VM's new inventory path (Change.Moved).
type Move struct {
	ID   string // the VM's id
	Path string // its inventory path now (VM.Path)
}

// DiskContent is a disk opened by DiskReader.ReadDisk.
type DiskContent interface {
	io.ReaderAt
	// Size is the disk's virtual size in bytes.
	Size() int64
	Close() error
}

// NIC is a network adapter of a VM.
type NIC struct {
	Label   string `json:"label"`
	MAC     string `json:"mac"`
	Network string `json:"network"`
	Type    string `json:"type"` // e.g. vmxnet3, e1000
	// Addresses are the private IP addresses where the source knows them.
	Addresses []string `json:"addresses,omitempty"`
}

// Checkpoint is a point-in-time state of a VM (a vSphere snapshot, a Hyper-V
// checkpoint, an Azure disk snapshot).
type Checkpoint struct {
	VMID string `json:"vmId"`
	ID   string `json:"id"`   // source-specific id (vSphere snapshot moref)
	Name string `json:"name"` // the name rehost gave it; leftovers are found by it
	// Quiesced is true when the guest file systems were quiesced.
	Quiesced bool `json:"quiesced"`
	// Base marks a checkpoint Keep kept as the base of later changed-area
	// queries (a Hyper-V reference point, Azure snapshots kept between
	// runs) rather than a point-in-time copy to read.
	Base bool `json:"base,omitempty"`
}

// Source is a hypervisor rehost replicates from.
type Source interface {
	// Inventory lists every VM. It costs a few round trips, or a few per
	// page of many VMs where the source pages its answers, never one per
	// VM.
	Inventory(ctx context.Context) ([]VM, error)
	// VM returns one VM by id; an unknown id wraps ErrNotFound.
	VM(ctx context.Context, id string) (VM, error)
	// Checkpoint creates a checkpoint named name of the VM. It is idempotent: if
	// a checkpoint with that name exists, it is returned and none is created.
	// Quiesced when the guest supports it, crash-consistent otherwise.
	Checkpoint(ctx context.Context, vmID, name string) (Checkpoint, error)
	// Checkpoints lists the VM's checkpoints whose name starts with prefix, so
	// leftovers of a crashed run can be found and released; bases that Keep
	// kept are among them (Checkpoint.Base).
	Checkpoints(ctx context.Context, vmID, prefix string) ([]Checkpoint, error)
	// Release removes a checkpoint, or a base that Keep kept. Releasing one
	// that is already gone is not an error.
	Release(ctx context.Context, cp Checkpoint) error
	// Export opens the disks of a checkpoint for reading. The caller must Close
	// the export, passing the error that ended its work (nil on success), so
	// the source can complete or abort whatever it holds open (an NFC lease).
	Export(ctx context.Context, cp Checkpoint) (Export, error)
	// Close releases the connection.
	Close() error
}

// Export is an open export of a checkpoint's disks.
type Export interface {
	// ID names the server-side resource the export holds open (a vSphere
	// NFC lease), for the caller to record so that an export a crash left
	// open can be aborted after the restart (see ExportAborter); "" when
	// the source holds nothing that outlives the process.
	ID() string
	// Disks describes the disks in VM order.
	Disks() []ExportDisk
	// Open streams disk i. Disks may be opened one at a time, in order; each
	// returned stream must be closed before the next is opened.
	Open(ctx context.Context, i int) (io.ReadCloser, error)
	// Progress reports overall progress in percent to the source (the NFC
	// lease); sources without such a notion ignore it.
	Progress(percent int)
	// Close completes the export when cause is nil and aborts it otherwise.
	// It is safe to call more than once.
	Close(cause error) error
}

// ReadCounter is the optional capability of a disk stream (a stream from
// Export.Open) that reads the disk's data itself, an encoder reading only
// the allocated ranges: BytesRead is how many bytes it has read from the
// source so far, safe to call while the stream is read. A stream without
// it is the source's own bytes as they arrive (a vSphere NFC download):
// what is read of it is what was read from the source.
type ReadCounter interface {
	BytesRead() int64
}

// CheckOpen is the check every Export.Open starts with: the export of
// checkpoint must still be open and have disk i of its n.
func CheckOpen(checkpoint string, closed bool, i, n int) error {
	if closed {
		return fmt.Errorf("open disk %d of checkpoint %q: the export is closed", i, checkpoint)
	}
	if i < 0 || i >= n {
		return fmt.Errorf("open disk %d of checkpoint %q: it has %d disks", i, checkpoint, n)
	}
	return nil
}

// ExportDisk describes one disk stream of an export.
type ExportDisk struct {
	Disk
	// Format of the stream: VMDK (streamOptimized) for vSphere, VHD/VHDX for
	// Hyper-V, Raw for page blobs.
	Format disk.Format `json:"format"`
	// Size of the stream in bytes when known in advance, else -1.
	StreamSize int64 `json:"streamSize"`
	// Extents allocated in the virtual disk where the source knows them.
	Extents []disk.Extent `json:"extents,omitempty"`
}

// Paced is the optional capability of a disk stream (from Export.Open)
// that the connector encodes itself (Hyper-V, Azure): Pacing says how the
// image is being encoded and the rates the choice was made on, so far. It
// may be called while the stream is read and after it is closed.
type Paced interface {
	Pacing() disk.Pacing
}

// ExportAborter is the optional capability of sources whose exports hold a
// server-side resource (Export.ID is not empty): it aborts the export id of
// checkpoint cp that a crashed process left open. Aborting an export that
// has ended or is gone is not an error; a source that cannot be reached
// wraps ErrUnreachable.
type ExportAborter interface {
	AbortExport(ctx context.Context, cp Checkpoint, id string) error
}

// Incremental replication: a seed run copies each disk whole; every later
// run copies only what changed since the run before. The capabilities below
// say what changed and read those areas; the caller (the replication run)
// keeps the change ids between runs, in its ledger.
//
// The life of one tracked VM, as a caller drives it:
//
//	EnableTracking(vm)                      once, when the job is created or turned incremental
//	cp := Checkpoint(vm, "rehost-<run>")    every run
//	for each disk: ChangedAreas(cp, {Disk, Since: ids[disk]}) → areas to read
//	               OpenDisk(cp, disk).ReadAt(those areas)
//	base := Keep(cp)                        instead of Release: cp becomes the next run's base
//	record base.ChangeIDs; Release(previous base)
//
// A disk whose change id is refused (ErrResync) or that has none yet is read
// whole: ChangedAreas with Since "" lists its allocated areas.

// ErrNoTracking is wrapped by EnableTracking (and ChangedAreas) when the VM
// cannot have change tracking, with the reason: the user lacks the
// privilege (the error then wraps ErrAuth too), the VM's hardware or
// configuration version is too old, the manager offers none. The job then
// copies the VM whole every run and shows why. Permanent until the user
// acts on the reason.
var ErrNoTracking = errors.New("change tracking unavailable")

// ErrResync is wrapped (through a *ResyncError) by ChangedAreas when the
// change id it was given no longer describes the disk: tracking was reset
// (a storage vMotion, a CBT reset, a revert, a restore), the base the id
// names is gone, or the disk shrank. The caller copies that disk whole
// (Since "") and records the reason in the run. Not worth retrying.
var ErrResync = errors.New("changes since the last run are unknown")

// ResyncError says why a disk's changes cannot be had and it must be
// copied whole. It wraps ErrResync.
type ResyncError struct {
	Disk   string // disk key
	Since  string // the refused change id
	Reason string // for the user: what happened to the tracking
}

func (e *ResyncError) Error() string {
	return fmt.Sprintf("disk %s: changes since the last run are unknown (%s); the disk is copied whole", e.Disk, e.Reason)
}

func (e *ResyncError) Unwrap() error { return ErrResync }

// ChangeQuery asks for the changed areas of one disk of a checkpoint.
type ChangeQuery struct {
	// Disk is the disk's key (Disk.Key).
	Disk string
	// Since is a change id a Keep returned for this disk; "" asks for every
	// allocated area (a seed, or a resync).
	Since string
	// From is the offset to start at, rounded down to 512 bytes: areas, or
	// parts of them, before it are not returned (a resumed run). 0 for the
	// whole disk.
	From int64
}

// Changes is the answer of ChangedAreas.
type Changes struct {
	// Capacity is the disk's size at the checkpoint. PreviousCapacity is its
	// size at the base Since names (0 when Since is ""): a larger Capacity
	// means the disk grew, and the written parts of the new tail are among
	// the areas (the rest of it reads as zeros).
	Capacity, PreviousCapacity int64
	// Areas streams the areas page by page.
	Areas Areas
}

// Areas is a stream of disk areas read from the source a page at a time,
// so that the map of a 2 TiB disk is never held whole.
type Areas interface {
	// Next returns the next page: areas in ascending order, each starting
	// at or after the end of the one before (across pages too), 512-byte
	// aligned, within [From, Capacity) (From rounded down to 512 bytes).
	// A page holds a bounded number of areas and may be empty. After the
	// last page Next returns nil, io.EOF. A failed page may be asked for
	// again (Next retries the same page); ctx bounds the call. Next is
	// not safe for concurrent use.
	Next(ctx context.Context) ([]disk.Extent, error)
}

// Base is a checkpoint Keep made the base of later queries.
type Base struct {
	// Checkpoint is what the base holds on the source (Base set): an Azure
	// incremental snapshot set, a Hyper-V reference point. Release removes
	// it; Checkpoints lists it. Its ID is "" where the base holds nothing
	// (vSphere: the change ids live on the disks).
	Checkpoint Checkpoint
	// ChangeIDs are the change ids of the checkpoint's disks by disk key,
	// for ChangeQuery.Since of the next run. Opaque to the caller.
	ChangeIDs map[string]string
}

// ChangeTracker is the optional capability of incremental replication:
// what changed in each disk between two checkpoints.
type ChangeTracker interface {
	// EnableTracking turns change tracking on for the VM where it must be
	// turned on (vSphere CBT; Hyper-V RCT and Azure incremental snapshots
	// need nothing) and checks that the VM can have it. It is idempotent:
	// a VM that tracks already is left alone. Tracking covers what is
	// written after the call; the next checkpoint's ChangedAreas with
	// Since "" is the seed. An error wrapping ErrNoTracking says why the VM
	// cannot be tracked; other errors are the usual classes.
	EnableTracking(ctx context.Context, vmID string) error
	// ChangedAreas streams the areas of disk q.Disk of checkpoint cp that
	// changed since change id q.Since (every allocated area when Since is
	// ""). Bytes outside the areas are those of the base (or zeros, for
	// Since ""). The areas may cover more than was written (the source's
	// tracking granularity), never less. A refused change id wraps
	// ErrResync (a *ResyncError with the reason); an unknown checkpoint or
	// disk wraps ErrNotFound; a VM whose tracking is off wraps
	// ErrNoTracking. It reads no disk content and changes nothing.
	ChangedAreas(ctx context.Context, cp Checkpoint, q ChangeQuery) (Changes, error)
	// Keep replaces Release for a tracked run: it makes cp the base that
	// later ChangedAreas calls diff against and releases what cp holds
	// beyond that (vSphere removes the snapshot, the change ids outlive
	// it; Hyper-V converts the recovery checkpoint into a reference point;
	// Azure keeps the incremental snapshots and revokes their read grants).
	// The caller records the result before anything else. Called again for
	// a cp already kept, it returns the same Base, except on vSphere once
	// the snapshot is gone (and on Hyper-V where the host does not name
	// the reference point after the checkpoint): then it wraps ErrNotFound
	// and the next run copies the disks whole. A cp whose VM is gone wraps
	// ErrNotFound; one that cannot become a base (on Hyper-V, a checkpoint
	// taken while the VM could not be tracked is not a recovery one) wraps
	// ErrNoTracking.
	Keep(ctx context.Context, cp Checkpoint) (Base, error)
}

// CheckpointReader is the optional capability of reading a checkpoint's disks at
// any offset, as raw bytes: an incremental run reads only the changed
// areas, a seed the allocated ones, without the stream of a whole disk
// that Export is.
type CheckpointReader interface {
	// OpenDisk opens disk diskKey of checkpoint cp as it was at the
	// checkpoint (later writes never show). ReadAt is safe for concurrent
	// use and follows io.ReaderAt (io.EOF at Size); ctx bounds every read
	// and the open itself. Close releases what the reads hold of their own
	// (files, a session) and is safe to call more than once; a read grant
	// on the checkpoint (Azure) ends with its Keep or Release. Open the
	// disks before Keep: Keep ends the checkpoint. An unknown
	// checkpoint or disk wraps ErrNotFound; a disk the source cannot read
	// at random (a vSphere disk on a chain of older snapshots) wraps
	// errors.ErrUnsupported with the reason, and the caller falls back to
	// Export.
	OpenDisk(ctx context.Context, cp Checkpoint, diskKey string) (DiskData, error)
}

// DiskData is one disk of a checkpoint opened by OpenDisk.
type DiskData interface {
	io.ReaderAt
	// Size is the disk's capacity in bytes.
	Size() int64
	Close() error
}

type tagsKey struct{}

// WithTags returns ctx carrying the tags (the job and run ids, as the
// replication run names them) a source should put on what it creates for
// the call, where its platform has tags (Azure snapshots).
func WithTags(ctx context.Context, tags map[string]string) context.Context {
	return context.WithValue(ctx, tagsKey{}, tags)
}

// Tags returns the tags ctx carries (nil for none).
func Tags(ctx context.Context) map[string]string {
	t, _ := ctx.Value(tagsKey{}).(map[string]string)
	return t
}
