package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rehost/rehost/internal/lab/azuresim"
	"github.com/rehost/rehost/internal/lab/hvdisk"
	"github.com/rehost/rehost/internal/lab/hypervsim"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/azure"
	"github.com/rehost/rehost/pkg/source/hyperv"
)

// wireCount is a TCP relay on loopback counting the bytes it carries both
// ways (TLS included): what a poll costs on the wire.
type wireCount struct {
	ln    net.Listener
	bytes atomic.Int64
}

// counting counts the bytes written through it as they go.
type counting struct {
	w io.Writer
	n *atomic.Int64
}

func (c counting) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func newWireCount(tb testing.TB, target string) *wireCount {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	w := &wireCount{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			for _, pair := range [][2]net.Conn{{c, up}, {up, c}} {
				go func() {
					io.Copy(counting{pair[1], &w.bytes}, pair[0])
					pair[1].Close()
				}()
			}
		}
	}()
	tb.Cleanup(func() { ln.Close() })
	return w
}

func (w *wireCount) addr() string { return w.ln.Addr().String() }

// pollVMs is how many VMs the poll benchmarks' sources have.
const pollVMs = 50

// benchPoll reports what one poll of src costs that finds nothing
// changed: a full one (Inventory, as every poll was) and a light one
// (Fingerprints): requests to the source and bytes on the wire (both
// ways, as the client has read them when the call returns), each poll on
// a fresh connection of the source whose first listing (its login, its
// token, the sizes it caches) is not counted.
func benchPoll(b *testing.B, open func() (source.Source, *wireCount), requests func() int) {
	for _, mode := range []string{"full", "light"} {
		b.Run(mode, func(b *testing.B) {
			var reqs int
			var wire int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				src, w := open()
				// The connection's own requests (a login, a token) first.
				if _, err := src.Inventory(context.Background()); err != nil {
					b.Fatal(err)
				}
				r0, w0 := requests(), w.bytes.Load()
				b.StartTimer()
				var n int
				if mode == "full" {
					vms, err := src.Inventory(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					n = len(vms)
				} else {
					prints, err := src.(source.Fingerprinter).Fingerprints(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					n = len(prints)
				}
				b.StopTimer()
				reqs += requests() - r0
				wire += w.bytes.Load() - w0
				src.Close()
				if n != pollVMs {
					b.Fatalf("%s poll listed %d vms, want %d", mode, n, pollVMs)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(reqs)/float64(b.N), "requests/poll")
			b.ReportMetric(float64(wire)/float64(b.N)/1024, "wire-KiB/poll")
		})
	}
}

// BenchmarkCatalogPollHyperV: a Hyper-V host of 50 VMs (WS-Management
// requests; bytes through a relay to the simulated host).
func BenchmarkCatalogPollHyperV(b *testing.B) {
	dir := b.TempDir()
	sim, err := hypervsim.Start(hypervsim.Options{Dir: filepath.Join(dir, "host")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sim.Close)
	img := filepath.Join(dir, "os.vhdx")
	disk, _ := hvdisk.NewVHDX(64<<20, 1<<20, 512, nil)
	if err := disk.Save(img); err != nil {
		b.Fatal(err)
	}
	for i := range pollVMs {
		if _, err := sim.AddVM(hypervsim.VMSpec{Name: fmt.Sprintf("vm-%02d", i), CPUs: 2, MemoryMiB: 1024,
			Disks: []hypervsim.DiskSpec{{Image: img}}}); err != nil {
			b.Fatal(err)
		}
	}
	requests := func() int {
		n := 0
		for k, v := range sim.Counts() {
			if strings.HasPrefix(k, "wsman:") {
				n += v
			}
		}
		return n
	}
	benchPoll(b, func() (source.Source, *wireCount) {
		w := newWireCount(b, sim.Addr(""))
		src, err := hyperv.New(context.Background(), hyperv.Config{Endpoint: w.addr(), User: sim.User(), Password: sim.Password(), Thumbprint: sim.Thumbprint("")})
		if err != nil {
			b.Fatal(err)
		}
		return src, w
	}, requests)
}

// BenchmarkCatalogPollAzure: a subscription of 50 VMs (Resource Manager
// requests; bytes through a relay to the simulated Resource Manager).
func BenchmarkCatalogPollAzure(b *testing.B) {
	ctx := context.Background()
	var vms []azuresim.VMSpec
	for i := range pollVMs {
		vms = append(vms, azuresim.VMSpec{Name: fmt.Sprintf("vm-%02d", i), Disks: []azuresim.DiskSpec{{SizeBytes: 4 * mib}}})
	}
	sim, err := azuresim.Start(ctx, azuresim.Options{Dir: b.TempDir(), VMs: vms})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sim.Close)
	benchPoll(b, func() (source.Source, *wireCount) {
		host := strings.TrimPrefix(strings.TrimPrefix(sim.ARMURL, "https://"), "http://")
		host, _, _ = strings.Cut(host, "/")
		w := newWireCount(b, host)
		cfg := azure.Config{
			SubscriptionID: sim.SubscriptionID, TenantID: sim.TenantID, ClientID: sim.ClientID, Secret: []byte(sim.ClientSecret),
			Endpoints: &azure.Endpoints{ResourceManager: strings.Replace(sim.ARMURL, host, w.addr(), 1), AuthorityHost: sim.AuthorityURL},
			CAPEM:     sim.CAPEM,
		}
		src, err := azure.New(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		return src, w
	}, sim.AllRequests)
}
