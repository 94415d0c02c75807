package vsphere

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/rehost/rehost/pkg/source"
)

// vmProps are the VirtualMachine properties an inventory entry is built from.
var vmProps = []string{
	"name", "parent", "parentVApp",
	"config.instanceUuid", "config.guestFullName", "config.guestId", "config.template",
	"config.hardware.numCPU", "config.hardware.memoryMB", "config.hardware.device",
	"config.firmware", "config.changeTrackingEnabled", "config.version", "config.keyId",
	"runtime.powerState", "guest.toolsRunningStatus", "guest.guestId", "snapshot",
}

// detailedProp is the guest's own description of its OS, which VMware
// Tools 11.2+ report and vCenter 8.0.2+ serves; an older vCenter refuses
// the whole request with InvalidProperty, so it is asked for only until
// then.
const detailedProp = "guest.guestDetailedData"

// props are the properties to ask vCenter for.
func (s *Source) props() []string {
	if s.noDetailed.Load() {
		return vmProps
	}
	return append(slices.Clone(vmProps), detailedProp)
}

// retrieveVMs runs a property retrieval built for props, again without the
// detailed guest data when this vCenter does not know it.
func (s *Source) retrieveVMs(ctx context.Context, build func(props []string) types.RetrievePropertiesEx) ([]types.ObjectContent, error) {
	objs, err := mo.RetrievePropertiesEx(ctx, s.c, build(s.props()))
	if err != nil && !s.noDetailed.Load() && isFault(err, "InvalidProperty") {
		s.noDetailed.Store(true)
		objs, err = mo.RetrievePropertiesEx(ctx, s.c, build(vmProps))
	}
	return objs, err
}

// Inventory lists every VM (templates excluded) in three round trips
// whatever their number: create a container view, one RetrievePropertiesEx
// of the VMs with their folders, datacenters and networks (continued in
// pages only when vCenter pages it), destroy the view.
func (s *Source) Inventory(ctx context.Context) ([]source.VM, error) {
	m := view.NewManager(s.c)
	v, err := m.CreateContainerView(ctx, s.c.ServiceContent.RootFolder,
		[]string{"VirtualMachine", "Folder", "Datacenter", "Network", "DistributedVirtualPortgroup", "VirtualApp"}, true)
	if err != nil {
		return nil, classify("list vms", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30e9)
		defer cancel()
		if err := v.Destroy(dctx); err != nil {
			slog.Warn("destroy inventory view", "err", err)
		}
	}()
	build := func(props []string) types.RetrievePropertiesEx {
		return types.RetrievePropertiesEx{
			This: s.c.ServiceContent.PropertyCollector,
			SpecSet: []types.PropertyFilterSpec{{
				ObjectSet: []types.ObjectSpec{{
					Obj:  v.Reference(),
					Skip: types.NewBool(true),
					SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{
						Type: "ContainerView", Path: "view", Skip: types.NewBool(false),
					}},
				}},
				PropSet: []types.PropertySpec{
					{Type: "VirtualMachine", PathSet: props},
					{Type: "Folder", PathSet: []string{"name", "parent"}},
					{Type: "Datacenter", PathSet: []string{"name", "parent"}},
					{Type: "VirtualApp", PathSet: []string{"name", "parent", "parentFolder"}},
					{Type: "Network", PathSet: []string{"name"}},
					{Type: "DistributedVirtualPortgroup", PathSet: []string{"name", "key"}},
				},
			}},
		}
	}
	objs, err := s.retrieveVMs(ctx, build)
	if err != nil {
		return nil, classify("list vms", err)
	}
	inv := newInventory()
	var vms []types.ObjectContent
	for _, o := range objs {
		switch o.Obj.Type {
		case "VirtualMachine":
			vms = append(vms, o)
		default:
			inv.addContainer(o)
		}
	}
	out := make([]source.VM, 0, len(vms))
	for _, o := range vms {
		vm, ok, err := inv.vm(o)
		if err != nil {
			// A VM that vanished or is being created mid-listing has no
			// config yet; it shows up on the next listing.
			slog.Warn("skip vm in inventory", "vm", o.Obj.Value, "err", err)
			continue
		}
		if !ok {
			continue
		}
		if s.cfg.Datacenter != "" && !strings.HasPrefix(vm.Path, "/"+s.cfg.Datacenter+"/") {
			continue
		}
		out = append(out, vm)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// VM returns one VM by instance UUID.
func (s *Source) VM(ctx context.Context, id string) (source.VM, error) {
	ref, err := s.findVM(ctx, id)
	if err != nil {
		return source.VM{}, err
	}
	objs, err := s.retrieveVMs(ctx, func(props []string) types.RetrievePropertiesEx {
		return retrieveSpec(s, []types.ManagedObjectReference{ref}, props)
	})
	if err != nil {
		return source.VM{}, classify("get vm "+id, err)
	}
	if len(objs) != 1 {
		return source.VM{}, fmt.Errorf("get vm %s: %w", id, source.ErrNotFound)
	}
	inv := newInventory()
	// Resolve the inventory path and network names one level at a time.
	var mvm mo.VirtualMachine
	if err := mo.LoadObjectContent(objs, &mvm); err != nil {
		return source.VM{}, classify("get vm "+id, err)
	}
	parent := mvm.Parent
	if parent == nil {
		parent = mvm.ParentVApp
	}
	for parent != nil && *parent != s.c.ServiceContent.RootFolder {
		objs, err := s.retrieve(ctx, []types.ManagedObjectReference{*parent}, []string{"name", "parent"})
		if err != nil || len(objs) != 1 {
			return source.VM{}, classify("get vm "+id+": resolve its inventory path", err)
		}
		inv.addContainer(objs[0])
		parent = inv.parent[*parent]
	}
	var nets []types.ManagedObjectReference
	for _, d := range mvm.Config.Hardware.Device {
		if c, ok := d.(types.BaseVirtualEthernetCard); ok {
			switch b := c.GetVirtualEthernetCard().Backing.(type) {
			case *types.VirtualEthernetCardNetworkBackingInfo:
				if b.Network != nil {
					nets = append(nets, *b.Network)
				}
			case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
				nets = append(nets, types.ManagedObjectReference{Type: "DistributedVirtualPortgroup", Value: b.Port.PortgroupKey})
			}
		}
	}
	if len(nets) > 0 {
		if objs, err := s.retrieve(ctx, nets, []string{"name"}); err == nil {
			for _, o := range objs {
				inv.addContainer(o)
			}
		}
	}
	vm, ok, err := inv.vm(objs[0])
	if err != nil {
		return source.VM{}, classify("get vm "+id, err)
	}
	if !ok {
		return source.VM{}, fmt.Errorf("get vm %s: it is a template: %w", id, source.ErrNotFound)
	}
	return vm, nil
}

// findVM resolves an instance UUID to the VM's reference.
func (s *Source) findVM(ctx context.Context, id string) (types.ManagedObjectReference, error) {
	if id == "" {
		return types.ManagedObjectReference{}, fmt.Errorf("find vm: empty id: %w", source.ErrNotFound)
	}
	res, err := methods.FindByUuid(ctx, s.c, &types.FindByUuid{
		This:         *s.c.ServiceContent.SearchIndex,
		Uuid:         id,
		VmSearch:     true,
		InstanceUuid: types.NewBool(true),
	})
	if err != nil {
		return types.ManagedObjectReference{}, classify("find vm "+id, err)
	}
	if res.Returnval == nil {
		return types.ManagedObjectReference{}, fmt.Errorf("find vm %s: no vm has this instance uuid: %w", id, source.ErrNotFound)
	}
	return *res.Returnval, nil
}

// retrieve reads props of the given objects in one round trip.
func (s *Source) retrieve(ctx context.Context, refs []types.ManagedObjectReference, props []string) ([]types.ObjectContent, error) {
	return mo.RetrievePropertiesEx(ctx, s.c, retrieveSpec(s, refs, props))
}

func retrieveSpec(s *Source, refs []types.ManagedObjectReference, props []string) types.RetrievePropertiesEx {
	byType := map[string]bool{}
	spec := types.PropertyFilterSpec{}
	for _, r := range refs {
		spec.ObjectSet = append(spec.ObjectSet, types.ObjectSpec{Obj: r})
		if !byType[r.Type] {
			byType[r.Type] = true
			spec.PropSet = append(spec.PropSet, types.PropertySpec{Type: r.Type, PathSet: props})
		}
	}
	return types.RetrievePropertiesEx{This: s.c.ServiceContent.PropertyCollector, SpecSet: []types.PropertyFilterSpec{spec}}
}

// inventory resolves names of containers and networks while building VMs.
type inventory struct {
	name   map[types.ManagedObjectReference]string
	parent map[types.ManagedObjectReference]*types.ManagedObjectReference
	pgKey  map[string]string // distributed port group key → name
}

func newInventory() *inventory {
	return &inventory{
		name:   map[types.ManagedObjectReference]string{},
		parent: map[types.ManagedObjectReference]*types.ManagedObjectReference{},
		pgKey:  map[string]string{},
	}
}

func (inv *inventory) addContainer(o types.ObjectContent) {
	var key string
	for _, p := range o.PropSet {
		switch p.Name {
		case "name":
			if s, ok := p.Val.(string); ok {
				inv.name[o.Obj] = s
			}
		case "parent", "parentFolder":
			if r, ok := p.Val.(types.ManagedObjectReference); ok && inv.parent[o.Obj] == nil {
				inv.parent[o.Obj] = &r
			}
		case "key":
			key, _ = p.Val.(string)
		}
	}
	if o.Obj.Type == "DistributedVirtualPortgroup" {
		if key == "" {
			key = o.Obj.Value
		}
		inv.pgKey[key] = inv.name[o.Obj]
	}
}

// path is the inventory path of an entity below the root folder, e.g.
// "/DC0/vm/web/web-01".
func (inv *inventory) path(parent *types.ManagedObjectReference, name string) string {
	parts := []string{name}
	seen := map[types.ManagedObjectReference]bool{}
	for parent != nil && !seen[*parent] {
		seen[*parent] = true
		n, ok := inv.name[*parent]
		if !ok {
			break // the root folder is not in the view
		}
		parts = append(parts, n)
		parent = inv.parent[*parent]
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return "/" + strings.Join(parts, "/")
}

// vm builds an inventory entry; ok is false for a template.
func (inv *inventory) vm(o types.ObjectContent) (source.VM, bool, error) {
	v, err := mo.ObjectContentToType(o)
	if err != nil {
		return source.VM{}, false, err
	}
	m, ok := v.(mo.VirtualMachine)
	if !ok || m.Config == nil {
		return source.VM{}, false, fmt.Errorf("vm %s has no configuration", o.Obj.Value)
	}
	if m.Config.Template {
		return source.VM{}, false, nil
	}
	parent := m.Parent
	if parent == nil {
		parent = m.ParentVApp
	}
	vm := source.VM{
		ID:         m.Config.InstanceUuid,
		Name:       m.Name,
		Path:       inv.path(parent, m.Name),
		GuestOS:    m.Config.GuestFullName,
		CPUs:       int(m.Config.Hardware.NumCPU),
		MemoryMiB:  int64(m.Config.Hardware.MemoryMB),
		Firmware:   source.FirmwareBIOS,
		PowerState: string(m.Runtime.PowerState),
		Disks:      []source.Disk{},
		NICs:       []source.NIC{},
	}
	if vm.GuestOS == "" {
		vm.GuestOS = m.Config.GuestId
	}
	if m.Config.Firmware == string(types.GuestOsDescriptorFirmwareTypeEfi) {
		vm.Firmware = source.FirmwareEFI
	}
	if m.Guest != nil {
		vm.ToolsRunning = m.Guest.ToolsRunningStatus == string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
	}
	if m.Config.ChangeTrackingEnabled != nil {
		vm.CBTEnabled = *m.Config.ChangeTrackingEnabled
	}
	vm.HardwareVersion, vm.GuestID = m.Config.Version, m.Config.GuestId
	if m.Guest != nil {
		// The guest's own id, when Tools run, is what it really is.
		vm.GuestID = cmp.Or(m.Guest.GuestId, vm.GuestID)
		vm.GuestVersion = detailed(m.Guest.GuestDetailedData)["distroVersion"]
	}
	vm.Snapshots = chainDepth(m.Snapshot)
	devices := object.VirtualDeviceList(m.Config.Hardware.Device)
	vm.Disks = disksOf(devices, m.Config.KeyId != nil)
	for _, d := range devices {
		c, ok := d.(types.BaseVirtualEthernetCard)
		if !ok {
			continue
		}
		card := c.GetVirtualEthernetCard()
		nic := source.NIC{MAC: card.MacAddress, Type: nicType(d)}
		if card.DeviceInfo != nil {
			nic.Label = card.DeviceInfo.GetDescription().Label
		}
		switch b := card.Backing.(type) {
		case *types.VirtualEthernetCardNetworkBackingInfo:
			nic.Network = b.DeviceName
			if b.Network != nil && inv.name[*b.Network] != "" {
				nic.Network = inv.name[*b.Network]
			}
		case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
			nic.Network = inv.pgKey[b.Port.PortgroupKey]
			if nic.Network == "" {
				nic.Network = inv.name[types.ManagedObjectReference{Type: "DistributedVirtualPortgroup", Value: b.Port.PortgroupKey}]
			}
			if nic.Network == "" {
				nic.Network = b.Port.PortgroupKey
			}
		case *types.VirtualEthernetCardOpaqueNetworkBackingInfo:
			nic.Network = b.OpaqueNetworkId
		}
		vm.NICs = append(vm.NICs, nic)
	}
	return vm, true, nil
}

// disksOf lists the virtual disks in device order; encrypted says the VM
// is encrypted (config.keyId), and so each of its disks.
func disksOf(devices object.VirtualDeviceList, encrypted bool) []source.Disk {
	out := []source.Disk{}
	for _, d := range devices.SelectByType((*types.VirtualDisk)(nil)) {
		vd := d.(*types.VirtualDisk)
		disk := source.Disk{
			Key:           strconv.Itoa(int(vd.Key)),
			CapacityBytes: vd.CapacityInBytes,
			Controller:    controllerOf(devices, vd),
			Encrypted:     encrypted,
		}
		if disk.CapacityBytes == 0 {
			disk.CapacityBytes = vd.CapacityInKB * 1024
		}
		if vd.DeviceInfo != nil {
			disk.Label = vd.DeviceInfo.GetDescription().Label
		}
		if b, ok := vd.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
			disk.Backing = b.GetVirtualDeviceFileBackingInfo().FileName
		}
		var mode, sharing string
		switch b := vd.Backing.(type) {
		case *types.VirtualDiskFlatVer2BackingInfo:
			mode, sharing = b.DiskMode, b.Sharing
			disk.Encrypted = disk.Encrypted || b.KeyId != nil
		case *types.VirtualDiskSeSparseBackingInfo:
			mode = b.DiskMode
			disk.Encrypted = disk.Encrypted || b.KeyId != nil
		case *types.VirtualDiskSparseVer2BackingInfo:
			mode = b.DiskMode
			disk.Encrypted = disk.Encrypted || b.KeyId != nil
		case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
			mode, sharing = b.DiskMode, b.Sharing
			// A virtual-mode RDM is snapshotted and exported as a VMDK; a
			// physical-mode one is neither.
			if b.CompatibilityMode == string(types.VirtualDiskCompatibilityModePhysicalMode) {
				disk.RawDevice = "physical RDM " + cmp.Or(b.DeviceName, b.LunUuid)
			}
		}
		switch mode {
		case string(types.VirtualDiskModeIndependent_persistent):
			disk.Mode = source.DiskIndependent
		case string(types.VirtualDiskModeIndependent_nonpersistent):
			disk.Mode = source.DiskIndependentNonpersistent
		}
		disk.Shared = sharing == string(types.VirtualDiskSharingSharingMultiWriter)
		out = append(out, disk)
	}
	return out
}

// chainDepth counts the snapshots from the root of the VM's snapshot tree
// to its current one: the chain its disks run on.
func chainDepth(info *types.VirtualMachineSnapshotInfo) int {
	if info == nil || info.CurrentSnapshot == nil {
		return 0
	}
	var walk func(ts []types.VirtualMachineSnapshotTree, depth int) int
	walk = func(ts []types.VirtualMachineSnapshotTree, depth int) int {
		for _, t := range ts {
			if t.Snapshot == *info.CurrentSnapshot {
				return depth + 1
			}
			if n := walk(t.ChildSnapshotList, depth+1); n > 0 {
				return n
			}
		}
		return 0
	}
	return walk(info.RootSnapshotList, 0)
}

// detailed parses guest.guestDetailedData: key='value' pairs
// ("distroName='Ubuntu' distroVersion='22.04' prettyName='…'").
func detailed(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		k, rest, ok := strings.Cut(strings.TrimLeft(s, " "), "='")
		if !ok {
			break
		}
		v, rest2, _ := strings.Cut(rest, "'")
		out[k], s = v, rest2
	}
	return out
}

// controllerOf names a disk's slot the way vSphere's .vmx does: "scsi0:1".
func controllerOf(devices object.VirtualDeviceList, vd *types.VirtualDisk) string {
	unit := int32(0)
	if vd.UnitNumber != nil {
		unit = *vd.UnitNumber
	}
	c := devices.FindByKey(vd.ControllerKey)
	kind, bus := "controller", int32(0)
	switch x := c.(type) {
	case types.BaseVirtualSCSIController:
		kind, bus = "scsi", x.GetVirtualSCSIController().BusNumber
	case types.BaseVirtualSATAController:
		kind, bus = "sata", x.GetVirtualSATAController().BusNumber
	case *types.VirtualIDEController:
		kind, bus = "ide", x.BusNumber
	case *types.VirtualNVMEController:
		kind, bus = "nvme", x.BusNumber
	case types.BaseVirtualController:
		bus = x.GetVirtualController().BusNumber
	}
	return fmt.Sprintf("%s%d:%d", kind, bus, unit)
}

func nicType(d types.BaseVirtualDevice) string {
	switch d.(type) {
	case *types.VirtualVmxnet3:
		return "vmxnet3"
	case *types.VirtualVmxnet3Vrdma:
		return "vmxnet3vrdma"
	case *types.VirtualVmxnet2:
		return "vmxnet2"
	case *types.VirtualVmxnet:
		return "vmxnet"
	case *types.VirtualE1000e:
		return "e1000e"
	case *types.VirtualE1000:
		return "e1000"
	case *types.VirtualPCNet32:
		return "pcnet32"
	case *types.VirtualSriovEthernetCard:
		return "sriov"
	}
	return strings.ToLower(strings.TrimPrefix(fmt.Sprintf("%T", d), "*types.Virtual"))
}
