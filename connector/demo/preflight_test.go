package demo

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/cli"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/internal/lab/azuresim"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/internal/lab/hypervsim"
	"github.com/rehost/rehost/internal/lab/smbpeer"
	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/preflight"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
	"github.com/rehost/rehost/scheduler"
	"github.com/rehost/rehost/testdata"
)

// preflightWorld is a simulated vCenter, Hyper-V host and Azure
// subscription whose VMs hit every server blocker and warning preflight
// has, each VM one, a connector registered with the emulated account and
// the three sources' catalogs imported.
type preflightWorld struct {
	peers *Peers
	hv    *hypervsim.Sim
	az    *azuresim.Sim
	d     *daemon.Daemon
	dir   string
	// want is each VM's status and the codes of its blockers and warnings.
	want map[string]wantPreflight
}

type wantPreflight struct {
	status preflight.Status
	codes  []string
}

func blocked(codes ...string) wantPreflight { return wantPreflight{preflight.Blocked, codes} }
func warned(codes ...string) wantPreflight  { return wantPreflight{preflight.ReadyWithWarnings, codes} }
func readyVM() wantPreflight                { return wantPreflight{status: preflight.Ready} }

const (
	ubuntuDetailed = "architecture='X86' bitness='64' distroName='Ubuntu' distroVersion='22.04' familyName='Linux' kernelVersion='5.15.0-91-generic' prettyName='Ubuntu 22.04.3 LTS'"
	lucidDetailed  = "architecture='X86' bitness='64' distroName='Ubuntu' distroVersion='10.04' familyName='Linux' prettyName='Ubuntu 10.04.4 LTS'"
)

func startPreflightWorld(t *testing.T) *preflightWorld {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	w := &preflightWorld{dir: dir, want: map[string]wantPreflight{}}
	mib := int64(1 << 20)
	ubuntu := func(size int64) vspheresim.DiskSpec {
		return vspheresim.DiskSpec{CapacityBytes: size, Seed: vspheresim.GuestDisk(guestdisk.Options{Size: 32 * mib, OSRelease: testdata.OSRelease("ubuntu-22.04"), Seed: 31})}
	}
	vc := func(name string, want wantPreflight, f func(*vspheresim.VMSpec)) vspheresim.VMSpec {
		s := vspheresim.VMSpec{Name: name, GuestID: "ubuntu64Guest", PowerOn: true, ToolsRunning: true, CBT: true,
			GuestDetailedData: ubuntuDetailed, Disks: []vspheresim.DiskSpec{ubuntu(32 * mib)}}
		if f != nil {
			f(&s)
		}
		w.want[name] = want
		return s
	}
	many := []vspheresim.DiskSpec{ubuntu(32 * mib)}
	for range 22 {
		many = append(many, vspheresim.DiskSpec{CapacityBytes: mib})
	}
	vms := []vspheresim.VMSpec{
		vc("vc-ready", readyVM(), nil),
		vc("vc-independent", blocked(preflight.CodeDiskIndependent), func(s *vspheresim.VMSpec) {
			s.Disks = append(s.Disks, vspheresim.DiskSpec{CapacityBytes: mib, Mode: "independent_persistent"})
		}),
		vc("vc-rdm", blocked(preflight.CodeDiskRawDevice), func(s *vspheresim.VMSpec) {
			s.Disks = append(s.Disks, vspheresim.DiskSpec{CapacityBytes: mib, PhysicalRDM: "naa.600508b1001c0d1b"})
		}),
		vc("vc-multiwriter", blocked(preflight.CodeDiskShared), func(s *vspheresim.VMSpec) {
			s.Disks = append(s.Disks, vspheresim.DiskSpec{CapacityBytes: mib, MultiWriter: true})
		}),
		vc("vc-encrypted", blocked(preflight.CodeDiskEncrypted), func(s *vspheresim.VMSpec) { s.Encrypted = true }),
		vc("vc-freebsd", blocked(preflight.CodeOSUnsupported), func(s *vspheresim.VMSpec) { s.GuestID, s.GuestDetailedData = "freebsd13_64Guest", "" }),
		vc("vc-lucid", blocked(preflight.CodeOSVersion), func(s *vspheresim.VMSpec) { s.GuestDetailedData = lucidDetailed }),
		vc("vc-2012r2-uefi", blocked(preflight.CodeBootMode), func(s *vspheresim.VMSpec) {
			s.GuestID, s.GuestDetailedData, s.Firmware = "windows8Server64Guest", "", "efi"
		}),
		vc("vc-no-tools", warned(preflight.CodeQuiesce), func(s *vspheresim.VMSpec) { s.ToolsRunning, s.GuestDetailedData = false, "" }),
		vc("vc-deep-chain", warned(preflight.CodeSnapshotChain), func(s *vspheresim.VMSpec) { s.Snapshots = 3 }),
		vc("vc-unknown-os", warned(preflight.CodeOSUnknown), func(s *vspheresim.VMSpec) { s.GuestID, s.GuestDetailedData = "otherGuest64", "" }),
		vc("vc-23-disks", warned(preflight.CodeVolumes), func(s *vspheresim.VMSpec) { s.Disks = many }),
		vc("vc-3tib-bios", warned(preflight.CodeMBROverLimit), func(s *vspheresim.VMSpec) { s.Disks[0].CapacityBytes = 3 << 40 }),
	}
	var err error
	w.peers, err = StartPeers(ctx, PeerOptions{Dir: filepath.Join(dir, "peers"), VMs: vms, ImportDuration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.peers.Close)

	// Hyper-V: the boot disks are read over SMB.
	smb, err := smbpeer.Start(ctx, smbpeer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { smb.Close() })
	w.hv, err = hypervsim.Start(hypervsim.Options{Dir: smb.ShareDir("vms"), Password: smb.Password})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.hv.Close)
	vhdx := func(name string, raw string) string {
		out := filepath.Join(dir, name+".vhdx")
		if o, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic", raw, out).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v\n%s", err, o)
		}
		return out
	}
	guest := func(name string, o guestdisk.Options) string {
		raw := filepath.Join(dir, name+".raw")
		if _, err := guestdisk.Build(ctx, raw, o); err != nil {
			t.Fatal(err)
		}
		return vhdx(name, raw)
	}
	efiDebian := guest("hv-efi", guestdisk.Options{Size: 48 * mib, Firmware: guestdisk.EFI, Seed: 41})
	biosDebian := guest("hv-bios", guestdisk.Options{Size: 32 * mib, Seed: 42})
	noOS := guest("hv-noos", guestdisk.Options{Size: 32 * mib, NoOSRelease: true, Seed: 43})
	blank := vhdx("hv-blank", partitionedRaw(t, filepath.Join(dir, "blank.raw")))
	luksRaw := partitionedRaw(t, filepath.Join(dir, "luks.raw"))
	writeFileAt(t, luksRaw, []byte("LUKS\xba\xbe\x00\x02"), mib)
	luks := vhdx("hv-luks", luksRaw)
	huge := filepath.Join(dir, "huge.vhdx")
	if o, err := exec.Command("qemu-img", "create", "-f", "vhdx", "-o", "subformat=dynamic", huge, "17T").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, o)
	}
	hvVM := func(name string, want wantPreflight, s hypervsim.VMSpec) {
		t.Helper()
		s.Name, s.CPUs, s.MemoryMiB = name, 2, 2048
		if s.GuestOS == "" {
			s.GuestOS = "Debian GNU/Linux 12 (bookworm)"
		}
		if _, err := w.hv.AddVM(s); err != nil {
			t.Fatal(err)
		}
		w.want[name] = want
	}
	run := func(gen int, disks ...hypervsim.DiskSpec) hypervsim.VMSpec {
		return hypervsim.VMSpec{Generation: gen, Running: true, IntegrationServices: true, Disks: disks}
	}
	hvVM("hv-ready", readyVM(), run(2, hypervsim.DiskSpec{Image: efiDebian}))
	hvVM("hv-firmware", blocked(preflight.CodeFirmwareMismatch), run(2, hypervsim.DiskSpec{Image: biosDebian}))
	hvVM("hv-no-filesystem", blocked(preflight.CodeNoPartitions), run(1, hypervsim.DiskSpec{Image: blank}))
	hvVM("hv-no-os", blocked(preflight.CodeNoOS), run(1, hypervsim.DiskSpec{Image: noOS}))
	hvVM("hv-luks", blocked(preflight.CodeGuestVolumeEncrypted), run(1, hypervsim.DiskSpec{Image: luks}))
	hvVM("hv-passthrough", blocked(preflight.CodeDiskRawDevice), run(2, hypervsim.DiskSpec{Image: efiDebian}, hypervsim.DiskSpec{PassThrough: true}))
	hvVM("hv-shared", blocked(preflight.CodeDiskShared), run(2, hypervsim.DiskSpec{Image: efiDebian}, hypervsim.DiskSpec{Image: biosDebian, Name: "shared.vhdx", Shared: true}))
	hvVM("hv-17tib", blocked(preflight.CodeDiskTooLarge), run(2, hypervsim.DiskSpec{Image: efiDebian}, hypervsim.DiskSpec{Image: huge}))
	hvVM("hv-no-integration", warned(preflight.CodeQuiesce), hypervsim.VMSpec{Generation: 2, Running: true, Disks: []hypervsim.DiskSpec{{Image: efiDebian}}})
	deep := run(2, hypervsim.DiskSpec{Image: efiDebian})
	deep.Checkpoints = 3
	hvVM("hv-deep-chain", warned(preflight.CodeSnapshotChain), deep)
	old := run(2, hypervsim.DiskSpec{Image: efiDebian})
	old.Version = "5.0"
	hvVM("hv-2012-config", readyVM(), old) // a note: no change tracking for incremental runs
	hvVM("hv-unreadable", warned(preflight.CodeBootUnreadable), run(2, hypervsim.DiskSpec{Image: efiDebian, Name: "gone.vhdx"}))
	// The file the host describes is not on the share any more.
	if err := os.Remove(filepath.Join(smb.ShareDir("vms"), "hv-unreadable", "Virtual Hard Disks", "gone.vhdx")); err != nil {
		t.Fatal(err)
	}

	// Azure.
	azImg := filepath.Join(dir, "az.raw")
	if _, err := guestdisk.Build(ctx, azImg, guestdisk.Options{Size: 48 * mib, Firmware: guestdisk.EFI, Seed: 51}); err != nil {
		t.Fatal(err)
	}
	az := func(name string, want wantPreflight, f func(*azuresim.VMSpec)) azuresim.VMSpec {
		s := azuresim.VMSpec{Name: name, Size: "Standard_B2s", Generation: "V2", AgentReady: true, Disks: []azuresim.DiskSpec{{Image: azImg}}}
		if f != nil {
			f(&s)
		}
		w.want[name] = want
		return s
	}
	if err := os.MkdirAll(filepath.Join(dir, "azure"), 0o700); err != nil {
		t.Fatal(err)
	}
	w.az, err = azuresim.Start(ctx, azuresim.Options{Dir: filepath.Join(dir, "azure"), VMs: []azuresim.VMSpec{
		az("az-ready", readyVM(), nil),
		az("az-ade", blocked(preflight.CodeSourceRefuses), func(s *azuresim.VMSpec) {
			s.Disks = append(s.Disks, azuresim.DiskSpec{SizeBytes: 16 * mib, ADE: true})
		}),
		az("az-trusted-launch", warned(preflight.CodeSourceWarning), func(s *azuresim.VMSpec) { s.SecurityType = "TrustedLaunch" }),
		az("az-2012r2-gen2", blocked(preflight.CodeBootMode), func(s *azuresim.VMSpec) {
			s.OSType, s.OSName, s.OSVersion = "Windows", "Windows Server 2012 R2 Datacenter", "6.3.9600"
		}),
		az("az-no-agent", warned(preflight.CodeQuiesce), func(s *azuresim.VMSpec) { s.AgentReady = false }),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.az.Close)

	w.d, err = daemon.Open(ctx, filepath.Join(dir, "state"), daemon.Options{Log: slog.New(slog.DiscardHandler), Scheduler: scheduler.Options{OnDemandPer24h: -1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.d.Close() })
	settings, err := w.peers.AWSSettings()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.d.Register(ctx, settings, awstarget.SetupOptions{CreateRole: true}); err != nil {
		t.Fatal(err)
	}
	hl := &hvLab{sim: w.hv}
	azw := &azureWorld{sim: w.az}
	for _, in := range []daemon.SourceInput{w.peers.SourceInput(), hl.sourceInput("hyperv", "vms", smb.Port), azw.sourceInput(t)} {
		src, err := w.d.AddSource(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.d.ImportCatalog(ctx, src.ID); err != nil {
			t.Fatalf("import the catalog of %s: %v", in.Name, err)
		}
	}
	return w
}

func partitionedRaw(t *testing.T, path string) string {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 32<<20); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/sbin/sfdisk", "--no-reread", "--no-tell-kernel", "-q", path)
	cmd.Stdin = strings.NewReader("label: dos\nstart=2048, type=83\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	return path
}

func writeFileAt(t *testing.T, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// codesOf lists the blocker and warning codes of findings, sorted.
func codesOf(fs []preflight.Finding) []string {
	var out []string
	for _, f := range fs {
		if f.Level != preflight.Note {
			out = append(out, f.Code)
		}
	}
	slices.Sort(out)
	return out
}

// Every server blocker and warning, on the platform that has it: each VM
// is reported with its status and codes in the API (GetServers' rehost
// member) and the CLI (rehost preflight, as a table and as JSON); a job for
// a blocked server is refused naming its blockers, one for a server with
// warnings only when they are accepted; and nothing was staged, imported
// or snapshotted for any of it.
func TestPreflightEveryServerFinding(t *testing.T) {
	start := time.Now()
	w := startPreflightWorld(t)
	t.Logf("world started in %s", time.Since(start))
	ctx := context.Background()
	svc := &api.Local{D: w.d}

	// The API.
	out, err := svc.GetServers(ctx, &api.GetServersInput{MaxResults: 1000})
	if err != nil {
		t.Fatal(err)
	}
	servers := map[string]api.Server{}
	for _, s := range out.ServerList {
		servers[s.VmServer.VmName] = s
	}
	seenCodes := map[string]bool{}
	for name, want := range w.want {
		s, ok := servers[name]
		if !ok || s.Rehost == nil || s.Rehost.Preflight == nil {
			t.Errorf("%s: not in the catalog with a preflight: %+v", name, s)
			continue
		}
		p := s.Rehost.Preflight
		if got := codesOf(p.Findings); p.Status != string(want.status) || !slices.Equal(got, sorted(want.codes)) {
			t.Errorf("%s: %s %v, want %s %v:\n%+v", name, p.Status, got, want.status, sorted(want.codes), p.Findings)
		}
		for _, c := range want.codes {
			seenCodes[c] = true
		}
	}
	for _, c := range []string{preflight.CodeSourceRefuses, preflight.CodeDiskIndependent, preflight.CodeDiskRawDevice, preflight.CodeDiskShared,
		preflight.CodeDiskEncrypted, preflight.CodeDiskTooLarge, preflight.CodeGuestVolumeEncrypted, preflight.CodeFirmwareMismatch,
		preflight.CodeNoPartitions, preflight.CodeNoOS, preflight.CodeOSUnsupported, preflight.CodeOSVersion, preflight.CodeBootMode,
		preflight.CodeOSUnknown, preflight.CodeVolumes, preflight.CodeBootUnreadable, preflight.CodeQuiesce, preflight.CodeSnapshotChain,
		preflight.CodeSourceWarning, preflight.CodeMBROverLimit} {
		if !seenCodes[c] {
			t.Errorf("no simulated VM hits %s", c)
		}
	}

	// Jobs: refused for blocked servers with their reasons, for servers
	// with warnings unless accepted.
	one, seed := 24, api.At(time.Now().Add(24*time.Hour))
	for name, want := range w.want {
		in := &api.CreateReplicationJobInput{ServerID: servers[name].ServerID, Frequency: &one, SeedReplicationTime: &seed}
		_, err := svc.CreateReplicationJob(ctx, in)
		var ae *api.Error
		switch want.status {
		case preflight.Ready:
			if err != nil {
				t.Errorf("%s: a job for a ready server: %v", name, err)
			}
			continue
		case preflight.ReadyWithWarnings:
			if !errors.As(err, &ae) || ae.Type != api.ErrServerCannotBeReplicated || !strings.Contains(ae.Message, "rehostAcceptWarnings") {
				t.Errorf("%s: a job without accepting its warnings: %v", name, err)
			}
			in.RehostAcceptWarnings = true
			if _, err := svc.CreateReplicationJob(ctx, in); err != nil {
				t.Errorf("%s: a job accepting its warnings: %v", name, err)
			}
			continue
		}
		in.RehostAcceptWarnings = true
		_, err = svc.CreateReplicationJob(ctx, in)
		if !errors.As(err, &ae) || ae.Type != api.ErrServerCannotBeReplicated {
			t.Errorf("%s: a job for a blocked server: %v", name, err)
			continue
		}
		for _, c := range want.codes {
			if !strings.Contains(ae.Message, c) {
				t.Errorf("%s: the refusal does not name %s: %s", name, c, ae.Message)
			}
		}
	}

	t.Logf("api checked at %s", time.Since(start))
	// The CLI, on the same state directory.
	stateDir := filepath.Join(w.dir, "state")
	var stdout, stderr strings.Builder
	code := cli.Main(ctx, cli.Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr},
		[]string{"preflight", "--json", "--state-dir", stateDir})
	if code != 1 {
		t.Errorf("rehost preflight with blocked servers: exit %d, want 1 (%s)", code, stderr.String())
	}
	var po api.PreflightOutput
	if err := json.Unmarshal([]byte(stdout.String()), &po); err != nil {
		t.Fatalf("rehost preflight --json: %v\n%s", err, stdout.String())
	}
	if po.Account == nil || po.Account.Status != string(preflight.Ready) {
		t.Errorf("the account: %+v", po.Account)
	}
	for _, s := range po.Servers {
		want, ok := w.want[s.Name]
		if got := codesOf(s.Findings); !ok || s.Status != string(want.status) || !slices.Equal(got, sorted(want.codes)) {
			t.Errorf("cli %s: %s %v, want %s %v", s.Name, s.Status, got, want.status, sorted(want.codes))
		}
	}
	stdout.Reset()
	cli.Main(ctx, cli.Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr},
		[]string{"preflight", "--server", "vc-rdm", "--server", "hv-luks", "--skip-account", "--state-dir", stateDir})
	table := stdout.String()
	for _, want := range []string{"vc-rdm", "blocked", preflight.CodeDiskRawDevice, "hv-luks", preflight.CodeGuestVolumeEncrypted, "cryptsetup"} {
		if !strings.Contains(table, want) {
			t.Errorf("rehost preflight table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "vc-ready") {
		t.Errorf("--server listed other servers:\n%s", table)
	}
	stdout.Reset()
	cli.Main(ctx, cli.Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr}, []string{"server", "list", "--state-dir", stateDir})
	if l := stdout.String(); !strings.Contains(l, "PREFLIGHT") || !strings.Contains(l, "ready with warnings") || !strings.Contains(l, "blocked") {
		t.Errorf("server list without the preflight column:\n%s", l)
	}

	// Nothing moved.
	tg, err := w.d.Target(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := tg.ListStaged(ctx, awstarget.StagingPrefix); err != nil || len(st.Objects)+len(st.Uploads) != 0 {
		t.Errorf("staged: %+v %v", st, err)
	}
	if tasks := w.peers.AWS.ImportTasks(); len(tasks) != 0 {
		t.Errorf("import tasks: %+v", tasks)
	}
	for name := range w.want {
		if !strings.HasPrefix(name, "vc-") {
			continue
		}
		snaps, err := w.peers.Sim.Snapshots(name)
		if err != nil || slices.ContainsFunc(snaps, func(s string) bool { return strings.HasPrefix(s, "rehost-") }) {
			t.Errorf("%s: snapshots %v %v", name, snaps, err)
		}
	}
	if f := w.hv.DiffFiles(); len(f) != 3 {
		t.Errorf("differencing disks on the Hyper-V host: %v, want the 3 of hv-deep-chain's checkpoints", f)
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
