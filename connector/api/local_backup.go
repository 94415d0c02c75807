package api

import (
	"context"
	"io"

	"github.com/rehost/rehost/connector/daemon"
)

// BackupState writes the sealed backup of the state to w.
func (l *Local) BackupState(ctx context.Context, w io.Writer) error {
	if _, err := l.D.Backup(ctx, w); err != nil {
		return internal(err)
	}
	return nil
}

// BackupStateToBucket backs the state up into the staging bucket.
func (l *Local) BackupStateToBucket(ctx context.Context, _ *BackupStateToBucketInput) (*BackupStateOutput, error) {
	info, err := l.D.BackupToBucket(ctx)
	if err != nil {
		if reg, rerr := l.D.Registered(ctx); rerr == nil && !reg {
			return nil, Errorf(ErrInvalidParameter, "the connector is not registered, so it has no staging bucket: back up to a file instead (rehost state backup --out FILE)")
		}
		return nil, internal(err)
	}
	out := backupOutput(info)
	return &out, nil
}

// GetBackupKey returns the backup key's recovery code.
func (l *Local) GetBackupKey(ctx context.Context, _ *GetBackupKeyInput) (*GetBackupKeyOutput, error) {
	code, err := l.D.ShowBackupKey(ctx)
	if err != nil {
		return nil, internal(err)
	}
	return &GetBackupKeyOutput{RecoveryCode: code}, nil
}

func backupOutput(info daemon.BackupInfo) BackupStateOutput {
	return BackupStateOutput{Location: info.Location, Bytes: info.Bytes, CreatedAt: At(info.CreatedAt), StateID: info.StateID,
		Version: info.Version, Error: info.Error}
}

// backupStatus is the status's backup section.
func (l *Local) backupStatus(ctx context.Context) BackupStatus {
	st := BackupStatus{EverySeconds: int64(daemon.BackupEvery.Seconds())}
	if at := l.D.BackupKeyShown(ctx); !at.IsZero() {
		st.KeyRecorded, st.KeyShownAt = true, At(at)
	}
	if info, ok := l.D.LastBackup(ctx); ok {
		out := backupOutput(info)
		st.Last = &out
	}
	return st
}
