-- Schema 3: a run's progress as numbers (JSON text: the step, bytes done and
-- total per disk, VM Import's percent), written about once a second off the
-- data path; and no separate step status: the ledger is the one record a
-- resumed run reads.

ALTER TABLE replication_runs ADD COLUMN progress TEXT NOT NULL DEFAULT '';
DROP TABLE run_steps;
