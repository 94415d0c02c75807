package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// --- replicas (the Replicas role) ---

func (s *sqlStore) getReplicaSet(ctx context.Context, q querier, jobID string) (ReplicaSet, error) {
	set := ReplicaSet{JobID: jobID}
	var base string
	var verified, created, updated sql.NullInt64
	err := s.queryRow(ctx, q, `SELECT run_id, base, verified_at, created_at, updated_at FROM replica_sets WHERE job_id = ?`, jobID).
		Scan(&set.RunID, &base, &verified, &created, &updated)
	if err != nil {
		return ReplicaSet{}, notFound(err, "replica set of job "+jobID)
	}
	set.Base, set.VerifiedAt, set.CreatedAt, set.UpdatedAt = jsonOf(base), timeOf(verified), timeOf(created), timeOf(updated)
	rows, err := s.query(ctx, q, `SELECT disk_index, disk_key, snapshot_id, seq, change_id, capacity, volume_gib, encrypted, kms_key_id
	FROM replica_disks WHERE job_id = ? ORDER BY disk_index, disk_key`, jobID)
	if err != nil {
		return ReplicaSet{}, err
	}
	set.Disks, err = collect(rows, func(r scanner) (ReplicaDisk, error) {
		var d ReplicaDisk
		var enc int
		err := r.Scan(&d.Disk, &d.Key, &d.SnapshotID, &d.Seq, &d.ChangeID, &d.Capacity, &d.VolumeGiB, &enc, &d.KMSKeyID)
		d.Encrypted = enc != 0
		return d, err
	}, "read the disks of the replica set of job "+jobID)
	return set, err
}

func (s *sqlStore) GetReplicaSet(ctx context.Context, jobID string) (ReplicaSet, error) {
	set, err := s.getReplicaSet(ctx, s.db, jobID)
	if err != nil {
		return ReplicaSet{}, fmt.Errorf("get the replica set of job %s: %w", jobID, err)
	}
	return set, nil
}

func (s *sqlStore) CommitReplicaSet(ctx context.Context, set ReplicaSet, made []ReplicaSnapshot) error {
	if err := validateReplicaSet(set); err != nil {
		return fmt.Errorf("commit the replica set: %w", err)
	}
	set.UpdatedAt = s.now()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.getJob(ctx, tx, set.JobID); err != nil {
			return err
		}
		set.CreatedAt = set.UpdatedAt
		if old, err := s.getReplicaSet(ctx, tx, set.JobID); err == nil {
			set.CreatedAt = old.CreatedAt
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM replica_disks WHERE job_id = ?`, set.JobID); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM replica_sets WHERE job_id = ?`, set.JobID); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO replica_sets (job_id, run_id, base, verified_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
			set.JobID, set.RunID, jsonArg(set.Base), timeArg(set.VerifiedAt), timeArg(set.CreatedAt), timeArg(set.UpdatedAt)); err != nil {
			return err
		}
		for _, d := range set.Disks {
			if _, err := s.exec(ctx, tx, `INSERT INTO replica_disks (job_id, disk_key, disk_index, snapshot_id, seq, change_id, capacity, volume_gib, encrypted, kms_key_id)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, set.JobID, d.Key, d.Disk, d.SnapshotID, d.Seq, d.ChangeID, d.Capacity, d.VolumeGiB, boolArg(d.Encrypted), d.KMSKeyID); err != nil {
				return err
			}
			// Each chunk keeps its newest version at or below the head;
			// versions above it belong to a run still writing.
			if _, err := s.exec(ctx, tx, `DELETE FROM replica_manifests WHERE job_id = ? AND disk_key = ? AND seq < ? AND seq < (
				SELECT MAX(m.seq) FROM replica_manifests m WHERE m.job_id = replica_manifests.job_id AND m.disk_key = replica_manifests.disk_key
				AND m.chunk = replica_manifests.chunk AND m.seq <= ?)`, set.JobID, d.Key, d.Seq, d.Seq); err != nil {
				return err
			}
		}
		for _, m := range made {
			if m.SnapshotID == "" {
				return fmt.Errorf("%w: a replica snapshot without an id", ErrInvalid)
			}
			if m.CreatedAt.IsZero() {
				m.CreatedAt = set.UpdatedAt
			}
			if _, err := s.exec(ctx, tx, `DELETE FROM replica_snapshots WHERE snapshot_id = ?`, m.SnapshotID); err != nil {
				return err
			}
			if _, err := s.exec(ctx, tx, `INSERT INTO replica_snapshots (snapshot_id, job_id, run_id, disk_key, seq, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
				m.SnapshotID, set.JobID, m.RunID, m.DiskKey, m.Seq, timeArg(m.CreatedAt)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("commit the replica set of job %s: %w", set.JobID, err)
	}
	return nil
}

func (s *sqlStore) UpdateReplicaSet(ctx context.Context, jobID string, fn func(*ReplicaSet) error) (ReplicaSet, error) {
	var out ReplicaSet
	err := s.tx(ctx, func(tx *sql.Tx) error {
		set, err := s.getReplicaSet(ctx, tx, jobID)
		if err != nil {
			return err
		}
		if err := fn(&set); err != nil {
			return err
		}
		set.JobID, set.UpdatedAt = jobID, s.now()
		if err := validateReplicaSet(set); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `UPDATE replica_sets SET run_id = ?, base = ?, verified_at = ?, updated_at = ? WHERE job_id = ?`,
			set.RunID, jsonArg(set.Base), timeArg(set.VerifiedAt), timeArg(set.UpdatedAt), jobID); err != nil {
			return err
		}
		out = set
		return nil
	})
	if err != nil {
		return ReplicaSet{}, fmt.Errorf("update the replica set of job %s: %w", jobID, err)
	}
	return out, nil
}

func (s *sqlStore) DeleteReplicaSet(ctx context.Context, jobID string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{`DELETE FROM replica_disks WHERE job_id = ?`, `DELETE FROM replica_sets WHERE job_id = ?`,
			`DELETE FROM replica_snapshots WHERE job_id = ?`, `DELETE FROM replica_manifests WHERE job_id = ?`} {
			if _, err := s.exec(ctx, tx, q, jobID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete the replicas of job %s: %w", jobID, err)
	}
	return nil
}

func (s *sqlStore) ReplicaSnapshots(ctx context.Context, jobID string) ([]ReplicaSnapshot, error) {
	q := `SELECT snapshot_id, job_id, run_id, disk_key, seq, created_at FROM replica_snapshots`
	var args []any
	if jobID != "" {
		q += ` WHERE job_id = ?`
		args = append(args, jobID)
	}
	rows, err := s.query(ctx, s.db, q+` ORDER BY created_at, seq, snapshot_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list replica snapshots: %w", err)
	}
	return collect(rows, func(r scanner) (ReplicaSnapshot, error) {
		var m ReplicaSnapshot
		var created sql.NullInt64
		err := r.Scan(&m.SnapshotID, &m.JobID, &m.RunID, &m.DiskKey, &m.Seq, &created)
		m.CreatedAt = timeOf(created)
		return m, err
	}, "list replica snapshots")
}

func (s *sqlStore) ForgetReplicaSnapshot(ctx context.Context, snapshotID string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var job string
		err := s.queryRow(ctx, tx, `SELECT job_id FROM replica_disks WHERE snapshot_id = ?`, snapshotID).Scan(&job)
		if err == nil {
			return fmt.Errorf("%w: it is the head of a chain of job %s", ErrConflict, job)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		_, err = s.exec(ctx, tx, `DELETE FROM replica_snapshots WHERE snapshot_id = ?`, snapshotID)
		return err
	})
	if err != nil {
		return fmt.Errorf("forget replica snapshot %s: %w", snapshotID, err)
	}
	return nil
}

func (s *sqlStore) PutManifestChunk(ctx context.Context, c ManifestChunk) error {
	if c.JobID == "" || c.DiskKey == "" || c.Chunk < 0 {
		return fmt.Errorf("%w: manifest chunk %d of disk %q of job %q", ErrInvalid, c.Chunk, c.DiskKey, c.JobID)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM replica_manifests WHERE job_id = ? AND disk_key = ? AND chunk = ? AND seq = ?`,
			c.JobID, c.DiskKey, c.Chunk, c.Seq); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `INSERT INTO replica_manifests (job_id, disk_key, chunk, seq, data) VALUES (?, ?, ?, ?, ?)`,
			c.JobID, c.DiskKey, c.Chunk, c.Seq, c.Data)
		return err
	})
	if err != nil {
		return fmt.Errorf("store manifest chunk %d of disk %s of job %s: %w", c.Chunk, c.DiskKey, c.JobID, err)
	}
	return nil
}

func (s *sqlStore) ManifestChunk(ctx context.Context, jobID, diskKey string, chunk, seq int64) (ManifestChunk, error) {
	c := ManifestChunk{JobID: jobID, DiskKey: diskKey, Chunk: chunk}
	err := s.queryRow(ctx, s.db, `SELECT seq, data FROM replica_manifests WHERE job_id = ? AND disk_key = ? AND chunk = ? AND seq <= ?
	ORDER BY seq DESC LIMIT 1`, jobID, diskKey, chunk, seq).Scan(&c.Seq, &c.Data)
	if err != nil {
		return ManifestChunk{}, fmt.Errorf("read manifest chunk %d of disk %s of job %s: %w", chunk, diskKey, jobID,
			notFound(err, fmt.Sprintf("manifest chunk %d as of %d", chunk, seq)))
	}
	return c, nil
}

func (s *sqlStore) DropManifest(ctx context.Context, jobID, diskKey string, fromSeq int64) error {
	if _, err := s.exec(ctx, s.db, `DELETE FROM replica_manifests WHERE job_id = ? AND disk_key = ? AND seq >= ?`, jobID, diskKey, fromSeq); err != nil {
		return fmt.Errorf("drop the manifest of disk %s of job %s from %d: %w", diskKey, jobID, fromSeq, err)
	}
	return nil
}
