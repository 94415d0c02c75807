package imagetest

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/appliance/build"
	ab "github.com/rehost/rehost/appliance/internal/boot"
	"github.com/rehost/rehost/appliance/release"
)

// full runs the longer boots (Secure Boot, VHDX, upgrades, rollback) of make appliance-test;
// make test runs the BIOS boot and its reboot only, to stay in CI's time.
func full(t *testing.T) {
	if os.Getenv("REHOST_APPLIANCE_FULL") == "" {
		t.Skip("UEFI, VHDX and upgrade boots run in make appliance-test (REHOST_APPLIANCE_FULL=1)")
	}
}

// dataFile reads a file of the data partition of a raw disk with debugfs
// (no mount).
func dataFile(t *testing.T, raw, path string) []byte {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, fmt.Sprintf("%s?offset=%d", raw, build.DataOff)).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", path, err)
	}
	return out
}

// state is what must survive a reboot or an upgrade: the sealing key and
// the certificate (compared by hash, never shown) and the appliance's own
// settings.
func state(t *testing.T, raw string) (key, cert [32]byte, settings string) {
	t.Helper()
	k := dataFile(t, raw, "/state/master.key")
	c := dataFile(t, raw, "/state/tls/cert.pem")
	if len(k) == 0 || len(c) == 0 {
		t.Fatalf("the data partition lacks master.key (%d bytes) or tls/cert.pem (%d bytes)", len(k), len(c))
	}
	return sha256.Sum256(k), sha256.Sum256(c), string(dataFile(t, raw, "/appliance/settings.json"))
}

// The BIOS boot on virtio: the connector serves HTTPS with the certificate
// whose fingerprint the serial console shows; a setting made in the console
// menu, the sealing key and the certificate survive a clean shutdown and
// the next boot, this time on vSphere's devices (paravirtual SCSI,
// VMXNET3).
func TestBootBIOS(t *testing.T) {
	dir := image(t)
	want := version(t, dir)
	raw := filepath.Join(t.TempDir(), "disk.raw")
	copyFile(t, filepath.Join(dir, build.RawFile), raw)
	o := vmOptions{disk: raw, format: "raw", storage: "virtio", nic: "virtio-net-pci"}

	v := boot(t, o)
	h, fp := v.https()
	if h.Status != "ok" || h.Version != want {
		t.Fatalf("healthz %+v, want version %s", h, want)
	}
	v.checkConsole(fp)
	v.expect(regexp.MustCompile(`System: +System A; Secure Boot: not UEFI`), 30*time.Second)
	v.menu("4", "NTP servers, separated by spaces", "ntp1.test.invalid ntp2.test.invalid")
	v.expect(regexp.MustCompile(`Saved; asking \[ntp1.test.invalid ntp2.test.invalid\]`), 30*time.Second)
	backup, code := v.backupToData()
	v.powerOff("9")
	if b := dataFile(t, raw, strings.TrimPrefix(backup, "/data")); !strings.HasPrefix(string(b), "rehost-sealed-stream-1\n") || len(code) < 60 {
		t.Errorf("the console's backup %s (%d bytes) is not a sealed stream, or the code %q is short", backup, len(b), code)
	}
	key, cert, settings := state(t, raw)
	if !strings.Contains(settings, "ntp1.test.invalid") {
		t.Fatalf("settings.json after the menu: %s", settings)
	}

	o.storage, o.nic = "pvscsi", "vmxnet3"
	v = boot(t, o)
	h, fp2 := v.https()
	if fp2 != fp || h.Version != want {
		t.Fatalf("after the reboot: version %s, certificate %s; before: %s, %s", h.Version, fp2, want, fp)
	}
	v.checkConsole(fp)
	v.menu("1")
	v.expect(regexp.MustCompile(`Time: .*ntp1\.test\.invalid`), 60*time.Second)
	v.powerOff("9")
	if k2, c2, _ := state(t, raw); k2 != key || c2 != cert {
		t.Fatal("master.key or the certificate changed across the reboot")
	}
}

// Secure Boot enforced (OVMF with Microsoft's keys): the appliance boots
// through Debian's signed shim, GRUB and kernel, and the kernel says
// Secure Boot is on; the disk, made larger than the image, grows its data
// partition. The upgrade menu refuses an unsigned image, one signed by
// another key and an older one (the downgrade not confirmed); it writes a
// newer one into system B, which boots on trial, answers, and becomes the
// default, with the state kept.
func TestSecureBootUpgrade(t *testing.T) {
	full(t)
	dir := image(t)
	base := released(t, dir)
	raw := filepath.Join(t.TempDir(), "disk.raw")
	copyFile(t, filepath.Join(dir, build.RawFile), raw)
	const grown = 1536 << 20
	if err := os.Truncate(raw, grown); err != nil {
		t.Fatal(err)
	}

	s := newSite(t)
	up := s.build("newer", base.Version+"-upgrade", base.Built().Add(time.Hour), build.DevSigningKey(), "")
	s.offer("unsigned", "newer", func(*release.Manifest) {}, nil)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	s.offer("otherkey", "newer", func(*release.Manifest) {}, other)
	s.offer("older", "newer", func(m *release.Manifest) { m.Epoch = base.Epoch - 86400 }, build.DevSigningKey())

	v := boot(t, vmOptions{disk: raw, format: "raw", secureBoot: true, storage: "virtio-scsi", nic: "e1000"})
	_, fp := v.https()
	v.checkConsole(fp)
	v.expect(regexp.MustCompile(`System: +System A; Secure Boot: enabled`), 30*time.Second)

	v.upgrade(s.url("unsigned"))
	v.expect(regexp.MustCompile(`Refused, nothing was changed: the image is not signed`), time.Minute)
	v.upgrade(s.url("otherkey"))
	v.expect(regexp.MustCompile(`Refused, nothing was changed: the image's signature does not verify with this appliance's release key`), time.Minute)
	v.menu("7", "URL of rehost-connector-system.img", s.url("older"), "Type DOWNGRADE to install it anyway", "no")
	v.expect(regexp.MustCompile(`Refused, nothing was changed: version .* is older than the running version`), time.Minute)
	if st := bootState(t, raw); st.Default != ab.SlotA || st.Trial != "" {
		t.Fatalf("grubenv after the refusals: %+v", st)
	}

	start := time.Now()
	v.upgrade(s.url("newer"))
	v.expect(regexp.MustCompile(`Writing system B: 128 of 128 MiB`), 10*time.Minute)
	v.expect(regexp.MustCompile(`Reboot now\? \[y/N\]`), 5*time.Minute)
	t.Logf("upgrade downloaded, written and read back in %.0f s", time.Since(start).Seconds())
	if st := bootState(t, raw); st.Default != ab.SlotA || st.Trial != ab.SlotB || st.TriesLeft != ab.MaxTries || st.Versions[ab.SlotB] != up.Version {
		t.Fatalf("grubenv once armed: %+v", st)
	}
	v.send("y")
	v.waitExit("reboot after the upgrade", 2*time.Minute)
	key, cert, _ := state(t, raw)
	blocks := runTool(t, "debugfs", "-R", "stats", fmt.Sprintf("%s?offset=%d", raw, build.DataOff))
	m := regexp.MustCompile(`Block count: +(\d+)`).FindStringSubmatch(blocks)
	if m == nil || m[1] != fmt.Sprint((grown-build.DataOff-1<<20)/4096) {
		t.Errorf("data file system after growing the disk to %d bytes: block count %v, want %d", grown, m, (grown-build.DataOff-1<<20)/4096)
	}
	runTool(t, "sfdisk", "--verify", raw)

	v = boot(t, vmOptions{disk: raw, format: "raw", secureBoot: true, storage: "virtio-scsi", nic: "e1000"})
	h, fp2 := v.https()
	if h.Version != up.Version || fp2 != fp {
		t.Fatalf("after the upgrade: version %s (want %s), certificate %s (want %s)", h.Version, up.Version, fp2, fp)
	}
	v.expect(regexp.MustCompile(`System: +System B; Secure Boot: enabled`), time.Minute)
	v.expect(regexp.MustCompile(`Last upgrade: to `+regexp.QuoteMeta(up.Version)+` \(system B\) installed`), 2*time.Minute)
	if st := bootState(t, raw); st.Default != ab.SlotB || st.Trial != "" {
		t.Fatalf("grubenv once B proved itself: %+v", st)
	}
	v.powerOff("9")
	if k2, c2, _ := state(t, raw); k2 != key || c2 != cert {
		t.Fatal("master.key or the certificate changed across the upgrade")
	}
}

// The power fails while an upgrade writes system B: the next boot is
// system A's, which says the upgrade was interrupted. Then an upgrade
// whose connector cannot start: B boots on trial, gives up after its
// connector exits three times, and the appliance returns to A, whose
// console and status file (what GetConnectorStatus serves) say why.
func TestUpgradeInterruptedAndRolledBack(t *testing.T) {
	full(t)
	dir := image(t)
	base := released(t, dir)
	raw := filepath.Join(t.TempDir(), "disk.raw")
	copyFile(t, filepath.Join(dir, build.RawFile), raw)
	s := newSite(t)
	s.build("newer", base.Version+"-upgrade", base.Built().Add(time.Hour), build.DevSigningKey(), "")
	broken := s.build("broken", base.Version+"-broken", base.Built().Add(2*time.Hour), build.DevSigningKey(), brokenRehost(t))
	o := vmOptions{disk: raw, format: "raw", storage: "virtio", nic: "virtio-net-pci"}

	v := boot(t, o)
	_, fp := v.https()
	v.upgrade(s.url("newer"))
	v.expect(regexp.MustCompile(`Writing system B: 32 of 128 MiB`), 10*time.Minute)
	v.kill()
	if st := bootState(t, raw); st.Default != ab.SlotA || st.Trial != "" {
		t.Fatalf("grubenv after the power loss: %+v", st)
	}

	v = boot(t, o)
	h, fp2 := v.https()
	if h.Version != base.Version || fp2 != fp {
		t.Fatalf("after the power loss: version %s (want %s), certificate %s (want %s)", h.Version, base.Version, fp2, fp)
	}
	v.expect(regexp.MustCompile(`Last upgrade: to \S+ \(system B\) interrupted`), time.Minute)
	backup, code := v.backupToData()

	v.upgrade(s.url("broken"))
	v.expect(regexp.MustCompile(`Reboot now\? \[y/N\]`), 10*time.Minute)
	v.send("y")
	v.waitExit("reboot into the broken upgrade", 2*time.Minute)

	v = boot(t, o)
	v.expect(regexp.MustCompile(`rehost connector `+regexp.QuoteMeta(broken.Version)), 3*time.Minute)
	v.expect(regexp.MustCompile(`the upgrade failed: system B \(version `+regexp.QuoteMeta(broken.Version)+`\) gave up its trial: its connector exited 3 times`), 5*time.Minute)
	v.waitExit("return to system A", 2*time.Minute)

	v = boot(t, o)
	h, _ = v.https()
	if h.Version != base.Version {
		t.Fatalf("after the rollback: version %s, want %s", h.Version, base.Version)
	}
	v.expect(regexp.MustCompile(`Last upgrade: to `+regexp.QuoteMeta(broken.Version)+` \(system B\) rolled-back at [^:]+:\d\dZ: system B .*its connector exited 3 times .*cannot start`), time.Minute)
	v.expect(regexp.MustCompile(`System: +System A;`), 30*time.Second)
	// The state backed up before the upgrade comes back from the console
	// menu, and the connector serves it.
	v.menu("11", "Backup to restore", backup, "recovery code", code, "Type RESTORE to continue", "RESTORE")
	v.expect(regexp.MustCompile(`restored `+regexp.QuoteMeta(backup)+` into /data/state`), 3*time.Minute)
	v.expect(regexp.MustCompile(`Restored; the connector starts on it now`), time.Minute)
	if _, fp3 := v.https(); fp3 != fp {
		t.Errorf("after the restore the connector serves certificate %s, want %s", fp3, fp)
	}
	v.powerOff("9")
	if st := bootState(t, raw); st.Default != ab.SlotA || st.Trial != "" {
		t.Fatalf("grubenv after the rollback: %+v", st)
	}
	report := applianceReport(t, raw)
	for _, want := range []string{`"system": "A"`, `"state": "rolled-back"`, `"to": "` + broken.Version + `"`, "its connector exited 3 times", "cannot start"} {
		if !strings.Contains(report, want) {
			t.Errorf("status.json after the rollback lacks %s:\n%s", want, report)
		}
	}
}

// The VHDX boots as it is on Hyper-V generation 2 with Secure Boot on (the
// "Microsoft UEFI Certificate Authority" template: OVMF with Microsoft's
// keys), here on AHCI and E1000E, and serves HTTPS.
func TestBootVHDX(t *testing.T) {
	full(t)
	dir := image(t)
	vhdx := filepath.Join(t.TempDir(), "disk.vhdx")
	copyFile(t, filepath.Join(dir, build.VHDXFile), vhdx)
	v := boot(t, vmOptions{disk: vhdx, format: "vhdx", secureBoot: true, storage: "ahci", nic: "e1000e"})
	h, fp := v.https()
	if h.Version != version(t, dir) {
		t.Fatalf("healthz %+v", h)
	}
	v.checkConsole(fp)
	v.expect(regexp.MustCompile(`Secure Boot: enabled`), 30*time.Second)
	v.powerOff("9")
	runTool(t, "qemu-img", "check", "-f", "vhdx", vhdx)
}
