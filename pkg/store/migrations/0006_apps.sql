-- Schema 6: applications on SMS's model. Server groups, tags and the launch
-- and replication configurations are JSON text; app_servers makes "a
-- server belongs to one group of one app" a primary key; app_launches
-- records each launch (a CloudFormation stack) before it is made, so a
-- restarted connector finds it again. No release could create an app
-- (nothing called the store's app methods), so the old table is replaced.

DROP TABLE apps;

CREATE TABLE apps (
	app_id              TEXT PRIMARY KEY,
	name                TEXT NOT NULL UNIQUE,
	description         TEXT NOT NULL DEFAULT '',
	role_name           TEXT NOT NULL DEFAULT '',
	server_groups       TEXT NOT NULL DEFAULT '[]',
	tags                TEXT NOT NULL DEFAULT '',
	launch_config       TEXT NOT NULL DEFAULT '',
	replication_config  TEXT NOT NULL DEFAULT '',
	replication_stopped INTEGER NOT NULL DEFAULT 0,
	created_at          BIGINT NOT NULL,
	updated_at          BIGINT NOT NULL
);

CREATE TABLE app_servers (
	server_id TEXT PRIMARY KEY REFERENCES servers (server_id),
	app_id    TEXT NOT NULL REFERENCES apps (app_id),
	group_id  TEXT NOT NULL
);
CREATE INDEX app_servers_app ON app_servers (app_id);

CREATE TABLE app_launches (
	launch_id      TEXT PRIMARY KEY,
	app_id         TEXT NOT NULL REFERENCES apps (app_id),
	kind           TEXT NOT NULL,
	state          TEXT NOT NULL,
	stack_name     TEXT NOT NULL,
	stack_id       TEXT NOT NULL DEFAULT '',
	stack_status   TEXT NOT NULL DEFAULT '',
	status_message TEXT NOT NULL DEFAULT '',
	template       TEXT NOT NULL DEFAULT '',
	parameters     TEXT NOT NULL DEFAULT '',
	servers        TEXT NOT NULL DEFAULT '',
	launched_at    BIGINT,
	created_at     BIGINT NOT NULL,
	updated_at     BIGINT NOT NULL
);
-- One live launch per app and kind: a test launch beside a cutover.
CREATE UNIQUE INDEX app_launches_one_live ON app_launches (app_id, kind) WHERE state <> 'TERMINATED';
CREATE INDEX app_launches_state ON app_launches (state);
