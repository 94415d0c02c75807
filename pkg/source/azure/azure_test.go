package azure

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/azuresim"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/sourcetest"
)

const mib = 1 << 20

// One faked subscription (one Azurite) serves every test of the package;
// each test uses VMs of its own.
var (
	sim     *azuresim.Sim
	fixture string // the guest disk image of vm "guest-01"
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "azuresim-")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		fixture = filepath.Join(dir, "guest.img")
		ctx := context.Background()
		if _, err := guestdisk.Build(ctx, fixture, guestdisk.Options{Size: 64 * mib, Firmware: guestdisk.EFI, DataBytes: 3 * mib, Seed: 42}); err != nil {
			fmt.Fprintln(os.Stderr, "build the fixture disk:", err)
			return 1
		}
		sim, err = azuresim.Start(ctx, azuresim.Options{Dir: dir, VMs: testVMs()})
		if err != nil {
			fmt.Fprintln(os.Stderr, "start the faked subscription:", err)
			return 1
		}
		defer sim.Close()
		return m.Run()
	}())
}

func conformanceVM(name string) azuresim.VMSpec {
	return azuresim.VMSpec{Name: name, Size: "Standard_D2s_v3", Generation: "V2", AgentReady: true,
		Disks: []azuresim.DiskSpec{{SizeBytes: 8 * mib}, {SizeBytes: 16 * mib, SKU: "StandardSSD_LRS"}},
		NICs:  []azuresim.NICSpec{{PrivateIP: "10.0.0.4"}, {PrivateIP: "10.0.1.4", Accelerated: true}}}
}

func testVMs() []azuresim.VMSpec {
	var vms []azuresim.VMSpec
	for i := range 13 { // conf-12: TestLabWriteRequest
		vms = append(vms, conformanceVM(fmt.Sprintf("conf-%02d", i)))
	}
	one := func(name string, d azuresim.DiskSpec) azuresim.VMSpec {
		if d.SizeBytes == 0 && d.Image == "" {
			d.SizeBytes = 4 * mib
		}
		return azuresim.VMSpec{Name: name, Size: "Standard_B1s", Disks: []azuresim.DiskSpec{d}}
	}
	tl := one("trusted-01", azuresim.DiskSpec{})
	tl.SecurityType, tl.Generation = "TrustedLaunch", "V2"
	cvm := one("confidential-01", azuresim.DiskSpec{ConfidentialVMEncryption: true})
	cvm.SecurityType, cvm.Generation = "ConfidentialVM", "V2"
	return append(vms,
		azuresim.VMSpec{Name: "guest-01", ResourceGroup: "rg-guest", Size: "Standard_D4s_v5", Generation: "V2", PowerState: "deallocated",
			Disks: []azuresim.DiskSpec{{Image: fixture}, {SizeBytes: 32 * mib, SKU: "PremiumV2_LRS"}}, NICs: []azuresim.NICSpec{{PrivateIP: "10.1.0.5"}}},
		tl, cvm,
		one("ade-01", azuresim.DiskSpec{ADE: true}),
		one("cmk-denied-01", azuresim.DiskSpec{CMK: "denied"}),
		one("cmk-ok-01", azuresim.DiskSpec{CMK: "readable"}),
		one("entra-01", azuresim.DiskSpec{EntraDataAccess: true}),
		one("ultra-01", azuresim.DiskSpec{SKU: "UltraSSD_LRS"}),
		one("retry-01", azuresim.DiskSpec{}),
	)
}

func config() Config {
	return Config{
		SubscriptionID: sim.SubscriptionID, TenantID: sim.TenantID, ClientID: sim.ClientID, Secret: []byte(sim.ClientSecret),
		Endpoints:    &Endpoints{ResourceManager: sim.ARMURL, AuthorityHost: sim.AuthorityURL},
		CAPEM:        sim.CAPEM,
		PollInterval: 10 * time.Millisecond,
		ChunkBytes:   256 << 10,
		// Failures the tests inject are retried at once.
		RetryBaseDelay: time.Millisecond,
		Log:            slog.New(slog.DiscardHandler),
		// Few ranges per Get Page Ranges, so that clients page.
		PageRangesPerPage: 4,
	}
}

func connect(t testing.TB, cfg Config) *Source {
	t.Helper()
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	n := 0
	sourcetest.Run(t, func(t *testing.T) sourcetest.Harness {
		name := fmt.Sprintf("conf-%02d", n)
		n++
		return sourcetest.Harness{
			Source: connect(t, config()),
			VMID:   sim.VMID(name),
			Want: source.VM{
				Name: name, Path: "/westeurope/rg-rehost/" + name, GuestOS: "Linux: debian 12", CPUs: 2, MemoryMiB: 8192,
				Firmware: source.FirmwareEFI, PowerState: "poweredOn", ToolsRunning: true, CBTEnabled: true,
				Disks: []source.Disk{{CapacityBytes: 8 * mib}, {CapacityBytes: 16 * mib}},
				NICs:  []source.NIC{{Network: "vnet-rehost/default", Type: "synthetic"}, {Network: "vnet-rehost/default", Type: "accelerated"}},
			},
			// A reset of Azure's tracking: the base snapshots deleted
			// behind rehost's back.
			ResetTracking: func() error { _, err := sim.DeleteSnapshots(name); return err },
			ResizeDisk:    func(i int, size int64) error { return sim.ResizeDisk(name, i, size) },
			WriteDisk:     func(i int, off int64, p []byte) error { return sim.WriteDisk(name, i, off, p) },
			ReadDisk:      func(i int, off int64, p []byte) (int, error) { return sim.ReadDisk(name, i, off, p) },
			FailExport:    func(i int, n int64) error { return sim.FailExport(name, i, n) },
			OpenExports:   sim.OpenGrants,
		}
	})
}

// TestGuestDiskReadsOnlyAllocated: a real guest disk (GPT, ESP, ext4 with
// /etc/os-release and 3 MiB of data in 64 MiB) and an empty Premium SSD v2
// disk, through checkpoint (background copy waited for), export and
// release: the content equals the fixture, only the allocated page ranges
// are read, the smaller format is chosen, nothing is left behind.
func TestGuestDiskReadsOnlyAllocated(t *testing.T) {
	ctx := context.Background()
	s := connect(t, config())
	id := sim.VMID("guest-01")
	vm, err := s.VM(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if vm.PowerState != "poweredOff" || vm.Firmware != source.FirmwareEFI || vm.CPUs != 4 || vm.MemoryMiB != 16384 ||
		vm.ManagerType != "AZURE" || vm.Attributes["diskSkus"] != "os=Premium_LRS,lun0=PremiumV2_LRS" || len(vm.NICs) != 1 || vm.NICs[0].Addresses[0] != "10.1.0.5" {
		t.Errorf("inventory: %+v", vm)
	}
	want, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	alloc, err := sim.AllocatedBytes("guest-01", 0)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.Checkpoint(ctx, id, "rehost-sms-run-guest")
	if err != nil {
		t.Fatal(err)
	}
	before := sim.BytesRead()
	ex, err := s.Export(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	d := ex.Disks()[0]
	rc, err := ex.Open(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var staged bytes.Buffer
	if _, err := io.Copy(&staged, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	read := sim.BytesRead() - before
	img, err := disk.Open(bytes.NewReader(staged.Bytes()), int64(staged.Len()))
	if err != nil {
		t.Fatalf("%s stream: %v", d.Format, err)
	}
	got := make([]byte, img.Size())
	if _, err := img.ReadAt(got, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the exported disk differs from the fixture")
	}
	// The VHD and VMDK the source could have sent, for the record.
	raw := disk.NewRaw(bytes.NewReader(want), int64(len(want)))
	var vhd, vmdk countWriter
	if _, err := disk.WriteVHD(&vhd, sparseOf(raw, d.Extents), true); err != nil {
		t.Fatal(err)
	}
	if _, err := disk.WriteStreamOptimized(&vmdk, sparseOf(raw, d.Extents)); err != nil {
		t.Fatal(err)
	}
	t.Logf("virtual %d, allocated %d (%d page ranges), read %d; dynamic VHD %d, VMDK %d; chose %s (%d bytes)",
		len(want), alloc, len(d.Extents), read, vhd.n, vmdk.n, d.Format, staged.Len())
	if read != alloc {
		t.Errorf("read %d bytes for %d allocated", read, alloc)
	}
	if smaller := min(vhd.n, vmdk.n); int64(staged.Len()) > smaller+smaller/50 {
		t.Errorf("staged %d bytes as %s; the smaller format takes %d", staged.Len(), d.Format, smaller)
	}
	if d.Format == disk.VHD && d.StreamSize != int64(staged.Len()) {
		t.Errorf("stream size %d announced, %d sent", d.StreamSize, staged.Len())
	}
	// The empty Premium SSD v2 disk: no ranges, nothing read.
	before = sim.BytesRead()
	rc, err = ex.Open(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || len(ex.Disks()[1].Extents) != 0 || sim.BytesRead() != before {
		t.Errorf("empty disk: %d bytes streamed, extents %v, %d bytes read, %v", n, ex.Disks()[1].Extents, sim.BytesRead()-before, err)
	}
	if err := ex.Close(nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if n := sim.OpenGrants(); n != 0 || len(sim.Snapshots()) != 0 {
		t.Errorf("left behind: %d grants, snapshots %v", n, sim.Snapshots())
	}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

type sparse struct {
	disk.Sparse
	ext []disk.Extent
}

func (s sparse) Extents() []disk.Extent { return s.ext }

func sparseOf(s disk.Sparse, ext []disk.Extent) disk.Sparse { return sparse{s, ext} }

// A grant revoked (or expired) mid-read is renewed and the read goes on.
func TestGrantRenewedMidRead(t *testing.T) {
	ctx := context.Background()
	s := connect(t, config())
	const vm = "conf-05"
	data := bytes.Repeat([]byte("renew me "), 300_000)
	if err := sim.WriteDisk(vm, 1, 0, data); err != nil {
		t.Fatal(err)
	}
	cp, err := s.Checkpoint(ctx, sim.VMID(vm), "rehost-renew")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release(ctx, cp)
	ex, err := s.Export(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close(nil)
	issued := sim.GrantsIssued()
	rc, err := ex.Open(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	sim.ExpireGrants()
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read after the grant expired: %v", err)
	}
	stream := append(head, rest...)
	got := decode(t, ex.Disks()[1].Format, stream)
	if !bytes.Equal(got[:len(data)], data) {
		t.Fatal("content differs after the renewal")
	}
	if sim.GrantsIssued() == issued {
		t.Error("no grant was renewed")
	}
}

func decode(t *testing.T, f disk.Format, b []byte) []byte {
	t.Helper()
	img, err := disk.Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("%s: %v", f, err)
	}
	out := make([]byte, img.Size())
	if _, err := img.ReadAt(out, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return out
}

// Each case that cannot be replicated says why; trusted launch warns and
// replicates; CMK with a readable set, Entra ID data access and Ultra
// disks replicate.
func TestRefusalsAndWarnings(t *testing.T) {
	ctx := context.Background()
	s := connect(t, config())
	vms, err := s.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]source.VM{}
	for _, v := range vms {
		byName[v.Name] = v
	}
	for _, c := range []struct {
		vm, refuse, warn string
	}{
		{"confidential-01", "confidential VM", "will be refused"},
		{"ade-01", "Azure Disk Encryption", "will be refused"},
		{"cmk-denied-01", "customer-managed key of disk encryption set", ""},
		{"trusted-01", "", "vTPM"},
		{"cmk-ok-01", "", ""},
		{"entra-01", "", ""},
		{"ultra-01", "", ""},
	} {
		t.Run(c.vm, func(t *testing.T) {
			v := byName[c.vm]
			if c.vm == "trusted-01" && !v.SecureBoot {
				t.Error("a trusted launch vm with secure boot reports none")
			}
			if w := strings.Join(v.Warnings, "; "); c.warn != "" && !strings.Contains(w, c.warn) {
				t.Errorf("warnings %q lack %q", w, c.warn)
			}
			cp, err := s.Checkpoint(ctx, v.ID, "rehost-case")
			if c.refuse != "" {
				if err == nil || !strings.Contains(err.Error(), c.refuse) {
					t.Fatalf("checkpoint: %v; want a refusal about %q", err, c.refuse)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := sim.WriteDisk(c.vm, 0, 0, []byte("after the checkpoint")); err != nil {
				t.Fatal(err)
			}
			ex, err := s.Export(ctx, cp)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := ex.Open(ctx, 0)
			if err == nil {
				_, err = io.Copy(io.Discard, rc)
				rc.Close()
			}
			if cerr := ex.Close(err); err != nil || cerr != nil {
				t.Fatal(err, cerr)
			}
			if err := s.Release(ctx, cp); err != nil {
				t.Fatal(err)
			}
		})
	}
	if n := sim.OpenGrants(); n != 0 || len(sim.Snapshots()) != 0 {
		t.Errorf("left behind: %d grants, snapshots %v", n, sim.Snapshots())
	}
}

// Without the Entra ID token a disk with dataAccessAuthMode
// AzureActiveDirectory refuses the SAS alone: the front really checks.
func TestEntraDataAccessNeedsToken(t *testing.T) {
	ctx := context.Background()
	s := connect(t, config())
	cp, err := s.Checkpoint(ctx, sim.VMID("entra-01"), "rehost-entra")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release(ctx, cp)
	g := &readGrant{s: s, rg: "rg-rehost", snap: snapshotName(cp.Name, "os")}
	if err := g.renew(ctx); err != nil {
		t.Fatal(err)
	}
	err = g.read(ctx, 0, make([]byte, 512))
	if err == nil || !strings.Contains(err.Error(), "NoAuthenticationInformation") {
		t.Fatalf("read without a token: %v", err)
	}
	g.entra = true
	if err := g.renew(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.read(ctx, 0, make([]byte, 512)); err != nil {
		t.Fatalf("read with a token: %v", err)
	}
	if err := s.AbortExport(ctx, cp, "read-grant:"+cp.Name); err != nil {
		t.Fatal(err)
	}
	if n := sim.OpenGrants(); n != 0 {
		t.Errorf("%d grants open after AbortExport", n)
	}
}

func TestCheckpointTagsAndLineage(t *testing.T) {
	ctx := context.Background()
	s := connect(t, config())
	id := sim.VMID("conf-04")
	tctx := source.WithTags(ctx, map[string]string{"rehost:job": "sms-job-1", "rehost:run": "sms-run-2"})
	cp1, err := s.Checkpoint(tctx, id, "rehost-sms-run-1")
	if err != nil {
		t.Fatal(err)
	}
	cp2, err := s.Checkpoint(tctx, id, "rehost-sms-run-2")
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := s.snapshotsOf(ctx, "rg-rehost", id, cp2.ID)
	if err != nil || len(snaps) != 2 {
		t.Fatalf("%d snapshots, %v", len(snaps), err)
	}
	if tg := snaps[0].Tags; val(tg[tagJob]) != "sms-job-1" || val(tg[tagRun]) != "sms-run-2" || val(tg[tagCheckpoint]) != cp2.Name || !val(snaps[0].Properties.Incremental) {
		t.Errorf("tags %v incremental %v", tg, val(snaps[0].Properties.Incremental))
	}
	l, err := s.Lineage(ctx, cp2)
	if err != nil || len(l) != 2 {
		t.Fatalf("lineage %+v, %v", l, err)
	}
	first, _ := s.snapshotsOf(ctx, "rg-rehost", id, cp1.ID)
	if l[0].Previous != val(first[0].ID) || l[0].Snapshot != val(snaps[0].ID) {
		t.Errorf("lineage %+v, want previous %s", l[0], val(first[0].ID))
	}
	for _, cp := range []source.Checkpoint{cp1, cp2} {
		if err := s.Release(ctx, cp); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSignIn(t *testing.T) {
	ctx := context.Background()
	bad := config()
	bad.Secret = []byte("wrong")
	if _, err := New(ctx, bad); !errors.Is(err, source.ErrAuth) || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Errorf("wrong secret: %v", err)
	}
	// A certificate registered on the app.
	certPEM, der := clientCert(t)
	sim.RegisterCertificate(der)
	c := config()
	c.Auth, c.Secret = AuthCertificate, certPEM
	if _, err := New(ctx, c); err != nil {
		t.Errorf("certificate: %v", err)
	}
	// Workload identity: a federated token in a file.
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("federated-token-of-the-pod"), 0o600)
	sim.RegisterFederatedToken("federated-token-of-the-pod")
	c = config()
	c.Auth, c.Secret, c.TokenFile = AuthWorkloadIdentity, nil, tok
	if _, err := New(ctx, c); err != nil {
		t.Errorf("workload identity: %v", err)
	}
	for _, cl := range []struct{ cloud, want string }{
		{"germany", "closed in October 2021"}, {"azurestack", "not supported"}, {"mars", "unknown cloud"},
	} {
		c := config()
		c.Endpoints, c.Cloud = nil, cl.cloud
		if _, err := New(ctx, c); err == nil || !strings.Contains(err.Error(), cl.want) {
			t.Errorf("cloud %q: %v", cl.cloud, err)
		}
	}
	for _, cl := range []string{"public", "usgovernment", "china"} {
		c := Config{Cloud: cl}
		if _, err := cloudConfig(c); err != nil {
			t.Errorf("cloud %q: %v", cl, err)
		}
	}
	c = config()
	c.Endpoints.ResourceManager = "http://127.0.0.1:1"
	if _, err := New(ctx, c); err == nil || !strings.Contains(err.Error(), "want an https url") {
		t.Errorf("plain http endpoint: %v", err)
	}
	c = config()
	c.Auth = AuthManagedIdentity
	if err := c.defaults(); err != nil {
		t.Errorf("managed identity needs nothing more: %v", err)
	}
}

func clientCert(t *testing.T) ([]byte, []byte) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rehost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})...), der
}

func TestErrorsHideTheSASSignature(t *testing.T) {
	err := classify("read snapshot s at 0", fmt.Errorf("get: %w", &url.Error{Op: "Get", URL: "https://md-x.blob.core.windows.net/x/abcd?sv=2022&sr=b&sig=c2VjcmV0&se=2026", Err: io.ErrUnexpectedEOF}))
	if strings.Contains(err.Error(), "c2VjcmV0") || !strings.Contains(err.Error(), "sig=REDACTED") || !errors.Is(err, source.ErrUnreachable) {
		t.Errorf("%v", err)
	}
}
