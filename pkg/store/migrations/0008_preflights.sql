-- Schema 8: the latest preflight result of each subject (a server id, or
-- "account" for the AWS account): its status and findings (JSON text, the
-- caller's vocabulary), replaced by every check.

CREATE TABLE preflights (
	subject    TEXT PRIMARY KEY,
	status     TEXT NOT NULL,
	findings   TEXT NOT NULL,
	checked_at BIGINT NOT NULL
);
