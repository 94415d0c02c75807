package imagetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehost/rehost/appliance/build"
	ab "github.com/rehost/rehost/appliance/internal/boot"
	"github.com/rehost/rehost/appliance/release"
	"github.com/rehost/rehost/pkg/sshsig"
)

// Every output carries a signature the stock ssh-keygen accepts with the
// allowed_signers file the build wrote, and the upgrade manifest verifies
// with the public key and names the system image's size and SHA-256.
func TestImagesSigned(t *testing.T) {
	dir := image(t)
	allowed := filepath.Join(dir, build.AllowedSignersFile)
	pubText, err := os.ReadFile(filepath.Join(dir, build.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sshsig.ParsePublicKey(pubText)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{build.OVAFile, build.VHDFile, build.VHDXFile, build.RawFile, build.SystemFile} {
		p := filepath.Join(dir, name)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ssh-keygen", "-Y", "verify", "-f", allowed, "-I", release.Identity, "-n", release.ImageNamespace, "-s", p+".sig")
		cmd.Stdin = f
		out, err := cmd.CombinedOutput()
		f.Close()
		if err != nil {
			t.Errorf("ssh-keygen -Y verify %s: %v\n%s", name, err, out)
		}
	}
	m, err := os.ReadFile(filepath.Join(dir, build.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := os.ReadFile(filepath.Join(dir, build.ManifestFile+".sig"))
	if err != nil {
		t.Fatal(err)
	}
	man, err := release.Open(m, sig, pub)
	if err != nil {
		t.Fatalf("the upgrade manifest: %v", err)
	}
	sum, err := os.ReadFile(filepath.Join(dir, build.SystemFile+".sha256"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, build.SystemFile))
	if err != nil {
		t.Fatal(err)
	}
	if man.SHA256 != strings.Fields(string(sum))[0] || man.Size != st.Size() || man.Version != version(t, dir) || man.Layout != release.Layout {
		t.Errorf("manifest %+v: want the system image's sum %s, size %d and version %s", man, sum, st.Size(), version(t, dir))
	}
}

// The disk's partitions are where the boot loader's configuration and the
// init look for them; the EFI system partition holds Debian's signed shim
// as the removable-media boot file, the signed GRUB beside it, and grubenv
// booting system A; GRUB's boot code is in the MBR.
func TestDiskLayout(t *testing.T) {
	dir := image(t)
	raw := filepath.Join(dir, build.RawFile)
	var table struct {
		PartitionTable struct {
			Partitions []struct {
				Start, Size int64
				Type, Name  string
			}
		}
	}
	if err := json.Unmarshal([]byte(runTool(t, "sfdisk", "-J", raw)), &table); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name      string
		off, size int64
	}{
		{ab.BIOSName, build.BIOSOff, build.BIOSSize},
		{ab.ESPName, build.ESPOff, build.ESPSize},
		{ab.SlotA.PartName(), build.SystemAOff, build.SystemSize},
		{ab.SlotB.PartName(), build.SystemBOff, build.SystemSize},
		{ab.DataName, build.DataOff, 0},
	}
	parts := table.PartitionTable.Partitions
	if len(parts) != len(want) {
		t.Fatalf("%d partitions, want %d: %+v", len(parts), len(want), parts)
	}
	for i, w := range want {
		p := parts[i]
		if p.Name != w.name || p.Start*512 != w.off || (w.size != 0 && p.Size*512 != w.size) {
			t.Errorf("partition %d: %q at %d, %d bytes; want %q at %d, %d bytes", i+1, p.Name, p.Start*512, p.Size*512, w.name, w.off, w.size)
		}
	}
	if ab.SlotA.PartNumber() != 3 || ab.SlotB.PartNumber() != 4 {
		t.Errorf("GRUB's configuration boots partitions %d and %d", ab.SlotA.PartNumber(), ab.SlotB.PartNumber())
	}
	mbr := make([]byte, 512)
	f, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	f.ReadAt(mbr, 0)
	f.Close()
	if !bytes.Contains(mbr, []byte("GRUB ")) || mbr[510] != 0x55 || mbr[511] != 0xaa {
		t.Error("the MBR holds no GRUB boot code")
	}
	esp := fmt.Sprintf("%s@@%d", raw, build.ESPOff)
	mt := func(args ...string) []byte {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "MTOOLSRC=/dev/null")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out
	}
	shim := mt("mtype", "-i", esp, "::/EFI/BOOT/BOOTX64.EFI")
	grub := mt("mtype", "-i", esp, "::/EFI/BOOT/grubx64.efi")
	// Microsoft signs shim for third parties; Debian signs its GRUB.
	if !bytes.Contains(shim, []byte("Microsoft Corporation UEFI CA 2011")) {
		t.Error("BOOTX64.EFI is not shim signed by Microsoft's UEFI CA")
	}
	if !bytes.Contains(grub, []byte("Debian Secure Boot Signer")) {
		t.Error("grubx64.efi is not signed by Debian")
	}
	if st := bootState(t, raw); st.Default != ab.SlotA || st.Trial != "" || st.Versions[ab.SlotA] != version(t, dir) {
		t.Errorf("grubenv of a new disk: %+v", st)
	}
	if cfg := string(mt("mtype", "-i", esp, "::/"+ab.ConfigPath)); cfg != ab.Config(build.KernelArgs) {
		t.Errorf("grub.cfg on the disk differs from the build's:\n%s", cfg)
	}
}
