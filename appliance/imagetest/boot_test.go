package imagetest

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/appliance/build"
)

// full runs the longer boots (UEFI, VHDX, upgrade) of make appliance-test;
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
	v.menu("4", "NTP servers, separated by spaces", "ntp1.test.invalid ntp2.test.invalid")
	v.expect(regexp.MustCompile(`Saved; asking \[ntp1.test.invalid ntp2.test.invalid\]`), 30*time.Second)
	v.powerOff("9")
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

// UEFI (OVMF) on virtio SCSI and E1000, on a disk made larger than the
// image: the data partition grows to the end. Then an
// upgrade from the console menu replaces the system partition with a newer
// version's, and the state survives it.
func TestBootUEFIGrowAndUpgrade(t *testing.T) {
	full(t)
	dir := image(t)
	raw := filepath.Join(t.TempDir(), "disk.raw")
	copyFile(t, filepath.Join(dir, build.RawFile), raw)
	const grown = 1536 << 20
	if err := os.Truncate(raw, grown); err != nil {
		t.Fatal(err)
	}

	// The upgrade: the same commit's system partition, stamped with another
	// version, served over HTTP to the guest (qemu's 10.0.2.2 is the host).
	upVersion := version(t, dir) + "-upgrade"
	upDir := t.TempDir()
	if _, err := buildSystem(upDir, upVersion); err != nil {
		t.Fatalf("build the upgrade image: %v", err)
	}
	sum, err := os.ReadFile(filepath.Join(upDir, build.SystemFile+".sha256"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(upDir))}
	go srv.Serve(ln)
	defer srv.Close()

	v := boot(t, vmOptions{disk: raw, format: "raw", uefi: true, storage: "virtio-scsi", nic: "e1000"})
	_, fp := v.https()
	v.checkConsole(fp)
	url := fmt.Sprintf("http://10.0.2.2:%d/%s", ln.Addr().(*net.TCPAddr).Port, build.SystemFile)
	v.menu("7", "URL of rehost-connector-system.img", url, "SHA-256 of the image", strings.Fields(string(sum))[0])
	// 256 MiB through qemu's user network, hashed and written twice, under TCG.
	start := time.Now()
	v.expect(regexp.MustCompile(`Reboot now\? \[y/N\]`), 5*time.Minute)
	t.Logf("upgrade downloaded, checked and written in %.0f s", time.Since(start).Seconds())
	v.send("y")
	select {
	case <-v.exited:
	case <-time.After(120 * time.Second):
		t.Fatal("no reboot within 120 s of the upgrade")
	}
	key, cert, _ := state(t, raw)
	blocks := runTool(t, "debugfs", "-R", "stats", fmt.Sprintf("%s?offset=%d", raw, build.DataOff))
	m := regexp.MustCompile(`Block count: +(\d+)`).FindStringSubmatch(blocks)
	if m == nil || m[1] != fmt.Sprint((grown-build.DataOff-1<<20)/4096) {
		t.Errorf("data file system after growing the disk to %d bytes: block count %v, want %d", grown, m, (grown-build.DataOff-1<<20)/4096)
	}
	runTool(t, "sfdisk", "--verify", raw)

	v = boot(t, vmOptions{disk: raw, format: "raw", storage: "virtio", nic: "virtio-net-pci"})
	h, fp2 := v.https()
	if h.Version != upVersion || fp2 != fp {
		t.Fatalf("after the upgrade: version %s (want %s), certificate %s (want %s)", h.Version, upVersion, fp2, fp)
	}
	v.checkConsole(fp)
	v.powerOff("9")
	if k2, c2, _ := state(t, raw); k2 != key || c2 != cert {
		t.Fatal("master.key or the certificate changed across the upgrade")
	}
}

// The VHDX (Hyper-V generation 2: UEFI) boots as it is, here on AHCI and
// E1000E, and serves HTTPS.
func TestBootVHDX(t *testing.T) {
	full(t)
	dir := image(t)
	vhdx := filepath.Join(t.TempDir(), "disk.vhdx")
	copyFile(t, filepath.Join(dir, build.VHDXFile), vhdx)
	v := boot(t, vmOptions{disk: vhdx, format: "vhdx", uefi: true, storage: "ahci", nic: "e1000e"})
	h, fp := v.https()
	if h.Version != version(t, dir) {
		t.Fatalf("healthz %+v", h)
	}
	v.checkConsole(fp)
	v.powerOff("9")
	runTool(t, "qemu-img", "check", "-f", "vhdx", vhdx)
}
