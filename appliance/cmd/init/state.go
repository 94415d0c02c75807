//go:build linux

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// backupDir is where a backup from the console menu goes on the data
// partition, unless it goes to the staging bucket.
const backupDir = "/data/backup"

// menuBackup backs the state up while the connector runs: into the
// staging bucket (where the daily backups go) or onto the data partition,
// and shows the backup key's recovery code on request.
func (a *appliance) menuBackup(c *console, ask func(string) (string, bool)) {
	where, _ := ask("Back up to 1) the staging bucket, or 2) the data partition (" + backupDir + ")? [1/2] ")
	args := []string{"state", "backup", "--state-dir", stateDir}
	switch where {
	case "1":
		args = append(args, "--to-bucket")
	case "2":
		os.MkdirAll(backupDir, 0o700)
		args = append(args, "--out", filepath.Join(backupDir, "rehost-state-"+time.Now().UTC().Format("20060102T150405Z")+".rehost-backup"))
	default:
		c.printf("Not backed up.\n")
		return
	}
	out, err := exec.Command(rehostBin, args...).CombinedOutput()
	c.printf("%s", out)
	if err != nil {
		c.printf("Backup failed: %v\n", err)
		return
	}
	a.logf("state backed up from the console (%s)", strings.Join(args[4:], " "))
	if v, _ := ask("Show the backup key's recovery code (a restore asks for it)? [y/N] "); strings.EqualFold(v, "y") {
		out, err := exec.Command(rehostBin, "state", "backup-key", "--state-dir", stateDir).CombinedOutput()
		c.printf("%s", out)
		if err != nil {
			c.printf("Could not read the backup key: %v\n", err)
		}
	}
}

// menuRestore replaces the state with a backup: the connector is stopped
// for it and started again on the restored state, where it resumes the
// runs the backup shows in progress.
func (a *appliance) menuRestore(ctx context.Context, c *console, ask func(string) (string, bool)) {
	from, _ := ask("Backup to restore: a file on the data partition, an https:// URL (an S3 presigned URL),\nor s3://BUCKET/KEY (s3://BUCKET/rehost-backup/STATE/ for the newest): ")
	if from == "" {
		return
	}
	args := []string{"state", "restore", "--state-dir", stateDir, "--from", from, "--force"}
	env := []string{"PATH=/bin", "HOME=" + stateDir, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	if strings.HasPrefix(from, "s3://") {
		region, _ := ask("The bucket's AWS region: ")
		id, _ := ask("AWS access key id allowed to read it: ")
		secret, _ := ask("Its secret access key: ")
		args = append(args, "--region", region)
		env = append(env, "AWS_ACCESS_KEY_ID="+id, "AWS_SECRET_ACCESS_KEY="+secret)
	}
	code, _ := ask("The backup key's recovery code (RBK1-…): ")
	if v, _ := ask("This replaces the connector's state (jobs, runs, keys, registration) with the backup's.\nType RESTORE to continue: "); v != "RESTORE" {
		c.printf("Not restored.\n")
		return
	}
	c.printf("Stopping the connector…\n")
	release := a.holdServe()
	defer release()
	cmd := exec.CommandContext(ctx, rehostBin, args...)
	cmd.Env = append(env, "REHOST_BACKUP_KEY="+code)
	out, err := cmd.CombinedOutput()
	c.printf("%s", out)
	if err != nil {
		c.printf("Restore failed; the state is as it was: %v\n", err)
		a.logf("restore from %s failed: %v", from, err)
		return
	}
	a.logf("state restored from %s", from)
	c.printf("Restored; the connector starts on it now.\n")
}

// holdServe stops the connector and keeps it stopped until release is
// called.
func (a *appliance) holdServe() (release func()) {
	held := make(chan struct{})
	a.serveMu.Lock()
	a.held = held
	a.serveMu.Unlock()
	a.stopServe(30 * time.Second)
	return func() {
		a.serveMu.Lock()
		if a.held == held {
			a.held = nil
		}
		a.serveMu.Unlock()
		close(held)
	}
}

// waitHeld blocks while the connector is held stopped; false when ctx
// ended.
func (a *appliance) waitHeld(ctx context.Context) bool {
	a.serveMu.Lock()
	h := a.held
	a.serveMu.Unlock()
	if h == nil {
		return true
	}
	a.setServed("stopped for a restore")
	select {
	case <-h:
		return true
	case <-ctx.Done():
		return false
	}
}
