package vsphere

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/vsphere/internal/vim"
)

// snapshotDescription marks the snapshots rehost makes, for an administrator
// looking at the VM in the vSphere client.
const snapshotDescription = "rehost replication checkpoint; removed by rehost when the disks are copied"

// snapshotTree is a node of a VM's snapshot tree.
type snapshotTree struct {
	ref      vim.Ref
	name     string
	quiesced bool
}

// vmSnapshots reads a VM's snapshots (depth first, as vCenter nests them),
// whether VMware Tools run in it and its power state.
func (s *Source) vmSnapshots(ctx context.Context, ref vim.Ref) (snaps []snapshotTree, tools bool, power string, err error) {
	objs, err := s.c.Get(ctx, []vim.Ref{ref}, "snapshot", "guest.toolsRunningStatus", "runtime.powerState")
	if err != nil {
		return nil, false, "", err
	}
	if len(objs) != 1 {
		return nil, false, "", &vim.Fault{Name: "ManagedObjectNotFound", Message: "vm " + ref.Value + " is gone"}
	}
	p := objs[0].Props
	var walk func(l []*vim.Node)
	walk = func(l []*vim.Node) {
		for _, t := range l {
			snaps = append(snaps, snapshotTree{ref: t.Child("snapshot").Ref(), name: t.Child("name").String(), quiesced: t.Child("quiesced").Bool()})
			walk(t.Children("childSnapshotList"))
		}
	}
	walk(p["snapshot"].Children("rootSnapshotList"))
	return snaps, p["guest.toolsRunningStatus"].String() == toolsRunning, p["runtime.powerState"].String(), nil
}

func findSnapshot(snaps []snapshotTree, match func(snapshotTree) bool) (snapshotTree, bool) {
	for _, t := range snaps {
		if match(t) {
			return t, true
		}
	}
	return snapshotTree{}, false
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
	snaps, tools, power, err := s.vmSnapshots(ctx, ref)
	if err != nil {
		return source.Checkpoint{}, classify("checkpoint vm "+vmID+": read its snapshots", err)
	}
	if t, ok := findSnapshot(snaps, func(t snapshotTree) bool { return t.name == name }); ok {
		return source.Checkpoint{VMID: vmID, ID: t.ref.Value, Name: name, Quiesced: t.quiesced}, nil
	}
	quiesce := tools && power == "poweredOn"
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

func (s *Source) snapshot(ctx context.Context, ref vim.Ref, name string, quiesce bool) (vim.Ref, error) {
	res, err := s.c.Call(ctx, "CreateSnapshot_Task", ref, vim.Str("name", name), vim.Str("description", snapshotDescription),
		vim.Bool("memory", false), vim.Bool("quiesce", quiesce))
	if err != nil {
		return vim.Ref{}, err
	}
	result, err := s.c.WaitTask(ctx, res.Child("returnval").Ref())
	if err != nil {
		return vim.Ref{}, err
	}
	snap := result.Ref()
	if result.Type() != "ManagedObjectReference" || snap.Type != "VirtualMachineSnapshot" {
		return vim.Ref{}, fmt.Errorf("snapshot task returned %s %q, not a snapshot", result.Type(), snap.Value)
	}
	return snap, nil
}

// Checkpoints lists the VM's snapshots whose name starts with prefix.
func (s *Source) Checkpoints(ctx context.Context, vmID, prefix string) ([]source.Checkpoint, error) {
	ref, err := s.findVM(ctx, vmID)
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	snaps, _, _, err := s.vmSnapshots(ctx, ref)
	if err != nil {
		return nil, classify("list checkpoints of vm "+vmID, err)
	}
	out := []source.Checkpoint{}
	for _, t := range snaps {
		if strings.HasPrefix(t.name, prefix) {
			out = append(out, source.Checkpoint{VMID: vmID, ID: t.ref.Value, Name: t.name, Quiesced: t.quiesced})
		}
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
	snaps, _, _, err := s.vmSnapshots(ctx, ref)
	if err != nil {
		return classify(fmt.Sprintf("release checkpoint %q of vm %s", cp.Name, cp.VMID), err)
	}
	t, ok := findSnapshot(snaps, func(t snapshotTree) bool {
		return t.ref.Value == cp.ID || (cp.ID == "" && t.name == cp.Name)
	})
	if !ok {
		return nil
	}
	res, err := s.c.Call(ctx, "RemoveSnapshot_Task", t.ref, vim.Bool("removeChildren", false), vim.Bool("consolidate", true))
	if err == nil {
		_, err = s.c.WaitTask(ctx, res.Child("returnval").Ref())
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
