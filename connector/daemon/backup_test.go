package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

func quiet() Options { return Options{Log: slog.New(slog.DiscardHandler)} }

// A backup of a state restores into a fresh state directory (one a first
// boot made, with its own key and certificate) as that state: its sealed
// source password opens with the restored key, its access keys, jobs and
// runs (an active one too) are there, and so is its certificate. The
// backup shows none of it in the clear; another code, a damaged or cut
// file, a state in use and a state holding a connector are refused, and
// a refused restore changes nothing.
func TestBackupRestoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := Open(ctx, dir, quiet())
	if err != nil {
		t.Fatal(err)
	}
	const password = "vcenter-p@ssw0rd-never-in-clear"
	src, err := d.Store.CreateSource(ctx, store.Source{Kind: store.SourceVSphere, Name: "vc1", Endpoint: "https://vc1", Secret: d.Box.Seal([]byte(password))})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := d.Store.UpsertServer(ctx, store.Server{SourceID: src.ID, VMID: "vm-1", Name: "web-01"})
	if err != nil {
		t.Fatal(err)
	}
	job, err := d.Store.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, SeedReplicationTime: time.Now(), Frequency: 12, LicenseType: store.LicenseAWS})
	if err != nil {
		t.Fatal(err)
	}
	runs, err := d.Store.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, Type: store.RunOnDemand, ScheduledStartTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	run := runs[0]
	if _, err := d.Store.UpdateRun(ctx, run.ReplicationRunID, func(r *store.ReplicationRun) error {
		r.State, r.StartedAt = store.RunActive, time.Now()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ak, err := d.CreateAccessKey(ctx, "laptop", false)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "tls"), 0o700)
	os.WriteFile(filepath.Join(dir, "tls", "cert.pem"), []byte("certificate of the first appliance"), 0o600)
	os.WriteFile(filepath.Join(dir, "tls", "key.pem"), []byte("its private key"), 0o600)

	var backup bytes.Buffer
	info, err := d.Backup(ctx, &backup)
	if err != nil {
		t.Fatal(err)
	}
	code, err := d.ShowBackupKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if info.StateID == "" || info.SchemaVersion == 0 {
		t.Errorf("backup info %+v", info)
	}
	for _, clear := range []string{password, ak.Secret, "SQLite format 3", "its private key"} {
		if bytes.Contains(backup.Bytes(), []byte(clear)) {
			t.Errorf("the backup shows %q in the clear", clear)
		}
	}
	key, err := ParseRecoveryCode(strings.ToLower(code))
	if err != nil {
		t.Fatalf("recovery code %q: %v", code, err)
	}

	// A fresh appliance: its own key, an empty store.
	fresh := t.TempDir()
	f, err := Open(ctx, fresh, quiet())
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	freshKey, _ := os.ReadFile(filepath.Join(fresh, "master.key"))

	other := make([]byte, 32)
	refused := map[string]struct {
		backup []byte
		key    []byte
	}{
		"another code": {backup.Bytes(), other},
		"cut short":    {backup.Bytes()[:backup.Len()-100], key},
		"damaged":      {append(append([]byte{}, backup.Bytes()[:backup.Len()/2]...), append([]byte{backup.Bytes()[backup.Len()/2] ^ 1}, backup.Bytes()[backup.Len()/2+1:]...)...), key},
	}
	for name, c := range refused {
		if _, err := Restore(ctx, fresh, bytes.NewReader(c.backup), c.key, false); err == nil {
			t.Errorf("%s: restored", name)
		}
		if k, _ := os.ReadFile(filepath.Join(fresh, "master.key")); !bytes.Equal(k, freshKey) {
			t.Fatalf("%s: the refused restore changed master.key", name)
		}
	}

	got, err := Restore(ctx, fresh, bytes.NewReader(backup.Bytes()), key, false)
	if err != nil {
		t.Fatal(err)
	}
	if got.StateID != info.StateID {
		t.Errorf("restored state %s, backed up %s", got.StateID, info.StateID)
	}
	r, err := OpenExisting(ctx, fresh, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := r.Store.GetSource(ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	if pw, err := r.Box.Open(s.Secret); err != nil || string(pw) != password {
		t.Errorf("the restored source's password: %q, %v", pw, err)
	}
	if rr, err := r.Store.GetRun(ctx, run.ReplicationRunID); err != nil || rr.State != store.RunActive {
		t.Errorf("the restored run: %+v, %v", rr, err)
	}
	keys, err := r.AccessKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != ak.ID {
		t.Errorf("restored access keys %+v, %v", keys, err)
	}
	if c, _ := os.ReadFile(filepath.Join(fresh, "tls", "cert.pem")); string(c) != "certificate of the first appliance" {
		t.Errorf("restored certificate %q", c)
	}
	if id, _ := r.StateID(ctx); id != info.StateID {
		t.Errorf("the restored state's id %s, want %s", id, info.StateID)
	}

	// Now it holds a connector: a second restore needs --force.
	if _, err := Restore(ctx, fresh, bytes.NewReader(backup.Bytes()), key, false); !errors.Is(err, ErrHasState) {
		t.Errorf("a restore over a connector's state: %v, want ErrHasState", err)
	}
	lock, err := LockServe(fresh, ServeInfo{PID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(ctx, fresh, bytes.NewReader(backup.Bytes()), key, true); !errors.Is(err, ErrInUse) {
		t.Errorf("a restore into a served state: %v, want ErrInUse", err)
	}
	lock.Release()
	if _, err := Restore(ctx, fresh, io.LimitReader(bytes.NewReader(backup.Bytes()), 0), key, true); err == nil {
		t.Error("an empty file restored")
	}
	if _, err := ParseRecoveryCode("RBK1-AAAA"); err == nil {
		t.Error("a short recovery code is accepted")
	}
}
