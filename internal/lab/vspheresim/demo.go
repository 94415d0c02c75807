package vspheresim

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"

	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/testdata"
)

const mib = 1 << 20

// DemoVMs is the inventory of `rehost-lab demo` and `rehost-lab vcenter
// --demo`: small disks (tens of MiB) with deterministic content, so a demo
// run is quick and its result checkable. Each boot disk is a real guest disk
// (internal/lab/guestdisk): a partition table that suits the VM's firmware and a
// system partition VM Import recognises, so the AMIs report their platform.
//
//   - web-01: Ubuntu 22.04 (as its Tools report it), BIOS (MBR, ext4),
//     running with Tools, CBT; and a 64 MiB data disk that is mostly empty.
//   - app-01: Windows Server, EFI (GPT with an EFI system partition, NTFS),
//     running with Tools, CBT.
//   - db-01: Rocky Linux, BIOS, powered off, no Tools, no CBT.
func DemoVMs() []VMSpec {
	return []VMSpec{
		{
			Name: "web-01", GuestID: "ubuntu64Guest", Firmware: "bios", CPUs: 2, MemoryMiB: 2048,
			PowerOn: true, ToolsRunning: true, CBT: true,
			GuestDetailedData: "architecture='X86' bitness='64' distroName='Ubuntu' distroVersion='22.04' familyName='Linux' kernelVersion='5.15.0-91-generic' prettyName='Ubuntu 22.04.4 LTS'",
			Disks: []DiskSpec{
				{CapacityBytes: 32 * mib, Seed: GuestDisk(guestdisk.Options{Size: 32 * mib, OSRelease: testdata.OSRelease("ubuntu-22.04"), DataBytes: 4 * mib, Seed: 1})},
				{CapacityBytes: 64 * mib, Seed: dataDisk("web-01")},
			},
		},
		{
			Name: "app-01", GuestID: "windows2019srv_64Guest", Firmware: "efi", CPUs: 4, MemoryMiB: 8192,
			PowerOn: true, ToolsRunning: true, CBT: true, NICs: 2,
			GuestDetailedData: "architecture='X86' bitness='64' buildNumber='17763' distroName='Windows' distroVersion='10.0' familyName='Windows' prettyName='Windows Server 2019 Datacenter, 64-bit (Build 17763.5329)'",
			Disks: []DiskSpec{
				{CapacityBytes: 48 * mib, Seed: GuestDisk(guestdisk.Options{Size: 48 * mib, Firmware: guestdisk.EFI, Windows: true, Seed: 2})},
			},
		},
		{
			Name: "db-01", GuestID: "rhel8_64Guest", Firmware: "bios", CPUs: 2, MemoryMiB: 4096,
			Disks: []DiskSpec{
				{CapacityBytes: 32 * mib, Seed: GuestDisk(guestdisk.Options{Size: 32 * mib, OSRelease: testdata.OSRelease("rocky-8.9"), DataBytes: 2 * mib, Seed: 3})},
			},
		},
	}
}

// GuestDisk seeds a disk with a real guest disk built by internal/lab/guestdisk
// (o.Size should be the disk's capacity): only its non-zero regions are
// written, so they alone count as allocated. The build is deterministic, so
// its regions are kept for the next simulator of the process.
func GuestDisk(o guestdisk.Options) func(io.WriterAt) error {
	return func(w io.WriterAt) error {
		key := fmt.Sprintf("%+v", o)
		c, _ := guestDisks.LoadOrStore(key, &builtDisk{})
		b := c.(*builtDisk)
		b.once.Do(func() { _, b.err = guestdisk.Write(context.Background(), b, o) })
		if b.err != nil {
			return b.err
		}
		for _, r := range b.regions {
			if _, err := w.WriteAt(r.data, r.off); err != nil {
				return err
			}
		}
		return nil
	}
}

var guestDisks sync.Map // options → *builtDisk

// builtDisk records the regions guestdisk.Write wrote.
type builtDisk struct {
	once    sync.Once
	err     error
	regions []struct {
		off  int64
		data []byte
	}
}

func (b *builtDisk) WriteAt(p []byte, off int64) (int, error) {
	b.regions = append(b.regions, struct {
		off  int64
		data []byte
	}{off, append([]byte(nil), p...)})
	return len(p), nil
}

func dataDisk(vm string) func(io.WriterAt) error {
	return func(w io.WriterAt) error {
		if err := fileBlocks(w, vm+"-data", 0, mib); err != nil {
			return err
		}
		return pseudoRandom(w, 99, 40*mib, mib/2)
	}
}

// PseudoRandom writes n deterministic pseudo-random bytes (from seed) at
// off; tests use it to make content that does not compress away.
func PseudoRandom(w io.WriterAt, seed uint64, off, n int64) error {
	return pseudoRandom(w, seed, off, n)
}

func pseudoRandom(w io.WriterAt, seed uint64, off, n int64) error {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, mib)
	for done := int64(0); done < n; {
		k := min(int64(len(buf)), n-done)
		for i := int64(0); i+8 <= k; i += 8 {
			binary.LittleEndian.PutUint64(buf[i:], r.Uint64())
		}
		if _, err := w.WriteAt(buf[:k], off+done); err != nil {
			return err
		}
		done += k
	}
	return nil
}

func fileBlocks(w io.WriterAt, vm string, from, to int64) error {
	blk := make([]byte, 4096)
	for off := from; off+int64(len(blk)) <= to; off += 256 << 10 {
		clear(blk)
		for i := 0; i < len(blk); {
			i += copy(blk[i:], fmt.Sprintf("%s file block at %d; ", vm, off))
		}
		if _, err := w.WriteAt(blk, off); err != nil {
			return err
		}
	}
	return nil
}
