package vspheresim

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// Changed block tracking as vCenter has it: ReconfigVM_Task turns it on
// (hardware version 7 or later, the privilege to toggle it), a running VM
// starts tracking at its next stun (a snapshot), each disk's backing then
// carries a change id, and a reset (a storage vMotion, a CBT reset) starts
// a new generation whose change ids the old ones are not.

// minCBTVersion is the hardware version CBT needs.
const minCBTVersion = 7

// ReconfigVMTask applies the spec as the simulator does; a change of
// changeTrackingEnabled is checked first as vCenter checks it and takes
// effect as it does: at once for a VM that is off, at the next stun for
// one that runs.
func (h *vmHandler) ReconfigVMTask(ctx *simulator.Context, req *types.ReconfigVM_Task) soap.HasFault {
	want := req.Spec.ChangeTrackingEnabled
	if want == nil {
		return h.VirtualMachine.ReconfigVMTask(ctx, req)
	}
	body := &methods.ReconfigVM_TaskBody{}
	h.sim.mu.Lock()
	deny := h.st.denyCBT
	h.st.denyCBT = false
	h.sim.mu.Unlock()
	if deny {
		body.Res = &types.ReconfigVM_TaskResponse{Returnval: failedTask(ctx, h.Self, "reconfigVm",
			&types.NoPermission{Object: &h.Self, PrivilegeId: "VirtualMachine.Config.ChangeTracking"})}
		return body
	}
	if v, _ := strconv.Atoi(strings.TrimPrefix(h.Config.Version, "vmx-")); *want && v > 0 && v < minCBTVersion {
		body.Res = &types.ReconfigVM_TaskResponse{Returnval: failedTask(ctx, h.Self, "reconfigVm", &types.NotSupported{})}
		return body
	}
	res := h.VirtualMachine.ReconfigVMTask(ctx, req).(*methods.ReconfigVM_TaskBody)
	if res.Res == nil {
		return res
	}
	if t := waitTask(ctx, res.Res.Returnval); t.Info.State != types.TaskInfoStateSuccess {
		return res
	}
	running := h.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
	h.sim.mu.Lock()
	was := h.st.cbt || h.st.cbtPending
	switch {
	case !*want:
		h.st.cbt, h.st.cbtPending = false, false
	case was:
	case running:
		h.st.cbtPending = true
	default:
		h.st.cbt = true
	}
	on := h.st.cbt
	h.sim.mu.Unlock()
	if *want && !was && on {
		for _, d := range h.st.disks {
			d.newGeneration()
		}
	}
	h.setChangeIDs(ctx, on)
	return res
}

// setChangeIDs shows each disk's current change id on the VM's devices
// (none when tracking is not in effect), as vCenter does.
func (h *vmHandler) setChangeIDs(ctx *simulator.Context, on bool) {
	for _, d := range h.Config.Hardware.Device {
		vd, ok := d.(*types.VirtualDisk)
		if !ok {
			continue
		}
		b, ok := vd.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			continue
		}
		b.ChangeId = ""
		for _, ds := range h.st.disks {
			if ds.key == vd.Key && on {
				b.ChangeId = ds.currentID()
			}
		}
	}
}

// showChangeIDs is setChangeIDs from outside a call (creation, a stun).
func (s *Sim) showChangeIDs(st *vmState) {
	vm, ok := s.model.Map().Get(st.ref).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	s.mu.Lock()
	on := st.cbt
	s.mu.Unlock()
	ctx := s.model.Service.Context
	s.model.Map().WithLock(ctx, vm, func() {
		(&vmHandler{VirtualMachine: vm, sim: s, st: st}).setChangeIDs(ctx, on)
	})
}

// ResetCBT makes vm's change tracking start over, as a storage vMotion or
// a CBT reset does: change ids handed out before are refused.
func (s *Sim) ResetCBT(vm string) error {
	st, err := s.vm(vm)
	if err != nil {
		return err
	}
	for _, d := range st.disks {
		d.newGeneration()
	}
	s.showChangeIDs(st)
	return nil
}

// DenyChangeTracking makes the next change of vm's changeTrackingEnabled
// fail with NoPermission, as for a user without the privilege.
func (s *Sim) DenyChangeTracking(vm string) error {
	st, err := s.vm(vm)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.denyCBT = true
	return nil
}

// CBTState reports whether change tracking is in effect for vm and whether
// it waits for a stun.
func (s *Sim) CBTState(vm string) (on, pending bool, err error) {
	st, err := s.vm(vm)
	if err != nil {
		return false, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return st.cbt, st.cbtPending, nil
}

// ResizeDisk grows disk i of vm to size bytes, as an administrator
// extending it does; the new tail reads as zeros, tracking goes on.
func (s *Sim) ResizeDisk(vm string, i int, size int64) error {
	st, err := s.vm(vm)
	if err != nil {
		return err
	}
	d, err := s.disk(vm, i)
	if err != nil {
		return err
	}
	if err := d.grow(size); err != nil {
		return fmt.Errorf("vcenter simulator: resize disk %d of %q: %w", i, vm, err)
	}
	simVM := s.model.Map().Get(st.ref).(*simulator.VirtualMachine)
	ctx := s.model.Service.Context
	s.model.Map().WithLock(ctx, simVM, func() {
		for _, dev := range simVM.Config.Hardware.Device {
			if vd, ok := dev.(*types.VirtualDisk); ok && vd.Key == d.key {
				vd.CapacityInBytes, vd.CapacityInKB = size, size/1024
			}
		}
	})
	return nil
}

// folderPrefix is the datastore file access path (as the simulator's).
const folderPrefix = "/folder/"

// serveFolder serves the disk files of a VM's folder on the datastore, as
// ESXi does over /folder: "<vm>_<i>.vmdk" is the text descriptor of disk
// i's base file and "<vm>_<i>-flat.vmdk" its bytes, with Range requests.
// The base file is what the VM's first snapshot froze (the VM writes to a
// delta once it has a snapshot), or the live disk when it has none.
// Deltas are not served: only VDDK reads them.
func (s *Sim) serveFolder(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "datastore files are read here", http.StatusMethodNotAllowed)
		return
	}
	cookie, _ := r.Cookie(soap.SessionCookieName)
	s.mu.Lock()
	authorized := cookie != nil && s.sessionKeys[cookie.Value]
	s.mu.Unlock()
	if !authorized {
		http.Error(w, "no valid session cookie", http.StatusUnauthorized)
		return
	}
	if r.URL.Query().Get("dsName") != "LocalDS_0" || r.URL.Query().Get("dcPath") != "DC0" {
		http.Error(w, "no such datastore", http.StatusNotFound)
		return
	}
	p, _ := url.PathUnescape(strings.TrimPrefix(r.URL.Path, folderPrefix))
	vmName, file, _ := strings.Cut(p, "/")
	st, err := s.vm(vmName)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	stem, flat := strings.CutSuffix(strings.TrimSuffix(file, ".vmdk"), "-flat")
	i, err := strconv.Atoi(strings.TrimPrefix(stem, vmName+"_"))
	if err != nil || !strings.HasPrefix(stem, vmName+"_") || !strings.HasSuffix(file, ".vmdk") || i < 0 || i >= len(st.disks) {
		http.NotFound(w, r)
		return
	}
	c := s.baseContent(st, i)
	if !flat {
		desc := fmt.Sprintf("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"vmfs\"\n\n"+
			"# Extent description\nRW %d VMFS \"%s-flat.vmdk\"\n\n# The Disk Data Base\nddb.adapterType = \"lsilogic\"\n", c.size/sector, stem)
		http.ServeContent(w, r, file, time.Time{}, strings.NewReader(desc))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, file, time.Time{}, io.NewSectionReader(&sparseView{c: c}, 0, c.size))
}

// baseContent is the content of disk i's base file: frozen by the VM's
// oldest snapshot, or live.
func (s *Sim) baseContent(st *vmState, i int) *content {
	s.mu.Lock()
	defer s.mu.Unlock()
	var oldest *snapState
	for _, sn := range s.snaps {
		if sn.vm == st && len(sn.disks) > i && (oldest == nil || sn.seq < oldest.seq) {
			oldest = sn
		}
	}
	if oldest != nil {
		return oldest.disks[i]
	}
	return st.disks[i].live
}
