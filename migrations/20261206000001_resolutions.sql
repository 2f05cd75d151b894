-- Platforms hold the organizer's e-mail and the Teams join link, not Graph's
-- ids. A meeting listed that way keeps what the platform gave
-- (organizer_upn, join_url) and the ids Graph resolved them to
-- (organizer_id, online_meeting_id), which are NULL until resolved.
ALTER TABLE meetings
    ALTER COLUMN organizer_id DROP NOT NULL,
    ALTER COLUMN online_meeting_id DROP NOT NULL,
    ADD COLUMN organizer_upn TEXT,
    ADD COLUMN join_url TEXT;

COMMENT ON COLUMN meetings.organizer_upn IS
    'The organizer''s UPN as the platform gave it (lower-cased), when it gave no object id; organizer_id is what Graph resolved it to.';
COMMENT ON COLUMN meetings.join_url IS
    'The Teams join link as the platform gave it, when it gave no online meeting id; online_meeting_id is what Graph resolved it to.';

-- Every resolution Graph answered, so that each UPN and join link costs one
-- Graph call however many meetings name it, and none once remembered.
CREATE TABLE graph_resolutions (
    kind         TEXT NOT NULL CHECK (kind IN ('organizer', 'meeting')),
    -- The UPN (lower-cased) or the join link.
    value        TEXT NOT NULL,
    graph_id     TEXT NOT NULL,
    resolved_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, value)
);

CREATE VIEW ops.resolutions AS
SELECT kind, value, graph_id, resolved_at FROM graph_resolutions;
COMMENT ON VIEW ops.resolutions IS
    'What regsync resolved through Graph: organizer UPNs to object ids, Teams join links to online meeting ids.';
