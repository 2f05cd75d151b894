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

-- One Teams meeting, one platform meeting: ingest rejects a second active
-- mapping of the same organizer and online meeting (looked up by this index),
-- and the pre-send gate finds who else wants or holds a registration there,
-- so a cancel never deletes a registration another meeting took over.
CREATE INDEX meetings_location_idx ON meetings (organizer_id, online_meeting_id) WHERE desired = 'registered';
CREATE INDEX meetings_registered_at_idx ON meetings (registered_organizer_id, registered_meeting_id)
    WHERE registration_id IS NOT NULL;
CREATE INDEX meetings_lookup_at_idx ON meetings (lookup_organizer_id, lookup_meeting_id) WHERE needs_lookup;
