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

// Where the state is kept across an upgrade: preTrialDir holds a copy of
// the store taken as the appliance shuts down to boot a system on trial;
// if the trial fails after migrating the store, the previous system,
// whose connector refuses the newer store (cli.ExitStateNewer), puts that
// copy back and sets the migrated store aside.
const (
	preTrialDir  = "/data/upgrade/state-before"
	exitStateNew = 3 // cli.ExitStateNewer: the init does not link the product's packages
)

var storeFiles = []string{"rehost.db", "rehost.db-wal", "rehost.db-shm"}

// copyPreTrial copies the store of stateDir (the connector stopped) into
// dir, replacing what an earlier upgrade left there.
func copyPreTrial(stateDir, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, n := range storeFiles {
		b, err := os.ReadFile(filepath.Join(stateDir, n))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// swapInPreTrial sets the store of stateDir aside into aside and moves the
// copy in before into its place. It does nothing (false) without a copy.
func swapInPreTrial(stateDir, before, aside string) (bool, error) {
	if _, err := os.Stat(filepath.Join(before, "rehost.db")); err != nil {
		return false, nil
	}
	if err := os.MkdirAll(aside, 0o700); err != nil {
		return false, err
	}
	for _, n := range storeFiles {
		if err := os.Rename(filepath.Join(stateDir, n), filepath.Join(aside, n)); err != nil && !os.IsNotExist(err) {
			return false, err
		}
	}
	for _, n := range storeFiles {
		if err := os.Rename(filepath.Join(before, n), filepath.Join(stateDir, n)); err != nil && !os.IsNotExist(err) {
			return false, err
		}
	}
	return true, os.Remove(before)
}
