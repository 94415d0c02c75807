package vsphere

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/vsphere/internal/vim"
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

// withVMProps runs retrieve with the VM properties to ask for, and again
// without the detailed guest data when this vCenter does not know it (it
// says so before answering anything).
func (s *Source) withVMProps(retrieve func(props []string) error) error {
	if s.noDetailed.Load() {
		return retrieve(vmProps)
	}
	err := retrieve(append(slices.Clone(vmProps), detailedProp))
	if isFault(err, "InvalidProperty") {
		s.noDetailed.Store(true)
		return retrieve(vmProps)
	}
	return err
}

// inventoryPage is how many VMs one answer of the inventory holds: the
// answers are read one at a time, so the connector's memory is bounded by
// a page, not by the size of the vCenter.
const inventoryPage = 250

// containerProps are what a VM's inventory path and network names are
// resolved from.
var containerProps = []vim.PropSpec{
	{Type: "Folder", Paths: []string{"name", "parent"}},
	{Type: "Datacenter", Paths: []string{"name", "parent"}},
	{Type: "VirtualApp", Paths: []string{"name", "parent", "parentFolder"}},
	{Type: "Network", Paths: []string{"name"}},
	{Type: "DistributedVirtualPortgroup", Paths: []string{"name", "key"}},
}

// Inventory lists every VM (templates excluded) in a bounded number of
// round trips: a container view, one RetrievePropertiesEx of its folders,
// datacenters and networks, the VMs in pages of inventoryPage, and the
// view destroyed.
func (s *Source) Inventory(ctx context.Context) ([]source.VM, error) {
	var out []source.VM
	err := s.InventoryPages(ctx, func(page []source.VM) error {
		out = append(out, page...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

var _ source.Pager = (*Source)(nil)

// InventoryPages implements source.Pager: Inventory's VMs as each page of
// the property collector's answer comes.
func (s *Source) InventoryPages(ctx context.Context, fn func([]source.VM) error) error {
	return s.listVMs(ctx, nil, func(page []listed) error {
		vms := make([]source.VM, 0, len(page))
		for _, l := range page {
			if l.ok {
				vms = append(vms, l.vm)
			}
		}
		if len(vms) == 0 {
			return nil
		}
		return fn(vms)
	})
}

// listed is a VM listVMs read, with the container it is in (its folder or
// vApp); ok is false for a template or a VM outside the configured
// datacenter.
type listed struct {
	ref    vim.Ref
	parent vim.Ref
	vm     source.VM
	ok     bool
}

// listVMs calls fn with the VMs of the inventory (refs nil) or those of
// refs that still exist, page by page; an error of fn stops it and is
// returned. A VM without a configuration yet (being created, or vanishing
// mid-listing) is left out: it shows up on the next listing.
func (s *Source) listVMs(ctx context.Context, refs []vim.Ref, fn func([]listed) error) error {
	types := []vim.E{vim.Str("type", "Folder"), vim.Str("type", "Datacenter"), vim.Str("type", "Network"),
		vim.Str("type", "DistributedVirtualPortgroup"), vim.Str("type", "VirtualApp")}
	if refs == nil {
		types = append(types, vim.Str("type", "VirtualMachine"))
	}
	args := append([]vim.E{vim.Mor("container", s.c.Content.RootFolder)}, types...)
	res, err := s.c.Call(ctx, "CreateContainerView", s.c.Content.ViewManager, append(args, vim.Bool("recursive", true))...)
	if err != nil {
		return classify("list vms", err)
	}
	view := res.Child("returnval").Ref()
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30e9)
		defer cancel()
		if _, err := s.c.Call(dctx, "DestroyView", view); err != nil {
			slog.Warn("destroy inventory view", "err", err)
		}
	}()
	inView := []vim.ObjectSpec{{Obj: view, Skip: true, Traverse: &vim.Traversal{Type: "ContainerView", Path: "view"}}}
	containers, err := s.c.Retrieve(ctx, inView, containerProps)
	if err != nil {
		return classify("list vms: read their folders and networks", err)
	}
	inv := newInventory()
	for _, o := range containers {
		inv.addContainer(o)
	}
	var fnErr error
	page := func(objs []vim.Object) error {
		out := make([]listed, 0, len(objs))
		for _, o := range objs {
			vm, ok, err := inv.vm(o)
			if err != nil {
				slog.Warn("skip vm in inventory", "vm", o.Ref.Value, "err", err)
				continue
			}
			if s.cfg.Datacenter != "" && !strings.HasPrefix(vm.Path, "/"+s.cfg.Datacenter+"/") {
				ok = false
			}
			out = append(out, listed{o.Ref, vmParent(o.Props), vm, ok})
		}
		fnErr = fn(out)
		return fnErr
	}
	specs := inView
	if refs != nil {
		specs = make([]vim.ObjectSpec, len(refs))
		for i, r := range refs {
			specs[i] = vim.ObjectSpec{Obj: r}
		}
	}
	err = s.withVMProps(func(props []string) error {
		return s.c.RetrievePages(ctx, specs, []vim.PropSpec{{Type: "VirtualMachine", Paths: props}}, inventoryPage, page)
	})
	if isFault(err, "ManagedObjectNotFound") && len(refs) > 1 {
		// One of refs is gone (vCenter refuses the whole retrieval then):
		// read the others one by one.
		for _, r := range refs {
			if err := s.listVMs(ctx, []vim.Ref{r}, fn); err != nil && !errors.Is(err, source.ErrNotFound) {
				return err
			}
		}
		return nil
	}
	if err != nil && fnErr != nil {
		return err
	}
	if err != nil {
		return classify("list vms", err)
	}
	return nil
}

// VM returns one VM by instance UUID.
func (s *Source) VM(ctx context.Context, id string) (source.VM, error) {
	ref, err := s.findVM(ctx, id)
	if err != nil {
		return source.VM{}, err
	}
	var objs []vim.Object
	err = s.withVMProps(func(props []string) error {
		var err error
		objs, err = s.c.Get(ctx, []vim.Ref{ref}, props...)
		return err
	})
	if err != nil {
		return source.VM{}, classify("get vm "+id, err)
	}
	if len(objs) != 1 {
		return source.VM{}, fmt.Errorf("get vm %s: %w", id, source.ErrNotFound)
	}
	inv := newInventory()
	// Resolve the inventory path and network names one level at a time.
	parent := vmParent(objs[0].Props)
	for !parent.IsZero() && parent != s.c.Content.RootFolder {
		pobjs, err := s.c.Get(ctx, []vim.Ref{parent}, "name", "parent")
		if err != nil || len(pobjs) != 1 {
			return source.VM{}, classify("get vm "+id+": resolve its inventory path", err)
		}
		inv.addContainer(pobjs[0])
		parent = inv.parent[parent]
	}
	var nets []vim.Ref
	for _, d := range devicesOf(objs[0].Props["config.hardware.device"]) {
		if !d.isNIC() {
			continue
		}
		b := d.backing()
		switch b.Type() {
		case "VirtualEthernetCardNetworkBackingInfo":
			if n := b.Child("network").Ref(); !n.IsZero() {
				nets = append(nets, n)
			}
		case "VirtualEthernetCardDistributedVirtualPortBackingInfo":
			nets = append(nets, vim.Ref{Type: "DistributedVirtualPortgroup", Value: b.Path("port", "portgroupKey").String()})
		}
	}
	if len(nets) > 0 {
		if nobjs, err := s.c.Get(ctx, nets, "name"); err == nil {
			for _, o := range nobjs {
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
func (s *Source) findVM(ctx context.Context, id string) (vim.Ref, error) {
	if id == "" {
		return vim.Ref{}, fmt.Errorf("find vm: empty id: %w", source.ErrNotFound)
	}
	res, err := s.c.Call(ctx, "FindByUuid", s.c.Content.SearchIndex, vim.Str("uuid", id), vim.Bool("vmSearch", true), vim.Bool("instanceUuid", true))
	if err != nil {
		return vim.Ref{}, classify("find vm "+id, err)
	}
	ref := res.Child("returnval").Ref()
	if ref.IsZero() {
		return vim.Ref{}, fmt.Errorf("find vm %s: no vm has this instance uuid: %w", id, source.ErrNotFound)
	}
	return ref, nil
}

// inventory resolves names of containers and networks while building VMs.
type inventory struct {
	name   map[vim.Ref]string
	parent map[vim.Ref]vim.Ref
	pgKey  map[string]string // distributed port group key → name
}

func newInventory() *inventory {
	return &inventory{name: map[vim.Ref]string{}, parent: map[vim.Ref]vim.Ref{}, pgKey: map[string]string{}}
}

func (inv *inventory) addContainer(o vim.Object) {
	if n, ok := o.Props["name"]; ok {
		inv.name[o.Ref] = n.String()
	}
	if r := containerParent(o.Props); !r.IsZero() && inv.parent[o.Ref].IsZero() {
		inv.parent[o.Ref] = r
	}
	if o.Ref.Type == "DistributedVirtualPortgroup" {
		key := o.Props["key"].String()
		if key == "" {
			key = o.Ref.Value
		}
		inv.pgKey[key] = inv.name[o.Ref]
	}
}

// vmParent is the container a VM is in: its folder, or its vApp.
func vmParent(p map[string]*vim.Node) vim.Ref {
	if r := p["parent"].Ref(); !r.IsZero() {
		return r
	}
	return p["parentVApp"].Ref()
}

// containerParent is the container a folder, datacenter or vApp is in,
// as addContainer takes it: its parent, or a vApp's folder.
func containerParent(p map[string]*vim.Node) vim.Ref {
	if r := p["parent"].Ref(); !r.IsZero() {
		return r
	}
	return p["parentFolder"].Ref()
}

// path is the inventory path of an entity below the root folder, e.g.
// "/DC0/vm/web/web-01".
func (inv *inventory) path(parent vim.Ref, name string) string {
	parts := []string{name}
	seen := map[vim.Ref]bool{}
	for !parent.IsZero() && !seen[parent] {
		seen[parent] = true
		n, ok := inv.name[parent]
		if !ok {
			break // the root folder is not in the view
		}
		parts = append(parts, n)
		parent = inv.parent[parent]
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return "/" + strings.Join(parts, "/")
}

// vm builds an inventory entry; ok is false for a template.
func (inv *inventory) vm(o vim.Object) (source.VM, bool, error) {
	p := o.Props
	if !p["config.instanceUuid"].Has() || !p["config.hardware.device"].Has() {
		return source.VM{}, false, fmt.Errorf("vm %s has no configuration", o.Ref.Value)
	}
	if p["config.template"].Bool() {
		return source.VM{}, false, nil
	}
	name := p["name"].String()
	vm := source.VM{
		ID:         p["config.instanceUuid"].String(),
		Name:       name,
		Path:       inv.path(vmParent(p), name),
		GuestOS:    p["config.guestFullName"].String(),
		CPUs:       int(p["config.hardware.numCPU"].Int()),
		MemoryMiB:  p["config.hardware.memoryMB"].Int(),
		Firmware:   source.FirmwareBIOS,
		PowerState: p["runtime.powerState"].String(),
		Disks:      []source.Disk{},
		NICs:       []source.NIC{},
	}
	if vm.GuestOS == "" {
		vm.GuestOS = p["config.guestId"].String()
	}
	if p["config.firmware"].String() == "efi" {
		vm.Firmware = source.FirmwareEFI
	}
	vm.ToolsRunning = p["guest.toolsRunningStatus"].String() == toolsRunning
	vm.CBTEnabled = p["config.changeTrackingEnabled"].Bool()
	vm.HardwareVersion = p["config.version"].String()
	// The guest's own id, when Tools run, is what it really is.
	vm.GuestID = cmp.Or(p["guest.guestId"].String(), p["config.guestId"].String())
	vm.GuestVersion = detailed(p[detailedProp].String())["distroVersion"]
	vm.Snapshots = chainDepth(p["snapshot"])
	devices := devicesOf(p["config.hardware.device"])
	vm.Disks = disksOf(devices, p["config.keyId"].Has())
	for _, d := range devices {
		if !d.isNIC() {
			continue
		}
		nic := source.NIC{MAC: d.n.Child("macAddress").String(), Type: d.nicType(), Label: d.label()}
		b := d.backing()
		switch b.Type() {
		case "VirtualEthernetCardNetworkBackingInfo":
			nic.Network = b.Child("deviceName").String()
			if n := b.Child("network").Ref(); !n.IsZero() && inv.name[n] != "" {
				nic.Network = inv.name[n]
			}
		case "VirtualEthernetCardDistributedVirtualPortBackingInfo":
			key := b.Path("port", "portgroupKey").String()
			nic.Network = cmp.Or(inv.pgKey[key], inv.name[vim.Ref{Type: "DistributedVirtualPortgroup", Value: key}], key)
		case "VirtualEthernetCardOpaqueNetworkBackingInfo":
			nic.Network = b.Child("opaqueNetworkId").String()
		}
		vm.NICs = append(vm.NICs, nic)
	}
	return vm, true, nil
}

// chainDepth counts the snapshots from the root of the VM's snapshot tree
// (a VirtualMachineSnapshotInfo) to its current one: the chain its disks
// run on.
func chainDepth(info *vim.Node) int {
	current := info.Child("currentSnapshot").Ref()
	if current.IsZero() {
		return 0
	}
	var walk func(trees []*vim.Node, depth int) int
	walk = func(trees []*vim.Node, depth int) int {
		for _, t := range trees {
			if t.Child("snapshot").Ref().Value == current.Value {
				return depth + 1
			}
			if n := walk(t.Children("childSnapshotList"), depth+1); n > 0 {
				return n
			}
		}
		return 0
	}
	return walk(info.Children("rootSnapshotList"), 0)
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
		v, after, _ := strings.Cut(rest, "'")
		out[k], s = v, after
	}
	return out
}

// toolsRunning is guest.toolsRunningStatus when VMware Tools run.
const toolsRunning = "guestToolsRunning"
