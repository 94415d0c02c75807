-- Schema 4: hand-overs between steps are explicit. An entry a step takes
-- over from another is a new row naming the one it came from; the old row
-- is left in state handed-over, so the ledger says who owned what, when.

ALTER TABLE ledger ADD COLUMN handed_from BIGINT NOT NULL DEFAULT 0;
