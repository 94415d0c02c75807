-- Schema 7: a fleet of connectors sharing one store. Members heartbeat;
-- a run is leased to the member that runs it, and every lease carries a
-- fencing token one higher than the run's previous one, so a member that
-- lost its lease cannot write over the new holder's progress. The lease
-- columns are on the run: a run has at most one holder, and the token
-- survives the lease.

CREATE TABLE members (
	member_id    TEXT PRIMARY KEY,
	incarnation  TEXT NOT NULL,
	version      TEXT NOT NULL DEFAULT '',
	address      TEXT NOT NULL DEFAULT '',
	sources      TEXT NOT NULL DEFAULT '[]',
	capacity     INTEGER NOT NULL DEFAULT 0,
	joined_at    BIGINT NOT NULL,
	heartbeat_at BIGINT NOT NULL
);

ALTER TABLE replication_runs ADD COLUMN lease_holder TEXT NOT NULL DEFAULT '';
ALTER TABLE replication_runs ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
ALTER TABLE replication_runs ADD COLUMN lease_acquired BIGINT NOT NULL DEFAULT 0;
ALTER TABLE replication_runs ADD COLUMN lease_expires BIGINT NOT NULL DEFAULT 0;
CREATE INDEX replication_runs_lease ON replication_runs (lease_holder);

-- Named fleet-wide locks with an expiry: the scheduler's leadership.
CREATE TABLE fleet_locks (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_at BIGINT NOT NULL
);

-- VM Import slots per region, each held by a run's lease (its token): a
-- slot whose lease ended is free.
CREATE TABLE import_slots (
	region TEXT NOT NULL,
	slot   INTEGER NOT NULL,
	run_id TEXT NOT NULL,
	holder TEXT NOT NULL,
	token  BIGINT NOT NULL,
	PRIMARY KEY (region, slot)
);

-- One key per committed write transaction (PostgreSQL), kept an hour, so a
-- commit whose answer was lost with the connection is looked up rather
-- than applied twice.
CREATE TABLE tx_keys (
	tx_key       TEXT PRIMARY KEY,
	committed_at BIGINT NOT NULL
);
CREATE INDEX tx_keys_age ON tx_keys (committed_at);
