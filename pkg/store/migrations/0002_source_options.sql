-- Schema 2: kind-specific, non-secret settings of a source (JSON text): a
-- Hyper-V host's authentication scheme and SMB share, an Azure tenant,
-- subscription and cloud. Secrets stay in sources.secret, sealed.

ALTER TABLE sources ADD COLUMN options TEXT NOT NULL DEFAULT '';
