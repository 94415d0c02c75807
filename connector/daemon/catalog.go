package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
)

// catalogBatch is how many servers one catalog transaction writes: a
// transaction per VM made an import of thousands wait on as many commits.
const catalogBatch = 500

// serverOf is the catalog entry of a VM of the source.
func serverOf(sourceID string, vm source.VM) store.Server {
	details, _ := json.Marshal(vm)
	return store.Server{
		SourceID: sourceID, VMID: vm.ID, Name: vm.Name, Path: vm.Path, GuestOS: vm.GuestOS,
		Firmware: vm.Firmware, CPUs: vm.CPUs, MemoryMiB: vm.MemoryMiB, DiskCount: len(vm.Disks),
		Details: string(details),
	}
}

// writeCatalog upserts the servers of vms with each one's preflight (so
// each says at once whether it will migrate), catalogBatch at a time.
func (d *Daemon) writeCatalog(ctx context.Context, src source.Source, sourceID string, vms []source.VM) ([]store.Server, error) {
	snap := d.snapshotImport(ctx)
	out := make([]store.Server, 0, len(vms))
	for batch := range slices.Chunk(vms, catalogBatch) {
		servers := make([]store.Server, len(batch))
		for i, vm := range batch {
			servers[i] = serverOf(sourceID, vm)
		}
		stored, err := d.Store.UpsertServers(ctx, servers)
		if err != nil {
			return nil, err
		}
		reports := make([]store.Preflight, len(batch))
		for i, vm := range batch {
			_, p, err := newReport(stored[i].ServerID, checkVM(ctx, src, vm, snap))
			if err != nil {
				return nil, fmt.Errorf("vm %q: %w", vm.Name, err)
			}
			reports[i] = p
		}
		if err := d.Store.PutPreflights(ctx, reports); err != nil {
			return nil, err
		}
		out = append(out, stored...)
	}
	return out, nil
}

// importInventory writes the source's inventory to the catalog. A source
// that pages it (source.Pager) has each page written while the next is
// read; the servers come back in the order of their inventory paths.
func (d *Daemon) importInventory(ctx context.Context, src source.Source, sourceID string) ([]store.Server, error) {
	p, ok := src.(source.Pager)
	if !ok {
		vms, err := src.Inventory(ctx)
		if err != nil {
			return nil, err
		}
		return d.writeCatalog(ctx, src, sourceID, vms)
	}
	readCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	pages := make(chan []source.VM, 1)
	var out []store.Server
	var werr error
	written := make(chan struct{})
	go func() {
		defer close(written)
		for page := range pages {
			stored, err := d.writeCatalog(ctx, src, sourceID, page)
			if err != nil {
				werr = err
				stop(err)
				return
			}
			out = append(out, stored...)
		}
	}()
	rerr := p.InventoryPages(readCtx, func(page []source.VM) error {
		select {
		case pages <- page:
			return nil
		case <-readCtx.Done():
			return context.Cause(readCtx)
		}
	})
	close(pages)
	<-written
	if werr != nil {
		return nil, werr
	}
	if rerr != nil {
		return nil, rerr
	}
	slices.SortFunc(out, func(a, b store.Server) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}
