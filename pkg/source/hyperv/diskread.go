package hyperv

import (
	"context"
	"fmt"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
)

var _ source.DiskReader = (*Source)(nil)

// ReadDisk opens a disk of the VM as it is now: the chain of its VHD(X)
// files (the running differencing disk over its parents), read over SMB
// from the node running the VM, as an export reads a checkpoint's. A
// pass-through or shared disk is refused with the reason; a host that holds
// the file open for writing without sharing answers with its SMB error.
func (s *Source) ReadDisk(ctx context.Context, vmID, diskKey string) (source.DiskContent, error) {
	h, err := s.hostVM(ctx, vmID)
	if err != nil {
		return nil, err
	}
	for _, d := range h.Disks {
		if d.Controller != diskKey {
			continue
		}
		chain, err := chainOrder(d)
		if err != nil {
			return nil, err
		}
		fs := s.files()
		var cf []disk.ChainFile
		for _, f := range chain {
			fh, err := fs.open(ctx, h.Host, f.Path)
			if err != nil {
				fs.close()
				return nil, err
			}
			cf = append(cf, disk.ChainFile{Name: f.Path, R: fh, Size: fh.Size()})
		}
		img, err := disk.OpenChain(cf)
		if err != nil {
			fs.close()
			return nil, err
		}
		return &diskContent{Image: img, fs: fs}, nil
	}
	return nil, fmt.Errorf("vm %s has no disk %s: %w", vmID, diskKey, source.ErrNotFound)
}

// diskContent is an opened chain and the SMB session it reads through.
type diskContent struct {
	disk.Image
	fs files
}

func (d *diskContent) Close() error { return d.fs.close() }
