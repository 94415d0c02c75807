package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/source"
)

func TestSourceInventory(t *testing.T) {
	ctx := context.Background()
	sim, err := vspheresim.Start(ctx, vspheresim.Options{VMs: vspheresim.DemoVMs(), Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	t.Setenv(EnvVCenterPassword, sim.Password())

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
