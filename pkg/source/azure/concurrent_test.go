package azure

import (
	"context"
	"slices"
	"sync"
	"testing"
)

// TestConcurrentInventories: two connectors' sources listing the same
// subscription at once (the catalog's poll beside a run's lookup) each see
// every VM exactly once. The lists are paged (two VMs a page, four SKUs a
// page), so pages handed to the wrong reader would show as VMs missing,
// doubled or an error.
func TestConcurrentInventories(t *testing.T) {
	ctx := context.Background()
	want, err := connect(t, config()).Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := func(vms []string) []string { slices.Sort(vms); return vms }
	var wantNames []string
	for _, vm := range want {
		wantNames = append(wantNames, vm.Name)
	}
	wantNames = names(wantNames)
	var wg sync.WaitGroup
	for range 2 {
		s := connect(t, config())
		wg.Go(func() {
			for round := range 8 {
				got, err := s.Inventory(ctx)
				if err != nil {
					t.Errorf("round %d: %v", round, err)
					return
				}
				var gotNames []string
				for _, vm := range got {
					gotNames = append(gotNames, vm.Name)
				}
				if gotNames = names(gotNames); !slices.Equal(gotNames, wantNames) {
					t.Errorf("round %d: listed %v, want %v", round, gotNames, wantNames)
					return
				}
			}
		})
	}
	wg.Wait()
}
