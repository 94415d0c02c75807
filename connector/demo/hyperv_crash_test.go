package demo

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/hypervsim"
	"github.com/rehost/rehost/pkg/store"
)

// TestHyperVKillLeavesNoCheckpoint kills `rehost serve` with SIGKILL twice
// in a Hyper-V run — while the host takes the checkpoint (so its id is
// never recorded and the restart must find it by name), then in the middle
// of the SMB read of the disks — restarts it each time, and checks that
// the run ends, that the host holds no checkpoint nor differencing disk,
// and that S3 and the AWS emulator hold nothing but the AMI of a
// completed run, whose disks are the guest disks.
func TestHyperVKillLeavesNoCheckpoint(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses POSIX signals")
	}
	bin := buildRehost(t)
	l := newHVLab(t, hypervsim.Options{})
	// Samba behind a throttle, so the read of the disks lasts long enough
	// to be killed in.
	slow := newThrottle(t, l.smb.Addr, 24<<20)
	d := l.open(t)
	j := l.job(t, d, l.sourceInput("hv01", "vms", slow.port()))
	d.Close()

	logPath := filepath.Join(t.TempDir(), "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	starts := 0
	start := func() *exec.Cmd {
		starts++
		cmd := exec.Command(bin, "serve", "--state-dir", l.stateDir, "--listen", "127.0.0.1:0", "--resync", "300ms",
			"--log-format", "text", "--on-demand-per-24h", "-1")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if b, _ := os.ReadFile(logPath); bytes.Count(b, []byte("rehost connector serving")) >= starts {
				return cmd
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(logPath)
				t.Fatalf("serve did not start:\n%s", tail(b, 30))
			}
		}
	}
	kill := func(cmd *exec.Cmd, when string) {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		t.Logf("SIGKILL %s", when)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(logPath)
				t.Fatalf("waiting for %s:\n%s", what, tail(b, 40))
			}
		}
	}

	// 1: while the host takes the checkpoint.
	l.sim.SetDelay("hv-checkpoint", 1500*time.Millisecond)
	cmd := start()
	waitFor("the checkpoint script", func() bool { return l.sim.Counts()["script:hv-checkpoint"] >= 1 })
	kill(cmd, "while the host takes the checkpoint")
	l.sim.SetDelay("", 0)

	// 2: in the middle of reading the disks.
	served := func() int64 {
		rs, _ := l.smb.Reads()
		var n int64
		for _, r := range rs {
			n += r.Bytes
		}
		return n
	}
	cmd = start()
	waitFor("the disks being read", func() bool { return served() > 24<<20 })
	kill(cmd, "during the SMB read, after "+strconv.FormatInt(served()>>20, 10)+" MiB")
	slow.setRate(0)

	// 3: to the end.
	cmd = start()
	st, err := store.OpenSQLite(filepath.Join(l.stateDir, "rehost.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	waitFor("the run to end", func() bool {
		live, err := st.RunsInState(ctx, store.RunPending, store.RunActive)
		return err == nil && len(live) == 0
	})
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		b, _ := os.ReadFile(logPath)
		t.Errorf("serve exited with %v after SIGTERM:\n%s", err, tail(b, 30))
	}

	if b, _ := os.ReadFile(logPath); testing.Verbose() {
		t.Logf("serve log:\n%s", tail(b, 200))
	}
	runs, err := st.ListRuns(ctx, j.ReplicationJobID, 0)
	if err != nil || len(runs) == 0 {
		t.Fatalf("runs: %v %v", runs, err)
	}
	var claimed []string
	for _, r := range runs {
		t.Logf("run %s: %s %s", r.ReplicationRunID, r.State, r.StatusMessage)
		switch r.State {
		case store.RunCompleted:
			claimed = append(claimed, r.AmiID)
		case store.RunFailed:
			if r.StatusMessage == "" {
				t.Errorf("run %s failed without a reason", r.ReplicationRunID)
			}
		default:
			t.Errorf("run %s ended %s", r.ReplicationRunID, r.State)
		}
	}
	left, err := st.UnreleasedLedger(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, le := range left {
		t.Errorf("ledger still holds %s %s of run %s", le.Kind, le.ResourceID, le.RunID)
	}
	if c := l.sim.Calls()["hv-checkpoint"]; c < 2 {
		t.Errorf("the checkpoint script ran %d times; the restart should have asked for the checkpoint again", c)
	}
	l.assertClean(t, claimed...)
	for _, ami := range claimed {
		for _, im := range l.peers.AWS.Images() {
			if im.ID != ami {
				continue
			}
			for i, dv := range im.Devices {
				sum, _, err := l.peers.AWS.SnapshotSHA256(dv.SnapshotID)
				if err != nil || sum != l.fixtures[i].sha256 {
					t.Errorf("AMI %s disk %d differs from the guest disk (%v)", ami, i, err)
				}
			}
		}
	}
}

// throttle forwards TCP to target, passing at most rate bytes a second
// from the server to the client (any rate when 0).
type throttle struct {
	l    net.Listener
	rate atomic.Int64
}

func newThrottle(t *testing.T, target string, rate int64) *throttle {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &throttle{l: ln}
	p.rate.Store(rate)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				buf := make([]byte, 64<<10)
				for {
					n, err := up.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
						if r := p.rate.Load(); r > 0 {
							time.Sleep(time.Duration(n) * time.Second / time.Duration(r))
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *throttle) setRate(r int64) { p.rate.Store(r) }
func (p *throttle) port() int       { return p.l.Addr().(*net.TCPAddr).Port }
