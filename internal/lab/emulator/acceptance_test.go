package emulator

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/internal/lab/s3peer"
)

// qemuConvert converts raw bytes with qemu-img (scripts/deps.sh installs
// it), for formats pkg/disk does not write.
func qemuConvert(t *testing.T, raw []byte, format string, opts ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.raw"), filepath.Join(dir, "out")
	if err := os.WriteFile(in, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"convert", "-f", "raw", "-O", format}, opts...)
	runTool(t, "qemu-img", append(args, in, out)...)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ova packs a descriptor and disk members into an OVA (a tar, the
// descriptor first).
func ova(t *testing.T, descriptor string, members map[string][]byte, order ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	add := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	for _, name := range order {
		if name == "vm.ovf" {
			add(name, []byte(descriptor))
		} else {
			add(name, members[name])
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func ovfDescriptor(files string, disks ...string) string {
	var d strings.Builder
	for i, f := range disks {
		fmt.Fprintf(&d, `<Disk ovf:diskId="vmdisk%d" ovf:fileRef="%s" ovf:capacity="1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>`, i+1, f)
	}
	return `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>` + files + `</References>
  <DiskSection><Info>Virtual disk information</Info>` + d.String() + `</DiskSection>
</Envelope>`
}

// VM Import's acceptance rules for ImportImage: the formats AWS lists
// (stream-optimized VMDK only), a boot disk with a partition table that
// suits the boot mode and an OS the importer recognises.
func TestImportAcceptanceRules(t *testing.T) {
	e := newEnv(t, nil)
	e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	bios, efi := guestDisk(t, guestdisk.BIOS), guestDisk(t, guestdisk.EFI)
	windows := filepath.Join(t.TempDir(), "win.raw")
	if _, err := guestdisk.Build(context.Background(), windows, guestdisk.Options{Size: 48 << 20, Firmware: guestdisk.EFI, Windows: true}); err != nil {
		t.Fatal(err)
	}
	win, _ := os.ReadFile(windows)
	noOS := filepath.Join(t.TempDir(), "noos.raw")
	if _, err := guestdisk.Build(context.Background(), noOS, guestdisk.Options{Size: 32 << 20, NoOSRelease: true}); err != nil {
		t.Fatal(err)
	}
	noOSRaw, _ := os.ReadFile(noOS)
	vmdk := encode(t, "vmdk", bios)
	chunked := ova(t, ovfDescriptor(`<File ovf:id="file1" ovf:href="disk1.vmdk" ovf:chunkSize="1048576"/>`, "file1"),
		map[string][]byte{"disk1.vmdk": vmdk}, "vm.ovf", "disk1.vmdk")

	for _, c := range []struct {
		name, key string
		data      []byte
		bootMode  ec2types.BootModeValues
		want      string // StatusMessage, "" for success
		platform  string
	}{
		{"monolithicSparse vmdk", "sparse.vmdk", qemuConvert(t, bios, "vmdk", "-o", "subformat=monolithicSparse"), "", "ClientError: Disk validation failed [Unsupported VMDK File Format]", ""},
		{"vhdx", "d.vhdx", qemuConvert(t, bios, "vhdx"), "", "", "Linux"},
		{"blank disk", "blank.raw", make([]byte, 32<<20), "", "ClientError: No valid partitions. Not a valid volume.", ""},
		{"random data", "random.raw", rawDisk(diskSize, 31), "", "ClientError: No valid partitions. Not a valid volume.", ""},
		{"mbr disk as uefi", "mbr-uefi.raw", bios, ec2types.BootModeValuesUefi, "ClientError: Unsupported boot mode: boot mode uefi needs a GPT boot disk with an EFI system partition; this disk has an MBR partition table", ""},
		{"efi disk as legacy-bios", "gpt-bios.vmdk", encode(t, "vmdk", efi), ec2types.BootModeValuesLegacyBios, "ClientError: Unsupported boot mode: boot mode legacy-bios needs an MBR boot disk (or GPT with a BIOS boot partition); this disk has GPT with an EFI system partition", ""},
		{"no os-release", "noos.raw", noOSRaw, "", "ClientError: Unknown OS / Missing OS files.", ""},
		{"windows", "win.vmdk", encode(t, "vmdk", win), "", "", "Windows"},
		{"ova", "vm.ova", ova(t, ovfDescriptor(`<File ovf:id="file1" ovf:href="disk1.vmdk"/><File ovf:id="file2" ovf:href="disk2.vmdk"/>`, "file1", "file2"),
			map[string][]byte{"disk1.vmdk": vmdk, "disk2.vmdk": encode(t, "vmdk", rawDisk(3<<20, 32))}, "vm.ovf", "disk1.vmdk", "disk2.vmdk"), "", "", "Linux"},
		{"ova without descriptor first", "nodesc.ova", ova(t, ovfDescriptor(`<File ovf:id="file1" ovf:href="disk1.vmdk"/>`, "file1"),
			map[string][]byte{"disk1.vmdk": vmdk}, "disk1.vmdk", "vm.ovf"), "", "ClientError: Disk validation failed [Unsupported OVA format]", ""},
		{"ova with chunked disk", "chunked.ova", chunked, "", "ClientError: Disk validation failed [OVF file parsing error: OVA with chunked disk files is not supported]", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.put(c.key, c.data)
			task := e.waitImage(e.importImageWith(&ec2.ImportImageInput{BootMode: c.bootMode}, c.key))
			if c.want != "" {
				if aws.ToString(task.Status) != "deleted" || aws.ToString(task.StatusMessage) != c.want {
					t.Fatalf("task ended %s: %q, want deleted: %q", aws.ToString(task.Status), aws.ToString(task.StatusMessage), c.want)
				}
				return
			}
			if aws.ToString(task.Status) != "completed" || aws.ToString(task.Platform) != c.platform {
				t.Fatalf("task %s (%q), platform %q, want completed %s", aws.ToString(task.Status), aws.ToString(task.StatusMessage), aws.ToString(task.Platform), c.platform)
			}
			imgs, err := e.ec2.DescribeImages(context.Background(), &ec2.DescribeImagesInput{ImageIds: []string{aws.ToString(task.ImageId)}})
			if err != nil {
				t.Fatal(err)
			}
			im := imgs.Images[0]
			if c.platform == "Windows" && (string(im.Platform) != "windows" || aws.ToString(task.LicenseType) != "AWS") {
				t.Errorf("windows image: platform %q, license %q", im.Platform, aws.ToString(task.LicenseType))
			}
			boot := aws.ToString(im.BlockDeviceMappings[0].Ebs.SnapshotId)
			switch c.key {
			case "vm.ova":
				if len(task.SnapshotDetails) != 2 || aws.ToString(task.SnapshotDetails[1].Format) != "VMDK" || len(im.BlockDeviceMappings) != 2 {
					t.Fatalf("ova task details %+v", task.SnapshotDetails)
				}
				if !bytes.Equal(e.content(boot), bios) || !bytes.Equal(e.content(aws.ToString(im.BlockDeviceMappings[1].Ebs.SnapshotId)), rawDisk(3<<20, 32)) {
					t.Fatal("ova disks' content differs")
				}
			case "d.vhdx":
				if !bytes.Equal(e.content(boot), bios) {
					t.Fatal("vhdx content differs")
				}
			}
		})
	}
	if n := len(e.em.Snapshots()); n != 4 {
		t.Errorf("%d snapshots, want the 4 of the successful imports' images (vhdx, windows, the ova's two)", n)
	}
	// ImportSnapshot takes VMDK, VHD and RAW only.
	_, err := e.ec2.ImportSnapshot(context.Background(), &ec2.ImportSnapshotInput{DiskContainer: snapContainer(e, "d.vhdx", "VHDX")})
	wantCode(t, err, "InvalidParameter")
}

// ARNs take the partition of the region: in cn-north-1 the role's policy
// names arn:aws-cn resources; one naming arn:aws ones grants nothing.
func TestImportPartition(t *testing.T) {
	cn := s3peer.Start(t, s3peer.Options{Region: "cn-north-1"})
	e := newEnv(t, func(c *Config) {
		c.Region, c.S3Endpoint, c.S3AccessKey, c.S3SecretKey, c.S3HTTPClient = "cn-north-1", cn.URL, cn.AccessKeyID, cn.SecretAccessKey, cn.HTTPClient()
	})
	e.s3 = cn.S3Client()
	if _, err := e.s3.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(e.bucket)}); err != nil {
		t.Fatal(err)
	}
	raw := guestDisk(t, guestdisk.BIOS)
	e.put("d.raw", raw)
	if id, err := e.sts.GetCallerIdentity(context.Background(), nil); err != nil || !strings.HasPrefix(aws.ToString(id.Arn), "arn:aws-cn:iam::") {
		t.Fatalf("caller identity in cn-north-1: %v %v", id, err)
	}
	e.role("wrong", trustPolicy, rolePolicy(e.bucket))
	e.role("vmimport", trustPolicy, strings.ReplaceAll(rolePolicy(e.bucket), "arn:aws:", "arn:aws-cn:"))
	task := e.waitImage(e.importImageWith(&ec2.ImportImageInput{RoleName: aws.String("wrong")}, "d.raw"))
	if want := "ClientError: The service role wrong provided does not exist or does not have sufficient permissions"; aws.ToString(task.StatusMessage) != want {
		t.Fatalf("arn:aws policy in cn-north-1: %s %q", aws.ToString(task.Status), aws.ToString(task.StatusMessage))
	}
	task = e.waitImage(e.importImage("d.raw"))
	if aws.ToString(task.Status) != "completed" || !bytes.Equal(e.content(aws.ToString(task.SnapshotDetails[0].SnapshotId)), raw) {
		t.Fatalf("arn:aws-cn policy: %s %q", aws.ToString(task.Status), aws.ToString(task.StatusMessage))
	}
}
