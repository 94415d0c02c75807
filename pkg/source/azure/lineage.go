package azure

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"

	"github.com/rehost/rehost/pkg/source"
)

// SnapshotLineage pairs a checkpoint's snapshot of a disk with the disk's
// previous snapshot made by rehost (its incremental parent), the two that
// GetPageRangesDiff compares.
type SnapshotLineage struct {
	DiskKey  string
	Snapshot string // resource id
	Previous string // resource id; "" for the disk's first snapshot
}

// Lineage is the change-tracking hook of incremental replication: for each
// disk of the checkpoint, its snapshot and the newest older rehost snapshot
// of the same managed disk. An incremental run reads only the ranges
// GetPageRangesDiff reports between them (with the previous snapshot's SAS
// as prevsnapshoturl) and must keep the previous snapshot until then; full
// runs do not use it.
func (s *Source) Lineage(ctx context.Context, cp source.Checkpoint) ([]SnapshotLineage, error) {
	rid, err := parseID(cp.VMID, "virtualMachines")
	if err != nil {
		return nil, fmt.Errorf("lineage: %w", err)
	}
	name := cmpOr(cp.ID, cp.Name)
	all, err := s.snapshotsOf(ctx, rid.ResourceGroupName, cp.VMID, "")
	if err != nil {
		return nil, fmt.Errorf("lineage of checkpoint %q: %w", name, err)
	}
	var out []SnapshotLineage
	for _, sn := range all {
		if val(sn.Tags[tagCheckpoint]) != name || sn.Properties == nil {
			continue
		}
		l := SnapshotLineage{DiskKey: val(sn.Tags[tagDisk]), Snapshot: val(sn.ID)}
		src := sourceDisk(sn.Properties.CreationData)
		created := val(sn.Properties.TimeCreated)
		var best string
		var bestTime time.Time
		for _, o := range all {
			p := o.Properties
			if o == sn || p == nil || !strings.EqualFold(sourceDisk(p.CreationData), src) {
				continue
			}
			if t := val(p.TimeCreated); t.Before(created) && t.After(bestTime) {
				best, bestTime = val(o.ID), t
			}
		}
		l.Previous = best
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("lineage of checkpoint %q of vm %s: no snapshots: %w", name, cp.VMID, source.ErrNotFound)
	}
	return out, nil
}

func sourceDisk(c *armcompute.CreationData) string {
	if c == nil {
		return ""
	}
	return val(c.SourceResourceID)
}
