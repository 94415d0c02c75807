-- Schema 9: incremental replication. A job in incremental mode copies only
-- what changed since its previous run into EBS direct replicas, and may run
-- every 15, 20 or 30 minutes; a run records what it moved and proved. What
-- the job keeps between runs — per disk the replica a next run writes on
-- top of, the source's change id and the manifest of every block's
-- checksum — lives in the replica tables, with the replica snapshots kept.

ALTER TABLE replication_jobs ADD COLUMN mode TEXT NOT NULL DEFAULT '';
ALTER TABLE replication_jobs ADD COLUMN frequency_minutes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE replication_jobs ADD COLUMN no_conversion INTEGER NOT NULL DEFAULT 0;
ALTER TABLE replication_jobs ADD COLUMN verify_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE replication_runs ADD COLUMN replication TEXT NOT NULL DEFAULT '';

CREATE TABLE replica_sets (
	job_id      TEXT PRIMARY KEY REFERENCES replication_jobs (replication_job_id),
	run_id      TEXT NOT NULL DEFAULT '',
	base        TEXT NOT NULL DEFAULT '',
	verified_at BIGINT,
	created_at  BIGINT NOT NULL,
	updated_at  BIGINT NOT NULL
);

CREATE TABLE replica_disks (
	job_id      TEXT NOT NULL REFERENCES replica_sets (job_id),
	disk_key    TEXT NOT NULL,
	disk_index  INTEGER NOT NULL,
	snapshot_id TEXT NOT NULL,
	seq         BIGINT NOT NULL,
	change_id   TEXT NOT NULL DEFAULT '',
	capacity    BIGINT NOT NULL,
	volume_gib  BIGINT NOT NULL,
	encrypted   INTEGER NOT NULL DEFAULT 0,
	kms_key_id  TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (job_id, disk_key)
);

CREATE TABLE replica_snapshots (
	snapshot_id TEXT PRIMARY KEY,
	job_id      TEXT NOT NULL,
	run_id      TEXT NOT NULL,
	disk_key    TEXT NOT NULL,
	seq         BIGINT NOT NULL,
	created_at  BIGINT NOT NULL
);
CREATE INDEX replica_snapshots_job ON replica_snapshots (job_id, created_at);

CREATE TABLE replica_manifests (
	job_id   TEXT NOT NULL,
	disk_key TEXT NOT NULL,
	chunk    BIGINT NOT NULL,
	seq      BIGINT NOT NULL,
	data     {{bytes}},
	PRIMARY KEY (job_id, disk_key, chunk, seq)
);
