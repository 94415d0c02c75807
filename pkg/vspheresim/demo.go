package vspheresim

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
)

const mib = 1 << 20

// DemoVMs is the inventory of `rehost demo` and `rehost emulator vcenter
// --demo`: small disks (tens of MiB) with recognisable, deterministic
// content, so a demo run is quick and its result checkable.
//
//   - web-01: Linux, BIOS, running with Tools, CBT; a boot disk with an MBR
//     signature, a pseudo-random "OS" region and file-like blocks, and a
//     64 MiB data disk that is mostly empty.
//   - app-01: Windows, EFI, running with Tools, CBT; a GPT-style disk.
//   - db-01: Linux, BIOS, powered off, no Tools, no CBT.
func DemoVMs() []VMSpec {
	return []VMSpec{
		{
			Name: "web-01", GuestID: "ubuntu64Guest", Firmware: "bios", CPUs: 2, MemoryMiB: 2048,
			PowerOn: true, ToolsRunning: true, CBT: true,
			Disks: []DiskSpec{
				{CapacityBytes: 24 * mib, Seed: bootDisk("web-01", 1, false, 4*mib, 16*mib)},
				{CapacityBytes: 64 * mib, Seed: dataDisk("web-01")},
			},
		},
		{
			Name: "app-01", GuestID: "windows2019srv_64Guest", Firmware: "efi", CPUs: 4, MemoryMiB: 8192,
			PowerOn: true, ToolsRunning: true, CBT: true, NICs: 2,
			Disks: []DiskSpec{
				{CapacityBytes: 32 * mib, Seed: bootDisk("app-01", 2, true, 6*mib, 24*mib)},
			},
		},
		{
			Name: "db-01", GuestID: "rhel8_64Guest", Firmware: "bios", CPUs: 2, MemoryMiB: 4096,
			Disks: []DiskSpec{
				{CapacityBytes: 16 * mib, Seed: bootDisk("db-01", 3, false, 2*mib, 8*mib)},
			},
		},
	}
}

// bootDisk writes a partition-table signature, osBytes of deterministic
// pseudo-random data after the first MiB, and 4 KiB text "file" blocks every
// 256 KiB up to fsEnd.
func bootDisk(vm string, seed uint64, gpt bool, osBytes, fsEnd int64) func(io.WriterAt) error {
	return func(w io.WriterAt) error {
		s0 := make([]byte, 512)
		copy(s0[446:], []byte{0x80, 0x20, 0x21, 0x00, 0x83})
		binary.LittleEndian.PutUint32(s0[446+8:], 2048)
		s0[510], s0[511] = 0x55, 0xAA
		if gpt {
			s0[446+4] = 0xEE // protective MBR
		}
		if _, err := w.WriteAt(s0, 0); err != nil {
			return err
		}
		if gpt {
			hdr := make([]byte, 512)
			copy(hdr, "EFI PART")
			if _, err := w.WriteAt(hdr, 512); err != nil {
				return err
			}
		}
		if err := pseudoRandom(w, seed, mib, osBytes); err != nil {
			return err
		}
		return fileBlocks(w, vm, mib+osBytes, fsEnd)
	}
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
