-- A join link is resolved among one organizer's meetings, so its
-- resolution belongs to that organizer: another organizer's meeting with
-- the same link is looked up on its own. Resolutions of join links kept
-- before are dropped (each costs one lookup again); UPN resolutions keep
-- an empty scope, as they belong to the whole tenant.
DELETE FROM graph_resolutions WHERE kind = 'meeting';
ALTER TABLE graph_resolutions ADD COLUMN scope TEXT NOT NULL DEFAULT '';
ALTER TABLE graph_resolutions DROP CONSTRAINT graph_resolutions_pkey;
ALTER TABLE graph_resolutions ADD PRIMARY KEY (kind, scope, value);
COMMENT ON COLUMN graph_resolutions.scope IS
    'For a join link: the organizer among whose meetings it was resolved; empty for a UPN (the tenant''s).';

CREATE OR REPLACE VIEW ops.resolutions AS
SELECT kind, value, graph_id, resolved_at, scope AS organizer_id FROM graph_resolutions;
