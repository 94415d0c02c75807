package hyperv

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/testdata"
)

// Every script, with arguments as long as they get, fits cmd.exe's command
// line once encoded, and decodes back to itself with its arguments.
func TestScriptsEncodeAndDecode(t *testing.T) {
	args := map[string]any{"vmId": "5f2c0b1e-3d4a-4f6b-9c7d-1e2f3a4b5c6d", "name": "rehost-sms-r-0123456789abcdef0",
		"id": "8c3f1a2b-0000-4000-8000-000000000001", "prefix": "rehost-",
		"disk": "scsi0:1", "since": "rctX:c2eb01d9-ccb1-405d-acb6-f0e76d055906:00000001", "offset": 1 << 40, "limit": 4096}
	for _, name := range ScriptNames {
		text, err := Script(name, args)
		if err != nil {
			t.Fatal(err)
		}
		cmd, err := Command(text)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: script %d chars, command line %d", name, len(text), len(cmd))
		back, err := DecodeCommand(cmd)
		if err != nil || back != text {
			t.Fatalf("%s: decode: %v", name, err)
		}
		got, raw, err := ParseScript(back)
		if err != nil || got != name {
			t.Fatalf("%s: parsed as %q: %v", name, got, err)
		}
		var a map[string]any
		if json.Unmarshal(raw, &a) != nil || a["vmId"] != args["vmId"] || a["name"] != args["name"] {
			t.Fatalf("%s: arguments %s", name, raw)
		}
	}
}

// Arguments are data: whatever a VM id or checkpoint name holds reaches
// the host only inside the base64 literal, never as script text.
func TestArgumentsAreNotCode(t *testing.T) {
	hostile := `x'; Remove-VM -Name * -Force; $(Stop-Computer) "` + "\n" + `#`
	text, err := Script(scriptHVCheckpoint, map[string]string{"vmId": hostile, "name": hostile})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text, "Remove-VM") || strings.Contains(text, "Stop-Computer") {
		t.Fatal("an argument appears in the script text")
	}
	lits := regexp.MustCompile(`FromBase64String\('([^']*)'\)`).FindAllStringSubmatch(text, -1)
	if len(lits) != 1 || !base64Text.MatchString(lits[0][1]) {
		t.Fatalf("want exactly one base64 literal, found %v", lits)
	}
	if _, _, err := ParseScript(strings.Replace(text, "Checkpoint-VM", "Remove-VM", 1)); err == nil {
		t.Fatal("a changed script body passed as rehost's")
	}
}

// The scripts are the reviewed files: no here-strings (the stripping of
// comments relies on it), no evaluation of text, and the body refers to
// its input only through $In.
func TestScriptHygiene(t *testing.T) {
	entries, err := scriptFiles.ReadDir("scripts")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := scriptFiles.ReadFile("scripts/" + e.Name())
		s := string(b)
		for _, bad := range []string{"@\"", "@'", "Invoke-Expression", "iex ", "<#", "-ComputerName $In", "Add-Type"} {
			if strings.Contains(s, bad) {
				t.Errorf("%s contains %q", e.Name(), bad)
			}
		}
		for i, l := range strings.Split(s, "\n") {
			if strings.Contains(l, "$In") && strings.Contains(l, `"`) && strings.Contains(l, "$In.") && regexp.MustCompile(`"[^"]*\$In`).MatchString(l) {
				t.Errorf("%s:%d interpolates $In into a string: %s", e.Name(), i+1, l)
			}
		}
	}
}

func readAnswer(t *testing.T, file string, out any) error {
	t.Helper()
	return decodeAnswer(file, string(testdata.File("hyperv/"+file)), "", out)
}

// An inventory answer as Windows PowerShell writes it: enums named where
// the script casts them and numbered where an older script or host did
// not, a lone drive or adapter as an object rather than an array, nulls.
func TestParseHyperVInventory(t *testing.T) {
	var vms list[psVM]
	if err := readAnswer(t, "hv-inventory.json", &vms); err != nil {
		t.Fatal(err)
	}
	if len(vms) != 2 {
		t.Fatalf("%d vms", len(vms))
	}
	web := vms[0].host().vm(ManagerHyperV, "hv01.example.com")
	if web.ID != "5f2c0b1e-3d4a-4f6b-9c7d-1e2f3a4b5c6d" || web.Name != "web-01" || web.Path != "/HV01/web-01" ||
		web.Firmware != source.FirmwareEFI || !web.SecureBoot || web.CPUs != 4 || web.MemoryMiB != 4096 ||
		web.PowerState != "poweredOn" || !web.ToolsRunning || web.GuestOS != "Windows Server 2019 Datacenter" ||
		web.ManagerType != "HYPERV-MANAGER" || web.Host != "HV01" {
		t.Fatalf("web-01: %+v", web)
	}
	// The firmware boots SCSI 0:1 first: it is the boot disk.
	if len(web.Disks) != 2 || web.Disks[0].Key != "scsi0:1" || web.Disks[0].CapacityBytes != 136365211648 ||
		web.Disks[1].Key != "scsi0:0" || web.Disks[1].CapacityBytes != 107374182400 {
		t.Fatalf("web-01 disks: %+v", web.Disks)
	}
	if n := web.NICs; len(n) != 1 || n[0].MAC != "00:15:5d:0a:0b:0c" || n[0].Network != "External" || n[0].Type != "synthetic" {
		t.Fatalf("web-01 nics: %+v", n)
	}
	h := vms[0].host()
	if c := h.Disks[0].Chain; len(c) != 2 || c[0].Type != "Differencing" || c[1].Parent != "" || c[0].Parent != c[1].Path {
		t.Fatalf("chain: %+v", c)
	}

	legacy := vms[1].host().vm(ManagerHyperV, "hv01.example.com")
	if legacy.Firmware != source.FirmwareBIOS || legacy.PowerState != "poweredOff" || legacy.ToolsRunning || legacy.SecureBoot ||
		len(legacy.Disks) != 1 || legacy.Disks[0].Key != "ide0:0" || legacy.Disks[0].CapacityBytes != 42949672960 ||
		len(legacy.NICs) != 1 || legacy.NICs[0].Type != "legacy" {
		t.Fatalf("legacy-app: %+v", legacy)
	}
	if c := vms[1].host().Disks[0].Chain; len(c) != 1 || c[0].Format != "VHD" || c[0].Type != "Fixed" {
		t.Fatalf("numbered enums: %+v", c)
	}
}

func TestParseSCVMMInventory(t *testing.T) {
	var vms list[vmmVM]
	if err := readAnswer(t, "vmm-inventory.json", &vms); err != nil {
		t.Fatal(err)
	}
	h := vms[0].host()
	v := h.vm(ManagerSCVMM, "vmm01")
	if v.ID != "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e" || v.Path != "/All Hosts/Paris/Cluster A/hv02.corp.example/sql-01" ||
		v.ManagerType != "SCVMM" || v.Host != "hv02.corp.example" || v.MemoryMiB != 16384 || v.CPUs != 8 ||
		v.Firmware != source.FirmwareEFI || !v.SecureBoot || v.PowerState != "poweredOn" {
		t.Fatalf("sql-01: %+v", v)
	}
	if h.Disks[0].Chain[0].Type != "Dynamic" || h.Disks[1].PassThru != `\\.\PHYSICALDRIVE4` {
		t.Fatalf("disks: %+v", h.Disks)
	}
	if _, err := chainOrder(h.Disks[1]); err == nil || !strings.Contains(err.Error(), "pass-through") {
		t.Fatalf("a pass-through disk was accepted for export: %v", err)
	}
	if n := v.NICs[0]; n.MAC != "00:1d:d8:b7:1c:02" || n.Network != "Prod" {
		t.Fatalf("nic: %+v", n)
	}
}

func TestParseErrors(t *testing.T) {
	b := testdata.File("hyperv/errors.json")
	var answers []json.RawMessage
	if err := json.Unmarshal(b, &answers); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, len(answers))
	for i, a := range answers {
		errs[i] = decodeAnswer("x", string(a), "", nil)
	}
	if !errors.Is(errs[0], source.ErrNotFound) || !strings.Contains(errs[0].Error(), "unable to find a virtual machine") {
		t.Errorf("not found: %v", errs[0])
	}
	if !errors.Is(errs[1], source.ErrAuth) {
		t.Errorf("permission denied: %v", errs[1])
	}
	if e := explain(errs[2]); !strings.Contains(e.Error(), "pass-through disk (physical disk 4): a pass-through disk cannot be checkpointed") {
		t.Errorf("refusal: %v", e)
	}
	if e := explain(errs[3]); errors.Is(e, source.ErrNotFound) || !strings.Contains(e.Error(), "Production checkpoints cannot be created") {
		t.Errorf("checkpoint failure: %v", e)
	}
	// Not JSON: the error stream, decoded from CLIXML, says why.
	clixml := `#< CLIXML` + "\r\n" + `<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><S S="Error">Import-Module : The specified module 'virtualmachinemanager' was not loaded_x000D__x000A_</S></Objs>`
	if err := decodeAnswer("vmm-inventory", "", clixml, nil); err == nil || !strings.Contains(err.Error(), "module 'virtualmachinemanager' was not loaded") {
		t.Errorf("clixml: %v", err)
	}
}

func TestCheckpointQuiesced(t *testing.T) {
	for _, c := range []struct {
		snap psSnapshot
		want bool
	}{
		{psSnapshot{ID: "A", Name: "n", State: "Off", VMState: "Running"}, true},      // production: no memory state
		{psSnapshot{ID: "A", Name: "n", State: "Running", VMState: "Running"}, false}, // standard of a running VM
		{psSnapshot{ID: "A", Name: "n", State: "Off", VMState: "Off"}, false},         // VM off
		{psSnapshot{ID: "A", Name: "n", Production: true}, true},                      // SCVMM says
	} {
		if got := c.snap.checkpoint("v"); got.Quiesced != c.want || got.ID != "a" {
			t.Errorf("%+v: %+v", c.snap, got)
		}
	}
}

func TestChainOrder(t *testing.T) {
	ok := hostDisk{Controller: "scsi0:0", Chain: []vhdFile{
		{Path: `C:\v\d_1.avhdx`, Format: "VHDX", Type: "Differencing", Parent: `C:\v\d.vhdx`},
		{Path: `C:\v\d.vhdx`, Format: "VHDX", Type: "Dynamic"}}}
	c, err := chainOrder(ok)
	if err != nil || c[0].Path != `C:\v\d.vhdx` {
		t.Fatalf("%v %+v", err, c)
	}
	for name, d := range map[string]hostDisk{
		"vhd set":      {Controller: "scsi0:1", Chain: []vhdFile{{Path: `C:\v\s.vhds`, Format: "VHDSET", Type: "Dynamic"}}},
		"broken chain": {Controller: "scsi0:1", Chain: []vhdFile{{Path: `C:\v\d_1.avhdx`, Format: "VHDX", Type: "Differencing", Parent: `C:\gone.vhdx`}}},
		"no file":      {Controller: "scsi0:1"},
		"iso":          {Controller: "scsi0:1", Chain: []vhdFile{{Path: `C:\v\x.iso`, Format: "ISO"}}},
	} {
		if _, err := chainOrder(d); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestResolvePaths(t *testing.T) {
	cfg := Config{Shares: []Share{
		{Prefix: `C:\ClusterStorage\Volume1`, Share: "Volume1"},
		{Prefix: `C:\ClusterStorage\Volume1\Big`, Share: `\\fs01\big$`},
	}}
	for _, c := range []struct{ path, server, share, rel string }{
		{`C:\ClusterStorage\Volume1\vm\d.vhdx`, "hv02", "Volume1", `vm\d.vhdx`},
		{`c:\clusterstorage\volume1\BIG\d.vhdx`, "fs01", "big$", `d.vhdx`},
		{`D:\VMs\web\os.vhdx`, "hv02", "D$", `VMs\web\os.vhdx`},
		{`\\?\D:\VMs\os.vhdx`, "hv02", "D$", `VMs\os.vhdx`},
		{`\\sofs\vmstore\web\os.vhdx`, "sofs", "vmstore", `web\os.vhdx`},
		{`\\?\UNC\sofs\vmstore\os.vhdx`, "sofs", "vmstore", `os.vhdx`},
	} {
		server, share, rel, err := resolve(cfg, "hv02", c.path)
		if err != nil || server != c.server || share != c.share || rel != c.rel {
			t.Errorf("%s → %s %s %s, %v; want %s %s %s", c.path, server, share, rel, err, c.server, c.share, c.rel)
		}
	}
	if _, _, _, err := resolve(cfg, "hv02", `relative\d.vhdx`); err == nil {
		t.Error("a relative path resolved")
	}
	if a := smbAddress(Config{SMBPort: 445}, "10.0.0.5", "HV01", "HV01"); a != "10.0.0.5:445" {
		t.Errorf("standalone: %s", a)
	}
	cl := Config{SMBPort: 445, Nodes: map[string]Node{"hv02": {SMBAddress: "10.0.0.12"}, "hv03": {Address: "hv03"}}}
	if a := smbAddress(cl, "10.0.0.5", "HV02", "HV02"); a != "10.0.0.12:445" {
		t.Errorf("override: %s", a)
	}
	if a := smbAddress(cl, "10.0.0.5", "hv03", "hv03"); a != "hv03:445" {
		t.Errorf("cluster node by name: %s", a)
	}
}

func TestEndpointAddr(t *testing.T) {
	for in, want := range map[string]string{"hv01": "hv01:5986", "hv01:443": "hv01:443", "https://hv01:5986/wsman": "hv01:5986", "https://[::1]/wsman": "[::1]:5986"} {
		if got, err := endpointAddr(in); err != nil || got != want {
			t.Errorf("%s → %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := endpointAddr("http://hv01:5985/wsman"); err == nil || !strings.Contains(err.Error(), "HTTPS") {
		t.Errorf("plain http accepted: %v", err)
	}
}
