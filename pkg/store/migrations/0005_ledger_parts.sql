-- Schema 5: the parts of a multipart upload are rows of their own, written
-- once each as they are stored, instead of the whole list rewritten into the
-- upload's ledger entry at every progress tick (a cost that grew with the
-- part count). A part belongs to one ledger entry; they go when it is
-- released.

CREATE TABLE ledger_parts (
	entry_id BIGINT NOT NULL REFERENCES ledger (id),
	number   BIGINT NOT NULL,
	data     TEXT NOT NULL,
	PRIMARY KEY (entry_id, number)
);
