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
	CBTEnabled   bool   `json:"cbtEnabled"`
	Disks        []Disk `json:"disks"`
	NICs         []NIC  `json:"nics"`
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
}

// Source is a hypervisor rehost replicates from.
type Source interface {
	// Inventory lists every VM. It costs a bounded number of round trips
	// whatever the number of VMs.
	Inventory(ctx context.Context) ([]VM, error)
	// VM returns one VM by id; an unknown id wraps ErrNotFound.
	VM(ctx context.Context, id string) (VM, error)
	// Checkpoint creates a checkpoint named name of the VM. It is idempotent: if
	// a checkpoint with that name exists, it is returned and none is created.
	// Quiesced when the guest supports it, crash-consistent otherwise.
	Checkpoint(ctx context.Context, vmID, name string) (Checkpoint, error)
	// Checkpoints lists the VM's checkpoints whose name starts with prefix, so
	// leftovers of a crashed run can be found and released.
	Checkpoints(ctx context.Context, vmID, prefix string) ([]Checkpoint, error)
	// Release removes a checkpoint. Releasing one that is already gone is not
	// an error.
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

// ExportAborter is the optional capability of sources whose exports hold a
// server-side resource (Export.ID is not empty): it aborts the export id of
// checkpoint cp that a crashed process left open. Aborting an export that
// has ended or is gone is not an error; a source that cannot be reached
// wraps ErrUnreachable.
type ExportAborter interface {
	AbortExport(ctx context.Context, cp Checkpoint, id string) error
}

// ChangeTracker is the optional capability of incremental replication: the
// ranges that changed between two checkpoints.
type ChangeTracker interface {
	// ChangedAreas returns the extents of disk diskKey that changed since the
	// change id since ("*" for every allocated extent) as of checkpoint cp,
	// and the change id to pass next time.
	ChangedAreas(ctx context.Context, cp Checkpoint, diskKey, since string) (extents []disk.Extent, changeID string, err error)
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
