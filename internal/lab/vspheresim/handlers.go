package vspheresim

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/rehost/rehost/pkg/disk"
)

// The simulator dispatches a call to the object the caller's session
// registry holds for the reference before the global one, so this package
// overrides methods of its own VMs and snapshots by putting wrappers of the
// simulator's objects into every session's registry: at login for the VMs,
// and as snapshots come and go. The global registry keeps the simulator's
// own types, which its code relies on.
//
// intercept is the simulator's Registry.Handler hook, which applies to calls
// made without a session: Login is one.
func (s *Sim) intercept(ctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
	if req, ok := m.Body.(*types.WaitForUpdatesEx); ok && req.Version != "" && s.takeLostVersion() {
		return nil, &types.InvalidCollectorVersion{}
	}
	if m.Name == "Login" && m.This.Type == "SessionManager" {
		if sm, ok := ctx.Map.Get(m.This).(*simulator.SessionManager); ok {
			return &loginHook{SessionManager: sm, sim: s}, nil
		}
	}
	return nil, nil
}

type loginHook struct {
	*simulator.SessionManager
	sim *Sim
}

func (h *loginHook) Login(ctx *simulator.Context, req *types.Login) soap.HasFault {
	res := h.SessionManager.Login(ctx, req)
	if res.Fault() == nil && ctx.Session != nil && ctx.Session.Registry != nil {
		h.sim.adopt(ctx, ctx.Session.Registry)
	}
	return res
}

// sessionHook ends what a session may do on the simulator's extensions (NFC
// downloads) when the session ends, as vCenter does: the simulator itself
// forgets the session but not the cookie the extensions accept.
type sessionHook struct {
	*simulator.SessionManager
	sim *Sim
}

func (h *sessionHook) Logout(ctx *simulator.Context, req *types.Logout) soap.HasFault {
	h.sim.forget(ctx.Session.Key, ctx.Session.Registry)
	return h.SessionManager.Logout(ctx, req)
}

func (h *sessionHook) TerminateSession(ctx *simulator.Context, req *types.TerminateSession) soap.HasFault {
	res := h.SessionManager.TerminateSession(ctx, req)
	if res.Fault() == nil {
		for _, id := range req.SessionId {
			h.sim.forget(id, nil)
		}
	}
	return res
}

// forget drops a session's cookie and (when known) its registry.
func (s *Sim) forget(key string, reg *simulator.Registry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessionKeys, key)
	s.sessions = slices.DeleteFunc(s.sessions, func(r *simulator.Registry) bool { return r == reg })
}

func (s *Sim) adopt(ctx *simulator.Context, reg *simulator.Registry) {
	reg.Put(&sessionHook{SessionManager: ctx.Map.SessionManager(), sim: s})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions = append(s.sessions, reg)
	s.sessionKeys[ctx.Session.Key] = true
	for ref, st := range s.byRef {
		if vm, ok := ctx.Map.Get(ref).(*simulator.VirtualMachine); ok {
			reg.Put(&vmHandler{VirtualMachine: vm, sim: s, st: st})
		}
	}
	for ref, sn := range s.snaps {
		if o, ok := ctx.Map.Get(ref).(*simulator.VirtualMachineSnapshot); ok {
			reg.Put(&snapHandler{VirtualMachineSnapshot: o, sim: s, st: sn.vm})
		}
	}
}

type vmHandler struct {
	*simulator.VirtualMachine
	sim *Sim
	st  *vmState
}

type snapHandler struct {
	*simulator.VirtualMachineSnapshot
	sim *Sim
	st  *vmState
}

func failedTask(ctx *simulator.Context, e types.ManagedObjectReference, name string, f types.BaseMethodFault) types.ManagedObjectReference {
	return simulator.CreateTask(e, name, func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, f
	}).Run(ctx)
}

// waitTask waits for a task the simulator started in this call; it runs
// under the caller's object lock (the simulator's locks are reentrant per
// call context), so this completes before the SOAP answer is sent.
func waitTask(ctx *simulator.Context, ref types.ManagedObjectReference) *simulator.Task {
	t := ctx.Map.Get(ref).(*simulator.Task)
	t.Wait()
	return t
}

func (h *vmHandler) CreateSnapshotTask(ctx *simulator.Context, req *types.CreateSnapshot_Task) soap.HasFault {
	r := &types.CreateSnapshotEx_Task{This: req.This, Name: req.Name, Description: req.Description, Memory: req.Memory}
	if req.Quiesce {
		r.QuiesceSpec = &types.VirtualMachineGuestQuiesceSpec{}
	}
	body := &methods.CreateSnapshot_TaskBody{}
	res := h.CreateSnapshotExTask(ctx, r).(*methods.CreateSnapshotEx_TaskBody)
	if res.Fault_ != nil {
		body.Fault_ = res.Fault_
		return body
	}
	body.Res = &types.CreateSnapshot_TaskResponse{Returnval: res.Res.Returnval}
	return body
}

// CreateSnapshotExTask freezes every disk at the moment of the call, then
// lets the simulator build the snapshot object and tree. A quiesced
// snapshot needs VMware Tools running in the guest, as on a real host.
func (h *vmHandler) CreateSnapshotExTask(ctx *simulator.Context, req *types.CreateSnapshotEx_Task) soap.HasFault {
	body := &methods.CreateSnapshotEx_TaskBody{}
	if req.QuiesceSpec != nil && (h.Guest == nil || h.Guest.ToolsRunningStatus != string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)) {
		body.Res = &types.CreateSnapshotEx_TaskResponse{Returnval: failedTask(ctx, h.Self, "createSnapshotEx", &types.ToolsUnavailable{})}
		return body
	}
	sn, err := h.sim.freeze(h.st)
	if err != nil {
		body.Res = &types.CreateSnapshotEx_TaskResponse{Returnval: failedTask(ctx, h.Self, "createSnapshotEx",
			&types.FileFault{File: err.Error()})}
		return body
	}
	h.setChangeIDs(ctx, sn.cbt)
	res := h.VirtualMachine.CreateSnapshotExTask(ctx, req).(*methods.CreateSnapshotEx_TaskBody)
	if res.Fault_ != nil {
		sn.drop()
		return res
	}
	t := waitTask(ctx, res.Res.Returnval)
	ref, ok := t.Info.Result.(types.ManagedObjectReference)
	if t.Info.State != types.TaskInfoStateSuccess || !ok {
		sn.drop()
		return res
	}
	sn.ref = ref
	h.sim.mu.Lock()
	older := 0
	for _, o := range h.sim.snaps {
		if o.vm == h.st {
			older++
		}
	}
	h.sim.mu.Unlock()
	if simSnap, ok := ctx.Map.Get(ref).(*simulator.VirtualMachineSnapshot); ok {
		// The snapshot's config carries each disk's change id, where a
		// backup client reads it, and names the file it froze: the base
		// disk for the first snapshot, a delta for later ones (as the VM
		// wrote to a delta after the first).
		for _, d := range simSnap.Config.Hardware.Device {
			vd, ok := d.(*types.VirtualDisk)
			if !ok {
				continue
			}
			b, ok := vd.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			if !ok {
				continue
			}
			c := *b
			for i, ds := range h.st.disks {
				if ds.key != vd.Key {
					continue
				}
				c.ChangeId = ""
				if sn.cbt {
					c.ChangeId = sn.changeIDs[i]
				}
				if older > 0 {
					parent := *b
					parent.ChangeId = ""
					c.Parent = &parent
					c.FileName = strings.TrimSuffix(b.FileName, ".vmdk") + fmt.Sprintf("-%06d.vmdk", older)
				}
			}
			vd.Backing = &c
		}
	}
	h.sim.mu.Lock()
	h.sim.snaps[ref] = sn
	if o, ok := ctx.Map.Get(ref).(*simulator.VirtualMachineSnapshot); ok {
		for _, reg := range h.sim.sessions {
			reg.Put(&snapHandler{VirtualMachineSnapshot: o, sim: h.sim, st: h.st})
		}
	}
	h.sim.mu.Unlock()
	return res
}

func (s *Sim) freeze(st *vmState) (*snapState, error) {
	s.mu.Lock()
	s.seq++
	n := s.seq
	// A stun: CBT turned on while the VM ran takes effect now.
	activate := st.cbtPending
	st.cbtPending = false
	if activate {
		st.cbt = true
	}
	cbt := st.cbt
	s.mu.Unlock()
	if activate {
		for _, d := range st.disks {
			d.newGeneration()
		}
	}
	dir := filepath.Join(s.dir, "snapshots")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cs, ids, eps, err := freezeAll(st.disks, func(i int) string {
		return filepath.Join(dir, fmt.Sprintf("%s-%d-disk%d.raw", st.name, n, i))
	})
	if err != nil {
		return nil, err
	}
	sn := &snapState{vm: st, seq: n, cbt: cbt, disks: cs, epochs: eps, changeIDs: ids}
	for i := range st.disks {
		sn.cbtIDs = append(sn.cbtIDs, strings.TrimSuffix(ids[i], fmt.Sprintf("/%d", eps[i])))
	}
	return sn, nil
}

func (sn *snapState) drop() {
	for _, c := range sn.disks {
		c.remove()
	}
	sn.disks = nil
}

// reconcile frees the frozen content of snapshots the simulator removed.
func (s *Sim) reconcile(ctx *simulator.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ref, sn := range s.snaps {
		if ctx.Map.Get(ref) == nil {
			sn.drop()
			delete(s.snaps, ref)
			for _, reg := range s.sessions {
				reg.Remove(ctx, ref)
			}
		}
	}
}

func (h *vmHandler) RemoveAllSnapshotsTask(ctx *simulator.Context, req *types.RemoveAllSnapshots_Task) soap.HasFault {
	res := h.VirtualMachine.RemoveAllSnapshotsTask(ctx, req).(*methods.RemoveAllSnapshots_TaskBody)
	if res.Res != nil {
		waitTask(ctx, res.Res.Returnval)
	}
	h.sim.reconcile(ctx)
	return res
}

func (h *snapHandler) RemoveSnapshotTask(ctx *simulator.Context, req *types.RemoveSnapshot_Task) soap.HasFault {
	res := h.VirtualMachineSnapshot.RemoveSnapshotTask(ctx, req).(*methods.RemoveSnapshot_TaskBody)
	if res.Res != nil {
		waitTask(ctx, res.Res.Returnval)
	}
	h.sim.reconcile(ctx)
	return res
}

func (s *Sim) revert(st *vmState, ref types.ManagedObjectReference) types.BaseMethodFault {
	s.mu.Lock()
	sn := s.snaps[ref]
	s.mu.Unlock()
	if sn == nil {
		return &types.NotFound{}
	}
	for i, d := range st.disks {
		if err := d.restart(sn.disks[i]); err != nil {
			return &types.FileFault{File: err.Error()}
		}
	}
	return nil
}

// RevertToSnapshotTask restores the disks' content; change tracking starts
// a new generation, so change ids from before the revert are refused.
func (h *snapHandler) RevertToSnapshotTask(ctx *simulator.Context, req *types.RevertToSnapshot_Task) soap.HasFault {
	if f := h.sim.revert(h.st, h.Self); f != nil {
		return &methods.RevertToSnapshot_TaskBody{Res: &types.RevertToSnapshot_TaskResponse{
			Returnval: failedTask(ctx, h.Vm, "revertToSnapshot", f)}}
	}
	return h.VirtualMachineSnapshot.RevertToSnapshotTask(ctx, req)
}

func (h *vmHandler) RevertToCurrentSnapshotTask(ctx *simulator.Context, req *types.RevertToCurrentSnapshot_Task) soap.HasFault {
	if h.Snapshot != nil && h.Snapshot.CurrentSnapshot != nil {
		if f := h.sim.revert(h.st, *h.Snapshot.CurrentSnapshot); f != nil {
			return &methods.RevertToCurrentSnapshot_TaskBody{Res: &types.RevertToCurrentSnapshot_TaskResponse{
				Returnval: failedTask(ctx, h.Self, "revertToCurrentSnapshot", f)}}
		}
	}
	return h.VirtualMachine.RevertToCurrentSnapshotTask(ctx, req)
}

// QueryChangedDiskAreas answers from the ranges written between snapshots.
// changeId "*" yields every allocated area of the snapshot's disk; another
// change id must be one this disk handed out since its last revert. An
// answer carries at most Options.MaxChangedAreas extents, and its Length
// says how far it covers, so clients page as they must with vCenter.
func (h *vmHandler) QueryChangedDiskAreas(ctx *simulator.Context, req *types.QueryChangedDiskAreas) soap.HasFault {
	body := &methods.QueryChangedDiskAreasBody{}
	fail := func(msg string, f types.BaseMethodFault) soap.HasFault {
		body.Fault_ = simulator.Fault(msg, f)
		return body
	}
	if req.Snapshot == nil {
		return fail("a snapshot is required for a powered-on virtual machine", &types.InvalidArgument{InvalidProperty: "snapshot"})
	}
	h.sim.mu.Lock()
	sn := h.sim.snaps[*req.Snapshot]
	h.sim.mu.Unlock()
	if sn == nil || sn.vm != h.st {
		return fail("snapshot not found", &types.ManagedObjectNotFound{Obj: *req.Snapshot})
	}
	idx := -1
	for i, d := range h.st.disks {
		if d.key == req.DeviceKey {
			idx = i
		}
	}
	if idx < 0 {
		return fail(fmt.Sprintf("no disk with device key %d", req.DeviceKey), &types.InvalidArgument{InvalidProperty: "deviceKey"})
	}
	if !sn.cbt {
		return fail("change tracking is not enabled for this virtual machine", &types.FileFault{File: h.st.name})
	}
	d := h.st.disks[idx]
	size := sn.disks[idx].size
	var areas []disk.Extent
	if req.ChangeId == "*" {
		areas = sn.disks[idx].extents()
	} else {
		slash := strings.LastIndex(req.ChangeId, "/")
		ep, err := strconv.Atoi(req.ChangeId[slash+1:])
		if slash < 0 || err != nil || req.ChangeId[:slash] != sn.cbtIDs[idx] || ep > sn.epochs[idx] {
			return fail(fmt.Sprintf("invalid change id %q", req.ChangeId), &types.InvalidArgument{InvalidProperty: "changeId"})
		}
		areas = d.changedSince(ep, sn.epochs[idx], size)
	}
	if req.StartOffset < 0 || req.StartOffset > size {
		return fail("start offset beyond the disk", &types.InvalidArgument{InvalidProperty: "startOffset"})
	}
	info := types.DiskChangeInfo{StartOffset: req.StartOffset, Length: size - req.StartOffset}
	for _, a := range areas {
		if a.End() <= req.StartOffset {
			continue
		}
		if a.Offset < req.StartOffset {
			a = disk.Extent{Offset: req.StartOffset, Length: a.End() - req.StartOffset}
		}
		if len(info.ChangedArea) == h.sim.opts.MaxChangedAreas {
			info.Length = a.Offset - req.StartOffset
			break
		}
		info.ChangedArea = append(info.ChangedArea, types.DiskChangeExtent{Start: a.Offset, Length: a.Length})
	}
	body.Res = &types.QueryChangedDiskAreasResponse{Returnval: info}
	return body
}

// ExportVm exports the live disks; like vCenter it refuses a running VM.
func (h *vmHandler) ExportVm(ctx *simulator.Context, req *types.ExportVm) soap.HasFault {
	body := &methods.ExportVmBody{}
	if h.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff {
		body.Fault_ = simulator.Fault("the virtual machine must be powered off to export it", &types.InvalidPowerState{
			RequestedState: types.VirtualMachinePowerStatePoweredOff, ExistingState: h.Runtime.PowerState})
		return body
	}
	var views []*sparseView
	for _, d := range h.st.disks {
		views = append(views, &sparseView{c: d.live, ext: d.live.extents()})
	}
	l := h.sim.newLease(ctx, h.st, h.Self, h.Config.Hardware.Device, views)
	body.Res = &types.ExportVmResponse{Returnval: l.Self}
	return body
}

// ExportSnapshot exports the disks as they were when the snapshot was taken.
func (h *snapHandler) ExportSnapshot(ctx *simulator.Context, req *types.ExportSnapshot) soap.HasFault {
	body := &methods.ExportSnapshotBody{}
	h.sim.mu.Lock()
	sn := h.sim.snaps[h.Self]
	h.sim.mu.Unlock()
	if sn == nil {
		body.Fault_ = simulator.Fault("snapshot content not found", &types.NotFound{})
		return body
	}
	var views []*sparseView
	for _, c := range sn.disks {
		views = append(views, &sparseView{c: c, ext: c.extents()})
	}
	l := h.sim.newLease(ctx, h.st, h.Vm, h.Config.Hardware.Device, views)
	body.Res = &types.ExportSnapshotResponse{Returnval: l.Self}
	return body
}

// deviceURLKey is the key vCenter gives a disk in an export lease:
// "/<vm>/<controller type><bus>:<unit>".
func deviceURLKey(vm types.ManagedObjectReference, devices object.VirtualDeviceList, d *types.VirtualDisk) string {
	ctrl := devices.FindByKey(d.ControllerKey)
	name, bus := "VirtualController", int32(0)
	if c, ok := ctrl.(types.BaseVirtualController); ok {
		name = strings.TrimPrefix(fmt.Sprintf("%T", ctrl), "*types.")
		bus = c.GetVirtualController().BusNumber
	}
	unit := int32(0)
	if d.UnitNumber != nil {
		unit = *d.UnitNumber
	}
	return fmt.Sprintf("/%s/%s%d:%d", vm.Value, name, bus, unit)
}
