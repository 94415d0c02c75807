package imagetest

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/appliance/build"
)

// vmOptions choose the virtual hardware, so the boots between them cover
// the drivers each hypervisor needs.
type vmOptions struct {
	disk, format string
	uefi         bool
	// secureBoot boots UEFI with Secure Boot enforced: OVMF's Secure Boot
	// build and Debian's variables with Microsoft's keys enrolled, as
	// vSphere and Hyper-V's "Microsoft UEFI Certificate Authority"
	// template have them.
	secureBoot bool
	storage    string // virtio, virtio-scsi, pvscsi (vSphere; SeaBIOS boots it, OVMF does not) or ahci
	nic        string // a qemu NIC: virtio-net-pci, vmxnet3, e1000e, e1000
}

// vm is a running appliance under qemu with TCG: no KVM needed. Its serial
// console is the test's pipe; its HTTPS port is forwarded to loopback.
type vm struct {
	t      *testing.T
	cmd    *exec.Cmd
	port   int
	stdin  io.WriteCloser
	exited chan struct{}
	start  time.Time

	mu     sync.Mutex
	serial bytes.Buffer
	cursor int
	change chan struct{}
}

func boot(t *testing.T, o vmOptions) *vm {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	args := []string{"-accel", "tcg,thread=multi", "-cpu", "max", "-m", "1024", "-smp", "2",
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
		"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:443", port), "-device", o.nic + ",netdev=n0"}
	switch {
	case o.secureBoot:
		vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
		copyFile(t, "/usr/share/OVMF/OVMF_VARS_4M.ms.fd", vars)
		// The Secure Boot build keeps its variables in SMM: the machine
		// needs SMM and a flash only SMM may write.
		args = append(args, "-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	case o.uefi:
		vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
		copyFile(t, "/usr/share/OVMF/OVMF_VARS_4M.fd", vars)
		args = append(args, "-machine", "q35",
			"-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
			"-drive", "if=pflash,format=raw,file="+vars)
	default:
		args = append(args, "-machine", "pc")
	}
	drive := "file=" + o.disk + ",format=" + o.format
	switch o.storage {
	case "virtio":
		args = append(args, "-drive", drive+",if=virtio")
	case "virtio-scsi":
		args = append(args, "-drive", drive+",if=none,id=d0", "-device", "virtio-scsi-pci,id=s0", "-device", "scsi-hd,drive=d0,bus=s0.0")
	case "pvscsi":
		args = append(args, "-drive", drive+",if=none,id=d0", "-device", "pvscsi,id=s0", "-device", "scsi-hd,drive=d0,bus=s0.0")
	case "ahci":
		args = append(args, "-drive", drive+",if=none,id=d0", "-device", "ide-hd,drive=d0,bus=ide.0")
	default:
		t.Fatalf("storage %q", o.storage)
	}
	v := &vm{t: t, port: port, exited: make(chan struct{}), change: make(chan struct{}), start: time.Now()}
	v.cmd = exec.Command("qemu-system-x86_64", args...)
	v.cmd.Stdout = v
	v.cmd.Stderr = v
	v.stdin, err = v.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	go func() {
		v.cmd.Wait()
		close(v.exited)
	}()
	t.Cleanup(func() {
		v.cmd.Process.Kill()
		<-v.exited
		if t.Failed() {
			t.Logf("serial console of the failed boot:\n%s", v.log())
			if o.format == "raw" {
				for _, f := range []string{"/log/appliance.log", "/log/rehost.log"} {
					out, _ := exec.Command("debugfs", "-R", "cat "+f, fmt.Sprintf("%s?offset=%d", o.disk, build.DataOff)).Output()
					t.Logf("%s on the data partition (its last 4 KiB):\n%s", f, out[max(0, len(out)-4096):])
				}
			}
		}
	})
	return v
}

// Write collects the serial console.
func (v *vm) Write(p []byte) (int, error) {
	v.mu.Lock()
	v.serial.Write(p)
	close(v.change)
	v.change = make(chan struct{})
	v.mu.Unlock()
	return len(p), nil
}

func (v *vm) log() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return strings.ReplaceAll(v.serial.String(), "\r", "")
}

// expect waits for re on the serial console after what earlier calls
// matched, and returns its submatches.
func (v *vm) expect(re *regexp.Regexp, timeout time.Duration) []string {
	v.t.Helper()
	deadline := time.After(timeout)
	for {
		v.mu.Lock()
		text := strings.ReplaceAll(v.serial.String()[v.cursor:], "\r", "")
		raw := v.serial.String()[v.cursor:]
		ch := v.change
		v.mu.Unlock()
		if m := re.FindStringSubmatchIndex(raw); m != nil {
			v.mu.Lock()
			v.cursor += m[1]
			v.mu.Unlock()
			out := make([]string, len(m)/2)
			for i := range out {
				if m[2*i] >= 0 {
					out[i] = raw[m[2*i]:m[2*i+1]]
				}
			}
			return out
		}
		select {
		case <-ch:
		case <-v.exited:
			v.t.Fatalf("the VM stopped while waiting for %q; console:\n%s", re, text)
		case <-deadline:
			v.t.Fatalf("no %q on the serial console within %s", re, timeout)
		}
	}
}

// send types a line on the serial console.
func (v *vm) send(line string) {
	v.t.Helper()
	if _, err := io.WriteString(v.stdin, line+"\r"); err != nil {
		v.t.Fatalf("type on the serial console: %v", err)
	}
}

type health struct {
	Status  string `json:"status"`
	Version string `json:"version"`
}

// https waits (up to 300 s: TCG on a busy machine, Secure Boot's SMM
// emulated too) for the connector's /healthz and returns it
// with the SHA-256 fingerprint of the certificate served.
func (v *vm) https() (health, string) {
	v.t.Helper()
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		// The certificate is checked against the fingerprint the console
		// shows, as a user does on first contact.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	deadline := time.Now().Add(300 * time.Second)
	for {
		resp, err := cl.Get(fmt.Sprintf("https://127.0.0.1:%d/healthz", v.port))
		if err == nil {
			var h health
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if err == nil && resp.StatusCode == 200 {
				v.t.Logf("HTTPS answered %.0f s after qemu started", time.Since(v.start).Seconds())
				return h, fingerprintOf(resp.TLS.PeerCertificates[0].Raw)
			}
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("no HTTPS answer within 300 s: %v", err)
		}
		select {
		case <-v.exited:
			v.t.Fatalf("the VM stopped before serving HTTPS")
		case <-time.After(time.Second):
		}
	}
}

func fingerprintOf(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

var (
	reFingerprint = regexp.MustCompile(`Certificate: +SHA-256 ([0-9A-F:]{95})`)
	reChoice      = regexp.MustCompile(`Choice: `)
)

// checkConsole waits for the console to show the setup page's URL and the
// certificate fingerprint, which must be the one served.
func (v *vm) checkConsole(served string) {
	v.t.Helper()
	v.expect(regexp.MustCompile(`Setup page: +https://10\.0\.2\.15/`), 60*time.Second)
	if fp := v.expect(reFingerprint, 60*time.Second)[1]; fp != served {
		v.t.Fatalf("the console shows fingerprint %s, the connector serves %s", fp, served)
	}
}

// menu picks a menu entry and answers its questions, each after its
// prompt appears.
func (v *vm) menu(choice string, qa ...string) {
	v.t.Helper()
	v.send(choice)
	for i := 0; i+1 < len(qa); i += 2 {
		v.expect(regexp.MustCompile(regexp.QuoteMeta(qa[i])), 60*time.Second)
		v.send(qa[i+1])
	}
}

// waitExit waits for qemu to end (a reboot ends it: -no-reboot).
func (v *vm) waitExit(what string, timeout time.Duration) {
	v.t.Helper()
	select {
	case <-v.exited:
		v.t.Logf("%s %.0f s after qemu started", what, time.Since(v.start).Seconds())
	case <-time.After(timeout):
		v.t.Fatalf("no %s within %s", what, timeout)
	}
}

// kill ends qemu at once: the power is cut.
func (v *vm) kill() {
	v.t.Helper()
	v.cmd.Process.Kill()
	<-v.exited
}

// powerOff shuts the appliance down from its menu and waits for qemu to
// end: the data partition is unmounted cleanly first.
func (v *vm) powerOff(entry string) {
	v.t.Helper()
	prompt := map[string]string{"8": "Reboot now? [y/N]", "9": "Shut down now? [y/N]"}[entry]
	v.menu(entry, prompt, "y")
	select {
	case <-v.exited:
		v.t.Logf("VM off %.0f s after qemu started", time.Since(v.start).Seconds())
	case <-time.After(120 * time.Second):
		v.t.Fatal("the VM did not power off within 120 s")
	}
}
