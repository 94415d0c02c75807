// Package apitest starts a connector serving its API over HTTPS on loopback,
// against the demo's peers (simulated vCenter, versitygw, AWS emulator), for
// the tests of the API, its clients and the CLI.
package apitest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/demo"
	"github.com/rehost/rehost/internal/lab/vspheresim"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
	"github.com/rehost/rehost/scheduler"
)

// Options tune Start.
type Options struct {
	// VMs of the simulated vCenter (default the demo's).
	VMs []vspheresim.VMSpec
	// Unregistered leaves the connector without AWS registration and
	// source.
	Unregistered bool
	// Metrics polls every MetricsEvery (default 100 ms).
	MetricsEvery time.Duration
	// PerKeyRate and PerKeyBurst override the endpoint's rate limit.
	PerKeyRate  float64
	PerKeyBurst int
	// ImportMode is the registration's ("image" by default, "snapshot":
	// ImportSnapshot and RegisterImage, which take disks without an OS).
	ImportMode string
	// Console, when set, makes the web console the endpoint serves, given
	// the connector (Log, Fingerprint and D are set) and its Service.
	Console func(c *Connector, svc api.Service) http.Handler
	// ApplianceStatus is the appliance init's status file the connector
	// reports (rehost serve --appliance-status).
	ApplianceStatus string
	// Store, when set, keeps the connector's state there (a PostgreSQL
	// store) and Fleet makes it a member of the fleet sharing it.
	Store *daemon.StoreConfig
	Fleet *daemon.FleetOptions
}

// Connector is a connector serving on loopback.
type Connector struct {
	Peers  *demo.Peers
	D      *daemon.Daemon
	Dir    string // state directory
	URL    string // https://127.0.0.1:PORT
	Region string
	// Fingerprint pins the certificate; Key is an issued access key.
	Fingerprint string
	Key         daemon.AccessKey
	// Log holds everything the connector logged.
	Log *SyncBuffer
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start starts the peers and a connector registered with them, with the
// simulated vCenter as a source and one access key, serving the API.
// Everything stops when the test ends.
func Start(t testing.TB, o Options) *Connector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	peers, err := demo.StartPeers(ctx, demo.PeerOptions{Dir: filepath.Join(dir, "peers"), VMs: o.VMs, ImportDuration: 300 * time.Millisecond,
		InstanceBootTime: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c := &Connector{Peers: peers, Dir: filepath.Join(dir, "state"), Log: &SyncBuffer{}}
	// As rehost serve does: to stderr (here a buffer) and the log file.
	logFile, err := daemon.OpenLogFile(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(c.Log, logFile), &slog.HandlerOptions{Level: slog.LevelDebug}))
	c.D, err = daemon.Open(ctx, c.Dir, daemon.Options{Log: log, ProgressEvery: 100 * time.Millisecond, LaunchPoll: 100 * time.Millisecond, BootTimeout: 60, AgentGrace: 500 * time.Millisecond,
		Store: o.Store, Fleet: o.Fleet, WaitForStore: o.Store != nil,
		Scheduler: scheduler.Options{ResyncInterval: 500 * time.Millisecond, OnDemandPer24h: -1, Logger: log}})
	if err != nil {
		peers.Close()
		t.Fatal(err)
	}
	settings, err := peers.AWSSettings()
	if err != nil {
		t.Fatal(err)
	}
	c.Region = settings.Region
	settings.ImportMode = o.ImportMode
	if !o.Unregistered {
		if _, err := c.D.Register(ctx, settings, awstarget.SetupOptions{CreateRole: true, FixBucket: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.D.AddSource(ctx, peers.SourceInput()); err != nil {
			t.Fatal(err)
		}
	}
	if c.Key, err = c.D.CreateAccessKey(ctx, "test", false); err != nil {
		t.Fatal(err)
	}
	cert, err := api.LoadOrCreateCertificate(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	c.Fingerprint = api.Fingerprint(cert.Certificate[0])
	ln, err := api.Listen("127.0.0.1:0", cert)
	if err != nil {
		t.Fatal(err)
	}
	c.URL = "https://" + ln.Addr().String()
	metrics := api.NewMetrics(c.D, log)
	svc := &api.Local{D: c.D, Started: time.Now(), ApplianceStatus: o.ApplianceStatus}
	var console http.Handler
	if o.Console != nil {
		console = o.Console(c, svc)
	}
	ep := api.New(api.Options{
		Service: svc,
		Auth:    &api.KeyAuth{Keys: c.D, Region: api.RegistrationRegion(c.D)},
		Metrics: metrics, Log: log, PerKeyRate: o.PerKeyRate, PerKeyBurst: o.PerKeyBurst, Console: console,
	})
	var wg sync.WaitGroup
	wg.Go(func() { ep.Serve(ctx, ln) })
	wg.Go(func() { c.D.Serve(ctx) })
	wg.Go(func() { metrics.Watch(ctx, cmp.Or(o.MetricsEvery, 100*time.Millisecond)) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		c.D.Close()
		logFile.Close()
		peers.Close()
	})
	return c
}

// TLSConfig trusts the connector's certificate, for clients of its
// endpoint (the API, the console).
func (c *Connector) TLSConfig() *tls.Config {
	pem, err := os.ReadFile(filepath.Join(c.Dir, "tls", "cert.pem"))
	if err != nil {
		panic(fmt.Sprintf("apitest: read the connector's certificate: %v", err))
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool}
}
