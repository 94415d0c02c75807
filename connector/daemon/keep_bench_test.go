package daemon

import (
	"context"
	"fmt"
	"testing"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
)

// BenchmarkCatalogMove10k is the connector's share of a datacenter
// renamed under 10,000 catalogued VMs, without a vCenter: applying the
// change a watch reports for it (every VM moved) to a SQLite catalog.
// Each iteration moves all 10,000 to a datacenter of another name.
func BenchmarkCatalogMove10k(b *testing.B) {
	const n = 10000
	ctx := context.Background()
	d, err := Open(ctx, b.TempDir(), quiet())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	src, err := d.Store.CreateSource(ctx, store.Source{Kind: store.SourceVSphere, Name: "vc", Endpoint: "https://127.0.0.1:1/sdk", User: "u"})
	if err != nil {
		b.Fatal(err)
	}
	vms := make([]source.VM, n)
	servers := make([]store.Server, n)
	for i := range vms {
		vms[i] = source.VM{ID: fmt.Sprintf("4210%04d-0000-0000-0000-000000000000", i), Name: fmt.Sprintf("vm-%05d", i),
			Path: fmt.Sprintf("/DC0/vm/plain-%03d/vm-%05d", i%10, i), GuestOS: "otherGuest64", CPUs: 1, MemoryMiB: 32,
			Firmware: source.FirmwareBIOS, PowerState: "poweredOn", ManagerType: "VSPHERE", Host: "host-21",
			Disks: []source.Disk{{Key: "2000", Label: "Hard disk 1", CapacityBytes: 10 << 30, Controller: "scsi0:0", Backing: fmt.Sprintf("[LocalDS_0] vm-%05d/vm-%05d.vmdk", i, i)}},
			NICs:  []source.NIC{{Label: "Network adapter 1", Network: "VM Network", Type: "vmxnet3", MAC: fmt.Sprintf("00:50:56:00:%02x:%02x", i>>8, i&0xff)}}}
		servers[i] = serverOf(src.ID, vms[i])
	}
	for i := 0; i < n; i += catalogBatch {
		if _, err := d.Store.UpsertServers(ctx, servers[i:i+catalogBatch]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var ch source.Change
		for j, vm := range vms {
			ch.Moved = append(ch.Moved, source.Move{ID: vm.ID, Path: fmt.Sprintf("/DC%d/vm/plain-%03d/vm-%05d", i+1, j%10, j)})
		}
		if _, err := d.applyChange(ctx, nil, src.ID, ch); err != nil {
			b.Fatal(err)
		}
	}
}
