-- Nothing grows without bound.

-- Rejected items: one row per item and reason, however many polls list it
-- again. item_key is the platform's id, or a hash of the raw item when it
-- has none; seen_at is when it was last seen.
ALTER TABLE rejected_items
    ADD COLUMN first_seen_at TIMESTAMPTZ,
    ADD COLUMN times_seen INTEGER NOT NULL DEFAULT 1,
    ADD COLUMN item_key TEXT;
UPDATE rejected_items SET first_seen_at = seen_at, item_key = coalesce(external_id, md5(raw));
WITH grouped AS (
    SELECT item_key, reason, min(seen_at) AS first_seen_at, max(id) AS newest, count(*) AS times_seen
    FROM rejected_items GROUP BY item_key, reason
)
UPDATE rejected_items r SET first_seen_at = g.first_seen_at, times_seen = g.times_seen
FROM grouped g WHERE r.id = g.newest;
DELETE FROM rejected_items r USING rejected_items newer
WHERE newer.item_key = r.item_key AND newer.reason = r.reason AND newer.id > r.id;
ALTER TABLE rejected_items
    ALTER COLUMN first_seen_at SET NOT NULL,
    ALTER COLUMN first_seen_at SET DEFAULT now(),
    ALTER COLUMN item_key SET NOT NULL;
CREATE UNIQUE INDEX rejected_items_item_reason_key ON rejected_items (item_key, reason);

-- Old cycles are pruned; a rejection keeps its row when its last cycle goes.
ALTER TABLE rejected_items DROP CONSTRAINT rejected_items_sync_run_id_fkey,
    ADD CONSTRAINT rejected_items_sync_run_id_fkey FOREIGN KEY (sync_run_id) REFERENCES sync_runs (id) ON DELETE SET NULL;
-- Pruning finds old cycles through this index (graph_calls and
-- rejected_items have theirs on at and seen_at).
CREATE INDEX sync_runs_started_idx ON sync_runs (started_at);

-- Add-only: seen_at is now the last sighting.
CREATE OR REPLACE VIEW ops.rejected_items AS
SELECT seen_at, external_id, reason, raw, first_seen_at, times_seen
FROM rejected_items;
