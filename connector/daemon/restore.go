package daemon

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/rehost/rehost/connector/secret"
	"github.com/rehost/rehost/pkg/store"
)

// ErrHasState is returned by Restore for a state directory that holds a
// connector's state (a registration, sources or jobs) when force is not
// set: a restore replaces it.
var ErrHasState = errors.New("the state directory holds a connector's state")

// Restore replaces the state in dir with the backup read from r, opened
// with key (the recovery code's). No daemon may serve dir. What the backup
// holds is checked before anything in dir changes — it opens with the
// key, its store opens and migrates, its master.key opens its sealed
// registration — and then each file is renamed into place, the store's
// old WAL removed first. The next `rehost serve` on dir resumes the runs
// the backup's ledger shows in progress, as after a restart.
func Restore(ctx context.Context, dir string, r io.Reader, key []byte, force bool) (BackupInfo, error) {
	info, err := restore(ctx, dir, r, key, force)
	if err != nil {
		return info, fmt.Errorf("restore the state into %s: %w", dir, err)
	}
	return info, nil
}

func restore(ctx context.Context, dir string, r io.Reader, key []byte, force bool) (BackupInfo, error) {
	var info BackupInfo
	if served, ok, err := Serving(dir); err != nil {
		return info, err
	} else if ok {
		return info, fmt.Errorf("%w: 'rehost serve' (pid %d) serves it: stop it first (on the appliance, restore from the console menu)", ErrInUse, served.PID)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return info, err
	}
	if !force {
		if err := checkEmpty(ctx, dir); err != nil {
			return info, err
		}
	}
	tmp, err := os.MkdirTemp(dir, ".restore-")
	if err != nil {
		return info, err
	}
	defer os.RemoveAll(tmp)
	pr, err := secret.OpenStream(r, key)
	if err != nil {
		return info, err
	}
	tr := tar.NewReader(pr)
	want := append([]string{backupManifest, backupDB}, backupFiles...)
	got := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, secret.ErrStream) {
			return info, fmt.Errorf("the recovery code does not open this backup (another appliance's code, or the file is damaged): %w", err)
		}
		if err != nil {
			return info, fmt.Errorf("read the backup: %w", err)
		}
		if h.Typeflag != tar.TypeReg || !slices.Contains(want, h.Name) || got[h.Name] {
			return info, fmt.Errorf("the backup holds %q, which a rehost backup does not", h.Name)
		}
		got[h.Name] = true
		p := filepath.Join(tmp, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return info, err
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return info, err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if errors.Is(err, secret.ErrStream) {
			return info, fmt.Errorf("the recovery code does not open this backup (another appliance's code, or the file is damaged): %w", err)
		}
		if err != nil {
			return info, fmt.Errorf("read %s from the backup: %w", h.Name, err)
		}
	}
	// The stream's end is checked by the last read: a backup cut short
	// fails above. Every file must be there.
	for _, n := range want {
		if !got[n] {
			return info, fmt.Errorf("the backup lacks %s", n)
		}
	}
	b, err := os.ReadFile(filepath.Join(tmp, backupManifest))
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(b, &info); err != nil || info.Format != 1 {
		return info, fmt.Errorf("the backup's manifest is not one this rehost reads (format %d): %v", info.Format, err)
	}
	if err := checkRestored(ctx, tmp); err != nil {
		return info, err
	}
	// In place: the old store's WAL and shared memory first, so SQLite
	// never replays the old WAL onto the restored database.
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(filepath.Join(dir, backupDB+suffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return info, err
		}
	}
	for _, n := range append([]string{backupDB}, backupFiles...) {
		dst := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return info, err
		}
		if err := os.Rename(filepath.Join(tmp, filepath.FromSlash(n)), dst); err != nil {
			return info, err
		}
	}
	return info, syncDir(dir)
}

// checkEmpty refuses a state directory whose store holds a registration,
// sources or jobs.
func checkEmpty(ctx context.Context, dir string) error {
	if _, err := os.Stat(filepath.Join(dir, backupDB)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	st, err := store.OpenSQLite(filepath.Join(dir, backupDB))
	if err != nil {
		return err
	}
	defer st.Close()
	_, regErr := st.GetSetting(ctx, settingAWS)
	srcs, err := st.ListSources(ctx)
	if err != nil {
		return err
	}
	jobs, err := st.ListJobs(ctx, store.JobFilter{})
	if err != nil {
		return err
	}
	if regErr == nil || len(srcs) > 0 || len(jobs) > 0 {
		return fmt.Errorf("%w (registered: %v, %d sources, %d jobs): a restore replaces it; pass --force to do so", ErrHasState, regErr == nil, len(srcs), len(jobs))
	}
	return nil
}

// checkRestored opens what was restored into tmp: the store opens (and
// migrates, when the backup is older), and its master.key opens the
// sealed registration.
func checkRestored(ctx context.Context, tmp string) error {
	d, err := Open(ctx, tmp, Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("the backup's state does not open: %w", err)
	}
	defer d.Close()
	if ok, err := d.Registered(ctx); err != nil {
		return err
	} else if ok {
		if _, err := d.Registration(ctx); err != nil {
			return fmt.Errorf("the backup's master.key does not open its registration: %w", err)
		}
	}
	return nil
}

// syncDir makes the renames durable where the platform can sync a
// directory; elsewhere it is best effort.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	f.Sync()
	return nil
}

// OpenBucketBackup opens a backup in a staging bucket for a restore on an
// appliance that is not registered yet: s names the bucket, its region
// and endpoint, and credentials (none: the AWS default chain). A key
// ending in "/" (a state's prefix) opens the newest backup under it. It
// returns the reader and the backup's key.
func OpenBucketBackup(ctx context.Context, s AWSSettings, key string) (io.ReadCloser, string, error) {
	t, err := newTarget(ctx, s, slog.New(slog.DiscardHandler), nil, stageTuning{})
	if err != nil {
		return nil, "", err
	}
	if key == "" || key[len(key)-1] == '/' {
		objs, err := t.ListBackups(ctx, key)
		if err != nil {
			return nil, "", err
		}
		if len(objs) == 0 {
			return nil, "", fmt.Errorf("no backup under s3://%s/%s", s.Bucket, key)
		}
		key = objs[len(objs)-1].Key
	}
	r, err := t.GetBackup(ctx, key)
	return r, key, err
}
