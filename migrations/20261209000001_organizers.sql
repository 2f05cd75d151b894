-- An organizer is a scope of its own: a condition that is theirs (no
-- sign-in, a refused sign-in, a 401 after a real refresh, no application
-- access policy, unknown to Graph) parks their rows with the reason and the
-- fix, and holds nobody else. A new sign-in or `regsync retry --organizer`
-- ends it.
CREATE TABLE organizer_conditions (
    organizer_id TEXT PRIMARY KEY,
    condition    TEXT NOT NULL CHECK (condition IN
                     ('no_sign_in', 'sign_in_refused', 'unauthorized', 'no_access_policy', 'unknown_to_graph')),
    reason       TEXT NOT NULL,
    since        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Whose token a call carried (the organizer of the place it acted on).
ALTER TABLE graph_calls ADD COLUMN organizer_id TEXT;

CREATE OR REPLACE VIEW ops.graph_calls AS
SELECT at, external_id, method, path, http_status, duration_ms, graph_request_id,
       client_request_id, error_code, outcome, inner_error, response_date, ags_diagnostic, organizer_id
FROM graph_calls;

-- A token refresh is leased with a deadline instead of a row lock held
-- across the HTTP call: no transaction stays open while Microsoft answers.
-- `refresh_unknown_since`: a refresh whose answer was lost (Microsoft may
-- have spent the refresh token); the next one says so if it is refused.
ALTER TABLE sign_ins
    ADD COLUMN refresh_holder        UUID,
    ADD COLUMN refresh_lease_until   TIMESTAMPTZ,
    ADD COLUMN refresh_unknown_since TIMESTAMPTZ;

-- One row per organizer regsync knows (from meetings, sign-ins or a
-- condition): its condition (`ok` when none), why, since when, and how many
-- of its rows (meetings and their registrants) are not synced.
CREATE VIEW ops.organizers AS
WITH known AS (
    SELECT organizer_id FROM meetings WHERE organizer_id IS NOT NULL
    UNION SELECT registered_organizer_id FROM meetings WHERE registered_organizer_id IS NOT NULL
    UNION SELECT organizer_id FROM sign_ins
    UNION SELECT organizer_id FROM organizer_conditions
),
meetings_waiting AS (
    SELECT organizer_id, count(*) AS n FROM meetings WHERE state <> 'synced' GROUP BY organizer_id
),
registrants_waiting AS (
    SELECT m.organizer_id, count(*) AS n
    FROM registrants r JOIN meetings m ON m.external_id = r.meeting_external_id
    WHERE r.state <> 'synced' GROUP BY m.organizer_id
)
SELECT k.organizer_id,
       coalesce(c.condition, 'ok') AS condition,
       c.reason,
       c.since,
       coalesce(mw.n, 0) + coalesce(rw.n, 0) AS rows_waiting
FROM known k
LEFT JOIN organizer_conditions c ON c.organizer_id = k.organizer_id
LEFT JOIN meetings_waiting mw ON mw.organizer_id = k.organizer_id
LEFT JOIN registrants_waiting rw ON rw.organizer_id = k.organizer_id;
