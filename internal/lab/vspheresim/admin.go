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
