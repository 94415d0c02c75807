package vsphere

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/rehost/rehost/pkg/source"
)

// snapshotDescription marks the snapshots rehost makes, for an administrator
// looking at the VM in the vSphere client.
const snapshotDescription = "rehost replication checkpoint; removed by rehost when the disks are copied"

func (s *Source) vmSnapshots(ctx context.Context, ref types.ManagedObjectReference) (mo.VirtualMachine, error) {
	var vm mo.VirtualMachine
	err := object.NewVirtualMachine(s.c, ref).Properties(ctx, ref, []string{"snapshot", "guest.toolsRunningStatus", "runtime.powerState"}, &vm)
	return vm, err
}

func walkSnapshots(l []types.VirtualMachineSnapshotTree, f func(types.VirtualMachineSnapshotTree)) {
	for _, t := range l {
		f(t)
		walkSnapshots(t.ChildSnapshotList, f)
	}
}

func findSnapshot(vm mo.VirtualMachine, match func(types.VirtualMachineSnapshotTree) bool) (types.VirtualMachineSnapshotTree, bool) {
	var found types.VirtualMachineSnapshotTree
	ok := false
	if vm.Snapshot != nil {
		walkSnapshots(vm.Snapshot.RootSnapshotList, func(t types.VirtualMachineSnapshotTree) {
			if !ok && match(t) {
				found, ok = t, true
			}
		})
	}
	return found, ok
}

// Checkpoint takes a snapshot named name without memory, quiesced when
// VMware Tools run in the guest; if quiescing fails (a guest VSS or freeze
// error) it falls back to a crash-consistent snapshot and says so in
// Checkpoint.Quiesced. An existing snapshot of that name is returned as is.
func (s *Source) Checkpoint(ctx context.Context, vmID, name string) (source.Checkpoint, error) {
	if name == "" {
		return source.Checkpoint{}, fmt.Errorf("checkpoint vm %s: empty snapshot name", vmID)
	}
	ref, err := s.findVM(ctx, vmID)
	if err != nil {
		return source.Checkpoint{}, fmt.Errorf("checkpoint: %w", err)
	}
	vm, err := s.vmSnapshots(ctx, ref)
	if err != nil {
		return source.Checkpoint{}, classify("checkpoint vm "+vmID+": read its snapshots", err)
	}
	if t, ok := findSnapshot(vm, func(t types.VirtualMachineSnapshotTree) bool { return t.Name == name }); ok {
		return source.Checkpoint{VMID: vmID, ID: t.Snapshot.Value, Name: name, Quiesced: t.Quiesced}, nil
	}
	quiesce := vm.Guest != nil && vm.Guest.ToolsRunningStatus == string(types.VirtualMachineToolsRunningStatusGuestToolsRunning) &&
		vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
	snap, err := s.snapshot(ctx, ref, name, quiesce)
	if err != nil && quiesce && isFault(err, "ToolsUnavailable", "ApplicationQuiesceFault", "FileSystemQuiesceFault", "SnapshotFault") {
		slog.Warn("quiesced snapshot failed; taking a crash-consistent one", "vm", vmID, "snapshot", name, "err", err)
		quiesce = false
		snap, err = s.snapshot(ctx, ref, name, false)
	}
	if err != nil {
		return source.Checkpoint{}, classify(fmt.Sprintf("checkpoint vm %s: snapshot %q", vmID, name), err)
	}
	return source.Checkpoint{VMID: vmID, ID: snap.Value, Name: name, Quiesced: quiesce}, nil
}

func (s *Source) snapshot(ctx context.Context, ref types.ManagedObjectReference, name string, quiesce bool) (types.ManagedObjectReference, error) {
	t, err := object.NewVirtualMachine(s.c, ref).CreateSnapshot(ctx, name, snapshotDescription, false, quiesce)
	if err != nil {
		return types.ManagedObjectReference{}, err
	}
	info, err := t.WaitForResult(ctx)
	if err != nil {
		return types.ManagedObjectReference{}, err
	}
	snap, ok := info.Result.(types.ManagedObjectReference)
	if !ok {
		return types.ManagedObjectReference{}, fmt.Errorf("snapshot task returned %T, not a snapshot", info.Result)
	}
	return snap, nil
}

// Checkpoints lists the VM's snapshots whose name starts with prefix.
func (s *Source) Checkpoints(ctx context.Context, vmID, prefix string) ([]source.Checkpoint, error) {
	ref, err := s.findVM(ctx, vmID)
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	vm, err := s.vmSnapshots(ctx, ref)
	if err != nil {
		return nil, classify("list checkpoints of vm "+vmID, err)
	}
	out := []source.Checkpoint{}
	if vm.Snapshot != nil {
		walkSnapshots(vm.Snapshot.RootSnapshotList, func(t types.VirtualMachineSnapshotTree) {
			if strings.HasPrefix(t.Name, prefix) {
				out = append(out, source.Checkpoint{VMID: vmID, ID: t.Snapshot.Value, Name: t.Name, Quiesced: t.Quiesced})
			}
		})
	}
	return out, nil
}

// Release removes the snapshot, consolidating its delta into the VM's
// disks; a base Keep kept is nothing to remove. A snapshot (or VM) that is
// already gone is not an error. Release
// keeps going when ctx is already cancelled only as far as the caller's
// context allows; callers run cleanup under their own context.
func (s *Source) Release(ctx context.Context, cp source.Checkpoint) error {
	if cp.Base {
		return nil // a kept checkpoint holds nothing on vCenter
	}
	ref, err := s.findVM(ctx, cp.VMID)
	if errors.Is(err, source.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release checkpoint %q: %w", cp.Name, err)
	}
	vm, err := s.vmSnapshots(ctx, ref)
	if err != nil {
		return classify(fmt.Sprintf("release checkpoint %q of vm %s", cp.Name, cp.VMID), err)
	}
	t, ok := findSnapshot(vm, func(t types.VirtualMachineSnapshotTree) bool {
		return t.Snapshot.Value == cp.ID || (cp.ID == "" && t.Name == cp.Name)
	})
	if !ok {
		return nil
	}
	res, err := methods.RemoveSnapshot_Task(ctx, s.c, &types.RemoveSnapshot_Task{
		This: t.Snapshot, RemoveChildren: false, Consolidate: types.NewBool(true)})
	if err == nil {
		err = object.NewTask(s.c, res.Returnval).Wait(ctx)
	}
	if isFault(err, "ManagedObjectNotFound", "NotFound") {
		return nil
	}
	if err != nil {
		return classify(fmt.Sprintf("release checkpoint %q of vm %s", cp.Name, cp.VMID), err)
	}
	return nil
}

// cleanupContext is a context for undoing work that outlives the caller's
// cancellation, bounded by its own timeout.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
}
