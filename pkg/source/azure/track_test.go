package azure

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/rehost/rehost/internal/lab/diskwrite"
	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source/sourcetest"
)

// TestLabWriteRequest: blocks written into a running VM's managed disk
// through the faked subscription's write URL are exactly the page-range
// diff of the next run's snapshot against the last one's.
func TestLabWriteRequest(t *testing.T) {
	const name = "conf-12"
	s := connect(t, config())
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(sim.CAPEM))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	ctx := context.Background()
	if _, err := diskwrite.Post(ctx, hc, sim.WriteURL(), sim.ClientID, "wrong", diskwrite.Request{VM: name, Blocks: 1}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a write with a wrong secret = %v", err)
	}
	h := sourcetest.Harness{Source: s, VMID: sim.VMID(name),
		ReadDisk: func(i int, off int64, p []byte) (int, error) { return sim.ReadDisk(name, i, off, p) }}
	sourcetest.WrittenBetweenRuns(t, h, 1, func() ([]disk.Extent, error) {
		res, err := diskwrite.Post(ctx, hc, sim.WriteURL(), sim.ClientID, sim.ClientSecret, diskwrite.Request{VM: name, Disk: 1, Blocks: 16})
		if err != nil || len(res.Offsets) != 16 {
			return nil, fmt.Errorf("write request: %+v, %v", res, err)
		}
		var out []disk.Extent
		for _, o := range res.Offsets {
			out = append(out, disk.Extent{Offset: o, Length: res.BlockSize})
		}
		return out, nil
	})
}
