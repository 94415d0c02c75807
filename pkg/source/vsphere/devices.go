package vsphere

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/vsphere/internal/vim"
)

// device is a virtual device as vCenter describes it: its type (the
// xsi:type of the VirtualDevice, "VirtualDisk", "VirtualVmxnet3",
// "ParaVirtualSCSIController") and its properties.
type device struct {
	typ string
	n   *vim.Node
}

// devicesOf reads a config.hardware.device value (ArrayOfVirtualDevice).
func devicesOf(n *vim.Node) []device {
	var out []device
	for _, d := range n.Children("VirtualDevice") {
		out = append(out, device{typ: d.Type(), n: d})
	}
	return out
}

func (d device) key() int32           { return int32(d.n.Child("key").Int()) }
func (d device) controllerKey() int32 { return int32(d.n.Child("controllerKey").Int()) }
func (d device) unit() int32          { return int32(d.n.Child("unitNumber").Int()) }
func (d device) bus() int32           { return int32(d.n.Child("busNumber").Int()) }
func (d device) label() string        { return d.n.Path("deviceInfo", "label").String() }
func (d device) backing() *vim.Node   { return d.n.Child("backing") }
func (d device) isDisk() bool         { return d.typ == "VirtualDisk" }

// nicTypes are the ethernet cards' device types and what the catalog
// calls them.
var nicTypes = map[string]string{
	"VirtualVmxnet3": "vmxnet3", "VirtualVmxnet3Vrdma": "vmxnet3vrdma", "VirtualVmxnet2": "vmxnet2", "VirtualVmxnet": "vmxnet",
	"VirtualE1000e": "e1000e", "VirtualE1000": "e1000", "VirtualPCNet32": "pcnet32", "VirtualSriovEthernetCard": "sriov",
}

// isNIC reports whether the device is an ethernet card: a known card type,
// or a device with a MAC address (a card type newer than this list).
func (d device) isNIC() bool {
	_, ok := nicTypes[d.typ]
	return ok || d.n.Child("macAddress").Has()
}

func (d device) nicType() string {
	if t, ok := nicTypes[d.typ]; ok {
		return t
	}
	return strings.ToLower(strings.TrimPrefix(d.typ, "Virtual"))
}

// controllerKinds are the disk controllers' device types by the .vmx's
// name of their bus.
var controllerKinds = map[string][]string{
	"scsi": {"VirtualLsiLogicController", "VirtualLsiLogicSASController", "ParaVirtualSCSIController", "VirtualBusLogicController", "VirtualSCSIController"},
	"sata": {"VirtualAHCIController", "VirtualSATAController"},
	"ide":  {"VirtualIDEController"},
	"nvme": {"VirtualNVMEController"},
}

func (d device) controllerKind() string {
	for kind, types := range controllerKinds {
		if slices.Contains(types, d.typ) {
			return kind
		}
	}
	return "controller"
}

// isController reports whether the device is a controller of any kind.
func (d device) isController() bool {
	return d.controllerKind() != "controller" || strings.HasSuffix(d.typ, "Controller")
}

func findDevice(devices []device, key int32) (device, bool) {
	i := slices.IndexFunc(devices, func(d device) bool { return d.key() == key })
	if i < 0 {
		return device{}, false
	}
	return devices[i], true
}

// capacity is a disk's size in bytes.
func (d device) capacity() int64 {
	if b := d.n.Child("capacityInBytes").Int(); b > 0 {
		return b
	}
	return d.n.Child("capacityInKB").Int() * 1024
}

// changeID is a disk's change id where change tracking is on ("" where it
// is off or the backing has none).
func (d device) changeID() string { return d.backing().Child("changeId").String() }

// vdisks are the virtual disks in device order.
func vdisks(devices []device) []device {
	var out []device
	for _, d := range devices {
		if d.isDisk() {
			out = append(out, d)
		}
	}
	return out
}

// disksOf lists the virtual disks in device order; encrypted says the VM
// is encrypted (config.keyId), and so each of its disks.
func disksOf(devices []device, encrypted bool) []source.Disk {
	out := []source.Disk{}
	for _, vd := range vdisks(devices) {
		b := vd.backing()
		disk := source.Disk{
			Key:           strconv.Itoa(int(vd.key())),
			CapacityBytes: vd.capacity(),
			Controller:    controllerOf(devices, vd),
			Label:         vd.label(),
			Backing:       b.Child("fileName").String(),
			// A disk of its own key (encrypted alone) says so in its backing.
			Encrypted: encrypted || b.Child("keyId").Has(),
			Shared:    b.Child("sharing").String() == "sharingMultiWriter",
		}
		switch b.Child("diskMode").String() {
		case "independent_persistent":
			disk.Mode = source.DiskIndependent
		case "independent_nonpersistent":
			disk.Mode = source.DiskIndependentNonpersistent
		}
		// A virtual-mode RDM is snapshotted and exported as a VMDK; a
		// physical-mode one is neither.
		if b.Type() == "VirtualDiskRawDiskMappingVer1BackingInfo" && b.Child("compatibilityMode").String() == "physicalMode" {
			disk.RawDevice = "physical RDM " + cmp.Or(b.Child("deviceName").String(), b.Child("lunUuid").String())
		}
		out = append(out, disk)
	}
	return out
}

// controllerOf names a disk's slot the way vSphere's .vmx does: "scsi0:1".
func controllerOf(devices []device, vd device) string {
	kind, bus := "controller", int32(0)
	if c, ok := findDevice(devices, vd.controllerKey()); ok && c.isController() {
		kind, bus = c.controllerKind(), c.bus()
	}
	return fmt.Sprintf("%s%d:%d", kind, bus, vd.unit())
}

// leaseKey is the key vCenter gives a disk in an export lease:
// "/vm-42/VirtualLsiLogicController0:1".
func leaseKey(vm vim.Ref, devices []device, vd device) string {
	name, bus := "VirtualController", int32(0)
	if c, ok := findDevice(devices, vd.controllerKey()); ok && c.isController() {
		name, bus = c.typ, c.bus()
	}
	return fmt.Sprintf("/%s/%s%d:%d", vm.Value, name, bus, vd.unit())
}
