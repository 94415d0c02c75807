package preflight

import (
	"context"
	"fmt"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
)

// BootReadBudget bounds what reading a boot disk through its source may
// transfer: an inspection of a real guest disk reads a few hundred KiB.
const BootReadBudget = 16 << 20

// ReadBoot reads the partition table and file systems of vm's boot disk
// through src, where src is a source.DiskReader; (nil, nil) where it is not
// or the VM has no disk. An error says why the disk could not be read, and
// wraps disk.ErrNoPartitionTable for a disk that holds no valid table.
func ReadBoot(ctx context.Context, src source.Source, vm source.VM) (*disk.BootDisk, error) {
	dr, ok := src.(source.DiskReader)
	if !ok || len(vm.Disks) == 0 {
		return nil, nil
	}
	d, err := dr.ReadDisk(ctx, vm.ID, vm.Disks[0].Key)
	if err != nil {
		return nil, fmt.Errorf("open the boot disk: %w", err)
	}
	defer d.Close()
	b, err := disk.InspectBoot(disk.NewBudgetReader(d, BootReadBudget), d.Size())
	if err != nil {
		return nil, fmt.Errorf("read the boot disk: %w", err)
	}
	return &b, nil
}
