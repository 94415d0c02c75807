package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rehost/rehost/connector/fleet"
	"github.com/rehost/rehost/connector/version"
)

// FleetOptions make a daemon on a PostgreSQL store a member of the fleet
// sharing it.
type FleetOptions struct {
	// ID names this connector in the fleet; default the state directory's
	// own (c- and 17 hex digits, made at its first start).
	ID string
	// TTL of the leases (default fleet.DefaultTTL).
	TTL time.Duration
	// Sources, names or ids, restrict the sources this member serves;
	// default every source it can reach.
	Sources []string
	// Address is what GetConnectors shows as its IP (default its first
	// non-loopback IPv4 address).
	Address string
}

// memberFile keeps a member's id and incarnation across restarts.
const memberFile = "fleet-member.json"

type memberIdentity struct {
	ID          string `json:"id"`
	Incarnation string `json:"incarnation"`
}

func hexID(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// identity reads (or makes) the state directory's member identity; a given
// id replaces the stored one.
func identity(dir, id string) (memberIdentity, error) {
	var m memberIdentity
	path := filepath.Join(dir, memberFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &m); err != nil {
			return m, fmt.Errorf("read %s: %w", path, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return m, err
	}
	changed := false
	if m.Incarnation == "" {
		m.Incarnation, changed = hexID(32), true
	}
	if id != "" && id != m.ID {
		m.ID, changed = id, true
	}
	if m.ID == "" {
		m.ID, changed = "c-"+hexID(17), true
	}
	if changed {
		b, _ := json.Marshal(m)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return m, fmt.Errorf("save the connector's fleet identity: %w", err)
		}
	}
	return m, nil
}

// joinFleet makes d a member of its store's fleet.
func (d *Daemon) joinFleet(ctx context.Context, o FleetOptions, capacity int) (*fleet.Member, error) {
	id, err := identity(d.Dir, o.ID)
	if err != nil {
		return nil, err
	}
	addr := o.Address
	if addr == "" {
		addr, _ = HostAddress()
	}
	return fleet.Join(ctx, d.Store, fleet.Config{
		ID: id.ID, Incarnation: id.Incarnation, Version: version.String(), Address: addr, Capacity: capacity, TTL: o.TTL,
		Sources: func(ctx context.Context) ([]string, error) { return d.reachableSources(ctx, o.Sources) },
		SourcesChanged: func(ctx context.Context) (string, error) {
			srcs, err := d.Store.ListSources(ctx)
			var b strings.Builder
			for _, s := range srcs {
				fmt.Fprintf(&b, "%s %s %s %x\n", s.ID, s.Endpoint, s.User, s.Secret)
			}
			return b.String(), err
		},
		Log: d.Log,
	})
}

// reachableSources lists the sources this connector can connect to (of
// only, when given: names or ids), trying them all at once.
func (d *Daemon) reachableSources(ctx context.Context, only []string) ([]string, error) {
	srcs, err := d.Store.ListSources(ctx)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := []string{}
	for _, s := range srcs {
		if len(only) > 0 && !slices.Contains(only, s.ID) && !slices.Contains(only, s.Name) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			src, err := d.connect(cctx, s)
			if err != nil {
				d.Log.Warn("source unreachable from this connector: its runs go to other members", "source", s.Name, "err", err)
				return
			}
			src.Close()
			mu.Lock()
			out = append(out, s.ID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out, nil
}

// HostAddress is the host's first non-loopback IPv4 address and its
// interface's MAC.
func HostAddress() (ip, mac string) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", ""
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				return n.IP.String(), ifc.HardwareAddr.String()
			}
		}
	}
	return "", ""
}

// FleetStatus is the fleet's view, or an error saying the store is not
// shared.
func (d *Daemon) FleetStatus(ctx context.Context) (fleet.Status, error) {
	if !d.StoreConfig.Postgres() {
		return fleet.Status{}, ErrNotFleet
	}
	ttl := fleet.DefaultTTL
	if d.Member != nil {
		ttl = d.Member.TTL()
	}
	return fleet.StatusOf(ctx, d.Store, ttl, time.Now())
}

// fleetLock takes a named lock of the fleet's store for a short
// read-modify-write, waiting for it (up to a minute), and returns its
// release.
func (d *Daemon) fleetLock(ctx context.Context, name string) (func(), error) {
	holder := "lock-" + hexID(17)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		got, err := d.Store.TryLock(ctx, name, holder, 30*time.Second)
		if err != nil {
			return nil, fmt.Errorf("take the fleet's %s lock: %w", name, err)
		}
		if got {
			// Released by letting it expire at once.
			return func() { d.Store.TryLock(context.WithoutCancel(ctx), name, holder, -time.Second) }, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("take the fleet's %s lock: another connector holds it: %w", name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ErrNotFleet: the connector keeps its state in its own SQLite database,
// so it is no member of a fleet.
var ErrNotFleet = errors.New("this connector is not in a fleet: its state is in its own SQLite database (see 'rehost store migrate' and 'rehost fleet join')")
