// Package hyperv is the Hyper-V source: standalone hosts (Windows Server
// 2012 R2 and later), failover cluster nodes, and SCVMM.
//
// From the Linux appliance it drives the host (or the SCVMM server) over
// WinRM — HTTPS on 5986 by default, NTLM or Kerberos, Basic only over TLS,
// the certificate pinned by thumbprint or checked against a CA — running a
// fixed set of PowerShell scripts (scripts/*.ps1) that answer JSON:
// inventory (Get-VM, Get-VMHardDiskDrive, Get-VHD, Get-VMFirmware,
// Get-VMNetworkAdapter, or Get-SCVirtualMachine), a production checkpoint
// falling back to a standard one (Checkpoint-VM, New-SCVMCheckpoint),
// the checkpoint's disks, and removal (Remove-VMSnapshot,
// Remove-SCVMCheckpoint), found by name after a crash too.
//
// A checkpoint freezes each virtual disk file: the VM writes to a new
// differencing disk from then on. Export reads the frozen file of each disk
// over SMB from the node running the VM (C:\ClusterStorage\… and other
// local paths through the node's admin share or a configured share; UNC
// paths as they are), with its chain of older parents when earlier
// checkpoints exist, and merges the chain in Go (disk.OpenChain): a
// differencing file is never uploaded as it is. Only the chain's allocated
// blocks are read, by random access.
//
// Each disk streams as a streamOptimized VMDK (disk.WriteStreamOptimized),
// not as the VHD/VHDX it is stored in: a merged chain has no file to send,
// the writer reads only allocated blocks and emits sequentially with
// bounded memory (as a multipart upload needs), compresses (less to
// upload), is deterministic (a resumed upload verifies earlier parts), has
// no 2 TiB VHD limit, and VM Import reads it as it reads vSphere's.
//
// On Windows, Config.Transport "wmi" drives the local host through
// root/virtualization/v2 instead and reads the disks from local paths (see
// wmi_windows.go).
package hyperv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/rehost/rehost/pkg/source"
)

// Managers, named as SMS's vmServer.vmManagerType names them.
const (
	ManagerHyperV = "HYPERV-MANAGER"
	ManagerSCVMM  = "SCVMM"
)

// Authentication schemes.
const (
	AuthNTLM     = "ntlm"
	AuthKerberos = "kerberos"
	AuthBasic    = "basic"
)

// Config says how to reach and trust a Hyper-V host or SCVMM server.
type Config struct {
	// Manager is ManagerHyperV (default) or ManagerSCVMM.
	Manager string
	// Endpoint is the host, cluster node or SCVMM server: "hv01",
	// "hv01:5986" or "https://hv01:5986/wsman".
	Endpoint string
	// User is "DOMAIN\user", "user@domain" or a local "user".
	User, Password string
	// Auth is AuthNTLM (default), AuthKerberos or AuthBasic (refused
	// unless over HTTPS, which is the only transport offered).
	Auth     string
	Kerberos Kerberos
	// Thumbprint pins the endpoint's certificate (SHA-1 or SHA-256 hex);
	// CA is a PEM bundle trusted in addition to the system roots;
	// Insecure accepts any certificate (labs only).
	Thumbprint string
	CA         []byte
	Insecure   bool
	// Nodes are per-node settings by node name: the failover cluster's
	// nodes (those with an Address), whose VMs the source follows as they
	// move, and where a node's SMB server is when not at its name.
	Nodes map[string]Node
	// SMBPort is the port of the hosts' SMB servers (default 445).
	SMBPort int
	// Shares map local path prefixes of the hosts to SMB shares; a path
	// under none is read through the node's administrative share (C$).
	Shares []Share
	// Transport is "winrm" (default) or, in a Windows build running on the
	// host itself, "wmi".
	Transport string
	// Timeout bounds connecting, the TLS handshake and each script
	// (default 30 s to connect, 30 min per script).
	Timeout time.Duration
	// AreasPerPage caps the changed areas one script run answers
	// (default 4096), bounding a page of a disk's changes.
	AreasPerPage int
	Log          *slog.Logger
}

// Kerberos configures AuthKerberos.
type Kerberos struct {
	Realm string // default: the domain of User
	// Config is a krb5.conf path (default /etc/krb5.conf).
	Config string
	// SPN defaults to HTTP/<host>.
	SPN string
}

// Node overrides how a cluster node is reached.
type Node struct {
	// Address is host or host:port of the node's WinRM listener (the
	// endpoint's port when none is given); set, it makes the node one of
	// the cluster's, asked for its VMs.
	Address string `json:"address,omitempty"`
	// SMBAddress is host or host:port of its SMB server (default: the
	// node's name and SMBPort).
	SMBAddress string `json:"smbAddress,omitempty"`
	// Thumbprint pins its WinRM certificate.
	Thumbprint string `json:"thumbprint,omitempty"`
}

// Share maps a host path prefix to an SMB share.
type Share struct {
	// Prefix is a local path on the hosts, e.g. C:\ClusterStorage\Volume1.
	Prefix string `json:"prefix"`
	// Share is "\\server\share", or "share" for a share of the node that
	// runs the VM.
	Share string `json:"share"`
}

// clustered reports whether nodes other than the endpoint run VMs.
func (c Config) clustered() bool {
	for _, n := range c.Nodes {
		if n.Address != "" {
			return true
		}
	}
	return false
}

// control is how a source drives its manager; the WinRM scripts (Hyper-V,
// SCVMM) and WMI implement it.
type control interface {
	// inventory lists every VM, or the one vmID names.
	inventory(ctx context.Context, vmID string) ([]hostVM, error)
	checkpoint(ctx context.Context, vmID, name string) (psSnapshot, error)
	// rctCheckpoint takes a recovery checkpoint (configuration version
	// 6.2 or later), which keep can turn into a reference point.
	rctCheckpoint(ctx context.Context, vmID, name string) (psSnapshot, error)
	// checkpoints lists checkpoints and reference points (Base) whose
	// name starts with prefix.
	checkpoints(ctx context.Context, vmID, prefix string) ([]psSnapshot, error)
	// remove deletes checkpoint id of the VM, or those named name when id
	// is empty; gone is not an error.
	remove(ctx context.Context, vmID, id, name string) error
	// export describes the disks a checkpoint froze and the node running
	// the VM now.
	export(ctx context.Context, vmID, id string) (hostExport, error)
	// changes pages through the areas of disk ("scsi0:1") of checkpoint
	// id that changed since the resilient change tracking id since, from
	// offset, at most limit areas.
	changes(ctx context.Context, vmID, id, disk, since string, offset int64, limit int) (rctPage, error)
	// keep turns recovery checkpoint id into a reference point, or finds
	// the reference point named name that it became.
	keep(ctx context.Context, vmID, id, name string) (refPoint, error)
	// forget destroys reference point id, or those named name when id is
	// empty; gone is not an error.
	forget(ctx context.Context, vmID, id, name string) error
	close() error
}

// hostExport is a checkpoint's frozen disks.
type hostExport struct {
	Host   string
	Status string
	Disks  []hostDisk
}

// files opens a host's files for random access.
type files interface {
	open(ctx context.Context, node, path string) (file, error)
	close() error
}

type file interface {
	ReadAt(p []byte, off int64) (int, error)
	Size() int64
	Close() error
}

// Source is a connected Hyper-V host, cluster or SCVMM server. Its methods
// are safe for concurrent use.
type Source struct {
	cfg   Config
	ctl   control
	files func() files // a fresh SMB (or local) client per export
	log   *slog.Logger
}

var _ source.Source = (*Source)(nil)

// New connects: it runs the inventory of one VM, so bad credentials or an
// untrusted certificate are reported now. Errors wrap source.ErrAuth,
// ErrUnreachable or ErrCertificate where they apply; a *CertificateError carries
// the thumbprint the server presented.
func New(ctx context.Context, cfg Config) (*Source, error) {
	if cfg.Manager == "" {
		cfg.Manager = ManagerHyperV
	}
	if cfg.Manager != ManagerHyperV && cfg.Manager != ManagerSCVMM {
		return nil, fmt.Errorf("hyper-v source: manager %q is neither %s nor %s", cfg.Manager, ManagerHyperV, ManagerSCVMM)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.SMBPort == 0 {
		cfg.SMBPort = 445
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Source{cfg: cfg, log: cfg.Log}
	var err error
	switch cfg.Transport {
	case "", "winrm":
		s.ctl, err = newScriptControl(cfg)
		s.files = func() files { return newSMB(cfg) }
	case "wmi":
		s.ctl, s.files, err = newWMI(cfg)
	default:
		err = fmt.Errorf("transport %q is neither winrm nor wmi", cfg.Transport)
	}
	if err != nil {
		return nil, fmt.Errorf("hyper-v source %s: %w", cfg.Endpoint, err)
	}
	if _, err := s.ctl.inventory(ctx, probeID); err != nil && !errors.Is(err, source.ErrNotFound) {
		s.ctl.close()
		return nil, fmt.Errorf("connect to %s %s: %w", managerName(cfg.Manager), cfg.Endpoint, err)
	}
	return s, nil
}

// probeID names no VM: New's inventory of it checks the connection,
// credentials and rights cheaply.
const probeID = "00000000-0000-0000-0000-000000000000"

func managerName(m string) string {
	if m == ManagerSCVMM {
		return "scvmm server"
	}
	return "hyper-v host"
}

// Close releases the connections.
func (s *Source) Close() error { return s.ctl.close() }

var guidID = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// checkID refuses what cannot be a VM id before it reaches a script.
func checkID(id string) error {
	if !guidID.MatchString(id) {
		return fmt.Errorf("vm id %q is not a GUID: %w", id, source.ErrNotFound)
	}
	return nil
}

// Inventory lists every VM: one script run per node whatever their number.
func (s *Source) Inventory(ctx context.Context) ([]source.VM, error) {
	hvs, err := s.ctl.inventory(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list vms of %s: %w", s.cfg.Endpoint, err)
	}
	out := make([]source.VM, 0, len(hvs))
	for _, h := range hvs {
		out = append(out, s.toVM(h))
	}
	return out, nil
}

var _ source.Fingerprinter = (*Source)(nil)

// digester is the optional capability of a control with a light listing.
type digester interface {
	digests(ctx context.Context) (map[string]string, error)
}

// Fingerprints implements source.Fingerprinter with one light script per
// node (hv-digest): no disk chain read, no KVP item parsed. A disk resized
// in place, the guest OS's name and secure boot settings are not in it.
// Through SCVMM, or WMI, it is errors.ErrUnsupported.
func (s *Source) Fingerprints(ctx context.Context) (map[string]string, error) {
	d, ok := s.ctl.(digester)
	if !ok {
		return nil, fmt.Errorf("list vm fingerprints of %s: %w", s.cfg.Endpoint, errors.ErrUnsupported)
	}
	out, err := d.digests(ctx)
	if err != nil {
		return nil, fmt.Errorf("list vm fingerprints of %s: %w", s.cfg.Endpoint, err)
	}
	return out, nil
}

// toVM is the inventory entry of a VM, with whether its changes are
// tracked.
func (s *Source) toVM(h hostVM) source.VM {
	v := h.vm(s.cfg.Manager, s.endpointHost())
	v.CBTEnabled = s.rctRefusal(h) == ""
	return v
}

// VM returns one VM; an unknown id wraps source.ErrNotFound.
func (s *Source) VM(ctx context.Context, id string) (source.VM, error) {
	h, err := s.hostVM(ctx, id)
	if err != nil {
		return source.VM{}, err
	}
	return s.toVM(h), nil
}

func (s *Source) hostVM(ctx context.Context, id string) (hostVM, error) {
	if err := checkID(id); err != nil {
		return hostVM{}, err
	}
	hvs, err := s.ctl.inventory(ctx, id)
	if err != nil {
		return hostVM{}, fmt.Errorf("read vm %s: %w", id, err)
	}
	for _, h := range hvs {
		if strings.EqualFold(h.ID, id) {
			return h, nil
		}
	}
	return hostVM{}, fmt.Errorf("vm %s: %w", id, source.ErrNotFound)
}

func (s *Source) endpointHost() string {
	h := strings.TrimPrefix(strings.TrimPrefix(s.cfg.Endpoint, "https://"), "http://")
	h, _, _ = strings.Cut(h, "/")
	if i := strings.LastIndex(h, ":"); i > 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	return h
}

// Checkpoint takes a production checkpoint named name (application
// consistent through VSS or fsfreeze in the guest), falling back to a
// standard one when the guest cannot make it — Checkpoint.Quiesced says
// which. An existing checkpoint of that name is returned as is. VMs with a
// pass-through or shared disk, checkpoints disabled, or a merge in progress
// are refused with the reason.
func (s *Source) Checkpoint(ctx context.Context, vmID, name string) (source.Checkpoint, error) {
	if name == "" {
		return source.Checkpoint{}, fmt.Errorf("checkpoint vm %s: empty checkpoint name", vmID)
	}
	if err := checkID(vmID); err != nil {
		return source.Checkpoint{}, fmt.Errorf("checkpoint: %w", err)
	}
	snap, err := s.checkpoint(ctx, vmID, name)
	if err != nil {
		return source.Checkpoint{}, fmt.Errorf("checkpoint vm %s as %q: %w", vmID, name, explain(err))
	}
	if snap.Fallback != "" {
		s.log.Warn("production checkpoint failed; took a standard (crash-consistent) one", "vm", vmID, "checkpoint", name, "reason", string(snap.Fallback))
	}
	return snap.checkpoint(vmID), nil
}

// checkpoint takes a recovery checkpoint of a VM whose changes Hyper-V
// tracks (so that Keep can make it a reference point), Checkpoint-VM's
// otherwise. What the VM's disks forbid is refused first, from the
// inventory.
func (s *Source) checkpoint(ctx context.Context, vmID, name string) (psSnapshot, error) {
	if s.cfg.Manager != ManagerHyperV {
		return s.ctl.checkpoint(ctx, vmID, name)
	}
	h, err := s.hostVM(ctx, vmID)
	if err != nil {
		return psSnapshot{}, err
	}
	if s.rctRefusal(h) != "" {
		return s.ctl.checkpoint(ctx, vmID, name)
	}
	if err := refuse(h); err != nil {
		return psSnapshot{}, err
	}
	return s.ctl.rctCheckpoint(ctx, vmID, name)
}

// checkpoint turns a script's snapshot into the source's. A production
// checkpoint holds no memory state, so Hyper-V reports it Off although
// the VM runs; a standard one of a running VM is Running. A recovery
// checkpoint never holds memory: its script says whether it is
// application consistent.
func (p psSnapshot) checkpoint(vmID string) source.Checkpoint {
	quiesced := bool(p.Production) || (p.State == "Off" && p.VMState != "" && p.VMState != "Off" && p.SnapshotType != "Recovery")
	id := string(p.ID)
	if !p.Base {
		id = strings.ToLower(id)
	}
	return source.Checkpoint{VMID: vmID, ID: id, Name: string(p.Name), Quiesced: quiesced && !bool(p.Base), Base: bool(p.Base)}
}

// refuse is what the checkpoint scripts refuse, from the inventory: a
// merge under way, a pass-through or shared disk.
func refuse(h hostVM) error {
	if strings.Contains(h.Status, "Merg") {
		return &ScriptError{Category: "ResourceBusy", ID: "RehostMergeInProgress", Message: "a checkpoint merge is in progress (" + h.Status + ")"}
	}
	for _, d := range h.Disks {
		if d.PassThru != "" {
			return &ScriptError{Category: "InvalidOperation", ID: "RehostPassThroughDisk", Message: fmt.Sprintf("disk %s is a pass-through disk (%s)", d.Controller, d.PassThru)}
		}
		if d.Shared {
			return &ScriptError{Category: "InvalidOperation", ID: "RehostSharedDisk", Message: fmt.Sprintf("disk %s (%s) is a shared virtual disk", d.Controller, d.Path)}
		}
	}
	return nil
}

// explain words rehost's own refusals with what to do.
func explain(err error) error {
	var se *ScriptError
	if !errors.As(err, &se) {
		return err
	}
	switch se.refusal() {
	case "RehostPassThroughDisk":
		return fmt.Errorf("%w: a pass-through disk cannot be checkpointed or copied; move its data to a virtual disk, or detach it before replicating", err)
	case "RehostSharedDisk":
		return fmt.Errorf("%w: shared virtual disks (guest clusters) are left out of checkpoints by Hyper-V and cannot be copied consistently; replicate the VM without it", err)
	case "RehostMergeInProgress":
		return fmt.Errorf("%w: retry when Hyper-V has finished merging (the next run does)", err)
	case "RehostCheckpointsDisabled":
		return fmt.Errorf("%w: enable production or standard checkpoints in the VM's settings", err)
	}
	return err
}

// Checkpoints lists the VM's checkpoints whose name starts with prefix.
func (s *Source) Checkpoints(ctx context.Context, vmID, prefix string) ([]source.Checkpoint, error) {
	if err := checkID(vmID); err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	snaps, err := s.ctl.checkpoints(ctx, vmID, prefix)
	if err != nil {
		return nil, fmt.Errorf("list checkpoints of vm %s: %w", vmID, err)
	}
	out := []source.Checkpoint{}
	for _, p := range snaps {
		if strings.HasPrefix(string(p.Name), prefix) {
			out = append(out, p.checkpoint(vmID))
		}
	}
	return out, nil
}

// Release removes the checkpoint (its differencing disks merge into their
// parents), or the reference point a kept one became; by name when its id
// was never recorded. A checkpoint or VM already gone is not an error.
func (s *Source) Release(ctx context.Context, cp source.Checkpoint) error {
	if checkID(cp.VMID) != nil {
		return nil
	}
	if cp.Base {
		if err := s.ctl.forget(ctx, cp.VMID, cp.ID, cp.Name); err != nil && !errors.Is(err, source.ErrNotFound) {
			return fmt.Errorf("remove reference point %q of vm %s: %w", cp.Name, cp.VMID, err)
		}
		return nil
	}
	if err := s.ctl.remove(ctx, cp.VMID, cp.ID, cp.Name); err != nil && !errors.Is(err, source.ErrNotFound) {
		return fmt.Errorf("remove checkpoint %q of vm %s: %w", cp.Name, cp.VMID, err)
	}
	return nil
}

// chainOrder checks a frozen disk's chain (newest first) and returns it
// base first.
func chainOrder(d hostDisk) ([]vhdFile, error) {
	if d.PassThru != "" {
		return nil, fmt.Errorf("disk %s is a pass-through disk (%s), which cannot be copied", d.Controller, d.PassThru)
	}
	if len(d.Chain) == 0 {
		return nil, fmt.Errorf("disk %s (%s): the host described no virtual disk file", d.Controller, d.Path)
	}
	out := make([]vhdFile, len(d.Chain))
	for i, f := range d.Chain {
		out[len(d.Chain)-1-i] = f
		switch {
		case f.Format == "VHDSET" || strings.HasSuffix(strings.ToLower(f.Path), ".vhds"):
			return nil, fmt.Errorf("disk %s (%s) is a VHD Set (shared disk), which cannot be copied", d.Controller, f.Path)
		case f.Format != "VHD" && f.Format != "VHDX":
			return nil, fmt.Errorf("disk %s: %s is a %q file, neither VHD nor VHDX", d.Controller, f.Path, f.Format)
		case i < len(d.Chain)-1 && f.Type != "Differencing":
			return nil, fmt.Errorf("disk %s: %s has a parent but is %q, not differencing", d.Controller, f.Path, f.Type)
		case i == len(d.Chain)-1 && f.Type == "Differencing":
			return nil, fmt.Errorf("disk %s: the chain of %s ends at %s, a differencing disk whose parent %q was not found", d.Controller, d.Path, f.Path, f.Parent)
		}
	}
	return out, nil
}
