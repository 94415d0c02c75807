package hyperv_test

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rehost/rehost/internal/lab/hvdisk"
	"github.com/rehost/rehost/internal/lab/hypervsim"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/hyperv"
)

// Fingerprints lists the VMs Inventory lists, by the same ids, with one
// light script; a VM renamed changes its own fingerprint and no other's,
// and nothing changed changes none.
func TestFingerprints(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sim, err := hypervsim.Start(hypervsim.Options{Dir: filepath.Join(dir, "host")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	img := filepath.Join(dir, "os.vhdx")
	disk, _ := hvdisk.NewVHDX(64<<20, 1<<20, 512, nil)
	if err := disk.Save(img); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web-01", "db-01"} {
		if _, err := sim.AddVM(hypervsim.VMSpec{Name: name, CPUs: 2, MemoryMiB: 1024, Disks: []hypervsim.DiskSpec{{Image: img}}}); err != nil {
			t.Fatal(err)
		}
	}
	s := connect(t, hyperv.Config{Endpoint: sim.Addr(""), User: sim.User(), Password: sim.Password(), Thumbprint: sim.Thumbprint("")})
	vms, err := s.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := sim.Calls()
	prints, err := s.Fingerprints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, vm := range vms {
		ids = append(ids, vm.ID)
	}
	if got := slices.Sorted(maps.Keys(prints)); !slices.Equal(got, slices.Sorted(slices.Values(ids))) {
		t.Fatalf("fingerprints of %v, inventory of %v", got, ids)
	}
	if calls := sim.Calls(); calls["hv-digest"] != before["hv-digest"]+1 || calls["hv-inventory"] != before["hv-inventory"] {
		t.Errorf("fingerprints ran %v, want one hv-digest", calls)
	}
	web, db := vmIDNamed(t, vms, "web-01"), vmIDNamed(t, vms, "db-01")

	if err := sim.RenameVM("web-01", "web-02"); err != nil {
		t.Fatal(err)
	}
	now, err := s.Fingerprints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if now[web] == prints[web] || now[db] != prints[db] {
		t.Errorf("web-01 renamed: its fingerprint %s → %s, db-01's %s → %s; want only web-01's changed", prints[web], now[web], prints[db], now[db])
	}
	if again, _ := s.Fingerprints(ctx); !maps.Equal(again, now) {
		t.Errorf("nothing changed, yet fingerprints %v then %v", now, again)
	}
}

func vmIDNamed(t *testing.T, vms []source.VM, name string) string {
	t.Helper()
	for _, vm := range vms {
		if vm.Name == name {
			return vm.ID
		}
	}
	t.Fatalf("no vm %s in %v", name, vms)
	return ""
}
