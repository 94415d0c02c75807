package demo

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/bandwidth"
	"github.com/rehost/rehost/connector/cli"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/internal/lab/hypervsim"
	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/store"
)

// The adaptive encoder of a Hyper-V disk compresses when the link is the
// bottleneck and sends the data as it is when it is not, and the run
// records the choice and the rates it was made on: the same VM, holding
// 96 MiB of text, replicated under a 64 Mbit/s cap and then with none;
// the store, GetReplicationRuns, 'rehost run show' (text and JSON) say how
// each run's disk was encoded, and each AMI holds the guest disk.
func TestPacingFollowsTheLink(t *testing.T) {
	const capBps = 8_000_000 // 64 Mbit/s
	l := newHVLabWith(t, hypervsim.Options{}, []hvDisk{
		{guestdisk.Options{Size: 160 << 20, Firmware: guestdisk.EFI, Seed: 31,
			Files: map[string][]byte{"/srv/words.txt": guestdisk.WordText(96<<20, 5)}}, "boot.vhdx", vhdxDynamic},
	})
	// Small parts: the cap holds the writer up after 16 MiB buffered, not
	// the default 80.
	d := l.openWith(t, daemon.Options{StageConcurrency: 1, StagePartSize: 8 << 20})
	ctx := context.Background()
	setCap := func(rate string) {
		s, err := bandwidth.Save(ctx, d.Store, bandwidth.Spec{Default: rate})
		if err != nil {
			t.Fatal(err)
		}
		d.Bandwidth.Set(s)
		d.WakeBandwidth()
	}
	setCap("64Mbit")
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Serve(sctx) }()
	t.Cleanup(func() {
		stop()
		<-done
		d.Close()
	})

	j := l.job(t, d, l.sourceInput("hv01", "vms", l.smb.Port))
	start := time.Now()
	capped := waitRun(t, d.Store, j.ReplicationJobID, "")
	t.Logf("capped run took %s; the cap granted %d bytes", time.Since(start).Round(time.Millisecond), d.Bandwidth.Status().Total)
	pc := l.checkPaced(t, capped)
	if pc.Choice != disk.EncodeDeflate || pc.Bottleneck != disk.BottleneckLink {
		t.Errorf("under a %d B/s cap: grains %s, %s the bottleneck; want deflated, the link (%s)", capBps, pc.Choice, pc.Bottleneck, pc.Summary())
	}
	// Measured at the writer, over 8 MiB of grains at a time: the parts
	// in flight make it lag (a window of small deflated grains can wait
	// for the upload of the larger stored ones before it).
	if pc.LinkHeldBps < capBps/4 || pc.LinkHeldBps > 2*capBps {
		t.Errorf("under a %d B/s cap the link was measured at %d B/s when it held the stream up", capBps, pc.LinkHeldBps)
	}

	setCap("unlimited")
	if _, err := d.Sched.Trigger(ctx, j.ReplicationJobID); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	open := waitRun(t, d.Store, j.ReplicationJobID, capped.ReplicationRunID)
	t.Logf("uncapped run took %s", time.Since(start).Round(time.Millisecond))
	po := l.checkPaced(t, open)
	if po.Choice == disk.EncodeDeflate || po.Deflated >= po.Stored+po.Huffman {
		t.Errorf("with no cap: grains %s, %d deflated, %d stored, %d Huffman-coded; want the data sent, not deflated (%s)", po.Choice, po.Deflated, po.Stored, po.Huffman, po.Summary())
	}
	if po.LinkBps < 10*capBps {
		t.Errorf("with no cap the link was measured at %d B/s", po.LinkBps)
	}
	// Before its first decisions the capped run sends (the buffers below
	// take its first grains at once); after them it deflates. The
	// uncapped one deflates its first grains and the probes only.
	data := func(p disk.Pacing) int64 { return p.Deflated + p.Huffman + p.Stored }
	if pc.Deflated*2 < data(pc) || po.Deflated*5 > data(po) {
		t.Errorf("grains deflated: %d of %d under the cap, %d of %d without", pc.Deflated, data(pc), po.Deflated, data(po))
	}
	if pc.BytesOut >= po.BytesOut {
		t.Errorf("the capped run sent %d bytes of grains, the uncapped one %d", pc.BytesOut, po.BytesOut)
	}

	// The API and the CLI say the same.
	runs, err := (&api.Local{D: d}).GetReplicationRuns(ctx, &api.GetReplicationRunsInput{ReplicationJobID: j.ReplicationJobID})
	if err != nil || len(runs.ReplicationRunList) != 2 {
		t.Fatalf("GetReplicationRuns: %+v %v", runs, err)
	}
	for k, want := range []disk.Pacing{po, pc} {
		r := runs.ReplicationRunList[k]
		rep := runEx(r)
		if rep == nil || len(rep.Encodings) != 1 || rep.Encodings[0].Choice != want.Choice || rep.Encodings[0].LinkBps != want.LinkBps || rep.Encodings[0].Summary != want.Summary() {
			t.Errorf("GetReplicationRuns run %s: %+v, want %+v", r.ReplicationRunID, rep, want)
		}
	}
	for _, c := range []struct {
		run  store.ReplicationRun
		want disk.Pacing
		word string
	}{{capped, pc, "grains deflated, the link the bottleneck"}, {open, po, "grains "}} {
		out := rehostCLI(t, "run", "show", c.run.ReplicationRunID, "--state-dir", l.stateDir)
		if !strings.Contains(out, "disk 1 encoding: "+c.want.Summary()) || !strings.Contains(out, c.word) {
			t.Errorf("rehost run show %s:\n%s\nwant the encoding %q", c.run.ReplicationRunID, out, c.want.Summary())
		}
		var got api.ReplicationRun
		if err := json.Unmarshal([]byte(rehostCLI(t, "run", "show", c.run.ReplicationRunID, "--json", "--state-dir", l.stateDir)), &got); err != nil {
			t.Fatal(err)
		}
		if rep := runEx(got); rep == nil || len(rep.Encodings) != 1 || rep.Encodings[0].Choice != c.want.Choice || rep.Encodings[0].Deflated != c.want.Deflated {
			t.Errorf("rehost run show --json %s: %+v", c.run.ReplicationRunID, rep)
		}
	}
	l.assertClean(t, capped.AmiID, open.AmiID)
}

func runEx(r api.ReplicationRun) *api.RunReplication {
	if r.Rehost == nil {
		return nil
	}
	return r.Rehost.Replication
}

// rehostCLI runs a rehost verb in-process and returns what it printed.
func rehostCLI(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr strings.Builder
	if code := cli.Main(context.Background(), cli.Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr}, args); code != 0 {
		t.Fatalf("rehost %s: exit %d: %s", strings.Join(args, " "), code, stderr.String())
	}
	return stdout.String()
}

// checkPaced checks a completed run of the lab's VM: its AMI's snapshot
// holds the guest disk, and the run recorded how the disk was encoded.
func (l *hvLab) checkPaced(t *testing.T, r store.ReplicationRun) disk.Pacing {
	t.Helper()
	if r.State != store.RunCompleted {
		t.Fatalf("run %s: %s: %s", r.ReplicationRunID, r.State, r.StatusMessage)
	}
	var snap string
	for _, im := range l.peers.AWS.Images() {
		if im.ID == r.AmiID && len(im.Devices) == 1 {
			snap = im.Devices[0].SnapshotID
		}
	}
	sum, size, err := l.peers.AWS.SnapshotSHA256(snap)
	if err != nil || sum != l.fixtures[0].sha256 || size != l.fixtures[0].size {
		t.Fatalf("run %s: AMI %s snapshot %q holds %s (%d bytes), the guest disk %s (%d): %v", r.ReplicationRunID, r.AmiID, snap, sum, size, l.fixtures[0].sha256, l.fixtures[0].size, err)
	}
	if len(r.Progress.Disks) != 1 || r.Progress.Disks[0].Pacing == nil {
		t.Fatalf("run %s recorded no pacing: %+v", r.ReplicationRunID, r.Progress.Disks)
	}
	p := *r.Progress.Disks[0].Pacing
	t.Logf("run %s: %s", r.ReplicationRunID, p.Summary())
	if p.Format != "vmdk" || p.Decisions < 3 || len(p.Encodings) != 3 || p.BytesIn < 96<<20 {
		t.Errorf("run %s: pacing %+v", r.ReplicationRunID, p)
	}
	return p
}
