package vsphere

import (
	"context"
	"errors"
	"log/slog"
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
	res, err := s.c.Call(ctx, "CreateContainerView", s.c.Content.ViewManager, vim.Mor("container", s.c.Content.RootFolder),
		vim.Str("type", "VirtualMachine"), vim.Bool("recursive", true))
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
	if _, err := pc.CreateFilter(ctx, []vim.ObjectSpec{{Obj: view, Skip: true, Traverse: &vim.Traversal{Type: "ContainerView", Path: "view"}}},
		[]vim.PropSpec{{Type: "VirtualMachine", Paths: watchProps}}); err != nil {
		return err
	}
	// The filter's first answer is every VM, entering: taken only as the
	// version to go on from, the VMs themselves are listed in pages after
	// it, so nothing that changes in between is missed.
	version := ""
	for {
		set, err := pc.Wait(ctx, version, watchWait, 0)
		if err != nil {
			return err
		}
		version = set.Version
		if !set.Truncated {
			break
		}
	}
	ids := map[vim.Ref]string{} // the instance UUID of each VM reported
	var all []source.VM
	if err := s.listVMs(ctx, nil, func(page []listed) error {
		for _, l := range page {
			if l.ok {
				ids[l.ref] = l.vm.ID
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
		for _, u := range set.Objects {
			switch u.Kind {
			case vim.Leave:
				if id, ok := ids[u.Ref]; ok {
					ch.Gone = append(ch.Gone, id)
					delete(ids, u.Ref)
				}
			default:
				changed = append(changed, u.Ref)
			}
		}
		if len(changed) > 0 {
			err := s.listVMs(ctx, changed, func(page []listed) error {
				for _, l := range page {
					if l.ok {
						ids[l.ref] = l.vm.ID
						ch.VMs = append(ch.VMs, l.vm)
					} else if id, known := ids[l.ref]; known {
						// Turned into a template, or moved out of the
						// datacenter the source is limited to.
						ch.Gone = append(ch.Gone, id)
						delete(ids, l.ref)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if len(ch.VMs) == 0 && len(ch.Gone) == 0 {
			continue
		}
		if err := fn(ch); err != nil {
			return fnError{err}
		}
	}
}
