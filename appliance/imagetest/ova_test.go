package imagetest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/ovf/importer"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/rehost/rehost/appliance/build"
	"github.com/rehost/rehost/pkg/disk"
)

// The OVA is a ustar archive with the descriptor first and the manifest
// second; the manifest's SHA-256 sums match; the descriptor parses with
// govmomi's OVF parser and says what the appliance is; the disk is a
// streamOptimized VMDK holding exactly the raw disk.
func TestOVAStructure(t *testing.T) {
	dir := image(t)
	ova := filepath.Join(dir, build.OVAFile)
	f, err := os.Open(ova)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	content := map[string][]byte{}
	sums := map[string]string{}
	vmdk := filepath.Join(t.TempDir(), "disk.vmdk")
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Format != tar.FormatUSTAR && h.Format != tar.FormatUnknown {
			t.Errorf("%s: tar format %v, want ustar", h.Name, h.Format)
		}
		names = append(names, h.Name)
		hash := sha256.New()
		var b bytes.Buffer
		w := io.MultiWriter(hash, &b)
		var out *os.File
		if strings.HasSuffix(h.Name, ".vmdk") {
			if out, err = os.Create(vmdk); err != nil {
				t.Fatal(err)
			}
			w = io.MultiWriter(hash, out)
		}
		if _, err := io.Copy(w, tr); err != nil {
			t.Fatal(err)
		}
		if out != nil {
			out.Close()
		} else {
			content[h.Name] = b.Bytes()
		}
		sums[h.Name] = hex.EncodeToString(hash.Sum(nil))
	}
	if len(names) != 3 || !strings.HasSuffix(names[0], ".ovf") || !strings.HasSuffix(names[1], ".mf") || !strings.HasSuffix(names[2], ".vmdk") {
		t.Fatalf("OVA members %v: want the descriptor, the manifest, then the disk", names)
	}
	mf := string(content[names[1]])
	for _, n := range []string{names[0], names[2]} {
		if want := fmt.Sprintf("SHA256(%s)= %s\n", n, sums[n]); !strings.Contains(mf, want) {
			t.Errorf("manifest lacks %q:\n%s", want, mf)
		}
	}

	env, err := ovf.Unmarshal(bytes.NewReader(content[names[0]]))
	if err != nil {
		t.Fatalf("govmomi's OVF parser refuses the descriptor: %v", err)
	}
	vs := env.VirtualSystem
	if vs == nil || len(vs.Product) != 1 || vs.Product[0].Product != "rehost connector" || vs.Product[0].Vendor != "rehost" ||
		vs.Product[0].Version != version(t, dir) {
		t.Fatalf("product section %+v", vs)
	}
	if len(env.References) != 1 || env.References[0].Href != names[2] || env.Disk == nil || len(env.Disk.Disks) != 1 ||
		env.Disk.Disks[0].FileRef == nil || *env.Disk.Disks[0].FileRef != env.References[0].ID {
		t.Fatalf("references %+v and disks %+v do not name the OVA's disk", env.References, env.Disk)
	}
	if env.Network == nil || len(env.Network.Networks) != 1 || env.Network.Networks[0].Name != build.NetworkName {
		t.Fatalf("network section %+v", env.Network)
	}
	xmllint := exec.Command("xmllint", "--noout", "-")
	xmllint.Stdin = bytes.NewReader(content[names[0]])
	if out, err := xmllint.CombinedOutput(); err != nil {
		t.Fatalf("xmllint: the descriptor is not well-formed XML: %v\n%s", err, out)
	}

	// The disk: streamOptimized, and the same bytes as the raw disk.
	img, c, err := disk.OpenFile(vmdk)
	if err != nil {
		t.Fatal(err)
	}
	info := img.Info()
	c.Close()
	if info.Format != disk.VMDK || info.Subformat != "streamOptimized" {
		t.Fatalf("OVA disk is %s/%s", info.Format, info.Subformat)
	}
	runTool(t, "qemu-img", "compare", "-f", "vmdk", "-F", "raw", vmdk, filepath.Join(dir, build.RawFile))
}

// The OVA imports into a simulated vCenter with govmomi's importer (what
// govc import.ova does), and the VM it makes has the declared hardware.
func TestOVAImportsIntoVCenter(t *testing.T) {
	ova := filepath.Join(image(t), build.OVAFile)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		finder := find.NewFinder(c)
		dc, err := finder.DefaultDatacenter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		finder.SetDatacenter(dc)
		ds, err := finder.DefaultDatastore(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pools, err := finder.ResourcePoolList(ctx, "*")
		if err != nil || len(pools) == 0 {
			t.Fatalf("resource pools %v: %v", pools, err)
		}
		pool := pools[0]
		folders, err := dc.Folders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		archive := &importer.TapeArchive{Path: ova}
		archive.Client = c
		imp := importer.Importer{
			Client: c, Finder: finder, Datacenter: dc, Datastore: ds, ResourcePool: pool, Folder: folders.VmFolder,
			// The simulator's NFC lease reports no checksum of what was
			// uploaded, so VerifyManifest cannot work against it;
			// TestOVAStructure checks the manifest's sums instead.
			Archive: archive,
			Log:     func(msg string) (int, error) { return len(msg), nil },
		}
		if err := imp.ReadManifest("*.ovf"); err != nil || len(imp.Manifest) != 2 {
			t.Fatalf("govmomi reads the manifest as %v: %v", imp.Manifest, err)
		}
		name := "rehost-connector-1"
		ref, err := imp.Import(ctx, "*.ovf", importer.Options{
			Name:           &name,
			NetworkMapping: []importer.Network{{Name: build.NetworkName, Network: "VM Network"}},
		})
		if err != nil {
			t.Fatalf("import the OVA: %v", err)
		}
		var vm mo.VirtualMachine
		if err := object.NewVirtualMachine(c, *ref).Properties(ctx, *ref, []string{"config", "name"}, &vm); err != nil {
			t.Fatal(err)
		}
		hw := vm.Config.Hardware
		if vm.Name != name || hw.NumCPU != build.CPUs || hw.MemoryMB != build.MemoryMiB {
			t.Errorf("VM %q: %d CPUs, %d MB; want %d CPUs, %d MB", vm.Name, hw.NumCPU, hw.MemoryMB, build.CPUs, build.MemoryMiB)
		}
		raw, err := os.Stat(filepath.Join(image(t), build.RawFile))
		if err != nil {
			t.Fatal(err)
		}
		var nics, disks, pvscsi int
		for _, d := range hw.Device {
			switch d := d.(type) {
			case *types.VirtualVmxnet3:
				nics++
				b, ok := d.Backing.(*types.VirtualEthernetCardNetworkBackingInfo)
				if !ok || b.DeviceName != "VM Network" {
					t.Errorf("NIC backing %#v: want the network VM Network", d.Backing)
				}
			case types.BaseVirtualEthernetCard:
				t.Errorf("NIC %T: want VMXNET3 only", d)
			case *types.ParaVirtualSCSIController:
				pvscsi++
			case *types.VirtualDisk:
				disks++
				if d.CapacityInBytes != raw.Size() {
					t.Errorf("disk of %d bytes, want %d", d.CapacityInBytes, raw.Size())
				}
			}
		}
		if nics != 1 || disks != 1 || pvscsi != 1 {
			t.Errorf("%d VMXNET3 NICs, %d disks, %d paravirtual SCSI controllers: want one each", nics, disks, pvscsi)
		}
	})
}

// The VHD (fixed) and the VHDX hold exactly the raw disk.
func TestVHDAndVHDX(t *testing.T) {
	dir := image(t)
	raw := filepath.Join(dir, build.RawFile)
	for _, c := range []struct{ file, format, sub string }{{build.VHDFile, "vpc", "fixed"}, {build.VHDXFile, "vhdx", "dynamic"}} {
		p := filepath.Join(dir, c.file)
		img, cl, err := disk.OpenFile(p)
		if err != nil {
			t.Fatal(err)
		}
		info := img.Info()
		cl.Close()
		if info.Subformat != c.sub {
			t.Errorf("%s is %s/%s, want %s", c.file, info.Format, info.Subformat, c.sub)
		}
		if c.format == "vhdx" {
			runTool(t, "qemu-img", "check", "-f", "vhdx", p)
		}
		runTool(t, "qemu-img", "compare", "-f", c.format, "-F", "raw", p, raw)
		sum, err := os.ReadFile(p + ".sha256")
		if err != nil || !strings.HasSuffix(strings.TrimSpace(string(sum)), "  "+c.file) {
			t.Errorf("%s.sha256: %q, %v", c.file, sum, err)
		}
	}
}
