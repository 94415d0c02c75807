package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/diskwrite"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/azure"
)

// The faked Azure subscription as a process prints how to sign in to it;
// the Azure source made of that finds the demo VM, and the write URL
// changes its disk: the next checkpoint's page-range diff is those blocks.
func TestAzureServes(t *testing.T) {
	line, stop := serve(t, "azure", "--dir", t.TempDir(), "--demo", "--json")
	var info azureInfo
	if err := json.Unmarshal(line, &info); err != nil {
		t.Fatalf("parse %q: %v", line, err)
	}
	ca, err := os.ReadFile(info.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	src, err := azure.New(ctx, azure.Config{SubscriptionID: info.SubscriptionID, TenantID: info.TenantID, ClientID: info.ClientID,
		Secret: []byte(info.ClientSecret), CAPEM: string(ca), PollInterval: 10 * time.Millisecond,
		Endpoints: &azure.Endpoints{ResourceManager: info.ResourceManager, AuthorityHost: info.AuthorityURL}})
	if err != nil {
		t.Fatal(err)
	}
	id := info.VMs["az-app-01"]
	vm, err := src.VM(ctx, id)
	if err != nil || !vm.CBTEnabled || len(vm.Disks) != 2 {
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
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	res, err := diskwrite.Post(ctx, hc, info.WriteURL, info.ClientID, info.ClientSecret, diskwrite.Request{VM: "az-app-01", Disk: 1, Offsets: []int64{0, 8 << 20}, BlockSize: 1 << 20})
	if err != nil || res.Bytes != 2<<20 {
		t.Fatalf("write request: %+v, %v", res, err)
	}
	cp2, err := src.Checkpoint(ctx, id, "rehost-by-hand-2")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := src.ChangedAreas(ctx, cp2, source.ChangeQuery{Disk: "lun0", Since: base.ChangeIDs["lun0"]})
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for {
		page, err := ch.Areas.Next(ctx)
		if err != nil {
			break
		}
		for _, e := range page {
			if e.Offset != 0 && e.Offset != 8<<20 {
				t.Fatalf("change at %d, not a block written", e.Offset)
			}
			total += e.Length
		}
	}
	if total != res.Bytes {
		t.Fatalf("%d bytes changed, want the %d written", total, res.Bytes)
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
