package hyperv_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/rehost/rehost/internal/lab/diskwrite"
	"github.com/rehost/rehost/internal/lab/hypervsim"
	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/hyperv"
	"github.com/rehost/rehost/pkg/source/sourcetest"
)

// TestRecoveryCheckpoints: a tracked VM's checkpoints are recovery
// checkpoints, application consistent when the guest's integration
// services answer and crash consistent otherwise; an untracked VM's are
// Checkpoint-VM's, which cannot become a reference point (ErrNoTracking
// with the reason); through SCVMM nothing is tracked, and the job is told
// why.
func TestRecoveryCheckpoints(t *testing.T) {
	l := newLab(t)
	s, sub := l.sim(t, hypervsim.Options{Password: l.smb.Password})
	src := connect(t, l.config(s, sub))
	ctx := context.Background()

	tracked := l.trackedVM(t, s, "app-01")
	cp, err := src.Checkpoint(ctx, tracked, "rehost-rct")
	if err != nil || !cp.Quiesced {
		t.Fatalf("recovery checkpoint of a vm with integration services: %+v, %v", cp, err)
	}
	again, err := src.Checkpoint(ctx, tracked, "rehost-rct")
	if err != nil || again != cp {
		t.Fatalf("the same checkpoint asked again: %+v, %v; want %+v", again, err, cp)
	}
	base, err := src.Keep(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	if rps, _ := s.ReferencePoints("app-01"); len(rps) != 1 || rps[0] != "rehost-rct" {
		t.Fatalf("reference points %v", rps)
	}
	if cps, _ := s.Checkpoints("app-01"); len(cps) != 0 || len(s.DiffFiles()) != 0 {
		t.Fatalf("the kept checkpoint is still a checkpoint: %v, %v", cps, s.DiffFiles())
	}
	// A crash before the base was recorded: it is found by its name.
	list, err := src.Checkpoints(ctx, tracked, "rehost-")
	if err != nil || len(list) != 1 || !list[0].Base || list[0].ID != base.Checkpoint.ID {
		t.Fatalf("checkpoints %+v, %v; want the base %+v", list, err, base.Checkpoint)
	}
	if err := src.Release(ctx, list[0]); err != nil {
		t.Fatal(err)
	}
	if rps, _ := s.ReferencePoints("app-01"); len(rps) != 0 {
		t.Fatalf("reference points left: %v", rps)
	}

	noTools := l.addVM(t, s, hypervsim.VMSpec{Name: "no-tools", Version: "10.0",
		Disks: []hypervsim.DiskSpec{{Image: l.base["data.vhdx"], Name: "nt.vhdx"}}})
	cp, err = src.Checkpoint(ctx, noTools, "rehost-crash")
	if err != nil || cp.Quiesced {
		t.Fatalf("recovery checkpoint without integration services: %+v, %v; want crash consistent", cp, err)
	}
	if err := src.Release(ctx, cp); err != nil {
		t.Fatal(err)
	}

	// A VHD disk: not tracked, a standard checkpoint, which Keep refuses.
	vhd := l.vm(t, s, "vhd-01", true)
	if err := src.EnableTracking(ctx, vhd); !errors.Is(err, source.ErrNoTracking) || !strings.Contains(err.Error(), "needs VHDX") {
		t.Fatalf("enable tracking of a vm with a VHD = %v", err)
	}
	if vm, err := src.VM(ctx, vhd); err != nil || vm.CBTEnabled {
		t.Fatalf("vm with a VHD says it is tracked: %+v, %v", vm, err)
	}
	cp, err = src.Checkpoint(ctx, vhd, "rehost-std")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Keep(ctx, cp); !errors.Is(err, source.ErrNoTracking) || !strings.Contains(err.Error(), "only recovery checkpoints") {
		t.Fatalf("keep of a standard checkpoint = %v, want ErrNoTracking", err)
	}
	if err := src.Release(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if v := s.Violations(); len(v) != 0 {
		t.Fatalf("violations: %v", v)
	}

	cfg := l.config(s, sub)
	cfg.Manager = hyperv.ManagerSCVMM
	vmm := connect(t, cfg)
	err = vmm.EnableTracking(ctx, s.VMMID("app-01"))
	if !errors.Is(err, source.ErrNoTracking) || !strings.Contains(err.Error(), "SCVMM does not relay") {
		t.Fatalf("enable tracking through scvmm = %v", err)
	}
	if vm, err := vmm.VM(ctx, s.VMMID("app-01")); err != nil || vm.CBTEnabled {
		t.Fatalf("a vm seen through scvmm says it is tracked: %+v, %v", vm, err)
	}
}

// TestLabWriteRequest: blocks written into a running VM's disk through the
// simulated host's write URL are exactly the next run's changes.
func TestLabWriteRequest(t *testing.T) {
	l := newLab(t)
	s, sub := l.sim(t, hypervsim.Options{Password: l.smb.Password})
	id := l.trackedVM(t, s, "app-01")
	src := connect(t, l.config(s, sub))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CertificatePEM(""))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	ctx := context.Background()
	if _, err := diskwrite.Post(ctx, hc, s.WriteURL(), s.User(), "wrong", diskwrite.Request{VM: "app-01", Blocks: 1}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a write with a wrong password = %v", err)
	}
	h := sourcetest.Harness{Source: src, VMID: id,
		ReadDisk: func(i int, off int64, p []byte) (int, error) { return s.ReadDisk("app-01", i, off, p) }}
	sourcetest.WrittenBetweenRuns(t, h, 0, func() ([]disk.Extent, error) {
		res, err := diskwrite.Post(ctx, hc, s.WriteURL(), s.User(), s.Password(), diskwrite.Request{VM: "app-01", Disk: 0, Offsets: []int64{0, 1 << 20, 7 << 20}, BlockSize: 1 << 20})
		if err != nil || len(res.Offsets) != 3 {
			return nil, fmt.Errorf("write request: %+v, %v", res, err)
		}
		var out []disk.Extent
		for _, o := range res.Offsets {
			out = append(out, disk.Extent{Offset: o, Length: res.BlockSize})
		}
		return out, nil
	})
}
