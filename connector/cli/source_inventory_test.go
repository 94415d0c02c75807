package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/vspheresim"
)

func TestSourceInventory(t *testing.T) {
	ctx := context.Background()
	sim, err := vspheresim.Start(ctx, vspheresim.Options{VMs: vspheresim.DemoVMs(), Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	t.Setenv(envVCenterPassword, sim.Password())

	var out, errOut bytes.Buffer
	args := []string{"source", "inventory", "--url", sim.URL(), "--user", sim.User(), "--thumbprint", sim.Thumbprint(), "--json"}
	if code := Main(ctx, Env{Stdout: &out, Stderr: &errOut}, args); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var vms []source.VM
	if err := json.Unmarshal(out.Bytes(), &vms); err != nil {
		t.Fatalf("parse %q: %v", out.String(), err)
	}
	byName := map[string]source.VM{}
	for _, vm := range vms {
		byName[vm.Name] = vm
	}
	web, app, db := byName["web-01"], byName["app-01"], byName["db-01"]
	if len(vms) != 3 || len(web.Disks) != 2 || web.Disks[1].CapacityBytes != 64<<20 || app.Firmware != source.FirmwareEFI ||
		db.PowerState != "poweredOff" || !web.ToolsRunning || db.CBTEnabled || len(app.NICs) != 2 {
		t.Fatalf("inventory %+v", vms)
	}
	if strings.Contains(out.String()+errOut.String(), sim.Password()) {
		t.Fatal("the password was printed")
	}

	// Table output names every VM.
	out.Reset()
	if code := Main(ctx, Env{Stdout: &out, Stderr: &errOut}, args[:len(args)-1]); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, n := range []string{"web-01", "app-01", "db-01", "NAME"} {
		if !strings.Contains(out.String(), n) {
			t.Fatalf("table lacks %s:\n%s", n, out.String())
		}
	}

	// Without a thumbprint the certificate is untrusted: the error says
	// which thumbprint to accept.
	errOut.Reset()
	if code := Main(ctx, Env{Stdout: io.Discard, Stderr: &errOut}, args[:6]); code != 1 {
		t.Fatalf("untrusted certificate: exit %d", code)
	}
	if !strings.Contains(errOut.String(), "--thumbprint "+sim.Thumbprint()) {
		t.Fatalf("error does not offer the thumbprint: %s", errOut.String())
	}
}

func TestEmulatorVCenterServesUntilCancelled(t *testing.T) {
	t.Setenv(envVCenterPassword, "")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, Env{Stdout: pw, Stderr: io.Discard}, []string{"emulator", "vcenter", "--dir", dir, "--demo", "--json"})
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadBytes('\n')
	if err != nil {
		t.Fatalf("read endpoint line: %v", err)
	}
	go io.Copy(io.Discard, pr)
	var info emulatorVCenterInfo
	if err := json.Unmarshal(line, &info); err != nil {
		t.Fatalf("parse %q: %v", line, err)
	}
	if info.Password == "" || len(info.VMs) != 3 {
		t.Fatalf("info %+v", info)
	}
	t.Setenv(envVCenterPassword, info.Password)
	var out, errOut bytes.Buffer
	if code := Main(ctx, Env{Stdout: &out, Stderr: &errOut}, []string{"source", "inventory", "--url", info.URL, "--user", info.User,
		"--thumbprint", info.Thumbprint}); code != 0 || !strings.Contains(out.String(), "web-01") {
		t.Fatalf("inventory of the emulator: exit %d %s %s", code, out.String(), errOut.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("emulator did not stop on cancel")
	}
	// The key pair stays in --dir, so the thumbprint a user accepted holds
	// across restarts.
	sim, err := vspheresim.Start(context.Background(), vspheresim.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	if sim.Thumbprint() != info.Thumbprint {
		t.Fatalf("thumbprint changed across restarts: %s then %s", info.Thumbprint, sim.Thumbprint())
	}
}
