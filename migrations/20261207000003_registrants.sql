-- Registrants: the people the platform registered for its meetings, each
-- enrolled at Teams exactly once (registrants.enabled). The same machinery
-- as meetings: a lease with a fencing token, an intent before every write
-- (needs_lookup and where it went), a fenced outcome, retries.
CREATE TABLE registrants (
    id                   BIGSERIAL PRIMARY KEY,
    external_id          TEXT NOT NULL,
    meeting_external_id  TEXT NOT NULL,
    email                TEXT,
    first_name           TEXT,
    last_name            TEXT,
    tenant_id            TEXT,
    user_id              TEXT,
    preferred_timezone   TEXT,
    preferred_language   TEXT,
    desired              TEXT NOT NULL CHECK (desired IN ('registered', 'unregistered')),
    state                TEXT NOT NULL DEFAULT 'pending'
                         CHECK (state IN ('pending', 'in_flight', 'retrying', 'synced', 'failed')),
    attempts             INTEGER NOT NULL DEFAULT 0,
    next_attempt_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_token          UUID,
    lease_expires_at     TIMESTAMPTZ,
    claimed_by           UUID,
    -- A write may have reached Graph and its outcome is unknown: look at
    -- `lookup_at` before writing again.
    needs_lookup         BOOLEAN NOT NULL DEFAULT FALSE,
    lookup_at            TEXT,
    -- Where Graph holds the registrant ("{organizer}/{meeting}" or the
    -- webinar id), and its id there.
    enrolled_at          TEXT,
    registrant_id        TEXT,
    -- The personal join link (meeting registration target), only ever in
    -- the answer to the create.
    join_web_url         TEXT,
    -- What the platform acknowledged last, and when.
    written_back_value   TEXT,
    written_back_at      TIMESTAMPTZ,
    last_error           TEXT,
    last_error_category  TEXT,
    last_http_status     INTEGER,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (meeting_external_id, external_id)
);
CREATE INDEX registrants_due_idx ON registrants (next_attempt_at) WHERE state IN ('pending', 'retrying');
CREATE INDEX registrants_lease_idx ON registrants (lease_expires_at) WHERE state = 'in_flight';

ALTER TABLE graph_calls ADD COLUMN registrant_id BIGINT REFERENCES registrants (id);
CREATE INDEX graph_calls_registrant_idx ON graph_calls (registrant_id);

CREATE VIEW ops.registrant_status AS
SELECT external_id, meeting_external_id, desired, state, registrant_id, join_web_url, written_back_at, attempts,
       last_error, last_error_category AS error_category, last_http_status, next_attempt_at, updated_at
FROM registrants;
