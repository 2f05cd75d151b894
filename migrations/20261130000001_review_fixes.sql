-- Fixes from the outside review of the exactly-once protocol.

-- While an outcome is unknown (needs_lookup), the lookup must not run before
-- a request Graph may still be working on has finished: whatever makes the
-- meeting due (a retry, an ingested change, `regsync retry`), the claim
-- skips it until this time has passed.
ALTER TABLE meetings ADD COLUMN lookup_not_before TIMESTAMPTZ;

-- True once regsync has an answer from Graph about this meeting's
-- registration. A meeting regsync first meets cancelled is looked up once,
-- since an earlier deployment, a restored database or another tool may have
-- left a registration behind. Rows reconciled before this column existed
-- count as checked.
ALTER TABLE meetings ADD COLUMN graph_checked BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE meetings SET graph_checked = TRUE WHERE state <> 'pending' OR last_synced_at IS NOT NULL;
