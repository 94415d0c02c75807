package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

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
