// Package azuresim is a faked Azure subscription for tests and the demo,
// reached over the real wire protocols with the real SDK:
//
//   - Azure Resource Manager: the SDK's own generated fake servers
//     (armcompute/fake, armnetwork/fake) backed by an in-memory model of
//     VMs, managed disks, snapshots, read grants, NICs, disk encryption sets
//     and VM sizes, served behind a loopback HTTPS listener so another
//     process (`rehost serve`) can reach them. Long-running operations
//     answer a few non-terminal responses before the terminal one, so
//     clients exercise their pollers. Requests need a bearer token.
//   - Entra ID: the OpenID discovery and token endpoints of a tenant,
//     accepting the one registered application's client secret, a client
//     assertion signed with its certificate, or its federated token.
//   - Disk data: Azurite (npm) holds every disk as a page blob written
//     sparsely; a snapshot is an Azurite blob snapshot; a read grant is a
//     real SAS signed with the account key. A front (HTTPS) before Azurite
//     plays the managed-disk data endpoint: it refuses revoked or expired
//     grants, requires an Entra ID token for disks whose data access needs
//     one, counts the bytes it serves and cuts streams on request. It also
//     answers Get Page Ranges Diff between two incremental snapshots,
//     which Azurite ignores, from the pages written between them
//     (changes.go).
//
// Every request is counted by operation, and any can be made to fail
// (Inject): a retry policy's attempts are counted where they arrive.
package azuresim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
)

// Options configure Start.
type Options struct {
	// Dir holds the TLS certificate and key; required.
	Dir string
	// Location of every resource; default "westeurope".
	Location string
	VMs      []VMSpec
	// LROSteps is how many non-terminal responses a long-running
	// operation answers before its result; default 2.
	LROSteps int
	Log      *slog.Logger
}

// VMSpec describes a VM of the subscription.
type VMSpec struct {
	Name          string
	ResourceGroup string // default "rg-rehost"
	Size          string // default "Standard_D2s_v3"; see Sizes
	OSType        string // "Linux" (default) or "Windows"
	Generation    string // "V1" (default) or "V2"
	// SecurityType is "", "TrustedLaunch" or "ConfidentialVM".
	SecurityType string
	// PowerState is the "PowerState/…" code's suffix; default "running".
	PowerState string
	AgentReady bool
	// OSName and OSVersion are what the VM agent reports (the instance
	// view's); default debian 12 when AgentReady.
	OSName, OSVersion string
	Disks             []DiskSpec // the first is the OS disk
	NICs              []NICSpec
}

// DiskSpec describes a managed disk.
type DiskSpec struct {
	// SizeBytes, a multiple of 512; default the image's size.
	SizeBytes int64
	SKU       string // default "Premium_LRS"; "UltraSSD_LRS", "PremiumV2_LRS" snapshot with a background copy
	// Image is a raw disk image file; only its non-zero 64 KiB regions are
	// written, so the page blob is as sparse as the image.
	Image string
	// ADE marks the disk as encrypted by Azure Disk Encryption.
	ADE bool
	// CMK encrypts the disk with a customer-managed key of a disk
	// encryption set the identity can ("readable") or cannot ("denied")
	// read.
	CMK string
	// EntraDataAccess sets dataAccessAuthMode AzureActiveDirectory.
	EntraDataAccess bool
	// ConfidentialVMEncryption marks the OS disk as a confidential VM's.
	ConfidentialVMEncryption bool
}

// NICSpec describes a network interface.
type NICSpec struct {
	PrivateIP   string
	Accelerated bool
}

// Size is a VM size the fake ResourceSKUs API lists.
type Size struct {
	Name     string
	CPUs     int
	MemoryGB float64
}

// Sizes are the VM sizes of every location.
var Sizes = []Size{
	{"Standard_B1s", 1, 1}, {"Standard_B2s", 2, 4}, {"Standard_D2s_v3", 2, 8}, {"Standard_D4s_v5", 4, 16},
	{"Standard_E2s_v5", 2, 16}, {"Standard_DC2as_v5", 2, 8}, {"Standard_A1_v2", 1, 2},
}

// Sim is a running faked subscription.
type Sim struct {
	SubscriptionID string
	TenantID       string
	ClientID       string
	ClientSecret   string
	// ARMURL is Resource Manager's endpoint; AuthorityURL Entra ID's
	// authority host (the same server).
	ARMURL       string
	AuthorityURL string
	// BlobURL is the data front's endpoint (SAS URLs point there).
	BlobURL string
	// CAPEM is the certificate both endpoints present (self-signed).
	CAPEM string

	o        Options
	log      *slog.Logger
	az       *azurite
	blobs    *azblob.Client // straight to Azurite, with the account key
	arm      *http.Server
	front    *http.Server
	location string

	mu        sync.Mutex
	vms       map[string]*vmState // by lower-case resource id
	removed   map[string]*vmState // by name: RemoveVM's, for RestoreVM
	disks     map[string]*diskState
	snaps     map[string]*snapState
	nics      map[string]*armnetwork.Interface
	des       map[string]*armcompute.DiskEncryptionSet // readable sets
	grants    map[string]*grant                        // by SAS signature
	tokens    map[string]string                        // bearer token → audience
	certs     [][]byte                                 // DER certificates of the app
	federated string                                   // accepted federated token
	failNext  map[string]failure                       // by lower-case disk id
	gate      chan struct{}                            // data reads wait on it while set
	faults    []*injected                              // see Inject
	requests  map[string]map[string]int                // op → path → requests received

	waiting       atomic.Int64
	bytesRead     atomic.Int64
	rangeRequests atomic.Int64
	grantsIssued  atomic.Int64
}

type vmState struct {
	vm    armcompute.VirtualMachine
	disks []string // disk ids, OS first
}

type diskState struct {
	disk armcompute.Disk
	blob string // page blob name in container "disks"
	// Guarded by Sim.mu: the pages written, each in the epoch it was
	// written in; a snapshot closes the epoch. What Azure's incremental
	// snapshots know, and the page-range diff answers from.
	epoch  int
	writes []pageWrite
	// wmu orders writes and snapshots of the disk: a write is in a
	// snapshot's content exactly when it is in an epoch the snapshot
	// closed.
	wmu sync.Mutex
}

type snapState struct {
	snap   armcompute.Snapshot
	epoch  int    // the disk's epoch the snapshot closed
	blob   string // the disk's blob
	ts     string // Azurite snapshot timestamp
	disk   string // source disk id
	gets   int    // Gets answered, for the background copy's progress
	ultraC bool   // copies in the background (Ultra, Premium SSD v2)
}

type grant struct {
	snap      string // snapshot id
	disk      string
	expiry    time.Time
	entra     bool
	failAfter int64 // -1: never
	served    atomic.Int64
}

const container = "disks"

// Start starts Azurite, fills it and the model from o.VMs, and serves
// Resource Manager, Entra ID and the data front on loopback.
func Start(ctx context.Context, o Options) (_ *Sim, err error) {
	if o.Dir == "" {
		return nil, errors.New("azuresim: no directory")
	}
	if o.Location == "" {
		o.Location = "westeurope"
	}
	if o.LROSteps == 0 {
		o.LROSteps = 2
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Sim{
		SubscriptionID: uuid(), TenantID: uuid(), ClientID: uuid(), ClientSecret: "sim-secret-" + randHex(12),
		o: o, log: o.Log, location: o.Location,
		vms: map[string]*vmState{}, disks: map[string]*diskState{}, snaps: map[string]*snapState{},
		nics: map[string]*armnetwork.Interface{}, des: map[string]*armcompute.DiskEncryptionSet{},
		grants: map[string]*grant{}, tokens: map[string]string{}, failNext: map[string]failure{},
		requests: map[string]map[string]int{},
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.az, err = startAzurite(ctx, o.Dir); err != nil {
		return nil, err
	}
	cred, err := azblob.NewSharedKeyCredential(s.az.account, s.az.key)
	if err != nil {
		return nil, err
	}
	if s.blobs, err = azblob.NewClientWithSharedKeyCredential(s.az.url+"/"+s.az.account, cred, nil); err != nil {
		return nil, err
	}
	if _, err := s.blobs.CreateContainer(ctx, container, nil); err != nil {
		return nil, fmt.Errorf("azuresim: create container: %w", err)
	}
	for _, spec := range o.VMs {
		if err := s.addVM(ctx, spec); err != nil {
			return nil, fmt.Errorf("azuresim: vm %q: %w", spec.Name, err)
		}
	}
	if err := s.serve(); err != nil {
		return nil, err
	}
	return s, nil
}

// Close stops the servers and Azurite.
func (s *Sim) Close() {
	if s.arm != nil {
		s.arm.Close()
	}
	if s.front != nil {
		s.front.Close()
	}
	if s.az != nil {
		s.az.close()
	}
}

func (s *Sim) rgID(rg string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s", s.SubscriptionID, rg)
}

func (s *Sim) addVM(ctx context.Context, spec VMSpec) error {
	rg := cmpOr(spec.ResourceGroup, "rg-rehost")
	if len(spec.Disks) == 0 {
		return errors.New("a vm needs an os disk")
	}
	vmID := s.rgID(rg) + "/providers/Microsoft.Compute/virtualMachines/" + spec.Name
	osType := armcompute.OperatingSystemTypes(cmpOr(spec.OSType, "Linux"))
	gen := cmpOr(spec.Generation, "V1")
	st := &vmState{}
	var data []*armcompute.DataDisk
	var osDisk *armcompute.OSDisk
	for i, ds := range spec.Disks {
		name := fmt.Sprintf("%s-osdisk", spec.Name)
		if i > 0 {
			name = fmt.Sprintf("%s-data%d", spec.Name, i-1)
		}
		id, err := s.addDisk(ctx, rg, name, ds, i == 0, osType, gen, vmID)
		if err != nil {
			return fmt.Errorf("disk %d: %w", i, err)
		}
		st.disks = append(st.disks, id)
		md := &armcompute.ManagedDiskParameters{ID: to.Ptr(id)}
		if i == 0 {
			osDisk = &armcompute.OSDisk{Name: to.Ptr(name), OSType: &osType, ManagedDisk: md, CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesFromImage)}
			if ds.ADE {
				osDisk.EncryptionSettings = &armcompute.DiskEncryptionSettings{Enabled: to.Ptr(true)}
			}
		} else {
			data = append(data, &armcompute.DataDisk{Name: to.Ptr(name), Lun: to.Ptr(int32(i - 1)), ManagedDisk: md, CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesEmpty)})
		}
	}
	var nicRefs []*armcompute.NetworkInterfaceReference
	for i, ns := range spec.NICs {
		id := fmt.Sprintf("%s/providers/Microsoft.Network/networkInterfaces/%s-nic%d", s.rgID(rg), spec.Name, i)
		subnet := s.rgID(rg) + "/providers/Microsoft.Network/virtualNetworks/vnet-rehost/subnets/default"
		mac := fmt.Sprintf("00-0D-3A-%02X-%02X-%02X", len(s.nics)+1, i, len(spec.Name))
		s.nics[strings.ToLower(id)] = &armnetwork.Interface{
			ID: to.Ptr(id), Name: to.Ptr(fmt.Sprintf("%s-nic%d", spec.Name, i)), Location: to.Ptr(s.location),
			Properties: &armnetwork.InterfacePropertiesFormat{
				MacAddress:                  to.Ptr(mac),
				EnableAcceleratedNetworking: to.Ptr(ns.Accelerated),
				VirtualMachine:              &armnetwork.SubResource{ID: to.Ptr(vmID)},
				IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{
					Name: to.Ptr("ipconfig1"),
					Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
						PrivateIPAddress: to.Ptr(ns.PrivateIP), Subnet: &armnetwork.Subnet{ID: to.Ptr(subnet)},
					},
				}},
			},
		}
		nicRefs = append(nicRefs, &armcompute.NetworkInterfaceReference{ID: to.Ptr(id), Properties: &armcompute.NetworkInterfaceReferenceProperties{Primary: to.Ptr(i == 0)}})
	}
	hv := armcompute.HyperVGenerationType(gen)
	iv := &armcompute.VirtualMachineInstanceView{
		HyperVGeneration: &hv,
		Statuses: []*armcompute.InstanceViewStatus{
			{Code: to.Ptr("ProvisioningState/succeeded")},
			{Code: to.Ptr("PowerState/" + cmpOr(spec.PowerState, "running"))},
		},
	}
	if spec.AgentReady {
		iv.VMAgent = &armcompute.VirtualMachineAgentInstanceView{Statuses: []*armcompute.InstanceViewStatus{{Code: to.Ptr("ProvisioningState/succeeded"), DisplayStatus: to.Ptr("Ready")}}}
		iv.OSName, iv.OSVersion = to.Ptr(cmpOr(spec.OSName, "debian")), to.Ptr(cmpOr(spec.OSVersion, "12"))
	}
	st.vm = armcompute.VirtualMachine{
		ID: to.Ptr(vmID), Name: to.Ptr(spec.Name), Location: to.Ptr(s.location), Type: to.Ptr("Microsoft.Compute/virtualMachines"),
		Properties: &armcompute.VirtualMachineProperties{
			VMID:            to.Ptr(uuid()),
			HardwareProfile: &armcompute.HardwareProfile{VMSize: to.Ptr(armcompute.VirtualMachineSizeTypes(cmpOr(spec.Size, "Standard_D2s_v3")))},
			StorageProfile:  &armcompute.StorageProfile{OSDisk: osDisk, DataDisks: data},
			NetworkProfile:  &armcompute.NetworkProfile{NetworkInterfaces: nicRefs},
			InstanceView:    iv,
		},
	}
	if spec.SecurityType != "" {
		st.vm.Properties.SecurityProfile = &armcompute.SecurityProfile{SecurityType: to.Ptr(armcompute.SecurityTypes(spec.SecurityType)),
			UefiSettings: &armcompute.UefiSettings{SecureBootEnabled: to.Ptr(true), VTpmEnabled: to.Ptr(true)}}
	}
	s.vms[strings.ToLower(vmID)] = st
	return nil
}

func (s *Sim) addDisk(ctx context.Context, rg, name string, ds DiskSpec, isOS bool, osType armcompute.OperatingSystemTypes, gen, vmID string) (string, error) {
	var img *os.File
	size := ds.SizeBytes
	if ds.Image != "" {
		f, err := os.Open(ds.Image)
		if err != nil {
			return "", err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return "", err
		}
		img = f
		if size == 0 {
			size = st.Size()
		}
	}
	if size <= 0 || size%512 != 0 {
		return "", fmt.Errorf("size %d is not a positive multiple of 512", size)
	}
	blobName := name + "-" + randHex(4)
	pb := s.pageBlob(blobName)
	if _, err := pb.Create(ctx, size, nil); err != nil {
		return "", fmt.Errorf("create page blob: %w", err)
	}
	if img != nil {
		if err := uploadSparse(ctx, pb, img, size); err != nil {
			return "", err
		}
	}
	id := s.rgID(rg) + "/providers/Microsoft.Compute/disks/" + name
	sku := armcompute.DiskStorageAccountTypes(cmpOr(ds.SKU, "Premium_LRS"))
	d := armcompute.Disk{
		ID: to.Ptr(id), Name: to.Ptr(name), Location: to.Ptr(s.location), Type: to.Ptr("Microsoft.Compute/disks"),
		ManagedBy: to.Ptr(vmID),
		SKU:       &armcompute.DiskSKU{Name: &sku},
		Properties: &armcompute.DiskProperties{
			DiskSizeBytes: to.Ptr(size), DiskSizeGB: to.Ptr(int32((size + 1<<30 - 1) >> 30)),
			DiskState:         to.Ptr(armcompute.DiskStateAttached),
			ProvisioningState: to.Ptr("Succeeded"),
			CreationData:      &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionEmpty)},
			Encryption:        &armcompute.Encryption{Type: to.Ptr(armcompute.EncryptionTypeEncryptionAtRestWithPlatformKey)},
		},
	}
	if isOS {
		d.Properties.OSType = &osType
		d.Properties.HyperVGeneration = to.Ptr(armcompute.HyperVGeneration(gen))
	}
	if ds.ADE {
		d.Properties.EncryptionSettingsCollection = &armcompute.EncryptionSettingsCollection{Enabled: to.Ptr(true), EncryptionSettingsVersion: to.Ptr("1.1")}
	}
	if ds.EntraDataAccess {
		d.Properties.DataAccessAuthMode = to.Ptr(armcompute.DataAccessAuthModeAzureActiveDirectory)
	}
	if ds.ConfidentialVMEncryption {
		d.Properties.SecurityProfile = &armcompute.DiskSecurityProfile{SecurityType: to.Ptr(armcompute.DiskSecurityTypesConfidentialVMDiskEncryptedWithPlatformKey)}
	}
	if ds.CMK != "" {
		desID := s.rgID(rg) + "/providers/Microsoft.Compute/diskEncryptionSets/des-" + name
		d.Properties.Encryption = &armcompute.Encryption{Type: to.Ptr(armcompute.EncryptionTypeEncryptionAtRestWithCustomerKey), DiskEncryptionSetID: to.Ptr(desID)}
		if ds.CMK == "readable" {
			s.des[strings.ToLower(desID)] = &armcompute.DiskEncryptionSet{ID: to.Ptr(desID), Name: to.Ptr("des-" + name), Location: to.Ptr(s.location),
				Properties: &armcompute.EncryptionSetProperties{ProvisioningState: to.Ptr("Succeeded"),
					ActiveKey: &armcompute.KeyForDiskEncryptionSet{KeyURL: to.Ptr("https://kv-rehost.vault.azure.net/keys/disk/1")}}}
		}
	}
	s.disks[strings.ToLower(id)] = &diskState{disk: d, blob: blobName}
	return id, nil
}

func (s *Sim) pageBlob(name string) *pageblob.Client {
	return s.blobs.ServiceClient().NewContainerClient(container).NewPageBlobClient(name)
}

// uploadSparse writes the non-zero 64 KiB regions of img, in pieces of at
// most 4 MiB (the page blob limit per call).
func uploadSparse(ctx context.Context, pb *pageblob.Client, img io.ReaderAt, size int64) error {
	const region = 64 << 10
	buf := make([]byte, 4<<20)
	zero := make([]byte, region)
	var start, n int64 = -1, 0
	flush := func() error {
		if start < 0 {
			return nil
		}
		for off := start; off < start+n; off += int64(len(buf)) {
			k := min(int64(len(buf)), start+n-off)
			if _, err := img.ReadAt(buf[:k], off); err != nil && err != io.EOF {
				return err
			}
			if _, err := pb.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(buf[:k])), blob.HTTPRange{Offset: off, Count: k}, nil); err != nil {
				return fmt.Errorf("upload pages at %d: %w", off, err)
			}
		}
		start, n = -1, 0
		return nil
	}
	chunk := make([]byte, region)
	for off := int64(0); off < size; off += region {
		k := min(region, size-off)
		if _, err := img.ReadAt(chunk[:k], off); err != nil && err != io.EOF {
			return err
		}
		if bytes.Equal(chunk[:k], zero[:k]) {
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		if start < 0 {
			start = off
		}
		n = off + k - start
	}
	return flush()
}

// VMID is the resource id of the VM named name.
func (s *Sim) VMID(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.vms {
		if val(v.vm.Name) == name {
			return *v.vm.ID
		}
	}
	return ""
}

func (s *Sim) diskOf(vm string, i int) (*diskState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.vms {
		if val(v.vm.Name) == vm {
			if i < 0 || i >= len(v.disks) {
				return nil, fmt.Errorf("vm %q has no disk %d", vm, i)
			}
			return s.disks[strings.ToLower(v.disks[i])], nil
		}
	}
	return nil, fmt.Errorf("no vm %q", vm)
}

// WriteDisk writes p at off of the live disk i of vm (pages of 512 bytes:
// off and len(p) are rounded out, keeping the bytes around p).
func (s *Sim) WriteDisk(vm string, i int, off int64, p []byte) error {
	d, err := s.diskOf(vm, i)
	if err != nil {
		return err
	}
	ctx := context.Background()
	d.wmu.Lock()
	defer d.wmu.Unlock()
	start, end := off/512*512, (off+int64(len(p))+511)/512*512
	buf := make([]byte, end-start)
	if _, err := s.ReadDisk(vm, i, start, buf); err != nil && err != io.EOF {
		return err
	}
	copy(buf[off-start:], p)
	pb := s.pageBlob(d.blob)
	for o := int64(0); o < int64(len(buf)); o += 4 << 20 {
		k := min(4<<20, int64(len(buf))-o)
		if _, err := pb.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(buf[o:o+k])), blob.HTTPRange{Offset: start + o, Count: k}, nil); err != nil {
			return err
		}
	}
	s.recordWrite(d, start, end-start)
	return nil
}

// ReadDisk reads the live disk i of vm at off.
func (s *Sim) ReadDisk(vm string, i int, off int64, p []byte) (int, error) {
	d, err := s.diskOf(vm, i)
	if err != nil {
		return 0, err
	}
	size := val(d.disk.Properties.DiskSizeBytes)
	if off >= size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), size-off)
	r, err := s.pageBlob(d.blob).DownloadStream(context.Background(), &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: off, Count: n}})
	if err != nil {
		return 0, err
	}
	defer r.Body.Close()
	m, err := io.ReadFull(r.Body, p[:n])
	if err == nil && n < int64(len(p)) {
		err = io.EOF
	}
	return m, err
}

// DiskSize is the size of disk i of vm.
func (s *Sim) DiskSize(vm string, i int) (int64, error) {
	d, err := s.diskOf(vm, i)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return val(d.disk.Properties.DiskSizeBytes), nil
}

// AllocatedBytes sums the page ranges of the live disk i of vm.
func (s *Sim) AllocatedBytes(vm string, i int) (int64, error) {
	d, err := s.diskOf(vm, i)
	if err != nil {
		return 0, err
	}
	var n int64
	for p := s.pageBlob(d.blob).NewGetPageRangesPager(nil); p.More(); {
		page, err := p.NextPage(context.Background())
		if err != nil {
			return 0, err
		}
		for _, r := range page.PageRange {
			n += *r.End - *r.Start + 1
		}
	}
	return n, nil
}

// Snapshots lists the names of every snapshot in the subscription.
func (s *Sim) Snapshots() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, sn := range s.snaps {
		out = append(out, val(sn.snap.Name))
	}
	sort.Strings(out)
	return out
}

// OpenGrants counts read grants neither revoked nor expired.
func (s *Sim) OpenGrants() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, g := range s.grants {
		if time.Now().Before(g.expiry) {
			n++
		}
	}
	return n
}

// ExpireGrants makes every read grant expire now, as a long read outliving
// its SAS sees.
func (s *Sim) ExpireGrants() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.grants {
		g.expiry = time.Now()
	}
}

// GrantsIssued counts every read grant (SAS) issued, renewals included.
func (s *Sim) GrantsIssued() int64 { return s.grantsIssued.Load() }

// BytesRead is the disk data the front served to SAS holders; RangeReads
// the number of data requests.
func (s *Sim) BytesRead() int64  { return s.bytesRead.Load() }
func (s *Sim) RangeReads() int64 { return s.rangeRequests.Load() }

// failure cuts the streams of read grants of a disk after n bytes, for
// the next grant only or for every grant.
type failure struct {
	n      int64
	always bool
}

// FailExport makes the next read grant of disk i of vm break its stream
// once n bytes were served through it, and every request after.
func (s *Sim) FailExport(vm string, i int, n int64) error { return s.fail(vm, i, failure{n: n}) }

// FailExports does so for every read grant of the disk from now on; n < 0
// ends it.
func (s *Sim) FailExports(vm string, i int, n int64) error {
	return s.fail(vm, i, failure{n: n, always: n >= 0})
}

func (s *Sim) fail(vm string, i int, f failure) error {
	d, err := s.diskOf(vm, i)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.n < 0 {
		delete(s.failNext, strings.ToLower(*d.disk.ID))
		return nil
	}
	s.failNext[strings.ToLower(*d.disk.ID)] = f
	return nil
}

// PauseReads holds every data read at the front until the returned
// function is called; WaitingReads counts the reads held.
func (s *Sim) PauseReads() (resume func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gate := make(chan struct{})
	s.gate = gate
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.gate == gate {
			s.gate = nil
			close(gate)
		}
	}
}

// WaitingReads counts the data reads PauseReads holds.
func (s *Sim) WaitingReads() int64 { return s.waiting.Load() }

// RegisterCertificate lets the application sign in with the certificate
// (DER) as well as its secret.
func (s *Sim) RegisterCertificate(der []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certs = append(s.certs, der)
}

// RegisterFederatedToken lets the application sign in with a workload
// identity's federated token.
func (s *Sim) RegisterFederatedToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.federated = tok
}

// WriteCA writes the endpoints' certificate to a file in dir and returns
// its path.
func (s *Sim) WriteCA(dir string) (string, error) {
	p := filepath.Join(dir, "azuresim-ca.pem")
	return p, os.WriteFile(p, []byte(s.CAPEM), 0o644)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func uuid() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func val[T any](p *T) T {
	if p == nil {
		var z T
		return z
	}
	return *p
}
