// Package vspheresim is a vCenter for tests and the demo: govmomi's simulator
// (the VPX model, over real SOAP and HTTPS) extended with what rehost needs
// and the simulator lacks or fakes:
//
//   - disks with real content, kept in sparse files (WriteDisk seeds them);
//   - point-in-time snapshots: CreateSnapshot copies the written extents of
//     every disk, so later writes do not show in the snapshot;
//   - VirtualMachineSnapshot.ExportSnapshot and VirtualMachine.ExportVm
//     handing out an NFC lease whose device URLs stream each disk as a
//     streamOptimized VMDK generated on the fly;
//   - QueryChangedDiskAreas with change ids, from the ranges written between
//     snapshots;
//   - inspection for leak checks (snapshots per VM, open NFC leases; also as
//     JSON at /_vcenter/state for other processes) and fault injection (cut
//     an export stream after n bytes);
//   - changed block tracking turned on by ReconfigVM_Task (in effect at the
//     next stun), reset and resized disks on request (cbt.go), and each
//     VM's datastore folder served for ranged reads of the base disk a
//     snapshot froze;
//   - blocks written into a VM's disk on request while it runs, at
//     /_vcenter/write (internal/lab/diskwrite), for incremental runs by
//     hand;
//   - sessions whose logout ends their NFC downloads.
//
// VMs other than those the Options create (none by default) keep the plain
// simulator behaviour.
package vspheresim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/rehost/rehost/internal/lab/diskwrite"
)

// DiskSpec describes one virtual disk of a simulated VM.
type DiskSpec struct {
	CapacityBytes int64
	// Seed, when set, writes the disk's initial content at Start. Its writes
	// go through the disk like WriteDisk's, so they count as allocated.
	Seed func(w io.WriterAt) error
	// Mode is the disk's vSphere disk mode ("independent_persistent",
	// "independent_nonpersistent"); default persistent.
	Mode string
	// PhysicalRDM backs the disk with a physical-mode raw device mapping
	// of this LUN ("naa.600…") instead of a VMDK.
	PhysicalRDM string
	// MultiWriter shares the disk with other VMs (sharingMultiWriter).
	MultiWriter bool
}

// VMSpec describes a simulated VM.
type VMSpec struct {
	Name      string
	Firmware  string // "bios" (default) or "efi"
	GuestID   string // vSphere guest id; default "otherGuest64"
	CPUs      int    // default 1
	MemoryMiB int64  // default 1024
	Disks     []DiskSpec
	// NICs is the number of vmxnet3 adapters on "VM Network"; default 1.
	NICs         int
	PowerOn      bool
	ToolsRunning bool
	CBT          bool
	// InstanceUUID is config.instanceUuid; default a new one. A VM
	// registered again (after RemoveVM) with its old UUID is the same VM
	// to its clients.
	InstanceUUID string

	// What preflight reads, beyond the above.

	// HardwareVersion is config.version ("vmx-04"); default the simulator's. CBT needs vmx-07 or later.
	HardwareVersion string
	// GuestDetailedData is what VMware Tools 11.2+ report of the guest
	// (guest.guestDetailedData, vSphere 8.0.2), e.g. "distroName='Ubuntu'
	// distroVersion='22.04' prettyName='Ubuntu 22.04.3 LTS'".
	GuestDetailedData string
	// Snapshots the VM already has when Start returns (a chain, named
	// "user-snapshot-N", of the seeded content).
	Snapshots int
	// Encrypted sets config.keyId, as vSphere VM encryption does.
	Encrypted bool
}

// Options configure Start.
type Options struct {
	VMs []VMSpec
	// Dir holds the disk content (sparse files) and the TLS key pair; a
	// temporary directory removed by Close when empty. With a Dir, the key
	// pair is kept across restarts so the thumbprint a user accepted stays
	// valid; the VMs and their content are created afresh on each Start.
	Dir string
	// Listen is the TCP address to serve HTTPS on; default "127.0.0.1:0".
	Listen string
	// User and Password are the only credentials accepted; default
	// "administrator@vsphere.local" and a random password.
	User, Password string
	// Certificate is served instead of a generated self-signed one.
	Certificate *tls.Certificate
	// LeaseTimeout is how long an export lease lives without a
	// HttpNfcLeaseProgress call before it expires, cutting its streams, as
	// vCenter's leases do; default 5 minutes.
	LeaseTimeout time.Duration
	// MaxChangedAreas caps the extents one QueryChangedDiskAreas answer
	// carries, as vCenter does, so clients must page; default 256.
	MaxChangedAreas int
	// PlainVMs is how many plain simulator VMs (one 10 GB disk, one NIC,
	// powered off) the model creates besides VMs, for inventories at
	// scale: half under the standalone host, half in the cluster (an odd
	// count is rounded up).
	PlainVMs int
	// PlainFolders spreads the plain VMs over this many folders of the
	// datacenter's VM folder, "/DC0/vm/plain-000" on, in turn; default
	// none (they stay in /DC0/vm).
	PlainFolders int
}

// Sim is a running simulated vCenter.
type Sim struct {
	opts   Options
	model  *simulator.Model
	server *simulator.Server
	client *vim25.Client // in-process, for setup and inspection
	place  placement
	dir    string
	ownDir bool
	leaf   *x509.Certificate

	mu       sync.Mutex
	vms      map[string]*vmState // by name
	byRef    map[types.ManagedObjectReference]*vmState
	snaps    map[types.ManagedObjectReference]*snapState
	leases   map[string]*lease // open leases by moref value
	sessions []*simulator.Registry
	// sessionKeys are the session cookies of logins; NFC downloads must
	// carry one, as vCenter's do.
	sessionKeys map[string]bool
	// folders are the VM names whose datastore folder is served.
	folders map[string]bool
	// lostVersion: the next WaitForUpdatesEx from a version fails.
	lostVersion bool
	completed   int
	aborted     int
	expired     int
	stop        chan struct{}
	stopOnce    sync.Once
	faults      []*fault
	seq         int
}

type vmState struct {
	name  string
	ref   types.ManagedObjectReference
	dir   string
	disks []*diskState

	// Guarded by Sim.mu: CBT in effect; turned on but waiting for a stun
	// (the next snapshot) to take effect; the next toggle refused for want
	// of the privilege.
	cbt, cbtPending, denyCBT bool
}

type snapState struct {
	vm        *vmState
	seq       int // order of creation
	ref       types.ManagedObjectReference
	cbt       bool
	disks     []*content
	epochs    []int
	cbtIDs    []string
	changeIDs []string
}

type fault struct {
	vm    string
	disk  int
	after int64
}

// Start creates the inventory and serves it until Close.
func Start(ctx context.Context, o Options) (*Sim, error) {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.User == "" {
		o.User = "administrator@vsphere.local"
	}
	if o.Password == "" {
		o.Password = RandomPassword()
	}
	if o.LeaseTimeout <= 0 {
		o.LeaseTimeout = 5 * time.Minute
	}
	if o.MaxChangedAreas <= 0 {
		o.MaxChangedAreas = 256
	}
	s := &Sim{
		opts:   o,
		vms:    map[string]*vmState{},
		byRef:  map[types.ManagedObjectReference]*vmState{},
		snaps:  map[types.ManagedObjectReference]*snapState{},
		leases: map[string]*lease{},
		stop:   make(chan struct{}),

		sessionKeys: map[string]bool{},
		folders:     map[string]bool{},
	}
	s.dir = o.Dir
	if s.dir == "" {
		d, err := os.MkdirTemp("", "vspheresim-")
		if err != nil {
			return nil, fmt.Errorf("start vcenter simulator: %w", err)
		}
		s.dir, s.ownDir = d, true
	} else if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("start vcenter simulator: %w", err)
	}
	if err := s.start(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("start vcenter simulator: %w", err)
	}
	return s, nil
}

func (s *Sim) start(ctx context.Context) error {
	cert := s.opts.Certificate
	if cert == nil {
		c, err := loadOrCreateCert(s.dir, s.opts.Listen)
		if err != nil {
			return err
		}
		cert = &c
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("parse certificate: %w", err)
	}
	s.leaf = leaf

	m := simulator.VPX()
	m.Machine = (s.opts.PlainVMs + 1) / 2
	m.Autostart = false
	if err := m.Create(); err != nil {
		return fmt.Errorf("create inventory: %w", err)
	}
	s.model = m
	m.Service.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	m.Service.Listen = &url.URL{Host: s.opts.Listen, User: url.UserPassword(s.opts.User, s.opts.Password)}
	m.Service.HandleFunc(nfcPath, s.serveNFC)
	m.Service.HandleFunc(statePath, s.serveState)
	m.Service.HandleFunc(writePath, diskwrite.Handler(s.opts.User, s.opts.Password, s.writable).ServeHTTP)
	m.Map().Handler = s.intercept

	c, err := vim25.NewClient(ctx, m.Service)
	if err != nil {
		return fmt.Errorf("in-process client: %w", err)
	}
	s.client = c
	if err := s.findPlacement(ctx); err != nil {
		return fmt.Errorf("find where to place vms: %w", err)
	}
	if err := s.spreadPlain(ctx); err != nil {
		return fmt.Errorf("spread the plain vms over folders: %w", err)
	}
	seen := map[string]bool{}
	for _, spec := range s.opts.VMs {
		if seen[spec.Name] {
			return fmt.Errorf("create vm %q: duplicate name", spec.Name)
		}
		seen[spec.Name] = true
	}
	// One at a time: the simulator's VM creation is not safe to run
	// concurrently (it shares device defaults between VMs).
	for _, spec := range s.opts.VMs {
		if err := s.createVM(ctx, spec); err != nil {
			return fmt.Errorf("create vm %q: %w", spec.Name, err)
		}
	}
	s.server = m.Service.NewServer()
	go s.expireLeases()
	return nil
}

// URL is the SDK endpoint, e.g. https://127.0.0.1:40123/sdk.
func (s *Sim) URL() string {
	u := *s.server.URL
	u.User = nil
	return u.String()
}

// User and Password are the accepted credentials.
func (s *Sim) User() string     { return s.opts.User }
func (s *Sim) Password() string { return s.opts.Password }

// Thumbprint is the SHA-256 thumbprint of the served certificate, as
// colon-separated upper-case hex (the form vCenter shows).
func (s *Sim) Thumbprint() string { return colonHex(sha256Sum(s.leaf.Raw)) }

// ThumbprintSHA1 is the SHA-1 thumbprint, the form older tools use.
func (s *Sim) ThumbprintSHA1() string {
	sum := sha1.Sum(s.leaf.Raw)
	return colonHex(sum[:])
}

// CertificatePEM is the served certificate, for clients that trust it as a CA.
func (s *Sim) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.leaf.Raw})
}

// Model is the underlying govmomi simulator model, for tests that need to
// reach further (fault rules, delays).
func (s *Sim) Model() *simulator.Model { return s.model }

// Close stops serving and removes what Start created on disk (except a
// caller-provided Dir's key pair).
func (s *Sim) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	if s.server != nil {
		s.server.Close()
	}
	if s.model != nil && s.model.Service != nil {
		s.model.Remove()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, vm := range s.vms {
		for _, d := range vm.disks {
			d.live.remove()
		}
		os.Remove(vm.dir)
	}
	for _, sn := range s.snaps {
		for _, c := range sn.disks {
			c.remove()
		}
	}
	s.vms, s.snaps = map[string]*vmState{}, map[types.ManagedObjectReference]*snapState{}
	os.Remove(filepath.Join(s.dir, "snapshots"))
	os.Remove(filepath.Join(s.dir, "disks"))
	if s.ownDir {
		return os.RemoveAll(s.dir)
	}
	return nil
}

type placement struct {
	folders *object.DatacenterFolders
	pool    *object.ResourcePool
	ds      *object.Datastore
}

func (s *Sim) findPlacement(ctx context.Context) error {
	finder := find.NewFinder(s.client, true)
	dc, err := finder.Datacenter(ctx, "DC0")
	if err != nil {
		return err
	}
	finder.SetDatacenter(dc)
	folders, err := dc.Folders(ctx)
	if err != nil {
		return err
	}
	pool, err := finder.ResourcePool(ctx, "DC0_C0/Resources")
	if err != nil {
		return err
	}
	ds, err := finder.Datastore(ctx, "LocalDS_0")
	if err != nil {
		return err
	}
	s.place = placement{folders, pool, ds}
	return nil
}

// spreadPlain moves the plain VMs into Options.PlainFolders folders.
func (s *Sim) spreadPlain(ctx context.Context) error {
	n := s.opts.PlainFolders
	if n <= 0 {
		return nil
	}
	vms, err := s.place.folders.VmFolder.Children(ctx)
	if err != nil {
		return err
	}
	groups := make([][]types.ManagedObjectReference, n)
	for i, vm := range vms {
		groups[i%n] = append(groups[i%n], vm.Reference())
	}
	for i, refs := range groups {
		name := fmt.Sprintf("plain-%03d", i)
		f, err := s.place.folders.VmFolder.CreateFolder(ctx, name)
		if err != nil {
			return err
		}
		t, err := f.MoveInto(ctx, refs)
		if err != nil {
			return err
		}
		if err := s.task(t, "move plain vms into "+name); err != nil {
			return err
		}
	}
	return nil
}

func (s *Sim) createVM(ctx context.Context, spec VMSpec) error {
	if spec.Name == "" || strings.ContainsAny(spec.Name, `/\`) {
		return fmt.Errorf("invalid vm name %q", spec.Name)
	}
	folders, pool, ds := s.place.folders, s.place.pool, s.place.ds

	var devices object.VirtualDeviceList
	ctrl, err := devices.CreateSCSIController("pvscsi")
	if err != nil {
		return err
	}
	devices = append(devices, ctrl)
	for i, d := range spec.Disks {
		if d.CapacityBytes <= 0 || d.CapacityBytes%sector != 0 {
			return fmt.Errorf("disk %d: capacity %d is not a positive multiple of 512", i, d.CapacityBytes)
		}
		vd := devices.CreateDisk(ctrl.(types.BaseVirtualController), ds.Reference(),
			fmt.Sprintf("[LocalDS_0] %s/%s_%d.vmdk", spec.Name, spec.Name, i))
		vd.DeviceInfo = &types.Description{Label: fmt.Sprintf("Hard disk %d", i+1)}
		vd.CapacityInBytes = d.CapacityBytes
		vd.CapacityInKB = d.CapacityBytes / 1024
		devices = append(devices, vd)
	}
	nics := spec.NICs
	if nics == 0 {
		nics = 1
	}
	for n := range nics {
		nic, err := devices.CreateEthernetCard("vmxnet3", &types.VirtualEthernetCardNetworkBackingInfo{
			VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: "VM Network"},
		})
		if err != nil {
			return err
		}
		nic.GetVirtualDevice().DeviceInfo = &types.Description{Label: fmt.Sprintf("Network adapter %d", n+1)}
		devices = append(devices, nic)
	}
	changes, err := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	if err != nil {
		return err
	}
	for _, c := range changes {
		if cs := c.GetVirtualDeviceConfigSpec(); cs != nil {
			if _, ok := cs.Device.(*types.VirtualDisk); ok {
				cs.FileOperation = types.VirtualDeviceConfigSpecFileOperationCreate
			}
		}
	}
	firmware := spec.Firmware
	if firmware == "" {
		firmware = string(types.GuestOsDescriptorFirmwareTypeBios)
	}
	guest := spec.GuestID
	if guest == "" {
		guest = string(types.VirtualMachineGuestOsIdentifierOtherGuest64)
	}
	cpus, mem := spec.CPUs, spec.MemoryMiB
	if cpus == 0 {
		cpus = 1
	}
	if mem == 0 {
		mem = 1024
	}
	cfg := types.VirtualMachineConfigSpec{
		Name:                  spec.Name,
		GuestId:               guest,
		NumCPUs:               int32(cpus),
		MemoryMB:              mem,
		Firmware:              firmware,
		ChangeTrackingEnabled: types.NewBool(spec.CBT),
		Version:               spec.HardwareVersion,
		Files:                 &types.VirtualMachineFileInfo{VmPathName: "[LocalDS_0]"},
		DeviceChange:          changes,
		InstanceUuid:          spec.InstanceUUID,
	}
	task, err := folders.VmFolder.CreateVM(ctx, cfg, pool, nil)
	if err != nil {
		return err
	}
	// Waiting on the simulator's task object directly skips the property
	// collector round trips of task.Wait, which dominate a large start.
	info := s.waitTask(task.Reference())
	if info.Error != nil {
		return fmt.Errorf("%s", info.Error.LocalizedMessage)
	}
	ref := info.Result.(types.ManagedObjectReference)
	if spec.PowerOn {
		t, err := object.NewVirtualMachine(s.client, ref).PowerOn(ctx)
		if err != nil {
			return err
		}
		if info := s.waitTask(t.Reference()); info.Error != nil {
			return fmt.Errorf("power on: %s", info.Error.LocalizedMessage)
		}
	}
	simVM := s.model.Map().Get(ref).(*simulator.VirtualMachine)
	if spec.ToolsRunning {
		s.setTools(simVM, true)
	}

	st := &vmState{name: spec.Name, ref: ref, cbt: spec.CBT, dir: filepath.Join(s.dir, "disks", spec.Name)}
	if err := os.MkdirAll(st.dir, 0o700); err != nil {
		return err
	}
	var vdisks []*types.VirtualDisk
	s.model.Map().WithLock(s.model.Service.Context, simVM, func() {
		for _, d := range object.VirtualDeviceList(simVM.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)) {
			vdisks = append(vdisks, d.(*types.VirtualDisk))
		}
	})
	if len(vdisks) != len(spec.Disks) {
		return fmt.Errorf("simulator made %d disks of %d", len(vdisks), len(spec.Disks))
	}
	for i, vd := range vdisks {
		c, err := newContent(filepath.Join(st.dir, fmt.Sprintf("disk%d.raw", i)), spec.Disks[i].CapacityBytes)
		if err != nil {
			return err
		}
		ds := &diskState{key: vd.Key, label: vd.DeviceInfo.GetDescription().Label, capacity: spec.Disks[i].CapacityBytes, live: c, cbtID: uuid.NewString()}
		st.disks = append(st.disks, ds)
	}
	s.mu.Lock()
	s.vms[spec.Name] = st
	s.byRef[ref] = st
	s.mu.Unlock()
	if spec.CBT {
		s.showChangeIDs(st)
	}
	// Each VM's folder on the datastore, where clients read the disks a
	// snapshot froze; more specific than the simulator's own /folder/.
	s.mu.Lock()
	served := s.folders[spec.Name]
	s.folders[spec.Name] = true
	s.mu.Unlock()
	if !served { // a VM added again under a name used before
		s.model.Service.HandleFunc(folderPrefix+url.PathEscape(spec.Name)+"/", s.serveFolder)
	}
	for i, d := range spec.Disks {
		if d.Seed == nil {
			continue
		}
		if err := d.Seed(diskWriter{st.disks[i]}); err != nil {
			return fmt.Errorf("seed disk %d: %w", i, err)
		}
	}
	s.applyPreflightFacts(spec, simVM)
	for n := range spec.Snapshots {
		t, err := object.NewVirtualMachine(s.client, ref).CreateSnapshot(ctx, fmt.Sprintf("user-snapshot-%d", n+1), "", false, false)
		if err != nil {
			return err
		}
		if info := s.waitTask(t.Reference()); info.Error != nil {
			return fmt.Errorf("snapshot %d: %s", n+1, info.Error.LocalizedMessage)
		}
	}
	return nil
}

// applyPreflightFacts sets what the spec says of the VM beyond what the
// simulator's CreateVM takes: its hardware version, the guest's detailed
// data, encryption, and each disk's mode, sharing and RDM backing.
func (s *Sim) applyPreflightFacts(spec VMSpec, vm *simulator.VirtualMachine) {
	ctx := s.model.Service.Context
	var changes []types.PropertyChange
	if spec.HardwareVersion != "" {
		changes = append(changes, types.PropertyChange{Name: "config.version", Val: spec.HardwareVersion})
	}
	if spec.GuestDetailedData != "" {
		changes = append(changes, types.PropertyChange{Name: "guest.guestDetailedData", Val: spec.GuestDetailedData})
	}
	if spec.Encrypted {
		changes = append(changes, types.PropertyChange{Name: "config.keyId", Val: &types.CryptoKeyId{KeyId: "rehost-sim-key", ProviderId: &types.KeyProviderId{Id: "sim-kms"}}})
	}
	if len(changes) > 0 {
		s.model.Map().AtomicUpdate(ctx, vm, changes)
	}
	s.model.Map().WithLock(ctx, vm, func() {
		disks := object.VirtualDeviceList(vm.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil))
		for i, d := range disks {
			ds, vd := spec.Disks[i], d.(*types.VirtualDisk)
			flat, ok := vd.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			if !ok {
				continue
			}
			if ds.Mode != "" {
				flat.DiskMode = ds.Mode
			}
			if ds.MultiWriter {
				flat.Sharing = string(types.VirtualDiskSharingSharingMultiWriter)
			}
			if ds.PhysicalRDM != "" {
				vd.Backing = &types.VirtualDiskRawDiskMappingVer1BackingInfo{
					VirtualDeviceFileBackingInfo: flat.VirtualDeviceFileBackingInfo,
					LunUuid:                      ds.PhysicalRDM, DeviceName: "/vmfs/devices/disks/" + ds.PhysicalRDM,
					CompatibilityMode: string(types.VirtualDiskCompatibilityModePhysicalMode), DiskMode: flat.DiskMode,
				}
			}
		}
	})
}

func (s *Sim) waitTask(ref types.ManagedObjectReference) types.TaskInfo {
	t := s.model.Map().Get(ref).(*simulator.Task)
	t.Wait()
	var info types.TaskInfo
	s.model.Map().WithLock(s.model.Service.Context, t, func() { info = t.Info })
	return info
}

type diskWriter struct{ d *diskState }

func (w diskWriter) WriteAt(p []byte, off int64) (int, error) {
	if err := w.d.write(p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *Sim) setTools(vm *simulator.VirtualMachine, running bool) {
	status, tools := types.VirtualMachineToolsRunningStatusGuestToolsNotRunning, types.VirtualMachineToolsStatusToolsNotRunning
	if running {
		status, tools = types.VirtualMachineToolsRunningStatusGuestToolsRunning, types.VirtualMachineToolsStatusToolsOk
	}
	ctx := s.model.Service.Context
	s.model.Map().AtomicUpdate(ctx, vm, []types.PropertyChange{
		{Name: "guest.toolsRunningStatus", Val: string(status)},
		{Name: "guest.toolsStatus", Val: tools},
		{Name: "summary.guest.toolsRunningStatus", Val: string(status)},
		{Name: "summary.guest.toolsStatus", Val: tools},
	})
}

func (s *Sim) vm(name string) (*vmState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.vms[name]
	if !ok {
		return nil, fmt.Errorf("vcenter simulator: no vm %q", name)
	}
	return st, nil
}

func (s *Sim) disk(vm string, i int) (*diskState, error) {
	st, err := s.vm(vm)
	if err != nil {
		return nil, err
	}
	if i < 0 || i >= len(st.disks) {
		return nil, fmt.Errorf("vcenter simulator: vm %q has no disk %d (it has %d)", vm, i, len(st.disks))
	}
	return st.disks[i], nil
}

// WriteDisk writes p at off of the live disk i of vm, as the guest would.
func (s *Sim) WriteDisk(vm string, i int, off int64, p []byte) error {
	d, err := s.disk(vm, i)
	if err != nil {
		return err
	}
	if err := d.write(p, off); err != nil {
		return fmt.Errorf("vcenter simulator: write disk %d of %q: %w", i, vm, err)
	}
	return nil
}

// ReadDisk reads the live disk i of vm at off into p.
func (s *Sim) ReadDisk(vm string, i int, off int64, p []byte) (int, error) {
	d, err := s.disk(vm, i)
	if err != nil {
		return 0, err
	}
	v := &sparseView{c: d.live}
	return v.ReadAt(p, off)
}

// DiskCapacity is the capacity in bytes of disk i of vm.
func (s *Sim) DiskCapacity(vm string, i int) (int64, error) {
	d, err := s.disk(vm, i)
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.capacity, nil
}

// InstanceUUID is the instance UUID of vm (config.instanceUuid), the id a
// source reports.
func (s *Sim) InstanceUUID(vm string) (string, error) {
	st, err := s.vm(vm)
	if err != nil {
		return "", err
	}
	simVM := s.model.Map().Get(st.ref).(*simulator.VirtualMachine)
	var id string
	s.model.Map().WithLock(s.model.Service.Context, simVM, func() { id = simVM.Config.InstanceUuid })
	return id, nil
}

// Ref is the managed object reference of vm.
func (s *Sim) Ref(vm string) (types.ManagedObjectReference, error) {
	st, err := s.vm(vm)
	if err != nil {
		return types.ManagedObjectReference{}, err
	}
	return st.ref, nil
}

// SetToolsRunning changes whether VMware Tools run in vm's guest.
func (s *Sim) SetToolsRunning(vm string, running bool) error {
	st, err := s.vm(vm)
	if err != nil {
		return err
	}
	s.setTools(s.model.Map().Get(st.ref).(*simulator.VirtualMachine), running)
	return nil
}

// Snapshots lists the names of vm's snapshots (any VM of the inventory), in
// tree order.
func (s *Sim) Snapshots(vm string) ([]string, error) {
	var found *simulator.VirtualMachine
	for _, e := range s.model.Map().All("VirtualMachine") {
		if v := e.(*simulator.VirtualMachine); entityName(v) == vm {
			found = v
		}
	}
	if found == nil {
		return nil, fmt.Errorf("vcenter simulator: no vm %q", vm)
	}
	var names []string
	var walk func([]types.VirtualMachineSnapshotTree)
	walk = func(l []types.VirtualMachineSnapshotTree) {
		for _, t := range l {
			names = append(names, t.Name)
			walk(t.ChildSnapshotList)
		}
	}
	s.model.Map().WithLock(s.model.Service.Context, found, func() {
		if found.Snapshot != nil {
			walk(found.Snapshot.RootSnapshotList)
		}
	})
	return names, nil
}

// SnapshotFiles counts the frozen disk copies the simulator holds, which
// must drop to zero when every snapshot is removed.
func (s *Sim) SnapshotFiles() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, sn := range s.snaps {
		n += len(sn.disks)
	}
	return n
}

// LeaseCounts reports NFC leases: open (neither completed, aborted nor
// expired), completed and aborted since Start.
func (s *Sim) LeaseCounts() (open, completed, aborted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.leases), s.completed, s.aborted
}

// ExpiredLeases counts leases that timed out for want of progress calls.
func (s *Sim) ExpiredLeases() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expired
}

// OpenLeases is the number of NFC leases neither completed nor aborted.
func (s *Sim) OpenLeases() int {
	open, _, _ := s.LeaseCounts()
	return open
}

// FailExport makes the next export stream of disk i of vm break after
// after bytes: the connection is cut mid-body, as when a host drops.
func (s *Sim) FailExport(vm string, i int, after int64) error {
	if _, err := s.disk(vm, i); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &fault{vm: vm, disk: i, after: after})
	return nil
}

func (s *Sim) takeFault(vm string, i int) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, f := range s.faults {
		if f.vm == vm && f.disk == i {
			s.faults = append(s.faults[:k], s.faults[k+1:]...)
			return f.after, true
		}
	}
	return 0, false
}

func entityName(vm *simulator.VirtualMachine) string { return vm.Name }

// RandomPassword returns a password for a simulator user.
func RandomPassword() string {
	b := make([]byte, 12)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

var _ mo.Reference = (*lease)(nil)

func loadOrCreateCert(dir, listen string) (tls.Certificate, error) {
	certFile, keyFile := filepath.Join(dir, "vcenter-cert.pem"), filepath.Join(dir, "vcenter-key.pem")
	if c, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "vcenter.rehost.test", Organization: []string{"rehost vCenter simulator"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost", "vcenter.rehost.test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host, _, err := net.SplitHostPort(listen); err == nil && host != "" {
		if ip := net.ParseIP(host); ip != nil {
			if !ip.IsUnspecified() && !ip.IsLoopback() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02X", x)
	}
	return strings.Join(parts, ":")
}
