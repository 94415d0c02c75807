package hyperv

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/rehost/rehost/pkg/source"
)

// The scripts answer objects shaped as the cmdlets describe them (property
// names of Get-VM, Get-VMHardDiskDrive, Get-VHD, Get-VMNetworkAdapter,
// Get-VMFirmware, Get-VMSnapshot; Get-SCVirtualMachine and its
// VirtualDiskDrives, Get-SCVMCheckpoint). Windows PowerShell's
// ConvertTo-Json writes an enum as its number unless the script casts it,
// a missing property as null, and a lone array element as the element
// itself where no @() forced an array; the types below accept each form.

// text is a JSON string, number, boolean or null read as text.
type text string

func (t *text) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*t = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = text(s)
	default:
		*t = text(b)
	}
	return nil
}

// number is a JSON number, numeric string or null read as an int64.
type number int64

func (n *number) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(bytes.TrimSpace(b)), `"`)
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		v = int64(f)
	}
	*n = number(v)
	return nil
}

// flag is a JSON boolean, "True"/"False", 0/1 or null.
type flag bool

func (f *flag) UnmarshalJSON(b []byte) error {
	s := strings.ToLower(strings.Trim(string(bytes.TrimSpace(b)), `"`))
	*f = s == "true" || s == "1" || s == "on"
	return nil
}

// list is a JSON array, a lone element, or null.
type list[T any] []T

func (l *list[T]) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*l = nil
		return nil
	case len(b) > 0 && b[0] == '[':
		var v []T
		err := json.Unmarshal(b, &v)
		*l = v
		return err
	}
	var one T
	if err := json.Unmarshal(b, &one); err != nil {
		return err
	}
	*l = list[T]{one}
	return nil
}

// enumName maps the numbers ConvertTo-Json writes for uncast enums.
func enumName(t text, names map[string]string) string {
	if n, ok := names[string(t)]; ok {
		return n
	}
	return string(t)
}

var (
	vmStates       = map[string]string{"2": "Running", "3": "Off", "6": "Saved", "9": "Paused", "10": "Starting", "4": "Stopping"}
	vhdTypes       = map[string]string{"2": "Fixed", "3": "Dynamic", "4": "Differencing"}
	vhdFormats     = map[string]string{"2": "VHD", "3": "VHDX", "4": "VHDSet"}
	controllerType = map[string]string{"0": "IDE", "1": "SCSI", "2": "PMEM"}
	onOff          = map[string]string{"0": "On", "1": "Off"}
)

// psVHD is a Get-VHD object (or the chain entry vmm-prelude.ps1 builds
// from an SCVMM VirtualHardDisk).
type psVHD struct {
	Path              text   `json:"Path"`
	VhdFormat         text   `json:"VhdFormat"`
	VhdType           text   `json:"VhdType"`
	Size              number `json:"Size"`
	FileSize          number `json:"FileSize"`
	ParentPath        text   `json:"ParentPath"`
	LogicalSectorSize number `json:"LogicalSectorSize"`
	BlockSize         number `json:"BlockSize"`
}

// psDrive is a Get-VMHardDiskDrive object with its chain.
type psDrive struct {
	ControllerType                text        `json:"ControllerType"`
	ControllerNumber              number      `json:"ControllerNumber"`
	ControllerLocation            number      `json:"ControllerLocation"`
	Path                          text        `json:"Path"`
	DiskNumber                    text        `json:"DiskNumber"`
	SupportPersistentReservations flag        `json:"SupportPersistentReservations"`
	Chain                         list[psVHD] `json:"Chain"`
}

type psNIC struct {
	Name       text `json:"Name"`
	MacAddress text `json:"MacAddress"`
	SwitchName text `json:"SwitchName"`
	IsLegacy   flag `json:"IsLegacy"`
}

// psVM is a Get-VM object with its firmware, drives, adapters and guest OS.
type psVM struct {
	ID                       text          `json:"Id"`
	Name                     text          `json:"Name"`
	ComputerName             text          `json:"ComputerName"`
	Path                     text          `json:"Path"`
	Generation               number        `json:"Generation"`
	Version                  text          `json:"Version"`
	State                    text          `json:"State"`
	Status                   text          `json:"Status"`
	ProcessorCount           number        `json:"ProcessorCount"`
	MemoryStartup            number        `json:"MemoryStartup"`
	DynamicMemoryEnabled     flag          `json:"DynamicMemoryEnabled"`
	Heartbeat                text          `json:"Heartbeat"`
	IntegrationServicesState text          `json:"IntegrationServicesState"`
	IsClustered              flag          `json:"IsClustered"`
	CheckpointType           text          `json:"CheckpointType"`
	SecureBoot               text          `json:"SecureBoot"`
	SecureBootTemplate       text          `json:"SecureBootTemplate"`
	BootDisk                 text          `json:"BootDisk"`
	GuestOS                  text          `json:"GuestOS"`
	HardDrives               list[psDrive] `json:"HardDrives"`
	NetworkAdapters          list[psNIC]   `json:"NetworkAdapters"`
}

// psSnapshot is a Get-VMSnapshot (or Get-SCVMCheckpoint) object.
type psSnapshot struct {
	ID           text `json:"Id"`
	Name         text `json:"Name"`
	VMID         text `json:"VMId"`
	State        text `json:"State"`
	VMState      text `json:"VMState"`
	SnapshotType text `json:"SnapshotType"`
	// Production is set by the scripts that know what they asked for
	// (SCVMM's; a recovery checkpoint's note).
	Production flag `json:"Production"`
	Fallback   text `json:"Fallback"`
	// Base marks a reference point (a kept checkpoint).
	Base flag `json:"Base"`
}

// rctPage is a page of a disk's changed areas (hv-changes.ps1): the areas
// from where the page was asked to Next, and the disk's size.
type rctPage struct {
	Size    number       `json:"Size"`
	Next    number       `json:"Next"`
	Offsets list[number] `json:"Offsets"`
	Lengths list[number] `json:"Lengths"`
}

// refPoint is a reference point a checkpoint became (hv-keep.ps1), with
// the resilient change tracking id and size of each disk.
type refPoint struct {
	ID    text `json:"Id"`
	Name  text `json:"Name"`
	Disks list[struct {
		Disk text   `json:"Disk"` // "scsi0:1"
		Rct  text   `json:"Rct"`
		Size number `json:"Size"`
	}] `json:"Disks"`
}

// psExport is the answer of the export scripts.
type psExport struct {
	ComputerName      text           `json:"ComputerName"`
	VMHost            text           `json:"VMHost"`
	Status            text           `json:"Status"`
	StatusString      text           `json:"StatusString"`
	HardDrives        list[psDrive]  `json:"HardDrives"`
	VirtualDiskDrives list[vmmDrive] `json:"VirtualDiskDrives"`
}

type vmmDrive struct {
	BusType         text        `json:"BusType"`
	Bus             number      `json:"Bus"`
	Lun             number      `json:"Lun"`
	Location        text        `json:"Location"`
	PassThroughDisk text        `json:"PassThroughDisk"`
	IsShared        flag        `json:"IsShared"`
	Chain           list[psVHD] `json:"Chain"`
}

type vmmNIC struct {
	Name                      text `json:"Name"`
	MACAddress                text `json:"MACAddress"`
	VMNetwork                 text `json:"VMNetwork"`
	VirtualNetwork            text `json:"VirtualNetwork"`
	VirtualNetworkAdapterType text `json:"VirtualNetworkAdapterType"`
}

// vmmVM is a Get-SCVirtualMachine object.
type vmmVM struct {
	ID                     text           `json:"ID"`
	VMId                   text           `json:"VMId"`
	Name                   text           `json:"Name"`
	VMHost                 text           `json:"VMHost"`
	HostGroupPath          text           `json:"HostGroupPath"`
	Location               text           `json:"Location"`
	Generation             number         `json:"Generation"`
	CPUCount               number         `json:"CPUCount"`
	Memory                 number         `json:"Memory"` // MB
	DynamicMemoryEnabled   flag           `json:"DynamicMemoryEnabled"`
	Status                 text           `json:"Status"`
	StatusString           text           `json:"StatusString"`
	OperatingSystem        text           `json:"OperatingSystem"`
	SecureBootEnabled      flag           `json:"SecureBootEnabled"`
	IsHighlyAvailable      flag           `json:"IsHighlyAvailable"`
	CheckpointType         text           `json:"CheckpointType"`
	VirtualDiskDrives      list[vmmDrive] `json:"VirtualDiskDrives"`
	VirtualNetworkAdapters list[vmmNIC]   `json:"VirtualNetworkAdapters"`
}

// hostVM is a VM as the source works with it, whichever manager described
// it.
type hostVM struct {
	ID, Name   string
	Host       string // the node running it now
	Location   string // where its configuration lives
	HostGroup  string // SCVMM host group path
	Generation int
	Version    string // configuration version ("9.0"); empty from SCVMM
	State      string // Running, Off, Saved, Paused, …
	Status     string
	CPUs       int
	MemoryMiB  int64
	Tools      bool // integration services answer
	SecureBoot bool
	GuestOS    string
	Clustered  bool
	Disks      []hostDisk
	NICs       []source.NIC
	bootDisk   string
}

// hostDisk is a virtual disk drive and the chain of files behind it,
// newest first.
type hostDisk struct {
	Controller string // "scsi0:1"
	Path       string
	PassThru   string // physical disk of a pass-through drive
	Shared     bool
	Chain      []vhdFile
	sasd       string // the virtual disk's WMI instance id (WMI transport)
}

type vhdFile struct {
	Path, Format, Type string
	Size, FileSize     int64
	Parent             string
}

func (v psVHD) file() vhdFile {
	return vhdFile{Path: string(v.Path), Format: strings.ToUpper(enumName(v.VhdFormat, vhdFormats)), Type: vmmDiskType(enumName(v.VhdType, vhdTypes)),
		Size: int64(v.Size), FileSize: int64(v.FileSize), Parent: string(v.ParentPath)}
}

// vmmDiskType maps SCVMM's VHDType names to Get-VHD's.
func vmmDiskType(t string) string {
	switch t {
	case "DynamicallyExpanding":
		return "Dynamic"
	case "FixedSize":
		return "Fixed"
	}
	return t
}

func chainOf(c list[psVHD]) []vhdFile {
	out := make([]vhdFile, 0, len(c))
	for _, v := range c {
		out = append(out, v.file())
	}
	return out
}

func (d psDrive) disk() hostDisk {
	ct := strings.ToLower(enumName(d.ControllerType, controllerType))
	h := hostDisk{Controller: fmt.Sprintf("%s%d:%d", ct, d.ControllerNumber, d.ControllerLocation), Path: string(d.Path),
		Shared: bool(d.SupportPersistentReservations) || strings.HasSuffix(strings.ToLower(string(d.Path)), ".vhds"),
		Chain:  chainOf(d.Chain)}
	if d.DiskNumber != "" || d.Path == "" {
		h.PassThru = "physical disk " + string(d.DiskNumber)
	}
	return h
}

func (d vmmDrive) disk() hostDisk {
	h := hostDisk{Controller: fmt.Sprintf("%s%d:%d", strings.ToLower(string(d.BusType)), d.Bus, d.Lun), Path: string(d.Location),
		Shared: bool(d.IsShared) || strings.HasSuffix(strings.ToLower(string(d.Location)), ".vhds"), Chain: chainOf(d.Chain)}
	if d.PassThroughDisk != "" || d.Location == "" {
		h.PassThru = cmp.Or(string(d.PassThroughDisk), "a physical disk")
	}
	return h
}

func (v psVM) host() hostVM {
	h := hostVM{ID: strings.ToLower(string(v.ID)), Name: string(v.Name), Host: string(v.ComputerName), Location: string(v.Path),
		Generation: int(v.Generation), Version: string(v.Version), State: enumName(v.State, vmStates), Status: string(v.Status), CPUs: int(v.ProcessorCount),
		MemoryMiB: int64(v.MemoryStartup) >> 20, Tools: strings.HasPrefix(string(v.Heartbeat), "Ok"),
		SecureBoot: enumName(v.SecureBoot, onOff) == "On", GuestOS: string(v.GuestOS), Clustered: bool(v.IsClustered),
		bootDisk: strings.ToLower(string(v.BootDisk))}
	for _, d := range v.HardDrives {
		h.Disks = append(h.Disks, d.disk())
	}
	for _, n := range v.NetworkAdapters {
		t := "synthetic"
		if n.IsLegacy {
			t = "legacy"
		}
		h.NICs = append(h.NICs, source.NIC{Label: string(n.Name), MAC: macText(string(n.MacAddress)), Network: string(n.SwitchName), Type: t})
	}
	return h
}

func (v vmmVM) host() hostVM {
	h := hostVM{ID: strings.ToLower(string(v.ID)), Name: string(v.Name), Host: string(v.VMHost), Location: string(v.Location),
		HostGroup: string(v.HostGroupPath), Generation: int(v.Generation), State: vmmState(string(v.Status)),
		Status: string(v.StatusString), CPUs: int(v.CPUCount), MemoryMiB: int64(v.Memory), SecureBoot: bool(v.SecureBootEnabled),
		GuestOS: string(v.OperatingSystem), Clustered: bool(v.IsHighlyAvailable)}
	if h.Generation == 0 {
		h.Generation = 1
	}
	for _, d := range v.VirtualDiskDrives {
		h.Disks = append(h.Disks, d.disk())
	}
	for _, n := range v.VirtualNetworkAdapters {
		h.NICs = append(h.NICs, source.NIC{Label: string(n.Name), MAC: macText(string(n.MACAddress)),
			Network: cmp.Or(string(n.VMNetwork), string(n.VirtualNetwork)), Type: cmp.Or(strings.ToLower(string(n.VirtualNetworkAdapterType)), "synthetic")})
	}
	return h
}

// vmmState maps SCVMM's VMComputerSystemState to Hyper-V's names.
func vmmState(s string) string {
	switch s {
	case "PowerOff", "Stopped":
		return "Off"
	}
	return s
}

// macText formats "00155D010203" as "00:15:5d:01:02:03".
func macText(m string) string {
	m = strings.ToLower(strings.NewReplacer(":", "", "-", "").Replace(m))
	if len(m) != 12 {
		return m
	}
	return m[0:2] + ":" + m[2:4] + ":" + m[4:6] + ":" + m[6:8] + ":" + m[8:10] + ":" + m[10:12]
}

// orderDisks puts the boot disk first (generation 2: the firmware's first
// disk; generation 1: IDE before SCSI, as the BIOS boots), then controller
// order.
func orderDisks(disks []hostDisk, bootDisk string) []hostDisk {
	out := append([]hostDisk(nil), disks...)
	key := func(d hostDisk) [4]int {
		boot, bus := 1, 2
		if bootDisk != "" && d.Controller == bootDisk {
			boot = 0
		}
		switch {
		case strings.HasPrefix(d.Controller, "ide"):
			bus = 0
		case strings.HasPrefix(d.Controller, "scsi"):
			bus = 1
		}
		n, l := controllerNumbers(d.Controller)
		return [4]int{boot, bus, n, l}
	}
	slices.SortStableFunc(out, func(a, b hostDisk) int {
		ka, kb := key(a), key(b)
		return slices.Compare(ka[:], kb[:])
	})
	return out
}

func controllerNumbers(c string) (int, int) {
	i := strings.IndexAny(c, "0123456789")
	if i < 0 {
		return 0, 0
	}
	n, l, _ := strings.Cut(c[i:], ":")
	a, _ := strconv.Atoi(n)
	b, _ := strconv.Atoi(l)
	return a, b
}

// vm converts to the source's inventory entry.
func (h hostVM) vm(manager, endpoint string) source.VM {
	firmware := source.FirmwareBIOS
	if h.Generation == 2 {
		firmware = source.FirmwareEFI
	}
	v := source.VM{ID: h.ID, Name: h.Name, GuestOS: h.GuestOS, CPUs: h.CPUs, MemoryMiB: h.MemoryMiB, Firmware: firmware,
		PowerState: powerState(h.State), ToolsRunning: h.Tools, ManagerType: manager, Host: h.Host, SecureBoot: h.SecureBoot,
		NICs: h.NICs, HardwareVersion: h.Version}
	if manager == ManagerSCVMM {
		v.Path = "/" + strings.Trim(strings.ReplaceAll(h.HostGroup, `\`, "/"), "/") + "/" + h.Host + "/" + h.Name
	} else {
		v.Path = "/" + cmp.Or(h.Host, endpoint) + "/" + h.Name
	}
	if v.NICs == nil {
		v.NICs = []source.NIC{}
	}
	v.Disks = []source.Disk{}
	for i, d := range orderDisks(h.Disks, h.bootDisk) {
		sd := source.Disk{Key: d.Controller, Label: fmt.Sprintf("Hard Drive %d", i+1), Controller: d.Controller, Backing: d.Path}
		if len(d.Chain) > 0 {
			sd.CapacityBytes = d.Chain[0].Size
		}
		if d.PassThru != "" {
			sd.Backing, sd.RawDevice = d.PassThru, "pass-through "+d.PassThru
		}
		sd.Shared = d.Shared
		// Each checkpoint adds a differencing disk to the chain.
		if n := len(d.Chain) - 1; d.PassThru == "" && n > v.Snapshots {
			v.Snapshots = n
		}
		v.Disks = append(v.Disks, sd)
	}
	return v
}

func powerState(s string) string {
	switch s {
	case "Running":
		return "poweredOn"
	case "Off", "":
		return "poweredOff"
	case "Saved", "Paused":
		return "suspended"
	}
	return strings.ToLower(s)
}
