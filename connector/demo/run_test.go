package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// The `make demo` path: every demo VM (two disks; UEFI) is replicated and
// verified, and nothing is left behind on any peer.
func TestDemoRun(t *testing.T) {
	var out bytes.Buffer
	sum, env, err := Run(context.Background(), Options{Dir: t.TempDir(), Out: &out, Timeout: 3 * time.Minute,
		Peers: PeerOptions{ImportDuration: 500 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	if !sum.OK {
		PrintSummary(&out, sum)
		t.Fatalf("demo not OK:\n%s", out.String())
	}
	if len(sum.VMs) != len(env.Peers.VMs) {
		t.Fatalf("%d VMs replicated, want %d", len(sum.VMs), len(env.Peers.VMs))
	}
	sawEFI, sawTwoDisks := false, false
	for _, v := range sum.VMs {
		// VM Import's detection of each boot disk's OS reaches the result.
		want := map[string]string{"web-01": "Linux/Ubuntu 22.04.4 LTS", "app-01": "Windows/", "db-01": "Linux/Rocky Linux 8.9 (Green Obsidian)"}[v.VM]
		if got := v.Platform + "/" + v.Distribution; got != want {
			t.Errorf("%s: detected %q, want %q", v.VM, got, want)
		}
		// Every demo VM passes preflight, and its run begins with it.
		if v.Preflight != "ready" || v.FirstStep != "preflight" {
			t.Errorf("%s: preflight %q, first step %q; want ready, preflight", v.VM, v.Preflight, v.FirstStep)
		}
		sawEFI = sawEFI || v.Firmware == "efi"
		sawTwoDisks = sawTwoDisks || len(v.Disks) == 2
		for _, d := range v.Disks {
			if d.SourceHash != d.TargetHash || d.SourceHash == "" {
				t.Errorf("%s disk %d: %s != %s", v.VM, d.Disk, d.SourceHash, d.TargetHash)
			}
		}
	}
	if !sawEFI || !sawTwoDisks {
		t.Errorf("demo lacks a UEFI VM (%v) or a two-disk VM (%v)", sawEFI, sawTwoDisks)
	}
	var table bytes.Buffer
	PrintSummary(&table, sum)
	if !strings.Contains(table.String(), "every VM replicated") {
		t.Errorf("summary: %s", table.String())
	}
}
