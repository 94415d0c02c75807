package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/rehost/rehost/internal/lab/diskwrite"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/hyperv"
)

// The simulated Hyper-V host as a process prints what `rehost source add
// --type hyperv` needs; a source made of it lists the demo VM, tracked,
// and its write URL changes the VM's disk: the next checkpoint's changes
// are those blocks.
func TestHyperVServes(t *testing.T) {
	line, stop := serve(t, "hyperv", "--demo", "--json")
	var info hypervInfo
	if err := json.Unmarshal(line, &info); err != nil {
		t.Fatalf("parse %q: %v", line, err)
	}
	// As `rehost source add --type hyperv --node-smb … --share …` makes it.
	prefix, share, _ := strings.Cut(info.Share, "=")
	node, smbAddr, _ := strings.Cut(info.NodeSMB, "=")
	ctx := context.Background()
	src, err := hyperv.New(ctx, hyperv.Config{Endpoint: info.Endpoint, User: info.User, Password: info.Password, Thumbprint: info.Thumbprint,
		Nodes: map[string]hyperv.Node{node: {SMBAddress: smbAddr}}, Shares: []hyperv.Share{{Prefix: prefix, Share: share}}})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	id := info.VMs["hv-app-01"]
	vm, err := src.VM(ctx, id)
	if err != nil || !vm.CBTEnabled || len(vm.Disks) != 2 || vm.Firmware != source.FirmwareEFI {
		t.Fatalf("demo vm %+v, %v", vm, err)
	}
	cp1, err := src.Checkpoint(ctx, id, "rehost-by-hand-1")
	if err != nil {
		t.Fatal(err)
	}
	base, err := src.Keep(ctx, cp1)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(info.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	res, err := diskwrite.Post(ctx, hc, info.WriteURL, info.User, info.Password, diskwrite.Request{VM: "hv-app-01", Disk: 1, Blocks: 4, BlockSize: 64 << 10})
	if err != nil || len(res.Offsets) != 4 {
		t.Fatalf("write request: %+v, %v", res, err)
	}
	cp2, err := src.Checkpoint(ctx, id, "rehost-by-hand-2")
	if err != nil {
		t.Fatal(err)
	}
	key := vm.Disks[1].Key
	ch, err := src.ChangedAreas(ctx, cp2, source.ChangeQuery{Disk: key, Since: base.ChangeIDs[key]})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for {
		page, err := ch.Areas.Next(ctx)
		if err != nil {
			break
		}
		for _, e := range page {
			for o := e.Offset; o < e.End(); o += res.BlockSize {
				got = append(got, o)
			}
		}
	}
	if len(got) != len(res.Offsets) {
		t.Fatalf("changes at %v, want the blocks written at %v", got, res.Offsets)
	}
	for i := range got {
		if got[i] != res.Offsets[i] {
			t.Fatalf("changes at %v, want the blocks written at %v", got, res.Offsets)
		}
	}
	for _, cp := range []source.Checkpoint{cp2, base.Checkpoint} {
		if err := src.Release(ctx, cp); err != nil {
			t.Fatal(err)
		}
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}
