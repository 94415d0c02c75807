package vsphere

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/rehost/rehost/internal/lab/diskwrite"
	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/sourcetest"
	"github.com/rehost/rehost/pkg/source/vsphere/internal/vim"
)

// TestEnableTracking: on a running VM, CBT is turned on and takes effect
// through a snapshot cycle that leaves no snapshot; a user without the
// privilege gets ErrNoTracking and ErrAuth with the privilege's name; a
// cycle snapshot a crash left is removed by the next call.
func TestEnableTracking(t *testing.T) {
	sim := startSim(t, testVMs())
	s := connect(t, sim)
	ctx := context.Background()
	id, _ := sim.InstanceUUID("crash-01")

	if err := sim.DenyChangeTracking("crash-01"); err != nil {
		t.Fatal(err)
	}
	err := s.EnableTracking(ctx, id)
	if !errors.Is(err, source.ErrNoTracking) || !errors.Is(err, source.ErrAuth) || !strings.Contains(err.Error(), "Toggle disk change tracking") {
		t.Fatalf("enable without the privilege = %v, want ErrNoTracking and ErrAuth naming the privilege", err)
	}
	if on, pending, _ := sim.CBTState("crash-01"); on || pending {
		t.Fatalf("a refused reconfiguration turned cbt on (on %v pending %v)", on, pending)
	}

	// A crash between the reconfiguration and the cycle's removal.
	ref, _ := sim.Ref("crash-01")
	if _, err := s.snapshot(ctx, vim.Ref{Type: ref.Type, Value: ref.Value}, cbtCycleName, false); err != nil {
		t.Fatal(err)
	}
	if err := s.EnableTracking(ctx, id); err != nil {
		t.Fatal(err)
	}
	on, pending, _ := sim.CBTState("crash-01")
	if !on || pending {
		t.Fatalf("after EnableTracking: cbt on %v, waiting for a stun %v; want in effect", on, pending)
	}
	if names, _ := sim.Snapshots("crash-01"); len(names) != 0 {
		t.Fatalf("snapshots left: %v", names)
	}
	// Tracking is in effect: the next checkpoint's disks have change ids.
	cp, err := s.Checkpoint(ctx, id, "rehost-first")
	if err != nil {
		t.Fatal(err)
	}
	base, err := s.Keep(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	if len(base.ChangeIDs) != 2 || base.Checkpoint.ID != "" || !base.Checkpoint.Base {
		t.Fatalf("base %+v", base)
	}
	if _, err := s.Keep(ctx, cp); !errors.Is(err, source.ErrNotFound) {
		t.Fatalf("keep of a released vSphere checkpoint = %v, want ErrNotFound", err)
	}
	if err := s.Release(ctx, base.Checkpoint); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.EnableTracking(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if names, _ := sim.Snapshots("crash-01"); len(names) != 0 {
		t.Fatalf("enabling a tracked vm again took snapshots: %v", names)
	}
}

// TestOpenDiskRefusesDelta: a checkpoint taken on top of another snapshot
// names a delta file, which only VDDK reads: refused with the reason.
func TestOpenDiskRefusesDelta(t *testing.T) {
	sim := startSim(t, testVMs())
	s := connect(t, sim)
	ctx := context.Background()
	id, _ := sim.InstanceUUID("app-01")
	vm, err := s.VM(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	user, err := s.Checkpoint(ctx, id, "before-upgrade")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.Checkpoint(ctx, id, "rehost-on-top")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.OpenDisk(ctx, cp, vm.Disks[0].Key)
	if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "delta of older snapshots") {
		t.Fatalf("open a delta disk = %v, want ErrUnsupported saying why", err)
	}
	d, err := s.OpenDisk(ctx, user, vm.Disks[0].Key)
	if err != nil {
		t.Fatalf("the first snapshot's disk is the base file: %v", err)
	}
	d.Close()
	for _, c := range []source.Checkpoint{cp, user} {
		if err := s.Release(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if names, _ := sim.Snapshots("app-01"); !slices.Equal(names, []string(nil)) {
		t.Fatalf("left %v", names)
	}
}

// TestLabWriteRequest: blocks written into a running VM's disk through the
// simulator's write URL (as a user drives incremental runs by hand) are
// exactly the next run's changes; the request needs the vCenter's
// credentials.
func TestLabWriteRequest(t *testing.T) {
	sim := startSim(t, testVMs())
	s := connect(t, sim)
	id, _ := sim.InstanceUUID("app-01")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(sim.CertificatePEM())
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	ctx := context.Background()
	if _, err := diskwrite.Post(ctx, hc, sim.WriteURL(), sim.User(), "wrong", diskwrite.Request{VM: "app-01", Disk: 1, Blocks: 1}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a write with a wrong password = %v", err)
	}
	if _, err := diskwrite.Post(ctx, hc, sim.WriteURL(), sim.User(), sim.Password(), diskwrite.Request{VM: "no-such-vm", Disk: 0, Blocks: 1}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("a write to an unknown vm = %v", err)
	}
	h := sourcetest.Harness{Source: s, VMID: id,
		ReadDisk: func(i int, off int64, p []byte) (int, error) { return sim.ReadDisk("app-01", i, off, p) }}
	sourcetest.WrittenBetweenRuns(t, h, 1, func() ([]disk.Extent, error) {
		res, err := diskwrite.Post(ctx, hc, sim.WriteURL(), sim.User(), sim.Password(), diskwrite.Request{VM: "app-01", Disk: 1, Blocks: 8, BlockSize: 64 << 10})
		if err != nil || len(res.Offsets) != 8 || res.Bytes != 8*64<<10 {
			return nil, fmt.Errorf("write request: %+v, %v", res, err)
		}
		var out []disk.Extent
		for _, o := range res.Offsets {
			out = append(out, disk.Extent{Offset: o, Length: res.BlockSize})
		}
		return out, nil
	})
}
