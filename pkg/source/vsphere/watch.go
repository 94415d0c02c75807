package vsphere

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/vsphere/internal/vim"
)

var _ source.Watcher = (*Source)(nil)

// watchProps are the VM properties whose changes the watch is told of:
// small ones that change with what the catalog shows (a rename, a move,
// a reconfiguration such as a disk added, the power state). A change of
// any re-reads the VM whole, so the updates stay small however big the
// VM's configuration.
var watchProps = []string{
	"name", "parent", "parentVApp", "config.instanceUuid", "config.template",
	"config.changeVersion", "summary.config.numVirtualDisks", "runtime.powerState",
}

// watchContainers are the containers a VM's inventory path runs through,
// and the properties of theirs it is made of: a folder, vApp or
// datacenter renamed or moved changes the paths of the VMs below it and
// no property of theirs, so the watch follows them too.
var watchContainers = []vim.PropSpec{
	{Type: "Folder", Paths: []string{"name", "parent"}},
	{Type: "Datacenter", Paths: []string{"name", "parent"}},
	{Type: "VirtualApp", Paths: []string{"name", "parent", "parentFolder"}},
}

// watchWait is how long one WaitForUpdatesEx waits for changes (its
// MaxWaitSeconds): short enough that a cut connection is noticed, long
// enough that an idle vCenter is asked rarely.
var watchWait = 30 * time.Second

// Watch implements source.Watcher with a property collector of its own: a
// filter on the VMs of a container view, WaitForUpdatesEx from the last
// version, each VM that entered or changed re-read in one retrieval, and
// each that left reported gone. A lost session or an unknown version
// starts again: the whole inventory once more, then updates.
func (s *Source) Watch(ctx context.Context, fn func(source.Change) error) error {
	const maxBackoff = time.Minute
	backoff := time.Second
	for {
		var synced bool
		err := s.watch(ctx, fn, &synced)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		var fe fnError
		if errors.As(err, &fe) {
			return fe.err
		}
		if synced {
			backoff = time.Second
		}
		err = classify("watch the inventory of vcenter "+s.u.Host, err)
		slog.Warn("vcenter inventory watch interrupted; listing again", "vcenter", s.u.Host, "err", err, "retry_in", backoff)
		if err := fn(source.Change{Err: err}); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// fnError is an error of Watch's fn, which ends the watch.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// watch is one run of the watch, from the first listing until an error.
func (s *Source) watch(ctx context.Context, fn func(source.Change) error, synced *bool) error {
	pc, err := s.c.NewCollector(ctx)
	if err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := pc.Destroy(dctx); err != nil {
			slog.Debug("destroy watch property collector", "err", err)
		}
	}()
	types := []vim.E{vim.Mor("container", s.c.Content.RootFolder), vim.Str("type", "VirtualMachine")}
	for _, c := range watchContainers {
		types = append(types, vim.Str("type", c.Type))
	}
	res, err := s.c.Call(ctx, "CreateContainerView", s.c.Content.ViewManager, append(types, vim.Bool("recursive", true))...)
	if err != nil {
		return err
	}
	view := res.Child("returnval").Ref()
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, err := s.c.Call(dctx, "DestroyView", view); err != nil {
			slog.Debug("destroy watch view", "err", err)
		}
	}()
	props := append([]vim.PropSpec{{Type: "VirtualMachine", Paths: watchProps}}, watchContainers...)
	if _, err := pc.CreateFilter(ctx, []vim.ObjectSpec{{Obj: view, Skip: true, Traverse: &vim.Traversal{Type: "ContainerView", Path: "view"}}}, props); err != nil {
		return err
	}
	// The filter's first answer is every VM and container, entering: the
	// shape of the inventory (names and parents) is kept from it, the VMs
	// themselves are listed in pages after it, so nothing that changes in
	// between is missed.
	t := newTree()
	version := ""
	for {
		set, err := pc.Wait(ctx, version, watchWait, 0)
		if err != nil {
			return err
		}
		version = set.Version
		for _, u := range set.Objects {
			t.update(u)
		}
		if !set.Truncated {
			break
		}
	}
	var all []source.VM
	if err := s.listVMs(ctx, nil, func(page []listed) error {
		for _, l := range page {
			if l.ok {
				t.reported(l)
				all = append(all, l.vm)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := fn(source.Change{Full: true, VMs: all}); err != nil {
		return fnError{err}
	}
	all = nil
	*synced = true
	for {
		set, err := pc.Wait(ctx, version, watchWait, 0)
		if err != nil {
			return err
		}
		version = set.Version
		var changed []vim.Ref
		var ch source.Change
		reshaped := false
		for _, u := range set.Objects {
			if u.Ref.Type != "VirtualMachine" {
				reshaped = t.update(u) || reshaped
				continue
			}
			if u.Kind == vim.Leave {
				if vm := t.vms[u.Ref]; vm != nil && vm.id != "" {
					ch.Gone = append(ch.Gone, vm.id)
				}
			} else {
				changed = append(changed, u.Ref)
			}
			t.update(u)
		}
		if reshaped {
			moved, gone, enter := t.moves(s.cfg.Datacenter, changed)
			ch.Moved, ch.Gone, changed = moved, append(ch.Gone, gone...), append(changed, enter...)
		}
		if len(changed) > 0 {
			err := s.listVMs(ctx, changed, func(page []listed) error {
				for _, l := range page {
					if l.ok {
						t.reported(l)
						ch.VMs = append(ch.VMs, l.vm)
					} else if vm := t.vms[l.ref]; vm != nil && vm.id != "" {
						// Turned into a template, or moved out of the
						// datacenter the source is limited to.
						ch.Gone = append(ch.Gone, vm.id)
						vm.id, vm.path = "", ""
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if len(ch.VMs) == 0 && len(ch.Gone) == 0 && len(ch.Moved) == 0 {
			continue
		}
		if err := fn(ch); err != nil {
			return fnError{err}
		}
	}
}

// tree is the shape of the inventory as the watch's updates tell it: the
// name and container of every folder, datacenter, vApp and VM, and of the
// VMs reported, their id and path as reported, so that a container
// renamed or moved is seen to move the VMs below it.
type tree struct {
	inv   *inventory // the containers' names and parents, as listVMs has them
	conts map[vim.Ref]*treeContainer
	vms   map[vim.Ref]*treeVM
}

type treeContainer struct{ name, parent, parentFolder *vim.Node }

type treeVM struct {
	name               string
	parent, parentVApp vim.Ref
	template           bool
	// id and path are as last reported ("" while not reported: a
	// template, a VM outside the datacenter, one not listed yet).
	id, path string
}

func newTree() *tree {
	return &tree{inv: newInventory(), conts: map[vim.Ref]*treeContainer{}, vms: map[vim.Ref]*treeVM{}}
}

// update applies one object's update; it reports whether a container's
// name or place changed.
func (t *tree) update(u vim.ObjectUpdate) bool {
	if u.Ref.Type == "VirtualMachine" {
		if u.Kind == vim.Leave {
			delete(t.vms, u.Ref)
			return false
		}
		vm := t.vms[u.Ref]
		if vm == nil {
			vm = &treeVM{}
			t.vms[u.Ref] = vm
		}
		for path, v := range u.Changes {
			switch path {
			case "name":
				vm.name = v.String()
			case "parent":
				vm.parent = v.Ref()
			case "parentVApp":
				vm.parentVApp = v.Ref()
			case "config.template":
				vm.template = v.Bool()
			}
		}
		return false
	}
	if u.Kind == vim.Leave {
		delete(t.conts, u.Ref)
		delete(t.inv.name, u.Ref)
		delete(t.inv.parent, u.Ref)
		return true
	}
	c := t.conts[u.Ref]
	if c == nil {
		c = &treeContainer{}
		t.conts[u.Ref] = c
	}
	changed := false
	for path, v := range u.Changes {
		switch path {
		case "name":
			c.name, changed = v, true
		case "parent":
			c.parent, changed = v, true
		case "parentFolder":
			c.parentFolder, changed = v, true
		}
	}
	if !changed {
		return false
	}
	t.inv.name[u.Ref] = c.name.String()
	delete(t.inv.parent, u.Ref)
	t.inv.addContainer(vim.Object{Ref: u.Ref, Props: map[string]*vim.Node{"parent": c.parent, "parentFolder": c.parentFolder}})
	return u.Kind == vim.Modify
}

// reported records a VM as listed and reported.
func (t *tree) reported(l listed) {
	vm := t.vms[l.ref]
	if vm == nil {
		// Listed before its own update came: the listing says where it is.
		vm = &treeVM{name: l.vm.Name, parent: l.parent}
		t.vms[l.ref] = vm
	}
	vm.id, vm.path = l.vm.ID, l.vm.Path
}

// moves are what containers renamed or moved did to the VMs below them
// (those of skip are being listed anyway): the reported VMs whose path
// changed (moved), those it took out of the datacenter the source is
// limited to (gone, by id), and the VMs it brought into it (enter, to
// list).
func (t *tree) moves(datacenter string, skip []vim.Ref) (moved []source.Move, gone []string, enter []vim.Ref) {
	for ref, vm := range t.vms {
		if vm.name == "" || slices.Contains(skip, ref) {
			continue
		}
		parent := vm.parent
		if parent.IsZero() {
			parent = vm.parentVApp
		}
		path := t.inv.path(parent, vm.name)
		inside := datacenter == "" || strings.HasPrefix(path, "/"+datacenter+"/")
		switch {
		case vm.id == "" && inside && !vm.template && datacenter != "":
			enter = append(enter, ref)
		case vm.id == "" || path == vm.path:
		case !inside:
			gone = append(gone, vm.id)
			vm.id, vm.path = "", ""
		default:
			moved = append(moved, source.Move{ID: vm.id, Path: path})
			vm.path = path
		}
	}
	return moved, gone, enter
}
