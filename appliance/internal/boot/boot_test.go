package boot

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnvRoundTrip(t *testing.T) {
	s := State{Default: SlotB, Trial: SlotA, TriesLeft: 2, Versions: map[Slot]string{SlotA: "v1.5.0", SlotB: "v1.4.2"}}
	b, err := s.Env().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != EnvSize || !bytes.HasPrefix(b, []byte("# GRUB Environment Block\nrehost_slot=b\n")) || b[EnvSize-1] != '#' {
		t.Fatalf("block:\n%s", b)
	}
	e, err := ParseEnv(b)
	if err != nil {
		t.Fatal(err)
	}
	got := FromEnv(e)
	if got.Default != s.Default || got.Trial != s.Trial || got.TriesLeft != 2 || got.Versions[SlotA] != "v1.5.0" || got.Versions[SlotB] != "v1.4.2" {
		t.Fatalf("round trip: %+v, want %+v", got, s)
	}
	if _, err := (Env{"k": "a\nb"}).Marshal(); err == nil {
		t.Error("a value with a newline is accepted")
	}
	if _, err := ParseEnv([]byte("# GRUB Environment Block\n")); err == nil {
		t.Error("a short block is accepted")
	}
	// An environment the build or an older release left: system A.
	if s := FromEnv(Env{}); s.Default != SlotA || s.Trial != "" {
		t.Errorf("empty environment: %+v", s)
	}
}

// grubBoot models what Config's script does at a boot: count a trial
// down and boot it while boots are left, else the default. The real
// script runs under qemu in make appliance-test; this model drives the
// init's side through whole upgrades.
func grubBoot(s State) (Slot, State) {
	if s.Trial != "" && s.TriesLeft > 0 {
		s.TriesLeft--
		return s.Trial, s
	}
	return s.Default, s
}

// An upgrade that proves itself becomes the default; one whose connector
// gives up returns to the old system at the next boot, which reports it;
// one that never reports returns after MaxTries boots; a power loss while
// writing boots the old system.
func TestUpgradeCycles(t *testing.T) {
	s := State{Default: SlotA, Versions: map[Slot]string{SlotA: "1"}}

	s.BeginWrite(SlotA, SlotB)
	// A power loss here: the next boot is A's, as before.
	if b, _ := grubBoot(s); b != SlotA || s.AtBoot(SlotA) != Normal {
		t.Fatalf("after a power loss while writing B: boots %s (%v)", b, s.AtBoot(SlotA))
	}
	s.Arm(SlotB, "2")
	booted, s := grubBoot(s)
	if booted != SlotB || s.AtBoot(SlotB) != OnTrial || s.TriesLeft != MaxTries-1 {
		t.Fatalf("first boot after arming: %s, %+v", booted, s)
	}
	s.Confirm(SlotB)
	if booted, _ = grubBoot(s); booted != SlotB || s.AtBoot(SlotB) != Normal {
		t.Fatalf("after B proved itself: boots %s, %+v", booted, s)
	}

	// Upgrade to 3 in A; its connector cannot start and it gives up.
	s.BeginWrite(SlotB, SlotA)
	s.Arm(SlotA, "3")
	booted, s = grubBoot(s)
	if booted != SlotA || s.AtBoot(SlotA) != OnTrial {
		t.Fatalf("trial of 3: %s %+v", booted, s)
	}
	s.GiveUp()
	booted, s = grubBoot(s)
	if booted != SlotB || s.AtBoot(SlotB) != TrialFailed || s.TrialBoots() != MaxTries {
		t.Fatalf("after A gave up: boots %s, %v, %+v", booted, s.AtBoot(SlotB), s)
	}
	s.Abandon()
	if booted, _ = grubBoot(s); booted != SlotB || s.AtBoot(SlotB) != Normal {
		t.Fatalf("after B reported the rollback: boots %s, %+v", booted, s)
	}

	// A trial that never reports (a kernel that panics): MaxTries boots,
	// then the default.
	s.BeginWrite(SlotB, SlotA)
	s.Arm(SlotA, "4")
	for i := 0; i < MaxTries; i++ {
		if booted, s = grubBoot(s); booted != SlotA {
			t.Fatalf("trial boot %d: %s", i+1, booted)
		}
	}
	if booted, s = grubBoot(s); booted != SlotB || s.AtBoot(SlotB) != TrialFailed {
		t.Fatalf("after %d silent trial boots: %s %+v", MaxTries, booted, s)
	}
}

// LocateFAT finds grubenv on a FAT32 file system mtools made, and a block
// written at the extent it returns is what mtools then reads as the file.
func TestLocateFATAndRewrite(t *testing.T) {
	for _, tool := range []string{"mkfs.vfat", "mcopy", "mtype"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
				t.Fatalf("%s (dosfstools, mtools) is needed: run appliance/tools.sh", tool)
			}
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "esp.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 64<<20)
	mkfs := "mkfs.vfat"
	if _, err := exec.LookPath(mkfs); err != nil {
		mkfs = "/usr/sbin/mkfs.vfat"
	}
	run := func(name string, args ...string) string {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "MTOOLSRC=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	run(mkfs, "-F", "32", img)
	first, _ := State{Default: SlotA}.Env().Marshal()
	env := filepath.Join(dir, "grubenv")
	os.WriteFile(env, first, 0o644)
	// Files before and around it, so grubenv is not at the first cluster.
	big := filepath.Join(dir, "grubx64.efi")
	os.WriteFile(big, bytes.Repeat([]byte{0xcc}, 3<<20), 0o644)
	run("mmd", "-i", img, "::/EFI", "::/EFI/BOOT", "::/EFI/debian")
	run("mcopy", "-i", img, big, "::/EFI/BOOT/grubx64.efi")
	run("mcopy", "-i", img, env, "::/EFI/debian/grubenv")

	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ext, err := LocateFAT(f, EnvPath)
	if err != nil {
		t.Fatal(err)
	}
	if ext.Size != EnvSize {
		t.Fatalf("grubenv extent %+v: want %d bytes", ext, EnvSize)
	}
	got := make([]byte, EnvSize)
	f.ReadAt(got, ext.Offset)
	if !bytes.Equal(got, first) {
		t.Fatal("the extent does not hold grubenv")
	}
	s := State{Default: SlotA}
	s.BeginWrite(SlotA, SlotB)
	s.Arm(SlotB, "v2")
	next, _ := s.Env().Marshal()
	if _, err := f.WriteAt(next, ext.Offset); err != nil {
		t.Fatal(err)
	}
	f.Sync()
	if out := run("mtype", "-i", img, "::/EFI/debian/grubenv"); out != string(next) {
		t.Fatalf("mtype reads grubenv as:\n%s", out)
	}
	if out := run("mdir", "-i", img, "::/EFI/debian"); !strings.Contains(strings.ToLower(out), "grubenv") {
		t.Fatalf("mdir after the rewrite:\n%s", out)
	}
	if _, err := LocateFAT(f, "EFI/debian/missing"); err == nil {
		t.Error("a missing file is found")
	}
	if _, err := LocateFAT(bytes.NewReader(make([]byte, 4096)), EnvPath); err == nil {
		t.Error("zeros are taken for a FAT32 file system")
	}
}
