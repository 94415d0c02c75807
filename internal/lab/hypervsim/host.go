// Package hypervsim is a simulated Hyper-V host (and SCVMM server) for
// tests and the demo: a WS-Management server that speaks WinRM's shell
// protocol (Create, Command, Receive, Signal, Delete) with NTLM or Basic
// authentication over TLS, decodes the -EncodedCommand of each command,
// checks that it is exactly one of rehost's scripts with its JSON argument
// (hyperv.DecodeCommand, hyperv.ParseScript), and answers as a Hyper-V host
// would, keeping state: VMs, their disks as real VHD/VHDX files in a
// directory that Samba serves, checkpoints that freeze those files and
// start AVHDX/AVHD differencing disks, removals that merge them back.
//
// The model answers the scripts' JSON shapes (the cmdlets' property
// names), not PowerShell: what it proves is the protocol, the encoding of
// the scripts and arguments, and the connector's handling of what a host
// answers, with disk files that are the real formats.
package hypervsim

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rehost/rehost/internal/lab/hvdisk"
	"github.com/rehost/rehost/pkg/disk"
)

// VMSpec describes a simulated VM.
type VMSpec struct {
	Name       string
	Node       string // default the first node
	Generation int    // 1 or 2 (default 2)
	CPUs       int
	MemoryMiB  int64
	Running    bool
	// IntegrationServices: the guest answers heartbeats and can make a
	// production checkpoint.
	IntegrationServices bool
	SecureBoot          bool
	GuestOS             string
	Disks               []DiskSpec
	NICs                []NICSpec
	// Version is the VM's configuration version (Get-VM's Version): 5.0
	// for Windows Server 2012 R2, 8.0 for 2016; default 9.0 (2019). 6.2 and
	// later have resilient change tracking and take recovery checkpoints.
	Version string
	// Checkpoints the VM already has when AddVM returns (standard ones,
	// named "user-checkpoint-N": a chain of AVHDX files on each disk).
	Checkpoints int
}

// DiskSpec is one drive of a VM.
type DiskSpec struct {
	// Image is a local VHD or VHDX file copied in as the drive's base disk.
	Image string
	// Name is the file name under the VM's folder (default from Image).
	Name string
	// Controller is "SCSI" (default for generation 2) or "IDE"; Number and
	// Location place the drive on it (default: the next free location).
	Controller       string
	Number, Location int
	// PassThrough makes it a physical disk (no file); Shared a shared VHDX.
	PassThrough bool
	Shared      bool
}

// NICSpec is a network adapter.
type NICSpec struct {
	Name, MAC, Switch string
	Legacy            bool
}

type vm struct {
	id, vmmID   string
	spec        VMSpec
	node        string
	state       string
	status      string
	checkpoints string // CheckpointType
	drives      []*drive
	nics        []NICSpec
	snaps       []*snapshot
	rps         []*refPoint
}

type drive struct {
	ctrl             string
	number, location int
	path             string // Windows path of the file the VM writes to now
	passThrough      bool
	shared           bool
	rct              rctLog
}

type snapshot struct {
	id, name   string
	created    time.Time
	state      string
	production bool
	recovery   bool     // a recovery checkpoint (SnapshotType Recovery)
	frozen     []string // per drive: the file the checkpoint froze
	diff       []string // per drive: the differencing disk it started
	epochs     []int    // per drive: the change tracking epoch it closed
}

// Host is the simulated hosts' shared state.
type Host struct {
	mu      sync.Mutex
	root    string // Windows path the directory stands for
	dir     string
	nodes   []string
	vms     []*vm
	models  map[string]*modelFile // by Windows path, lower-case
	faults  []string              // messages of checkpoint failures to inject
	calls   map[string]int        // script name → runs
	removed int                   // checkpoints removed
}

// model is a disk file the simulator writes: a VHDX or VHD held in memory
// and saved after each change.
type model interface {
	WriteAt(p []byte, off int64) (int, error)
	Save(path string) error
	Written() [][2]int64
	ReadOwnAt(p []byte, off int64)
}

// modelFile is a model and the Windows path it is saved at.
type modelFile struct {
	win string
	m   model
}

func newHost(root, dir string, nodes []string) *Host {
	return &Host{root: root, dir: dir, nodes: nodes, models: map[string]*modelFile{}, calls: map[string]int{}}
}

// local maps a Windows path under the root to the directory.
func (h *Host) local(win string) (string, error) {
	rel, ok := cutPrefixFold(win, h.root+`\`)
	if !ok {
		return "", fmt.Errorf("path %s is outside %s", win, h.root)
	}
	return filepath.Join(h.dir, filepath.FromSlash(strings.ReplaceAll(rel, `\`, "/"))), nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}

// AddVM creates a VM with its disk files; it returns the VM's id.
func (h *Host) AddVM(spec VMSpec) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if spec.Generation == 0 {
		spec.Generation = 2
	}
	if spec.Version == "" {
		spec.Version = "9.0"
	}
	v := &vm{id: hvdisk.NewGUID().String(), vmmID: hvdisk.NewGUID().String(), spec: spec, node: spec.Node, state: "Off",
		status: "Operating normally", checkpoints: "Production", nics: spec.NICs}
	if v.node == "" {
		v.node = h.nodes[0]
	}
	if spec.Running {
		v.state = "Running"
	}
	next := map[string]int{}
	for i, d := range spec.Disks {
		ctrl := d.Controller
		if ctrl == "" {
			ctrl = map[int]string{1: "IDE", 2: "SCSI"}[spec.Generation]
		}
		dr := &drive{ctrl: ctrl, number: d.Number, location: d.Location, passThrough: d.PassThrough, shared: d.Shared, rct: newRCTLog()}
		if d.Location == 0 && d.Number == 0 {
			dr.location = next[ctrl]
		}
		next[ctrl] = dr.location + 1
		if !d.PassThrough {
			name := d.Name
			if name == "" {
				name = filepath.Base(d.Image)
			}
			if name == "" || name == "." {
				return "", fmt.Errorf("disk %d of %s: no image", i, spec.Name)
			}
			dr.path = h.root + `\` + spec.Name + `\Virtual Hard Disks\` + name
			dst, _ := h.local(dr.path)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return "", err
			}
			if err := copyFile(dst, d.Image); err != nil {
				return "", fmt.Errorf("disk %d of %s: %w", i, spec.Name, err)
			}
		}
		v.drives = append(v.drives, dr)
	}
	h.vms = append(h.vms, v)
	for n := range spec.Checkpoints {
		if _, _, err := h.checkpoint(v, fmt.Sprintf("user-checkpoint-%d", n+1), false); err != nil {
			return "", fmt.Errorf("checkpoint %d of %s: %w", n+1, spec.Name, err)
		}
	}
	return v.id, nil
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func (h *Host) find(id string) *vm {
	for _, v := range h.vms {
		if strings.EqualFold(v.id, id) || strings.EqualFold(v.vmmID, id) {
			return v
		}
	}
	return nil
}

func (h *Host) byName(name string) (*vm, error) {
	for _, v := range h.vms {
		if v.spec.Name == name {
			return v, nil
		}
	}
	return nil, fmt.Errorf("hypervsim: no vm %q", name)
}

// psError is an error a cmdlet raises: what the prelude answers.
type psError struct {
	category, id, message string
}

func (e *psError) Error() string { return e.message }

func notFound(what string) error {
	return &psError{"ObjectNotFound", "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM", what}
}

// run answers script name on node (the SCVMM server when vmm) with args.
func (h *Host) run(node, name string, args json.RawMessage) (any, error) {
	var in struct {
		VMID   string `json:"vmId"`
		Name   string `json:"name"`
		ID     string `json:"id"`
		Prefix string `json:"prefix"`
		Disk   string `json:"disk"`
		Since  string `json:"since"`
		Offset int64  `json:"offset"`
		Limit  int    `json:"limit"`
	}
	if err := json.Unmarshal(args, &in); err != nil {
		return nil, &psError{"InvalidArgument", "ConvertFrom-Json", err.Error()}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls[name]++
	vmm := strings.HasPrefix(name, "vmm-")
	// A Hyper-V node sees only the VMs it runs; SCVMM sees them all.
	visible := func(v *vm) bool { return vmm || strings.EqualFold(v.node, node) }
	get := func() (*vm, error) {
		v := h.find(in.VMID)
		if v == nil || !visible(v) || (vmm && !strings.EqualFold(v.vmmID, in.VMID)) || (!vmm && !strings.EqualFold(v.id, in.VMID)) {
			if vmm {
				return nil, &psError{"ObjectNotFound", "RehostVMNotFound,Stop-Rehost", "SCVMM has no VM with id " + in.VMID}
			}
			return nil, notFound("Hyper-V was unable to find a virtual machine with id " + in.VMID + ".")
		}
		return v, nil
	}
	switch strings.TrimPrefix(strings.TrimPrefix(name, "hv-"), "vmm-") {
	case "inventory":
		var out []any
		for _, v := range h.vms {
			if !visible(v) || (in.VMID != "" && !strings.EqualFold(map[bool]string{true: v.vmmID, false: v.id}[vmm], in.VMID)) {
				continue
			}
			if vmm {
				out = append(out, h.vmmJSON(v))
			} else {
				out = append(out, h.hvJSON(v))
			}
		}
		if in.VMID != "" && len(out) == 0 {
			_, err := get()
			return nil, err
		}
		return out, nil
	case "digest":
		var out []any
		for _, v := range h.vms {
			if visible(v) {
				out = append(out, h.digestJSON(v))
			}
		}
		return out, nil
	case "checkpoint", "rct-checkpoint":
		v, err := get()
		if err != nil {
			return nil, err
		}
		recovery := strings.HasSuffix(name, "rct-checkpoint")
		if recovery && !rctVersion(v.spec.Version) {
			if sn := v.snapNamed(in.Name); sn == nil {
				return nil, &psError{"InvalidOperation", "RehostNoRct,Stop-Rehost", fmt.Sprintf("VM %s has configuration version %s; recovery checkpoints need 6.2 or later", v.spec.Name, v.spec.Version)}
			}
		}
		s, fallback, err := h.checkpoint(v, in.Name, recovery)
		if err != nil {
			return nil, err
		}
		return []any{h.snapJSON(v, s, vmm, fallback)}, nil
	case "changes":
		v, err := get()
		if err != nil {
			return nil, err
		}
		return h.changes(v, in.ID, in.Disk, in.Since, in.Offset, in.Limit)
	case "keep":
		v, err := get()
		if err != nil {
			return nil, err
		}
		return h.keep(v, in.ID, in.Name)
	case "forget":
		v, _ := get()
		if v == nil {
			return []any{}, nil
		}
		n := 0
		for _, rp := range append([]*refPoint(nil), v.rps...) {
			if (in.ID != "" && strings.EqualFold(rp.id, in.ID)) || (in.ID == "" && rp.name == in.Name) {
				v.rps = slices.DeleteFunc(v.rps, func(x *refPoint) bool { return x == rp })
				n++
			}
		}
		return []any{map[string]any{"Removed": n}}, nil
	case "checkpoints":
		v, err := get()
		if err != nil {
			return nil, err
		}
		var out []any
		for _, s := range v.snaps {
			if strings.HasPrefix(s.name, in.Prefix) {
				out = append(out, h.snapJSON(v, s, vmm, ""))
			}
		}
		for _, rp := range v.rps {
			if !vmm && strings.HasPrefix(rp.name, in.Prefix) {
				out = append(out, map[string]any{"Id": rp.id, "Name": rp.name, "VMId": v.id, "State": "Off", "VMState": v.state, "SnapshotType": "ReferencePoint", "Base": true})
			}
		}
		return out, nil
	case "remove":
		v, _ := get()
		if v == nil {
			return []any{}, nil
		}
		n := 0
		for _, s := range append([]*snapshot(nil), v.snaps...) {
			if (in.ID != "" && strings.EqualFold(s.id, in.ID)) || (in.ID == "" && s.name == in.Name) {
				if err := h.remove(v, s); err != nil {
					return nil, &psError{"InvalidOperation", "RemoveVMSnapshot", err.Error()}
				}
				n++
			}
		}
		return []any{map[string]any{"Removed": n}}, nil
	case "export":
		v, err := get()
		if err != nil {
			return nil, err
		}
		return h.export(v, in.ID, vmm)
	}
	return nil, &psError{"NotImplemented", "hypervsim", "the simulator does not answer " + name}
}

// chain describes a file and its parents as Get-VHD does, newest first.
func (h *Host) chain(win string) ([]any, error) {
	var out []any
	for win != "" && len(out) < 64 {
		l, size, fsize, sub, err := h.describe(win)
		if err != nil {
			return nil, &psError{"ObjectNotFound", "InvalidParameter,Microsoft.Vhd.PowerShell.Cmdlets.GetVHD", err.Error()}
		}
		parent := ""
		if l.ParentID != "" {
			parent = h.parentOf(win)
		}
		out = append(out, map[string]any{"Path": win, "VhdFormat": strings.ToUpper(string(l.Format)), "VhdType": sub,
			"Size": size, "FileSize": fsize, "ParentPath": nullable(parent), "LogicalSectorSize": 512, "BlockSize": 0})
		win = parent
	}
	return out, nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// describe reads a file's link, virtual size, file size and type.
func (h *Host) describe(win string) (disk.Link, int64, int64, string, error) {
	p, err := h.local(win)
	if err != nil {
		return disk.Link{}, 0, 0, "", err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return disk.Link{}, 0, 0, "", fmt.Errorf("the file %s does not exist", win)
	}
	l, err := disk.ReadLink(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return l, 0, 0, "", err
	}
	if l.ParentID != "" {
		return l, h.sizeOf(win), int64(len(b)), "Differencing", nil
	}
	img, err := disk.Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return l, 0, 0, "", err
	}
	sub := map[string]string{"fixed": "Fixed", "dynamic": "Dynamic"}[img.Info().Subformat]
	return l, img.Size(), int64(len(b)), sub, nil
}

// parentOf finds the parent file of a differencing disk the simulator made:
// the file its relative locator names, next to it.
func (h *Host) parentOf(win string) string {
	p, _ := h.local(win)
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	l, err := disk.ReadLink(bytes.NewReader(b), int64(len(b)))
	if err != nil || len(l.ParentPaths) == 0 {
		return ""
	}
	return win[:strings.LastIndex(win, `\`)+1] + l.ParentPaths[0]
}

func (h *Host) sizeOf(win string) int64 {
	img, closer, err := h.open(win)
	if err != nil {
		return 0
	}
	defer closer()
	return img.Size()
}

// open reads a file through its chain.
func (h *Host) open(win string) (disk.Image, func(), error) {
	var paths []string
	for p := win; p != "" && len(paths) < 64; {
		paths = append([]string{p}, paths...)
		lp, _ := h.local(p)
		b, err := os.ReadFile(lp)
		if err != nil {
			return nil, nil, err
		}
		l, err := disk.ReadLink(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return nil, nil, err
		}
		p = ""
		if l.ParentID != "" {
			p = h.parentOf(paths[0])
		}
	}
	var files []disk.ChainFile
	for _, p := range paths {
		lp, _ := h.local(p)
		b, err := os.ReadFile(lp)
		if err != nil {
			return nil, nil, err
		}
		files = append(files, disk.ChainFile{Name: p, R: bytes.NewReader(b), Size: int64(len(b))})
	}
	img, err := disk.OpenChain(files)
	if err != nil {
		return nil, nil, err
	}
	return img, func() {}, nil
}

func (h *Host) hvJSON(v *vm) map[string]any {
	var drives []any
	for _, d := range v.drives {
		var diskNumber any
		var path any = d.path
		chain := []any{}
		if d.passThrough {
			diskNumber, path = 3, nil
		} else {
			chain, _ = h.chain(d.path)
		}
		drives = append(drives, map[string]any{"ControllerType": d.ctrl, "ControllerNumber": d.number, "ControllerLocation": d.location,
			"Path": path, "DiskNumber": diskNumber, "SupportPersistentReservations": d.shared, "Chain": chain})
	}
	var nics []any
	for _, n := range v.nics {
		nics = append(nics, map[string]any{"Name": n.Name, "MacAddress": strings.ToUpper(strings.ReplaceAll(n.MAC, ":", "")), "SwitchName": n.Switch, "IsLegacy": n.Legacy})
	}
	heartbeat := heartbeatOf(v)
	var secureBoot, boot any
	if v.spec.Generation == 2 {
		secureBoot = map[bool]string{true: "On", false: "Off"}[v.spec.SecureBoot]
		for _, d := range v.drives {
			if !d.passThrough {
				boot = fmt.Sprintf("%s%d:%d", d.ctrl, d.number, d.location)
				break
			}
		}
	}
	return map[string]any{"Id": v.id, "Name": v.spec.Name, "ComputerName": v.node, "Path": h.root + `\` + v.spec.Name,
		"Generation": v.spec.Generation, "Version": cmp.Or(v.spec.Version, "9.0"), "State": v.state, "Status": v.status, "ProcessorCount": v.spec.CPUs,
		"MemoryStartup": v.spec.MemoryMiB << 20, "DynamicMemoryEnabled": false, "Heartbeat": heartbeat,
		"IntegrationServicesState": "Up to date", "IsClustered": len(h.nodes) > 1, "CheckpointType": v.checkpoints,
		"SecureBoot": secureBoot, "SecureBootTemplate": "MicrosoftUEFICertificateAuthority", "BootDisk": boot,
		"GuestOS": nullable(v.spec.GuestOS), "HardDrives": drives, "NetworkAdapters": nics}
}

// digestJSON is a VM as hv-digest answers it: hvJSON's light part (no
// disk chain read).
func (h *Host) digestJSON(v *vm) map[string]any {
	drives := []any{}
	for _, d := range v.drives {
		path, number := d.path, ""
		if d.passThrough {
			path, number = "", "3"
		}
		drives = append(drives, fmt.Sprintf("%s%d:%d %s %s %s", d.ctrl, d.number, d.location, path, number, map[bool]string{true: "True", false: "False"}[d.shared]))
	}
	nics := []any{}
	for _, n := range v.nics {
		nics = append(nics, fmt.Sprintf("%s %s %s %s", n.Name, strings.ToUpper(strings.ReplaceAll(n.MAC, ":", "")), n.Switch, map[bool]string{true: "True", false: "False"}[n.Legacy]))
	}
	return map[string]any{"Id": v.id, "Name": v.spec.Name, "ComputerName": v.node, "State": v.state, "Generation": v.spec.Generation,
		"Version": cmp.Or(v.spec.Version, "9.0"), "ProcessorCount": v.spec.CPUs, "MemoryStartup": v.spec.MemoryMiB << 20,
		"CheckpointType": v.checkpoints, "Heartbeat": heartbeatOf(v), "Drives": drives, "Adapters": nics}
}

// heartbeatOf is the VM's Heartbeat as Get-VM shows it.
func heartbeatOf(v *vm) string {
	if v.spec.IntegrationServices && v.state == "Running" {
		return "OkApplicationsUnknown"
	}
	return "NoContact"
}

func (h *Host) vmmJSON(v *vm) map[string]any {
	var drives []any
	for _, d := range v.drives {
		var vhd []any
		if !d.passThrough {
			vhd, _ = h.chain(d.path)
		}
		pt := ""
		if d.passThrough {
			pt = `\\.\PHYSICALDRIVE3`
		}
		drives = append(drives, map[string]any{"BusType": d.ctrl, "Bus": d.number, "Lun": d.location, "Location": nullable(d.path),
			"PassThroughDisk": nullable(pt), "IsShared": d.shared, "Chain": vmmChain(vhd)})
	}
	var nics []any
	for _, n := range v.nics {
		nics = append(nics, map[string]any{"Name": n.Name, "MACAddress": n.MAC, "VMNetwork": n.Switch, "VirtualNetwork": n.Switch, "VirtualNetworkAdapterType": "Synthetic"})
	}
	status := map[string]string{"Running": "Running", "Off": "PowerOff", "Saved": "Saved"}[v.state]
	return map[string]any{"ID": v.vmmID, "VMId": v.id, "Name": v.spec.Name, "VMHost": v.node, "HostGroupPath": `All Hosts\Lab`,
		"Location": h.root + `\` + v.spec.Name, "Generation": v.spec.Generation, "CPUCount": v.spec.CPUs, "Memory": v.spec.MemoryMiB,
		"DynamicMemoryEnabled": false, "Status": status, "StatusString": map[bool]string{true: v.status, false: status}[strings.Contains(v.status, "Merg")],
		"OperatingSystem": v.spec.GuestOS, "SecureBootEnabled": v.spec.SecureBoot, "IsHighlyAvailable": len(h.nodes) > 1,
		"CheckpointType": v.checkpoints, "VirtualDiskDrives": drives, "VirtualNetworkAdapters": nics}
}

// vmmChain rewrites Get-VHD entries as vmm-prelude.ps1's chain entries
// (SCVMM's names for the types).
func vmmChain(c []any) []any {
	out := []any{}
	for _, e := range c {
		m := e.(map[string]any)
		t := map[string]string{"Dynamic": "DynamicallyExpanding", "Fixed": "FixedSize"}[m["VhdType"].(string)]
		out = append(out, map[string]any{"Path": m["Path"], "VhdFormat": m["VhdFormat"], "VhdType": cmp.Or(t, m["VhdType"].(string)),
			"Size": m["Size"], "FileSize": m["FileSize"], "ParentPath": m["ParentPath"]})
	}
	return out
}

func (h *Host) snapJSON(v *vm, s *snapshot, vmm bool, fallback string) map[string]any {
	if vmm {
		return map[string]any{"Id": s.id, "Name": s.name, "VMId": v.vmmID, "Production": s.production, "Fallback": nullable(fallback),
			"Description": "rehost", "AddedTime": s.created.Format(time.RFC3339Nano)}
	}
	typ := "Standard"
	if s.recovery {
		typ = "Recovery"
	}
	return map[string]any{"Id": s.id, "Name": s.name, "VMId": v.id, "State": s.state, "VMState": v.state, "SnapshotType": typ,
		"Production": s.recovery && s.production, "CreationTime": s.created.Format(time.RFC3339Nano), "Fallback": nullable(fallback)}
}

// checkpoint is Checkpoint-VM as hv-checkpoint.ps1 drives it, or a
// recovery checkpoint as hv-rct-checkpoint.ps1 makes it.
func (h *Host) checkpoint(v *vm, name string, recovery bool) (*snapshot, string, error) {
	if s := v.snapNamed(name); s != nil {
		return s, "", nil
	}
	if strings.Contains(v.status, "Merg") {
		return nil, "", &psError{"ResourceBusy", "RehostMergeInProgress,Stop-Rehost", fmt.Sprintf("a checkpoint merge is in progress (%s)", v.status)}
	}
	for _, d := range v.drives {
		at := fmt.Sprintf("%s %d:%d", d.ctrl, d.number, d.location)
		if d.passThrough {
			return nil, "", &psError{"InvalidOperation", "RehostPassThroughDisk,Stop-Rehost", fmt.Sprintf("disk %s is a pass-through disk (physical disk 3)", at)}
		}
		if d.shared {
			return nil, "", &psError{"InvalidOperation", "RehostSharedDisk,Stop-Rehost", fmt.Sprintf("disk %s (%s) is a shared virtual disk", at, d.path)}
		}
	}
	if len(h.faults) > 0 {
		msg := h.faults[0]
		h.faults = h.faults[1:]
		return nil, "", &psError{"NotSpecified", "Microsoft.HyperV.PowerShell.Commands.CheckpointVM", msg}
	}
	s := &snapshot{id: hvdisk.NewGUID().String(), name: name, created: time.Now(), state: v.state, recovery: recovery}
	fallback := ""
	if v.state == "Running" {
		if v.spec.IntegrationServices {
			s.production, s.state = true, "Off"
		} else {
			fallback = fmt.Sprintf("'%s' could not initiate a checkpoint operation: Could not create auto virtual hard disk: the integration services are not running in the guest.", v.spec.Name)
		}
	}
	if recovery {
		s.state = "Off" // a recovery checkpoint holds no memory
	}
	for _, d := range v.drives {
		child, err := h.startDiff(d.path, s.id)
		if err != nil {
			return nil, "", &psError{"NotSpecified", "Microsoft.HyperV.PowerShell.Commands.CheckpointVM", err.Error()}
		}
		s.frozen = append(s.frozen, d.path)
		s.diff = append(s.diff, child)
		s.epochs = append(s.epochs, d.rct.close())
		d.path = child
	}
	v.snaps = append(v.snaps, s)
	return s, fallback, nil
}

// startDiff makes the differencing disk a checkpoint starts on parent:
// "disk_<snapshot id>.avhdx" (or .avhd) next to it.
func (h *Host) startDiff(parent, snapID string) (string, error) {
	pl, _ := h.local(parent)
	b, err := os.ReadFile(pl)
	if err != nil {
		return "", err
	}
	l, err := disk.ReadLink(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return "", err
	}
	id, err := hvdisk.ParseGUID(l.ID)
	if err != nil {
		return "", err
	}
	size := h.sizeOf(parent)
	dir, base := parent[:strings.LastIndex(parent, `\`)+1], parent[strings.LastIndex(parent, `\`)+1:]
	stem := base[:len(base)-len(filepath.Ext(base))]
	if i := strings.LastIndex(stem, "_"); i > 0 && strings.Count(stem[i:], "-") == 4 {
		stem = stem[:i] // a child of a differencing disk keeps the base's stem
	}
	p := &hvdisk.Parent{ID: id, RelativePath: base, AbsolutePath: parent}
	var m model
	child := dir + stem + "_" + strings.ToUpper(snapID)
	if l.Format == disk.VHDX {
		child += ".avhdx"
		m, err = hvdisk.NewVHDX(size, 2<<20, 512, p)
	} else {
		child += ".avhd"
		m, err = hvdisk.NewVHD(size, 0, p)
	}
	if err != nil {
		return "", err
	}
	cl, _ := h.local(child)
	if err := m.Save(cl); err != nil {
		return "", err
	}
	h.models[strings.ToLower(child)] = &modelFile{child, m}
	return child, nil
}

// remove is Remove-VMSnapshot: the checkpoint's differencing disk merges
// into the file it froze, whose children then hang off that file.
func (h *Host) remove(v *vm, s *snapshot) error {
	for i, child := range s.diff {
		parent := s.frozen[i]
		if err := h.merge(child, parent); err != nil {
			return err
		}
		for _, d := range v.drives {
			if strings.EqualFold(d.path, child) {
				d.path = parent
			}
		}
		for _, o := range v.snaps {
			for j := range o.frozen {
				if strings.EqualFold(o.frozen[j], child) {
					o.frozen[j] = parent
				}
			}
		}
	}
	for i, o := range v.snaps {
		if o == s {
			v.snaps = append(v.snaps[:i], v.snaps[i+1:]...)
			break
		}
	}
	h.removed++
	return nil
}

// merge writes child's sectors into parent, re-links child's children to
// parent and deletes child.
func (h *Host) merge(child, parent string) error {
	cf := h.models[strings.ToLower(child)]
	if cf == nil {
		return fmt.Errorf("no differencing disk %s", child)
	}
	cm := cf.m
	for _, r := range cm.Written() {
		buf := make([]byte, r[1])
		cm.ReadOwnAt(buf, r[0])
		if err := h.writeFile(parent, buf, r[0]); err != nil {
			return err
		}
	}
	// Children of child now hang off parent.
	pl, _ := h.local(parent)
	b, err := os.ReadFile(pl)
	if err != nil {
		return err
	}
	link, err := disk.ReadLink(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return err
	}
	id, _ := hvdisk.ParseGUID(link.ID)
	for _, f := range h.models {
		var p *hvdisk.Parent
		switch x := f.m.(type) {
		case *hvdisk.VHDX:
			p = x.Parent
		case *hvdisk.VHD:
			p = x.Parent
		}
		if p != nil && strings.EqualFold(p.AbsolutePath, child) {
			p.ID, p.AbsolutePath = id, parent
			p.RelativePath = parent[strings.LastIndex(parent, `\`)+1:]
			lp, _ := h.local(f.win)
			if err := f.m.Save(lp); err != nil {
				return err
			}
		}
	}
	delete(h.models, strings.ToLower(child))
	cl, _ := h.local(child)
	return os.Remove(cl)
}

// writeFile writes p at off of the virtual disk of file win: a model is
// written and saved; a base disk from outside is taken in as a model first,
// except a fixed VHD, written in place as Hyper-V does.
func (h *Host) writeFile(win string, p []byte, off int64) error {
	lp, err := h.local(win)
	if err != nil {
		return err
	}
	var m model
	if f := h.models[strings.ToLower(win)]; f != nil {
		m = f.m
	} else {
		b, err := os.ReadFile(lp)
		if err != nil {
			return err
		}
		img, err := disk.Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return err
		}
		info := img.Info()
		if info.Format == disk.VHD && info.Subformat == "fixed" {
			f, err := os.OpenFile(lp, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = f.WriteAt(p, off)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		}
		if info.Format != disk.VHDX || info.Subformat != "dynamic" {
			return fmt.Errorf("hypervsim: writing to a %s %s base disk is not simulated", info.Subformat, info.Format)
		}
		x, err := hvdisk.NewVHDX(img.Size(), 32<<20, 512, nil)
		if err != nil {
			return err
		}
		for _, e := range img.Extents() {
			buf := make([]byte, e.Length)
			if _, err := img.ReadAt(buf, e.Offset); err != nil && err != io.EOF {
				return err
			}
			x.WriteAt(buf, e.Offset)
		}
		m = x
		h.models[strings.ToLower(win)] = &modelFile{win, m}
	}
	if _, err := m.WriteAt(p, off); err != nil {
		return err
	}
	return m.Save(lp)
}

func (h *Host) export(v *vm, id string, vmm bool) (any, error) {
	var s *snapshot
	for _, o := range v.snaps {
		if strings.EqualFold(o.id, id) {
			s = o
		}
	}
	if s == nil {
		return nil, &psError{"ObjectNotFound", "RehostCheckpointNotFound,Stop-Rehost", fmt.Sprintf("checkpoint %s of VM %s does not exist", id, v.spec.Name)}
	}
	if vmm && v.snaps[len(v.snaps)-1] != s {
		last := v.snaps[len(v.snaps)-1]
		return nil, &psError{"InvalidOperation", "RehostCheckpointNotNewest,Stop-Rehost",
			fmt.Sprintf("checkpoint %s was taken after %s; the point-in-time disks of %s cannot be told apart", last.name, s.name, s.name)}
	}
	var drives []any
	for i, d := range v.drives {
		c, err := h.chain(s.frozen[i])
		if err != nil {
			return nil, err
		}
		if vmm {
			drives = append(drives, map[string]any{"BusType": d.ctrl, "Bus": d.number, "Lun": d.location, "Location": s.frozen[i], "Chain": vmmChain(c)})
		} else {
			drives = append(drives, map[string]any{"ControllerType": d.ctrl, "ControllerNumber": d.number, "ControllerLocation": d.location, "Path": s.frozen[i], "Chain": c})
		}
	}
	if vmm {
		return []any{map[string]any{"VMHost": v.node, "StatusString": v.status, "VirtualDiskDrives": drives}}, nil
	}
	return []any{map[string]any{"ComputerName": v.node, "Status": v.status, "HardDrives": drives}}, nil
}

// WriteDisk writes p at off of drive i of VM name, as the guest would:
// into the file the VM writes to now.
func (h *Host) WriteDisk(name string, i int, off int64, p []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, err := h.byName(name)
	if err != nil {
		return err
	}
	if i < 0 || i >= len(v.drives) {
		return fmt.Errorf("hypervsim: vm %q has no drive %d", name, i)
	}
	if err := h.writeFile(v.drives[i].path, p, off); err != nil {
		return err
	}
	v.drives[i].rct.write(off, int64(len(p)))
	return nil
}

// ReadDisk reads drive i of VM name as the guest sees it now.
func (h *Host) ReadDisk(name string, i int, off int64, p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, err := h.byName(name)
	if err != nil {
		return 0, err
	}
	img, _, err := h.open(v.drives[i].path)
	if err != nil {
		return 0, err
	}
	return img.ReadAt(p, off)
}

// DiskSize is the virtual size of drive i of VM name.
func (h *Host) DiskSize(name string, i int) (int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, err := h.byName(name)
	if err != nil {
		return 0, err
	}
	if i < 0 || i >= len(v.drives) || v.drives[i].passThrough {
		return 0, fmt.Errorf("hypervsim: vm %q has no virtual disk %d", name, i)
	}
	return h.sizeOf(v.drives[i].path), nil
}

// Checkpoints names VM name's checkpoints.
func (h *Host) Checkpoints(name string) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, err := h.byName(name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range v.snaps {
		out = append(out, s.name)
	}
	return out, nil
}

// DiffFiles lists the differencing disks on the hosts' storage.
func (h *Host) DiffFiles() []string {
	var out []string
	filepath.Walk(h.dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && (strings.HasSuffix(p, ".avhdx") || strings.HasSuffix(p, ".avhd")) {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// VMID is the Hyper-V id of VM name; VMMID its SCVMM id.
func (h *Host) VMID(name string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v, err := h.byName(name); err == nil {
		return v.id
	}
	return ""
}

func (h *Host) VMMID(name string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v, err := h.byName(name); err == nil {
		return v.vmmID
	}
	return ""
}

// FailCheckpoint makes the next checkpoint fail with msg, as Hyper-V does
// when it cannot create one (out of space, a VSS error).
func (h *Host) FailCheckpoint(msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = append(h.faults, msg)
}

// SetStatus sets the VM's status text ("Merging disks (42%)").
func (h *Host) SetStatus(name, status string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, err := h.byName(name)
	if err == nil {
		v.status = status
	}
	return err
}

// Migrate moves VM name to node.
func (h *Host) Migrate(name, node string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, err := h.byName(name)
	if err == nil {
		v.node = node
	}
	return err
}

// Calls counts the script runs by name.
func (h *Host) Calls() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for k, v := range h.calls {
		out[k] = v
	}
	return out
}

// RenameVM renames VM name (Rename-VM): its id and files stay.
func (h *Host) RenameVM(name, newName string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, err := h.byName(newName); err == nil {
		return fmt.Errorf("hypervsim: rename %q: a vm is named %q", name, newName)
	}
	v, err := h.byName(name)
	if err == nil {
		v.spec.Name = newName
	}
	return err
}

// RemoveVM removes VM name from the host (Remove-VM), leaving its files.
func (h *Host) RemoveVM(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, err := h.byName(name)
	if err != nil {
		return err
	}
	h.vms = slices.DeleteFunc(h.vms, func(x *vm) bool { return x == v })
	return nil
}
