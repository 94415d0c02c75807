package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// The appliance's disk is lost in the middle of a run: a backup taken
// into the staging bucket while `rehost serve` replicates (the run waiting
// for its VM Import), then the serving process killed and its state
// directory abandoned. A second appliance — a fresh state directory that
// served once, as after a first boot — restores the newest backup from the
// bucket with the recovery code the administrator recorded, serves, and
// the run resumes from the backup's ledger and finishes with its AMI: the
// VM's disks byte for byte in the AMI's snapshots, one AMI for the run, an
// empty ledger, and nothing left at the peers. The backup shows no secret
// in the clear. All of it with the product binary as processes, the peers
// on loopback.
func TestBackupDuringRunRestoresIntoSecondAppliance(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses POSIX signals")
	}
	bin := buildRehost(t)
	ctx := context.Background()
	dir := t.TempDir()
	// A long enough import that the run is caught waiting for it.
	peers, err := StartPeers(ctx, PeerOptions{Dir: filepath.Join(dir, "peers"), VMs: twoDiskVM(), ImportDuration: 4 * time.Second, LeaseTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(peers.Close)
	settings, err := peers.AWSSettings()
	if err != nil {
		t.Fatal(err)
	}

	first := filepath.Join(dir, "appliance-1")
	d, err := daemon.Open(ctx, first, daemon.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	bucket, servers := onboard(ctx, t, d, peers)
	if len(servers) != 1 {
		t.Fatalf("catalog %v", servers)
	}
	job, err := d.CreateJob(ctx, store.ReplicationJob{ServerID: servers[0].ServerID, SeedReplicationTime: time.Now(), Frequency: 24,
		LicenseType: store.LicenseAWS, NumberOfRecentAmisToKeep: 2})
	if err != nil {
		t.Fatal(err)
	}
	// What the administrator recorded when the appliance was set up.
	code, err := d.ShowBackupKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()

	logPath := filepath.Join(dir, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	starts := 0
	serve := func(state string) *exec.Cmd {
		starts++
		cmd := exec.Command(bin, "serve", "--state-dir", state, "--listen", "127.0.0.1:0", "--resync", "500ms", "--log-format", "text")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		for deadline := time.Now().Add(30 * time.Second); ; {
			b, _ := os.ReadFile(logPath)
			if bytes.Count(b, []byte("rehost connector serving")) >= starts {
				return cmd
			}
			if time.Now().After(deadline) {
				t.Fatalf("serve did not start; log:\n%s", tail(b, 40))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	rehost := func(env []string, args ...string) string {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("rehost %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// waitRun polls the store of state until the job's run satisfies ok.
	waitRun := func(state string, what string, ok func(store.ReplicationRun) bool) store.ReplicationRun {
		st, err := store.OpenSQLite(filepath.Join(state, "rehost.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			runs, err := st.ListRuns(ctx, job.ReplicationJobID, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(runs) == 1 && ok(runs[0]) {
				return runs[0]
			}
		}
		b, _ := os.ReadFile(logPath)
		t.Fatalf("no run %s within 3 minutes; log:\n%s", what, tail(b, 60))
		return store.ReplicationRun{}
	}

	serve1 := serve(first)
	mid := waitRun(first, "waiting for its import", func(r store.ReplicationRun) bool {
		return r.State == store.RunActive && r.Progress.Step == replication.StepWaitImport
	})
	out := rehost(nil, "state", "backup", "--state-dir", first, "--to-bucket", "--json")
	// The disk is lost: the daemon dies with it, mid-run.
	serve1.Process.Signal(syscall.SIGKILL)
	serve1.Wait()
	fmt.Fprintf(logf, "=== test: backup %s taken in step %s, appliance 1 killed\n", strings.TrimSpace(out), mid.Progress.Step)

	// The backup in the bucket shows no secret in the clear.
	st, err := peers.States(ctx)
	if err != nil {
		t.Fatal(err)
	}
	backups := st.Leftovers(bucket, nil).Backups
	if len(backups) == 0 {
		t.Fatalf("no backup under %s in the bucket", awstarget.BackupPrefix)
	}
	for _, key := range backups {
		obj, err := peers.S3.S3Client().GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(obj.Body)
		obj.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{peers.SourceInput().Password, settings.SecretAccessKey, "SQLite format 3"} {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("backup %s shows %q in the clear", key, secret)
			}
		}
	}

	// The second appliance: first boot, then the restore.
	second := filepath.Join(dir, "appliance-2")
	fresh := serve(second)
	fresh.Process.Signal(syscall.SIGTERM)
	fresh.Wait()
	ca := filepath.Join(dir, "s3-ca.pem")
	os.WriteFile(ca, settings.CAPEM, 0o600)
	stateID := strings.Split(strings.TrimPrefix(backups[0], awstarget.BackupPrefix), "/")[0]
	out = rehost([]string{"REHOST_BACKUP_KEY=" + code, "AWS_ACCESS_KEY_ID=" + settings.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + settings.SecretAccessKey},
		"state", "restore", "--state-dir", second, "--from", "s3://"+bucket+"/"+awstarget.BackupPrefix+stateID+"/",
		"--region", settings.Region, "--s3-endpoint", settings.S3Endpoint, "--ca-file", ca)
	t.Logf("%s", strings.TrimSpace(out))

	serve2 := serve(second)
	done := waitRun(second, "ended", func(r store.ReplicationRun) bool {
		return r.State == store.RunCompleted || r.State == store.RunFailed
	})
	serve2.Process.Signal(syscall.SIGTERM)
	if err := serve2.Wait(); err != nil {
		t.Errorf("serve on the restored state exited with %v", err)
	}
	if done.ReplicationRunID != mid.ReplicationRunID || done.State != store.RunCompleted || done.AmiID == "" {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("the run after the restore: %s %s %q (%s); log:\n%s", done.ReplicationRunID, done.State, done.AmiID, done.StatusMessage, tail(b, 60))
	}
	checks, err := peers.Verify(servers[0].Name, done.AmiID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if !c.Equal {
			t.Errorf("AMI %s disk %d differs from the source", done.AmiID, c.Disk)
		}
	}
	restored, err := store.OpenSQLite(filepath.Join(second, "rehost.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Close()
	if left, err := restored.UnreleasedLedger(ctx); err != nil || len(left) > 0 {
		t.Errorf("ledger after the run: %+v, %v", left, err)
	}
	time.Sleep(3 * time.Second) // the killed appliance's NFC lease expires, as on vCenter
	l, err := peers.Leftovers(ctx, bucket, map[string]bool{done.AmiID: true})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Empty() {
		b, _ := os.ReadFile(logPath)
		t.Errorf("left behind: %s\nlog:\n%s", l, tail(b, 60))
	}
}
