package azure

import (
	"context"
	"maps"
	"slices"
	"testing"
)

// Fingerprints lists the VMs Inventory lists, by the same ids, from the
// VM listing alone (no disk or network interface listing); it is the
// same while nothing changes.
func TestFingerprints(t *testing.T) {
	ctx := context.Background()
	s := connect(t, config())
	vms, err := s.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const listVMs = "VirtualMachinesClient.NewListAllPager"
	all, list := sim.AllRequests(), sim.Requests(listVMs, "")
	prints, err := s.Fingerprints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if others := (sim.AllRequests() - all) - (sim.Requests(listVMs, "") - list); others != 0 || sim.Requests(listVMs, "") == list {
		t.Errorf("fingerprints made %d requests besides the vm listing's %d", others, sim.Requests(listVMs, "")-list)
	}
	var ids []string
	for _, vm := range vms {
		ids = append(ids, vm.ID)
	}
	if got := slices.Sorted(maps.Keys(prints)); !slices.Equal(got, slices.Sorted(slices.Values(ids))) {
		t.Fatalf("fingerprints of %v, inventory of %v", got, ids)
	}
	if again, err := s.Fingerprints(ctx); err != nil || !maps.Equal(again, prints) {
		t.Errorf("nothing changed, yet fingerprints changed (%v)", err)
	}
}
