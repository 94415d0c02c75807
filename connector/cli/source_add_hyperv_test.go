package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/internal/lab/hvdisk"
	"github.com/rehost/rehost/internal/lab/hypervsim"
	"github.com/rehost/rehost/pkg/source/hyperv"
	"github.com/rehost/rehost/pkg/store"
)

// `source add --type hyperv`: the untrusted certificate explained with its
// thumbprint, the password sealed, the Hyper-V settings stored as the
// source's options, and the catalog carrying SMS's server fields.
func TestSourceAddHyperV(t *testing.T) {
	dir := t.TempDir()
	sim, err := hypervsim.Start(hypervsim.Options{Dir: filepath.Join(dir, "host")})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	img := filepath.Join(dir, "os.vhdx")
	d, _ := hvdisk.NewVHDX(64<<20, 1<<20, 512, nil)
	d.WriteAt(bytes.Repeat([]byte{1}, 4096), 0)
	if err := d.Save(img); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.AddVM(hypervsim.VMSpec{Name: "web-01", CPUs: 2, MemoryMiB: 1024, Running: true, SecureBoot: true,
		Disks: []hypervsim.DiskSpec{{Image: img}}, NICs: []hypervsim.NICSpec{{Name: "nic", MAC: "00:15:5d:00:00:01", Switch: "sw"}}}); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	t.Setenv("REHOST_STATE_DIR", state)
	t.Setenv("REHOST_SOURCE_PASSWORD", sim.Password())
	add := []string{"source", "add", "--type", "hyperv", "--name", "hv", "--url", sim.Addr(""), "--user", sim.User(),
		"--share", `C:\Hyper-V=vms`, "--smb-port", "4450", "--node-smb", "HV-LAB01=127.0.0.1"}

	_, errs, code := walk(t, add...)
	if code == 0 || !strings.Contains(errs, "--thumbprint "+sim.Thumbprint("")) {
		t.Fatalf("untrusted certificate: %d %s", code, errs)
	}
	_, errs, code = walk(t, "source", "add", "--type", "hyperv", "--name", "hv", "--url", sim.Addr(""), "--user", sim.User(), "--share", "nope")
	if code != 2 || !strings.Contains(errs, "PATH=SHARE") {
		t.Fatalf("malformed --share: %d %s", code, errs)
	}
	_, errs, code = walk(t, "source", "add", "--name", "vc", "--url", "vc", "--user", "u", "--auth", "ntlm")
	if code != 2 || !strings.Contains(errs, "--type hyperv") {
		t.Fatalf("--auth on vsphere: %d %s", code, errs)
	}
	out, errs, code := walk(t, append(add, "--thumbprint", sim.Thumbprint(""), "--json")...)
	if code != 0 {
		t.Fatalf("source add: %d %s", code, errs)
	}
	var src api.Source
	if err := json.Unmarshal([]byte(out), &src); err != nil || src.Kind != string(store.SourceHyperV) {
		t.Fatalf("%v %s", err, out)
	}
	o, err := hyperv.ParseOptions(src.Options)
	if err != nil || o.SMBPort != 4450 || len(o.Shares) != 1 || o.Shares[0].Share != "vms" || o.Nodes["HV-LAB01"].SMBAddress != "127.0.0.1" {
		t.Fatalf("options %+v, %v", o, err)
	}
	// --kind still names the type; the simulator also answers as SCVMM.
	out, errs, code = walk(t, "source", "add", "--kind", "scvmm", "--name", "vmm", "--url", sim.Addr(""), "--user", sim.User(),
		"--thumbprint", sim.Thumbprint(""), "--json")
	if code != 0 || !strings.Contains(out, `"kind": "scvmm"`) {
		t.Fatalf("--kind scvmm: %d %s %s", code, out, errs)
	}

	out, errs, code = walk(t, "server", "import", "--source", "hv", "--json")
	if code != 0 {
		t.Fatalf("server import: %d %s", code, errs)
	}
	var servers []api.Server
	if err := json.Unmarshal([]byte(out), &servers); err != nil || len(servers) != 1 {
		t.Fatalf("%v %s", err, out)
	}
	if v := servers[0].VmServer; v == nil || v.VmName != "web-01" || v.VmPath != "/HV-LAB01/web-01" || v.VmManagerType != "HYPERV-MANAGER" ||
		servers[0].Rehost.Firmware != "efi" {
		t.Fatalf("server %+v", servers[0])
	}

	dmn, err := daemon.Open(context.Background(), state, daemon.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dmn.Close()
	stored, err := dmn.Store.GetSource(context.Background(), src.SourceID)
	if err != nil || bytes.Contains(stored.Secret, []byte(sim.Password())) {
		t.Fatalf("the password is not sealed: %v", err)
	}
	// The catalog's details keep what SMS shows of a Hyper-V server.
	cat, err := dmn.Store.ListServers(context.Background(), store.ServerFilter{SourceID: src.SourceID})
	var details map[string]any
	if err == nil && len(cat) == 1 {
		json.Unmarshal([]byte(cat[0].Details), &details)
	}
	if details["vmManagerType"] != "HYPERV-MANAGER" || details["host"] != "HV-LAB01" || details["secureBoot"] != true {
		t.Fatalf("details %v (%v)", details, err)
	}
	db, _ := os.ReadFile(filepath.Join(state, "rehost.db"))
	wal, _ := os.ReadFile(filepath.Join(state, "rehost.db-wal"))
	if bytes.Contains(db, []byte(sim.Password())) || bytes.Contains(wal, []byte(sim.Password())) {
		t.Fatal("the password is stored in plaintext")
	}
}
