package vspheresim

import (
	"context"
	"fmt"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"
)

// Changes to the inventory as an administrator makes them, through
// vCenter's API, so that clients watching the inventory (the property
// collector's WaitForUpdatesEx) are told of them as they would be by
// vCenter. They apply to the VMs of Options.VMs and to plain ones alike.

// AddVM creates a VM while the simulator runs, as Options.VMs are.
func (s *Sim) AddVM(ctx context.Context, spec VMSpec) error {
	s.mu.Lock()
	_, dup := s.vms[spec.Name]
	s.mu.Unlock()
	if dup {
		return fmt.Errorf("vcenter simulator: add vm %q: the name is taken", spec.Name)
	}
	if err := s.createVM(ctx, spec); err != nil {
		return fmt.Errorf("vcenter simulator: add vm %q: %w", spec.Name, err)
	}
	return nil
}

// anyVM finds a VM by name, of Options.VMs or a plain one.
func (s *Sim) anyVM(ctx context.Context, name string) (*object.VirtualMachine, error) {
	if st, err := s.vm(name); err == nil {
		return object.NewVirtualMachine(s.client, st.ref), nil
	}
	f := find.NewFinder(s.client, true)
	vm, err := f.VirtualMachine(ctx, "/DC0/vm/"+name)
	if err != nil {
		return nil, fmt.Errorf("vcenter simulator: no vm %q: %w", name, err)
	}
	return vm, nil
}

func (s *Sim) task(t *object.Task, what string) error {
	if info := s.waitTask(t.Reference()); info.Error != nil {
		return fmt.Errorf("vcenter simulator: %s: %s", what, info.Error.LocalizedMessage)
	}
	return nil
}

// RenameVM renames a VM (Rename_Task).
func (s *Sim) RenameVM(ctx context.Context, name, newName string) error {
	vm, err := s.anyVM(ctx, name)
	if err != nil {
		return err
	}
	t, err := vm.Rename(ctx, newName)
	if err != nil {
		return fmt.Errorf("vcenter simulator: rename vm %q: %w", name, err)
	}
	if err := s.task(t, "rename vm "+name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.vms[name]; ok {
		delete(s.vms, name)
		st.name = newName
		s.vms[newName] = st
	}
	return nil
}

// AddDisk gives a VM a new empty disk of capacity bytes on its first SCSI
// controller (ReconfigVM_Task). It has no content the simulator serves:
// for inventory changes, not exports.
func (s *Sim) AddDisk(ctx context.Context, name string, capacity int64) error {
	vm, err := s.anyVM(ctx, name)
	if err != nil {
		return err
	}
	devices, err := vm.Device(ctx)
	if err != nil {
		return fmt.Errorf("vcenter simulator: add disk to %q: %w", name, err)
	}
	ctrl, err := devices.FindSCSIController("")
	if err != nil {
		return fmt.Errorf("vcenter simulator: add disk to %q: %w", name, err)
	}
	d := devices.CreateDisk(ctrl, types.ManagedObjectReference{}, "")
	d.CapacityInBytes, d.CapacityInKB = capacity, capacity/1024
	if err := vm.AddDevice(ctx, d); err != nil {
		return fmt.Errorf("vcenter simulator: add disk to %q: %w", name, err)
	}
	return nil
}

// RemoveVM powers a VM off if it runs and destroys it (Destroy_Task).
func (s *Sim) RemoveVM(ctx context.Context, name string) error {
	vm, err := s.anyVM(ctx, name)
	if err != nil {
		return err
	}
	if state, err := vm.PowerState(ctx); err == nil && state == types.VirtualMachinePowerStatePoweredOn {
		t, err := vm.PowerOff(ctx)
		if err != nil {
			return fmt.Errorf("vcenter simulator: power off %q: %w", name, err)
		}
		if err := s.task(t, "power off "+name); err != nil {
			return err
		}
	}
	t, err := vm.Destroy(ctx)
	if err != nil {
		return fmt.Errorf("vcenter simulator: remove vm %q: %w", name, err)
	}
	if err := s.task(t, "remove vm "+name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.vms[name]; ok {
		delete(s.vms, name)
		delete(s.byRef, st.ref)
	}
	return nil
}

// LoseUpdateVersion makes the next WaitForUpdatesEx from a version (not
// the first of a filter) fail with InvalidCollectorVersion, as vCenter
// answers when it no longer knows the version a client waits from: the
// simulator never does by itself.
func (s *Sim) LoseUpdateVersion() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lostVersion = true
}

func (s *Sim) takeLostVersion() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	lost := s.lostVersion
	s.lostVersion = false
	return lost
}

// folder finds a folder (or a datacenter, or a vApp) by inventory path,
// e.g. "/DC0/vm/web".
func (s *Sim) folder(ctx context.Context, path string) (object.Reference, error) {
	ref, err := object.NewSearchIndex(s.client).FindByInventoryPath(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("vcenter simulator: find %q: %w", path, err)
	}
	if ref == nil {
		return nil, fmt.Errorf("vcenter simulator: no folder %q", path)
	}
	return ref, nil
}

// CreateFolder creates a VM folder named name in the folder at parent
// (an inventory path such as "/DC0/vm").
func (s *Sim) CreateFolder(ctx context.Context, parent, name string) error {
	ref, err := s.folder(ctx, parent)
	if err != nil {
		return err
	}
	f, ok := ref.(*object.Folder)
	if !ok {
		return fmt.Errorf("vcenter simulator: %q is not a folder", parent)
	}
	if _, err := f.CreateFolder(ctx, name); err != nil {
		return fmt.Errorf("vcenter simulator: create folder %q in %q: %w", name, parent, err)
	}
	return nil
}

// RenameFolder renames the folder or datacenter at path (Rename_Task):
// the inventory paths of the VMs below it change, none of their own
// properties does.
func (s *Sim) RenameFolder(ctx context.Context, path, newName string) error {
	ref, err := s.folder(ctx, path)
	if err != nil {
		return err
	}
	t, err := object.NewCommon(s.client, ref.Reference()).Rename(ctx, newName)
	if err != nil {
		return fmt.Errorf("vcenter simulator: rename %q: %w", path, err)
	}
	return s.task(t, "rename "+path)
}

// MoveInto moves the VMs named and the folders at the inventory paths
// given (MoveIntoFolder_Task) into the folder at path.
func (s *Sim) MoveInto(ctx context.Context, path string, vms []string, folders ...string) error {
	ref, err := s.folder(ctx, path)
	if err != nil {
		return err
	}
	f, ok := ref.(*object.Folder)
	if !ok {
		return fmt.Errorf("vcenter simulator: %q is not a folder", path)
	}
	var refs []types.ManagedObjectReference
	for _, name := range vms {
		vm, err := s.anyVM(ctx, name)
		if err != nil {
			return err
		}
		refs = append(refs, vm.Reference())
	}
	for _, p := range folders {
		r, err := s.folder(ctx, p)
		if err != nil {
			return err
		}
		refs = append(refs, r.Reference())
	}
	t, err := f.MoveInto(ctx, refs)
	if err != nil {
		return fmt.Errorf("vcenter simulator: move into %q: %w", path, err)
	}
	return s.task(t, "move into "+path)
}
