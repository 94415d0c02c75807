package daemon

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rehost/rehost/connector/secret"
	"github.com/rehost/rehost/connector/version"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// A state backup is a tar of the state directory — the store (copied with
// SQLite's online backup while the daemon runs), master.key (which opens
// every sealed secret in it) and the TLS certificate and key — sealed with
// the backup key (secret.SealStream). The backup key is made once per
// state, kept sealed in the store, and shown to the administrator as a
// recovery code to keep elsewhere: restoring on a fresh appliance asks for
// it. No default key exists; without the code no backup opens.
const (
	settingBackupKey   = "backup-key"
	settingBackupShown = "backup-key-shown"
	settingBackupLast  = "backup-last"
	settingStateID     = "state-id"
	backupManifest     = "backup.json"
	backupDB           = "rehost.db"
)

// backupFiles are the state directory's files a backup carries besides
// the store: the secret key and the TLS certificate (so the restored
// connector keeps the fingerprint its users trust).
var backupFiles = []string{"master.key", "tls/cert.pem", "tls/key.pem"}

// BackupEvery is how often a registered daemon backs its state up to the
// staging bucket (0: never); KeepBackups is how many of its backups it
// keeps there.
var (
	BackupEvery = 24 * time.Hour
	KeepBackups = 14
)

// BackupInfo describes a backup: the manifest inside it, and where it went.
type BackupInfo struct {
	Format        int       `json:"format"`
	StateID       string    `json:"stateId"`
	Version       string    `json:"version"` // the connector's
	SchemaVersion int       `json:"schemaVersion"`
	CreatedAt     time.Time `json:"createdAt"`
	Files         []string  `json:"files"`
	// Bytes and Location (a file, or s3://bucket/key) are filled in by
	// the caller; Error says why the last automatic backup failed.
	Bytes    int64  `json:"bytes,omitempty"`
	Location string `json:"location,omitempty"`
	Error    string `json:"error,omitempty"`
}

// RecoveryCode writes a backup key as the administrator records it:
// "RBK1-" and the key in base32, in groups of four.
func RecoveryCode(key []byte) string {
	s := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(key)
	var groups []string
	for len(s) > 4 {
		groups, s = append(groups, s[:4]), s[4:]
	}
	return "RBK1-" + strings.Join(append(groups, s), "-")
}

// ParseRecoveryCode reads what RecoveryCode wrote, ignoring case, spaces
// and dashes.
func ParseRecoveryCode(code string) ([]byte, error) {
	s := strings.ToUpper(strings.NewReplacer("-", "", " ", "", "\n", "", "\r", "", "\t", "").Replace(code))
	rest, ok := strings.CutPrefix(s, "RBK1")
	if !ok {
		return nil, errors.New("not a backup recovery code (it starts RBK1-)")
	}
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(rest)
	if err != nil || len(key) != 32 {
		return nil, errors.New("the backup recovery code is mistyped: check it against the one recorded (RBK1- and 52 letters and digits)")
	}
	return key, nil
}

// BackupKey returns the state's backup key, making it (and the state's id)
// on first use.
func (d *Daemon) BackupKey(ctx context.Context) ([]byte, error) {
	var key []byte
	err := withFileLock(filepath.Join(d.Dir, "backup-key.lock"), func() error {
		sealed, err := d.Store.GetSetting(ctx, settingBackupKey)
		if err == nil {
			key, err = d.Box.Open(sealed)
			return err
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		key = make([]byte, 32)
		rand.Read(key)
		return d.Store.PutSetting(ctx, settingBackupKey, d.Box.Seal(key))
	})
	if err != nil {
		return nil, fmt.Errorf("backup key: %w", err)
	}
	return key, nil
}

// ShowBackupKey returns the recovery code and records that it was shown,
// so the status stops asking the administrator to record it.
func (d *Daemon) ShowBackupKey(ctx context.Context) (string, error) {
	key, err := d.BackupKey(ctx)
	if err != nil {
		return "", err
	}
	if err := d.Store.PutSetting(ctx, settingBackupShown, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return "", err
	}
	return RecoveryCode(key), nil
}

// BackupKeyShown reports when the recovery code was last shown (zero:
// never, and no backup can be restored until someone records it).
func (d *Daemon) BackupKeyShown(ctx context.Context) time.Time {
	b, err := d.Store.GetSetting(ctx, settingBackupShown)
	if err != nil {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339, string(b))
	return t
}

// StateID names this state in backup locations: made once, kept by a
// restore.
func (d *Daemon) StateID(ctx context.Context) (string, error) {
	b, err := d.Store.GetSetting(ctx, settingStateID)
	if err == nil {
		return string(b), nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	var r [6]byte
	rand.Read(r[:])
	id := "rh-" + hex.EncodeToString(r[:])
	if err := d.Store.PutSetting(ctx, settingStateID, []byte(id)); err != nil {
		return "", err
	}
	return id, nil
}

// Backup writes a sealed backup of the state directory to w while the
// daemon runs.
func (d *Daemon) Backup(ctx context.Context, w io.Writer) (BackupInfo, error) {
	info, err := d.backup(ctx, w)
	if err != nil {
		return info, fmt.Errorf("back up the state %s: %w", d.Dir, err)
	}
	return info, nil
}

func (d *Daemon) backup(ctx context.Context, w io.Writer) (BackupInfo, error) {
	var info BackupInfo
	bk, ok := d.Store.(store.Backuper)
	if !ok {
		return info, fmt.Errorf("the store (%T) cannot be backed up while in use", d.Store)
	}
	key, err := d.BackupKey(ctx)
	if err != nil {
		return info, err
	}
	id, err := d.StateID(ctx)
	if err != nil {
		return info, err
	}
	tmp, err := os.MkdirTemp(d.Dir, ".backup-")
	if err != nil {
		return info, err
	}
	defer os.RemoveAll(tmp)
	db := filepath.Join(tmp, backupDB)
	if err := bk.Backup(ctx, db); err != nil {
		return info, err
	}
	info = BackupInfo{Format: 1, StateID: id, Version: version.String(), CreatedAt: time.Now().UTC(), Files: append([]string{backupDB}, backupFiles...)}
	if sv, ok := d.Store.(interface {
		SchemaVersion(context.Context) (int, error)
	}); ok {
		info.SchemaVersion, _ = sv.SchemaVersion(ctx)
	}
	sealed, err := secret.SealStream(w, key)
	if err != nil {
		return info, err
	}
	tw := tar.NewWriter(sealed)
	manifest, _ := json.MarshalIndent(info, "", "  ")
	if err := tarBytes(tw, backupManifest, manifest, info.CreatedAt); err != nil {
		return info, err
	}
	if err := tarFile(tw, backupDB, db); err != nil {
		return info, err
	}
	for _, f := range backupFiles {
		if err := tarFile(tw, f, filepath.Join(d.Dir, filepath.FromSlash(f))); err != nil {
			return info, err
		}
	}
	if err := tw.Close(); err != nil {
		return info, err
	}
	return info, sealed.Close()
}

func tarBytes(tw *tar.Writer, name string, b []byte, at time.Time) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(b)), Mode: 0o600, ModTime: at}); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

func tarFile(tw *tar.Writer, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: st.Size(), Mode: 0o600, ModTime: st.ModTime()}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// BackupToBucket backs the state up into the staging bucket under
// awstarget.BackupPrefix, keeps the newest KeepBackups of this state there,
// and records the outcome for the status.
func (d *Daemon) BackupToBucket(ctx context.Context) (BackupInfo, error) {
	d.backupMu.Lock()
	defer d.backupMu.Unlock()
	return d.backupToBucketLocked(ctx)
}

// backupToBucketLocked is BackupToBucket under backupMu: backups one at a
// time, so the outcome recorded last is the newest backup's (the daily
// backup at start and one asked for over the API could otherwise finish out
// of order, and the status would name the older one).
func (d *Daemon) backupToBucketLocked(ctx context.Context) (BackupInfo, error) {
	info, err := d.backupToBucket(ctx)
	if err != nil {
		err = fmt.Errorf("back up the state to the staging bucket: %w", err)
		info.Error = err.Error()
	}
	if b, merr := json.Marshal(info); merr == nil {
		if perr := d.Store.PutSetting(ctx, settingBackupLast, b); perr != nil && err == nil {
			err = perr
		}
	}
	return info, err
}

func (d *Daemon) backupToBucket(ctx context.Context) (BackupInfo, error) {
	t, err := d.Target(ctx)
	if err != nil {
		return BackupInfo{}, err
	}
	f, err := os.CreateTemp(d.Dir, ".backup-*.rehost-backup")
	if err != nil {
		return BackupInfo{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	info, err := d.backup(ctx, f)
	if err != nil {
		return info, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return info, err
	}
	key := awstarget.BackupKey(info.StateID, info.CreatedAt)
	if err := t.PutBackup(ctx, key, f, size); err != nil {
		return info, err
	}
	info.Bytes, info.Location = size, "s3://"+t.Bucket()+"/"+key
	old, err := t.ListBackups(ctx, awstarget.BackupPrefix+info.StateID+"/")
	if err != nil {
		return info, err
	}
	for i := 0; i+KeepBackups < len(old); i++ {
		if err := t.DeleteBackup(ctx, old[i].Key); err != nil {
			return info, err
		}
	}
	return info, nil
}

// LastBackup is the outcome of the last backup to the staging bucket.
func (d *Daemon) LastBackup(ctx context.Context) (BackupInfo, bool) {
	var info BackupInfo
	b, err := d.Store.GetSetting(ctx, settingBackupLast)
	if err != nil || json.Unmarshal(b, &info) != nil {
		return info, false
	}
	return info, true
}

// backupDue reports whether the daily backup is due: the last good one is
// older than BackupEvery.
func (d *Daemon) backupDue(ctx context.Context) bool {
	if BackupEvery <= 0 {
		return false
	}
	last, ok := d.LastBackup(ctx)
	return !ok || last.Error != "" || time.Since(last.CreatedAt) >= BackupEvery
}

// autoBackup takes the daily backup when it is due, and removes what an
// interrupted backup left in the state directory.
func (d *Daemon) autoBackup(ctx context.Context) {
	stale, _ := filepath.Glob(filepath.Join(d.Dir, ".backup-*"))
	for _, p := range stale {
		if st, err := os.Stat(p); err == nil && time.Since(st.ModTime()) > time.Hour {
			os.RemoveAll(p)
		}
	}
	d.backupMu.Lock()
	defer d.backupMu.Unlock()
	if ctx.Err() != nil || !d.backupDue(ctx) {
		return
	}
	info, err := d.backupToBucketLocked(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.Log.Error("daily state backup failed; retried in 30 minutes", "err", err)
		}
		return
	}
	d.Log.Info("state backed up", "location", info.Location, "bytes", info.Bytes)
}
