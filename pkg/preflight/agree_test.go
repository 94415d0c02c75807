package preflight_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/emulator"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/internal/lab/s3peer"
	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/preflight"
	"github.com/rehost/rehost/pkg/source"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// Preflight and the emulator's VM Import apply one list of rules: each
// boot disk preflight blocks (read as a source's DiskReader reads it,
// before anything is staged), the emulator refuses at import, with VM
// Import's words; and a disk preflight lets through, it imports.
func TestPreflightAndImportAgree(t *testing.T) {
	if missing := guestdisk.Missing(); len(missing) > 0 {
		t.Fatalf("missing tools %v: run scripts/deps.sh", missing)
	}
	ctx := context.Background()
	srv := s3peer.Start(t, s3peer.Options{TLS: true})
	emu, err := emulator.New(emulator.Config{S3Endpoint: srv.URL, S3AccessKey: srv.AccessKeyID, S3SecretKey: srv.SecretAccessKey,
		S3HTTPClient: srv.HTTPClient(), AccessKeyID: srv.AccessKeyID, SecretAccessKey: srv.SecretAccessKey, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	base, err := emu.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	tg, err := awstarget.New(ctx, awstarget.Config{Region: emu.Region(), AccessKeyID: srv.AccessKeyID, SecretAccessKey: srv.SecretAccessKey,
		Endpoints:   awstarget.Endpoints{S3: srv.URL, EC2: base, IAM: base, STS: base, EBS: base, KMS: base, Quotas: base},
		S3PathStyle: true, HTTPClient: srv.HTTPClient(), RetryBaseDelay: 10 * time.Millisecond, IAMPropagation: time.Second,
		PollInitial: 20 * time.Millisecond, PollMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Setup(ctx, awstarget.SetupOptions{Bucket: "agree", CreateRole: true}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	build := func(name string, o guestdisk.Options) string {
		p := filepath.Join(dir, name+".raw")
		if _, err := guestdisk.Build(ctx, p, o); err != nil {
			t.Fatal(err)
		}
		return p
	}
	osRelease := func(id, version, name string) string {
		return "ID=" + id + "\nVERSION_ID=\"" + version + "\"\nNAME=\"" + name + "\"\nPRETTY_NAME=\"" + name + " " + version + "\"\n"
	}
	blank := guestdisk.Partitioned(t, 32<<20, "label: dos\nstart=2048, type=83\n")
	luks := guestdisk.Partitioned(t, 32<<20, "label: dos\nstart=2048, type=83\n")
	guestdisk.Patch(t, luks, []byte("LUKS\xba\xbe\x00\x02"), 1<<20)
	zeros := filepath.Join(dir, "zeros.raw")
	if err := os.WriteFile(zeros, make([]byte, 32<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		disk     string
		firmware string
		code     string // the blocker preflight reports; "" for none
		refusal  string // what the emulator's task says; "" for a completed import
	}{
		{"ready", build("ready", guestdisk.Options{Size: 32 << 20, OSRelease: osRelease("ubuntu", "22.04", "Ubuntu"), Seed: 1}), "bios", "", ""},
		{"uefi firmware, mbr disk", build("mbr", guestdisk.Options{Size: 32 << 20, Seed: 2}), "efi", preflight.CodeFirmwareMismatch, "ClientError: Unsupported boot mode: boot mode uefi needs a GPT boot disk"},
		{"bios firmware, esp-only gpt disk", build("gpt", guestdisk.Options{Size: 48 << 20, Firmware: guestdisk.EFI, Seed: 3}), "bios", preflight.CodeFirmwareMismatch, "ClientError: Unsupported boot mode: boot mode legacy-bios needs an MBR boot disk"},
		{"no file system", blank, "bios", preflight.CodeNoPartitions, "ClientError: No valid partitions. Not a valid volume."},
		{"no partition table", zeros, "bios", preflight.CodeNoPartitions, "ClientError: No valid partitions. Not a valid volume."},
		{"no os", build("noos", guestdisk.Options{Size: 32 << 20, NoOSRelease: true, Seed: 4}), "bios", preflight.CodeNoOS, "ClientError: Unknown OS / Missing OS files."},
		{"luks root", luks, "bios", preflight.CodeGuestVolumeEncrypted, "ClientError: Unsupported volume: partition 1 of the boot disk is an encrypted volume"},
		{"arch linux", build("arch", guestdisk.Options{Size: 32 << 20, OSRelease: osRelease("arch", "rolling", "Arch Linux"), Seed: 5}), "bios", preflight.CodeOSUnsupported, "ClientError: Unsupported OS: Arch Linux"},
		{"ubuntu 10.04", build("lucid", guestdisk.Options{Size: 32 << 20, OSRelease: osRelease("ubuntu", "10.04", "Ubuntu"), Seed: 6}), "bios", preflight.CodeOSVersion, "ClientError: Unsupported OS version: Ubuntu 10.04"},
		{"ubuntu 14.04 on uefi", build("trusty", guestdisk.Options{Size: 48 << 20, Firmware: guestdisk.EFI, OSRelease: osRelease("ubuntu", "14.04", "Ubuntu"), Seed: 7}), "efi", preflight.CodeBootMode, "ClientError: Unsupported boot mode: VM Import boots Ubuntu 14.04 in legacy-bios only"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Preflight first, through the source's reading of the disk:
			// nothing is staged yet.
			vm := source.VM{ID: "vm-" + c.name, Name: c.name, Firmware: c.firmware, PowerState: "poweredOff",
				Disks: []source.Disk{{Key: "2000", CapacityBytes: size(t, c.disk)}}}
			boot, berr := preflight.ReadBoot(ctx, fileSource{path: c.disk}, vm)
			fs := preflight.Server(preflight.Input{VM: vm, Boot: boot, BootErr: berr})
			var blockers []string
			for _, f := range preflight.Of(fs, preflight.Blocker) {
				blockers = append(blockers, f.Code)
			}
			if got := strings.Join(blockers, " "); got != c.code {
				t.Fatalf("preflight blockers %q, want %q: %+v", got, c.code, fs)
			}
			if st, err := tg.ListStaged(ctx, awstarget.StagingPrefix); err != nil || len(st.Objects)+len(st.Uploads) != 0 {
				t.Fatalf("staged before the import: %+v %v", st, err)
			}
			// Then what preflight would have spared: the import.
			f, err := os.Open(c.disk)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			key := awstarget.StagingKey("job-agree", strings.ReplaceAll(c.name, " ", "-"), 0, "raw")
			obj, err := tg.Stage(ctx, awstarget.StageInput{Key: key, Body: f, SizeHint: size(t, c.disk), Format: disk.Raw})
			if err != nil {
				t.Fatal(err)
			}
			defer tg.DeleteStaged(ctx, key)
			imp, err := tg.StartImport(ctx, awstarget.ImportInput{Disks: []awstarget.Object{obj}, BootMode: preflight.BootMode(c.firmware),
				ClientToken: "agree-" + strings.ReplaceAll(c.name, " ", "-")})
			if err != nil {
				t.Fatal(err)
			}
			res, err := tg.Wait(ctx, imp, nil)
			switch {
			case c.refusal == "" && err != nil:
				t.Fatalf("preflight let it through, VM Import refused it: %v", err)
			case c.refusal != "" && (err == nil || !strings.Contains(err.Error(), c.refusal)):
				t.Fatalf("VM Import: %v (image %q), want a refusal containing %q", err, res.ImageID, c.refusal)
			}
			if res.ImageID != "" {
				tg.DeleteImage(ctx, res.ImageID, res.SnapshotIDs)
			}
		})
	}
}

// fileSource is a source whose only disk is a local raw file, read as a
// DiskReader reads a VM's disk.
type fileSource struct {
	source.Source
	path string
}

func (f fileSource) ReadDisk(_ context.Context, _, _ string) (source.DiskContent, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, err
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, err
	}
	return rawFile{fh, st.Size()}, nil
}

type rawFile struct {
	*os.File
	size int64
}

func (r rawFile) Size() int64 { return r.size }

func size(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
