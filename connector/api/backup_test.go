package api_test

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/appliance/status"
	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/connector/daemon"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// Over HTTPS: the status says the backup key's recovery code has not been
// recorded until GetBackupKey shows it; a backup into the staging bucket
// lands under rehost-backup/ and the status reports it; a backup
// downloaded over the API restores, with that code, into a fresh state
// directory; a read-only key may take neither the code nor a backup. On
// the appliance the status carries the init's report: which system runs
// and why the last upgrade was rolled back.
func TestBackupAndApplianceStatusOverTheAPI(t *testing.T) {
	ctx := context.Background()
	statusFile := filepath.Join(t.TempDir(), "status.json")
	reason := "system B (version 1.5.0) gave up its trial: its connector exited 3 times (exit status 1: open state: …)"
	if err := status.Write(statusFile, status.Report{Version: "1.4.0", System: "A", SecureBoot: "enabled", SigningKey: "SHA256:x",
		Upgrade: &status.Upgrade{State: status.RolledBack, From: "1.4.0", To: "1.5.0", System: "B", Reason: reason, At: time.Now().UTC()}}); err != nil {
		t.Fatal(err)
	}
	c := apitest.Start(t, apitest.Options{ApplianceStatus: statusFile})
	cl := newClient(t, c, c.Key.ID, c.Key.Secret)

	st, err := cl.GetConnectorStatus(ctx, &api.GetConnectorStatusInput{})
	if err != nil {
		t.Fatal(err)
	}
	if a := st.Appliance; a == nil || a.System != "A" || a.SecureBoot != "enabled" || a.Upgrade == nil ||
		a.Upgrade.State != status.RolledBack || a.Upgrade.Reason != reason {
		t.Fatalf("appliance status %+v", st.Appliance)
	}
	if st.Backup.KeyRecorded || st.Backup.EverySeconds != int64(daemon.BackupEvery.Seconds()) {
		t.Errorf("backup status before the code was shown: %+v", st.Backup)
	}
	k, err := cl.GetBackupKey(ctx, &api.GetBackupKeyInput{})
	if err != nil || !strings.HasPrefix(k.RecoveryCode, "RBK1-") {
		t.Fatalf("GetBackupKey: %+v, %v", k, err)
	}
	out, err := cl.BackupStateToBucket(ctx, &api.BackupStateToBucketInput{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.Location, "/"+awstarget.BackupPrefix+out.StateID+"/") || out.Bytes == 0 {
		t.Errorf("backup to the bucket: %+v", out)
	}
	st, err = cl.GetConnectorStatus(ctx, &api.GetConnectorStatusInput{})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Backup.KeyRecorded || st.Backup.Last == nil || st.Backup.Last.Error != "" || st.Backup.Last.CreatedAt.Before(out.CreatedAt.Time) {
		t.Errorf("backup status after a backup: %+v (last %+v)", st.Backup, st.Backup.Last)
	}

	// Backups asked for at once (as the daily one at start and one over the
	// API can be) go one at a time: the status names the newest.
	outs := make(chan *api.BackupStateOutput, 3)
	for range 3 {
		go func() {
			o, err := cl.BackupStateToBucket(ctx, &api.BackupStateToBucketInput{})
			if err != nil {
				t.Error(err)
			}
			outs <- o
		}()
	}
	var newest time.Time
	for range 3 {
		if o := <-outs; o != nil && o.CreatedAt.After(newest) {
			newest = o.CreatedAt.Time
		}
	}
	st, err = cl.GetConnectorStatus(ctx, &api.GetConnectorStatusInput{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Backup.Last == nil || !st.Backup.Last.CreatedAt.Equal(newest) {
		t.Errorf("after 3 backups at once the status names %+v, the newest was made at %v", st.Backup.Last, newest)
	}

	var backup bytes.Buffer
	if err := cl.BackupState(ctx, &backup); err != nil {
		t.Fatal(err)
	}
	key, err := daemon.ParseRecoveryCode(k.RecoveryCode)
	if err != nil {
		t.Fatal(err)
	}
	fresh := t.TempDir()
	info, err := daemon.Restore(ctx, fresh, bytes.NewReader(backup.Bytes()), key, false)
	if err != nil {
		t.Fatalf("restore the downloaded backup: %v", err)
	}
	r, err := daemon.OpenExisting(ctx, fresh, daemon.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if reg, err := r.Registration(ctx); err != nil || reg.SecretAccessKey == "" || info.StateID != out.StateID {
		t.Errorf("the restored registration: %v (state %s, want %s)", err, info.StateID, out.StateID)
	}

	ro, err := c.D.CreateAccessKey(ctx, "reader", true)
	if err != nil {
		t.Fatal(err)
	}
	rcl := newClient(t, c, ro.ID, ro.Secret)
	if _, err := rcl.GetBackupKey(ctx, &api.GetBackupKeyInput{}); !api.IsType(err, api.ErrUnauthorizedOperation) {
		t.Errorf("GetBackupKey with a read-only key: %v", err)
	}
	if err := rcl.BackupState(ctx, &bytes.Buffer{}); !api.IsType(err, api.ErrUnauthorizedOperation) {
		t.Errorf("a backup with a read-only key: %v", err)
	}
}
