-- Schema 1. Portable SQL (SQLite and PostgreSQL): times are unix nanoseconds
-- in BIGINT (NULL when unset), booleans are INTEGER 0/1, JSON is TEXT.
-- {{autoid}} and {{bytes}} are replaced per dialect.

CREATE TABLE sources (
	id          TEXT PRIMARY KEY,
	kind        TEXT NOT NULL,
	name        TEXT NOT NULL UNIQUE,
	endpoint    TEXT NOT NULL DEFAULT '',
	username    TEXT NOT NULL DEFAULT '',
	secret      {{bytes}},
	thumbprint  TEXT NOT NULL DEFAULT '',
	insecure    INTEGER NOT NULL DEFAULT 0,
	created_at  BIGINT NOT NULL
);

CREATE TABLE servers (
	server_id   TEXT PRIMARY KEY,
	source_id   TEXT NOT NULL REFERENCES sources (id),
	vm_id       TEXT NOT NULL,
	name        TEXT NOT NULL DEFAULT '',
	path        TEXT NOT NULL DEFAULT '',
	guest_os    TEXT NOT NULL DEFAULT '',
	firmware    TEXT NOT NULL DEFAULT '',
	cpus        INTEGER NOT NULL DEFAULT 0,
	memory_mib  BIGINT NOT NULL DEFAULT 0,
	disk_count  INTEGER NOT NULL DEFAULT 0,
	details     TEXT NOT NULL DEFAULT '',
	imported_at BIGINT NOT NULL,
	UNIQUE (source_id, vm_id)
);

CREATE TABLE replication_jobs (
	replication_job_id              TEXT PRIMARY KEY,
	server_id                       TEXT NOT NULL REFERENCES servers (server_id),
	seed_replication_time           BIGINT NOT NULL,
	frequency                       INTEGER NOT NULL,
	run_once                        INTEGER NOT NULL DEFAULT 0,
	license_type                    TEXT NOT NULL,
	role_name                       TEXT NOT NULL DEFAULT '',
	number_of_recent_amis_to_keep   INTEGER NOT NULL DEFAULT 0,
	encrypted                       INTEGER NOT NULL DEFAULT 0,
	kms_key_id                      TEXT NOT NULL DEFAULT '',
	description                     TEXT NOT NULL DEFAULT '',
	state                           TEXT NOT NULL,
	status_message                  TEXT NOT NULL DEFAULT '',
	next_replication_run_start_time BIGINT,
	latest_ami_id                   TEXT NOT NULL DEFAULT '',
	consecutive_failures            INTEGER NOT NULL DEFAULT 0,
	created_at                      BIGINT NOT NULL,
	updated_at                      BIGINT NOT NULL
);
-- One job per server; deleted jobs do not count.
CREATE UNIQUE INDEX replication_jobs_one_per_server ON replication_jobs (server_id) WHERE state <> 'DELETED';
CREATE INDEX replication_jobs_state ON replication_jobs (state);

CREATE TABLE replication_runs (
	replication_run_id   TEXT PRIMARY KEY,
	replication_job_id   TEXT NOT NULL REFERENCES replication_jobs (replication_job_id),
	run_type             TEXT NOT NULL,
	state                TEXT NOT NULL,
	stage                TEXT NOT NULL DEFAULT '',
	stage_progress       TEXT NOT NULL DEFAULT '',
	status_message       TEXT NOT NULL DEFAULT '',
	ami_id               TEXT NOT NULL DEFAULT '',
	scheduled_start_time BIGINT,
	started_at           BIGINT,
	completed_time       BIGINT,
	description          TEXT NOT NULL DEFAULT '',
	encrypted            INTEGER NOT NULL DEFAULT 0,
	kms_key_id           TEXT NOT NULL DEFAULT '',
	created_at           BIGINT NOT NULL
);
-- At most one PENDING or ACTIVE run per job.
CREATE UNIQUE INDEX replication_runs_one_live ON replication_runs (replication_job_id) WHERE state IN ('PENDING', 'ACTIVE');
CREATE INDEX replication_runs_job ON replication_runs (replication_job_id, scheduled_start_time);
CREATE INDEX replication_runs_state ON replication_runs (state);

CREATE TABLE ledger (
	id          {{autoid}},
	run_id      TEXT NOT NULL REFERENCES replication_runs (replication_run_id),
	step        TEXT NOT NULL,
	kind        TEXT NOT NULL,
	intent      TEXT NOT NULL DEFAULT '',
	resource_id TEXT NOT NULL DEFAULT '',
	state       TEXT NOT NULL,
	data        TEXT NOT NULL DEFAULT '',
	created_at  BIGINT NOT NULL,
	updated_at  BIGINT NOT NULL
);
CREATE INDEX ledger_run ON ledger (run_id, id);
CREATE INDEX ledger_state ON ledger (state);

CREATE TABLE run_steps (
	run_id     TEXT NOT NULL REFERENCES replication_runs (replication_run_id),
	step       TEXT NOT NULL,
	seq        INTEGER NOT NULL,
	state      TEXT NOT NULL,
	error      TEXT NOT NULL DEFAULT '',
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (run_id, step)
);

-- Events outlive what they mention, so no foreign keys.
CREATE TABLE events (
	id         {{autoid}},
	event_time BIGINT NOT NULL,
	job_id     TEXT NOT NULL DEFAULT '',
	run_id     TEXT NOT NULL DEFAULT '',
	level      TEXT NOT NULL,
	message    TEXT NOT NULL
);
CREATE INDEX events_job ON events (job_id, id);
CREATE INDEX events_run ON events (run_id, id);

CREATE TABLE apps (
	app_id      TEXT PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	description TEXT NOT NULL DEFAULT '',
	server_ids  TEXT NOT NULL DEFAULT '[]',
	created_at  BIGINT NOT NULL,
	updated_at  BIGINT NOT NULL
);

CREATE TABLE settings (
	setting_key TEXT PRIMARY KEY,
	value       {{bytes}},
	updated_at  BIGINT NOT NULL
);
