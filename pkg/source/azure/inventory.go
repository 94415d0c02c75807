package azure

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"

	"github.com/rehost/rehost/pkg/source"
)

// VMManagerType is the SMS catalog's name for this platform.
const VMManagerType = "AZURE"

// Security types of an Azure VM, as Attributes["securityType"] shows them.
const (
	SecurityStandard      = "Standard"
	SecurityTrustedLaunch = "TrustedLaunch"
	SecurityConfidential  = "ConfidentialVM"
)

// Inventory lists the VMs of the subscription (or resource group) with
// their disks, NICs and sizes: one paged listing each of VMs (with their
// instance views), disks and NICs, and one of VM sizes per location.
func (s *Source) Inventory(ctx context.Context) ([]source.VM, error) {
	var raw []*armcompute.VirtualMachine
	disks := map[string]*armcompute.Disk{}
	nics := map[string]*netInterface{}
	addVMs := func(l []*armcompute.VirtualMachine) { raw = append(raw, l...) }
	addDisks := func(l []*armcompute.Disk) { index(disks, l, func(d *armcompute.Disk) *string { return d.ID }) }
	addNICs := func(l []*netInterface) { index(nics, l, func(n *netInterface) *string { return n.ID }) }
	op := "list the vms, disks and network interfaces of " + s.scope()
	err := s.listVMs(ctx, op, addVMs)
	if rg := s.cfg.ResourceGroup; rg != "" {
		if err == nil {
			err = drain(ctx, s, op, func() *runtime.Pager[armcompute.DisksClientListByResourceGroupResponse] {
				return s.disks.NewListByResourceGroupPager(rg, nil)
			}, func(p armcompute.DisksClientListByResourceGroupResponse) { addDisks(p.Value) })
		}
		if err == nil {
			err = drain(ctx, s, op, func() *runtime.Pager[nicPage] { return s.nics.list(rg) }, func(p nicPage) { addNICs(p.Value) })
		}
	} else {
		if err == nil {
			err = drain(ctx, s, op, func() *runtime.Pager[armcompute.DisksClientListResponse] { return s.disks.NewListPager(nil) },
				func(p armcompute.DisksClientListResponse) { addDisks(p.Value) })
		}
		if err == nil {
			err = drain(ctx, s, op, func() *runtime.Pager[nicPage] { return s.nics.list("") }, func(p nicPage) { addNICs(p.Value) })
		}
	}
	if err != nil {
		return nil, err
	}
	out := make([]source.VM, 0, len(raw))
	for _, v := range raw {
		vm, err := s.describe(ctx, v, disks, nics)
		if err != nil {
			return nil, err
		}
		out = append(out, vm)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// scope names what the source lists: its subscription or resource group.
func (s *Source) scope() string {
	if rg := s.cfg.ResourceGroup; rg != "" {
		return "resource group " + rg
	}
	return "subscription " + s.cfg.SubscriptionID
}

// listVMs lists the VMs of the subscription (or resource group) with
// their instance views.
func (s *Source) listVMs(ctx context.Context, op string, add func([]*armcompute.VirtualMachine)) error {
	if rg := s.cfg.ResourceGroup; rg != "" {
		return drain(ctx, s, op, func() *runtime.Pager[armcompute.VirtualMachinesClientListResponse] {
			return s.vms.NewListPager(rg, &armcompute.VirtualMachinesClientListOptions{Expand: to.Ptr(armcompute.ExpandTypeForListVMsInstanceView)})
		}, func(p armcompute.VirtualMachinesClientListResponse) { add(p.Value) })
	}
	return drain(ctx, s, op, func() *runtime.Pager[armcompute.VirtualMachinesClientListAllResponse] {
		return s.vms.NewListAllPager(&armcompute.VirtualMachinesClientListAllOptions{Expand: to.Ptr(armcompute.ExpandTypesForListVMsInstanceView)})
	}, func(p armcompute.VirtualMachinesClientListAllResponse) { add(p.Value) })
}

var _ source.Fingerprinter = (*Source)(nil)

// Fingerprints implements source.Fingerprinter with the VM listing alone
// (Inventory also lists every disk and network interface): each VM's
// fingerprint covers what describe reads of the VM's own resource,
// including the sizes its storage profile gives its disks. A disk's SKU
// changed, or a network interface's address or network, is not in it.
func (s *Source) Fingerprints(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	var ferr error
	err := s.listVMs(ctx, "list the vms of "+s.scope(), func(l []*armcompute.VirtualMachine) {
		for _, v := range l {
			if v == nil || v.ID == nil || v.Properties == nil {
				continue // describe refuses it: Inventory says so
			}
			f, err := fingerprint(v)
			if err != nil && ferr == nil {
				ferr = err
			}
			out[*v.ID] = f
		}
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// fingerprint hashes what describe reads of a VM's own resource: not its
// instance view's timestamps (the agent's status time moves every few
// minutes), only the power state, agent readiness and guest OS in it.
func fingerprint(v *armcompute.VirtualMachine) (string, error) {
	p := v.Properties
	var f struct {
		Name, Location, VMID  *string
		Hardware              *armcompute.HardwareProfile
		Storage               *armcompute.StorageProfile
		Security              *armcompute.SecurityProfile
		NICs                  []string
		Power                 string
		Agent                 bool
		OS, OSVersion, HyperV string
	}
	f.Name, f.Location, f.VMID = v.Name, v.Location, p.VMID
	f.Hardware, f.Storage, f.Security = p.HardwareProfile, p.StorageProfile, p.SecurityProfile
	if np := p.NetworkProfile; np != nil {
		for _, n := range np.NetworkInterfaces {
			if n != nil {
				f.NICs = append(f.NICs, val(n.ID))
			}
		}
	}
	if iv := p.InstanceView; iv != nil {
		f.Power, f.OS, f.OSVersion = powerState(iv), val(iv.OSName), val(iv.OSVersion)
		if iv.HyperVGeneration != nil {
			f.HyperV = string(*iv.HyperVGeneration)
		}
		if iv.VMAgent != nil {
			for _, st := range iv.VMAgent.Statuses {
				f.Agent = f.Agent || (st != nil && strings.EqualFold(val(st.DisplayStatus), "Ready"))
			}
		}
	}
	b, err := json.Marshal(f)
	if err != nil {
		return "", fmt.Errorf("fingerprint of vm %s: %w", val(v.Name), err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16]), nil
}

// drain hands every page of a listing to each, the listing read whole under
// the retry policy: a pager that failed a fetch stays failed, so a retry
// starts over on a fresh one, and each sees the pages of the try that
// succeeded only. Its error is classified, naming op.
func drain[P any](ctx context.Context, s *Source, op string, pager func() *runtime.Pager[P], each func(P)) error {
	var pages []P
	err := s.call(ctx, op, func(ctx context.Context) error {
		pages = pages[:0]
		for p := pager(); p.More(); {
			page, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			pages = append(pages, page)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range pages {
		each(p)
	}
	return nil
}

// index adds resources to m by lower-case id.
func index[T any](m map[string]*T, l []*T, id func(*T) *string) {
	for _, r := range l {
		if r != nil && id(r) != nil {
			m[strings.ToLower(*id(r))] = r
		}
	}
}

// VM describes one VM by its resource id.
func (s *Source) VM(ctx context.Context, id string) (source.VM, error) {
	v, err := s.getVM(ctx, id)
	if err != nil {
		return source.VM{}, err
	}
	return s.describe(ctx, v, map[string]*armcompute.Disk{}, map[string]*netInterface{})
}

// getVM reads a VM with its instance view; an id that is not a VM's
// resource id, or a VM that does not exist, wraps ErrNotFound.
func (s *Source) getVM(ctx context.Context, id string) (*armcompute.VirtualMachine, error) {
	rid, err := parseID(id, "virtualMachines")
	if err != nil {
		return nil, err
	}
	var r armcompute.VirtualMachinesClientGetResponse
	err = s.call(ctx, "read vm "+id, func(ctx context.Context) (err error) {
		r, err = s.vms.Get(ctx, rid.ResourceGroupName, rid.Name, &armcompute.VirtualMachinesClientGetOptions{Expand: to.Ptr(armcompute.InstanceViewTypesInstanceView)})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &r.VirtualMachine, nil
}

// parseID parses an Azure resource id of the given type (e.g.
// "virtualMachines"); anything else is not found.
func parseID(id, typ string) (*arm.ResourceID, error) {
	rid, err := arm.ParseResourceID(id)
	if err != nil || !strings.EqualFold(lastType(rid), typ) {
		return nil, fmt.Errorf("%q is not the resource id of an azure %s: %w", id, typ, source.ErrNotFound)
	}
	return rid, nil
}

func lastType(r *arm.ResourceID) string {
	t := r.ResourceType.Types
	if len(t) == 0 {
		return ""
	}
	return t[len(t)-1]
}

// diskRef is a managed disk attached to a VM, in VM order.
type diskRef struct {
	key  string // "os" or "lun<N>"
	id   string
	disk *armcompute.Disk
}

// attachedDisks lists the VM's managed disks (OS disk first, then data
// disks by LUN), reading those missing from known; an unmanaged (VHD in a
// storage account) or ephemeral OS disk is an error saying so.
func (s *Source) attachedDisks(ctx context.Context, v *armcompute.VirtualMachine, known map[string]*armcompute.Disk) ([]diskRef, error) {
	sp := v.Properties.StorageProfile
	if sp == nil || sp.OSDisk == nil {
		return nil, fmt.Errorf("vm %s has no os disk", val(v.Name))
	}
	var refs []diskRef
	if sp.OSDisk.ManagedDisk == nil || sp.OSDisk.ManagedDisk.ID == nil {
		return nil, fmt.Errorf("vm %s: its os disk is an unmanaged VHD in a storage account; convert the vm to managed disks (ConvertTo-AzVMManagedDisk) to replicate it", val(v.Name))
	}
	if sp.OSDisk.DiffDiskSettings != nil {
		return nil, fmt.Errorf("vm %s: its os disk is ephemeral (held on the host, not in a managed disk), which Azure cannot snapshot; redeploy it with a managed os disk to replicate it", val(v.Name))
	}
	refs = append(refs, diskRef{key: "os", id: *sp.OSDisk.ManagedDisk.ID})
	data := append([]*armcompute.DataDisk(nil), sp.DataDisks...)
	sort.Slice(data, func(i, j int) bool { return val(data[i].Lun) < val(data[j].Lun) })
	for _, d := range data {
		if d.ManagedDisk == nil || d.ManagedDisk.ID == nil {
			return nil, fmt.Errorf("vm %s: data disk at lun %d is an unmanaged VHD; convert the vm to managed disks to replicate it", val(v.Name), val(d.Lun))
		}
		refs = append(refs, diskRef{key: fmt.Sprintf("lun%d", val(d.Lun)), id: *d.ManagedDisk.ID})
	}
	for i := range refs {
		if d, ok := known[strings.ToLower(refs[i].id)]; ok {
			refs[i].disk = d
			continue
		}
		rid, err := parseID(refs[i].id, "disks")
		if err != nil {
			return nil, err
		}
		var r armcompute.DisksClientGetResponse
		err = s.call(ctx, fmt.Sprintf("read disk %s of vm %s", rid.Name, val(v.Name)), func(ctx context.Context) (err error) {
			r, err = s.disks.Get(ctx, rid.ResourceGroupName, rid.Name, nil)
			return err
		})
		if err != nil {
			return nil, err
		}
		refs[i].disk = &r.Disk
	}
	return refs, nil
}

func (s *Source) describe(ctx context.Context, v *armcompute.VirtualMachine, disks map[string]*armcompute.Disk, nics map[string]*netInterface) (source.VM, error) {
	if v.ID == nil || v.Properties == nil {
		return source.VM{}, fmt.Errorf("azure returned a vm without id or properties: %+v", v)
	}
	rid, err := parseID(*v.ID, "virtualMachines")
	if err != nil {
		return source.VM{}, err
	}
	p := v.Properties
	out := source.VM{
		ID:          *v.ID,
		Name:        val(v.Name),
		Path:        fmt.Sprintf("/%s/%s/%s", val(v.Location), rid.ResourceGroupName, val(v.Name)),
		ManagerType: VMManagerType,
		Attributes: map[string]string{
			"location":      val(v.Location),
			"resourceGroup": rid.ResourceGroupName,
			"vmId":          val(p.VMID),
			"securityType":  securityType(v),
		},
		Disks: []source.Disk{},
		NICs:  []source.NIC{},
	}
	if hp := p.HardwareProfile; hp != nil && hp.VMSize != nil {
		size := string(*hp.VMSize)
		out.Attributes["size"] = size
		if z, err := s.sizes.lookup(ctx, s, val(v.Location), size); err != nil {
			return source.VM{}, err
		} else if z.cpus > 0 {
			out.CPUs, out.MemoryMiB = z.cpus, z.memMiB
		}
	}
	iv := p.InstanceView
	out.PowerState = powerState(iv)
	if iv != nil && iv.VMAgent != nil {
		for _, st := range iv.VMAgent.Statuses {
			if st != nil && strings.EqualFold(val(st.DisplayStatus), "Ready") {
				out.ToolsRunning = true
			}
		}
	}
	osType := ""
	if sp := p.StorageProfile; sp != nil && sp.OSDisk != nil && sp.OSDisk.OSType != nil {
		osType = string(*sp.OSDisk.OSType)
	}
	out.GuestOS = osType
	if iv != nil && iv.OSName != nil {
		out.GuestOS = strings.TrimSpace(fmt.Sprintf("%s: %s %s", osType, *iv.OSName, val(iv.OSVersion)))
	}

	refs, err := s.attachedDisks(ctx, v, disks)
	if err != nil {
		// Listed, so the user sees it and why it cannot be replicated.
		out.Warnings = append(out.Warnings, "will be refused: "+err.Error())
	}
	// Managed disks snapshot incrementally: their changes are tracked.
	out.CBTEnabled = err == nil
	gen := ""
	if iv != nil && iv.HyperVGeneration != nil {
		gen = string(*iv.HyperVGeneration)
	}
	var skus []string
	for _, r := range refs {
		d := r.disk
		dp := d.Properties
		size := diskSize(d)
		sku := ""
		if d.SKU != nil && d.SKU.Name != nil {
			sku = string(*d.SKU.Name)
		}
		skus = append(skus, r.key+"="+sku)
		label := val(d.Name)
		if sku != "" {
			label += " (" + sku + ")"
		}
		out.Disks = append(out.Disks, source.Disk{Key: r.key, Label: label, CapacityBytes: size, Controller: controller(r.key), Backing: r.id})
		if r.key == "os" && dp != nil && dp.HyperVGeneration != nil {
			gen = string(*dp.HyperVGeneration)
		}
	}
	if len(skus) > 0 {
		out.Attributes["diskSkus"] = strings.Join(skus, ",")
	}
	out.Firmware = source.FirmwareBIOS
	if strings.EqualFold(gen, "V2") || out.Attributes["securityType"] != SecurityStandard {
		out.Firmware, gen = source.FirmwareEFI, "V2"
	}
	if gen == "" {
		gen = "V1"
	}
	out.Attributes["generation"] = gen
	if err == nil {
		if r := refusal(v, refs); r != "" {
			out.Warnings = append(out.Warnings, "will be refused: "+r)
		}
	}
	if sp := p.SecurityProfile; sp != nil && sp.UefiSettings != nil {
		out.SecureBoot = val(sp.UefiSettings.SecureBootEnabled)
	}
	if out.Attributes["securityType"] == SecurityTrustedLaunch {
		out.Warnings = append(out.Warnings, trustedLaunchWarning)
	}

	if np := p.NetworkProfile; np != nil {
		for _, ref := range np.NetworkInterfaces {
			if ref == nil || ref.ID == nil {
				continue
			}
			n, err := s.nic(ctx, *ref.ID, nics)
			if err != nil {
				return source.VM{}, fmt.Errorf("vm %s: %w", out.Name, err)
			}
			out.NICs = append(out.NICs, n)
		}
	}
	return out, nil
}

const trustedLaunchWarning = "trusted launch: the disks replicate, but the vTPM (its keys, measured boot state) and the secure boot configuration stay in Azure; " +
	"BitLocker or other TPM-sealed secrets need their recovery keys on EC2, and secure boot must be set up again (an AMI with UEFI secure boot variables)"

func controller(key string) string {
	if key == "os" {
		return "os"
	}
	return "lun " + strings.TrimPrefix(key, "lun")
}

func diskSize(d *armcompute.Disk) int64 {
	if d.Properties == nil {
		return 0
	}
	if n := val(d.Properties.DiskSizeBytes); n > 0 {
		return n
	}
	return int64(val(d.Properties.DiskSizeGB)) << 30
}

func securityType(v *armcompute.VirtualMachine) string {
	sp := v.Properties.SecurityProfile
	if sp == nil || sp.SecurityType == nil {
		return SecurityStandard
	}
	switch *sp.SecurityType {
	case armcompute.SecurityTypesTrustedLaunch:
		return SecurityTrustedLaunch
	case armcompute.SecurityTypesConfidentialVM:
		return SecurityConfidential
	}
	return string(*sp.SecurityType)
}

// powerState maps the "PowerState/…" status to the catalog's vocabulary.
func powerState(iv *armcompute.VirtualMachineInstanceView) string {
	if iv == nil {
		return "unknown"
	}
	for _, st := range iv.Statuses {
		c := val(st.Code)
		if !strings.HasPrefix(c, "PowerState/") {
			continue
		}
		switch strings.TrimPrefix(c, "PowerState/") {
		case "running", "starting":
			return "poweredOn"
		case "stopped", "stopping", "deallocated", "deallocating":
			return "poweredOff"
		case "hibernated":
			return "suspended"
		}
	}
	return "unknown"
}

func (s *Source) nic(ctx context.Context, id string, known map[string]*netInterface) (source.NIC, error) {
	n, ok := known[strings.ToLower(id)]
	if !ok {
		rid, err := parseID(id, "networkInterfaces")
		if err != nil {
			return source.NIC{}, err
		}
		err = s.call(ctx, "read network interface "+rid.Name, func(ctx context.Context) (err error) {
			n, err = s.nics.get(ctx, rid.ResourceGroupName, rid.Name)
			return err
		})
		if err != nil {
			return source.NIC{}, err
		}
	}
	out := source.NIC{Label: val(n.Name), Type: "synthetic"}
	p := n.Properties
	if p == nil {
		return out, nil
	}
	out.MAC = strings.ToLower(strings.ReplaceAll(val(p.MacAddress), "-", ":"))
	if val(p.EnableAcceleratedNetworking) {
		out.Type = "accelerated"
	}
	for _, ipc := range p.IPConfigurations {
		if ipc == nil || ipc.Properties == nil {
			continue
		}
		if a := val(ipc.Properties.PrivateIPAddress); a != "" {
			out.Addresses = append(out.Addresses, a)
		}
		if sn := ipc.Properties.Subnet; sn != nil && sn.ID != nil && out.Network == "" {
			out.Network = subnetName(*sn.ID)
		}
	}
	return out, nil
}

// subnetName turns a subnet id into "vnet/subnet".
func subnetName(id string) string {
	rid, err := arm.ParseResourceID(id)
	if err != nil || rid.Parent == nil {
		return id
	}
	return rid.Parent.Name + "/" + rid.Name
}

// size is a VM size's hardware.
type size struct {
	cpus   int
	memMiB int64
}

// sizeCache holds the VM sizes of each location, read once.
type sizeCache struct {
	mu  sync.Mutex
	loc map[string]map[string]size
}

func (c *sizeCache) lookup(ctx context.Context, s *Source, location, name string) (size, error) {
	location = strings.ToLower(location)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loc == nil {
		c.loc = map[string]map[string]size{}
	}
	m, ok := c.loc[location]
	if !ok {
		m = map[string]size{}
		err := drain(ctx, s, "list the vm sizes of location "+location, func() *runtime.Pager[armcompute.ResourceSKUsClientListResponse] {
			return s.skus.NewListPager(&armcompute.ResourceSKUsClientListOptions{Filter: to.Ptr(fmt.Sprintf("location eq '%s'", location))})
		}, func(page armcompute.ResourceSKUsClientListResponse) {
			for _, k := range page.Value {
				if k != nil && k.Name != nil && strings.EqualFold(val(k.ResourceType), "virtualMachines") {
					m[strings.ToLower(*k.Name)] = sizeOf(k)
				}
			}
		})
		if err != nil {
			return size{}, err
		}
		c.loc[location] = m
	}
	return m[strings.ToLower(name)], nil
}

// sizeOf reads a VM size's vCPUs and memory from its capabilities.
func sizeOf(k *armcompute.ResourceSKU) size {
	var z size
	for _, cp := range k.Capabilities {
		v := val(cp.Value)
		switch val(cp.Name) {
		case "vCPUs":
			z.cpus, _ = strconv.Atoi(v)
		case "MemoryGB":
			gb, _ := strconv.ParseFloat(v, 64)
			z.memMiB = int64(math.Round(gb * 1024))
		}
	}
	return z
}
