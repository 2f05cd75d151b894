-- regsync's schema. Tables are internal and may change; the views in schema
-- `ops` are a contract with the ops dashboard (add columns only).

-- One row per platform meeting, keyed by the platform's id (the natural key).
-- It holds the desired state (from the platform), the actual state (what Graph
-- holds, as far as we know) and the sync state machine with its lease.
CREATE TABLE meetings (
    id                   BIGSERIAL PRIMARY KEY,
    external_id          TEXT NOT NULL,
    organizer_id         TEXT NOT NULL,
    online_meeting_id    TEXT NOT NULL,
    allowed_registrant   TEXT NOT NULL CHECK (allowed_registrant IN ('everyone', 'organization')),
    -- 'registered' while the platform lists the meeting as active,
    -- 'unregistered' once it is cancelled (or missing, with on_missing = unregister).
    desired              TEXT NOT NULL CHECK (desired IN ('registered', 'unregistered')),
    source_updated_at    TIMESTAMPTZ,

    -- Actual state: the registration regsync knows Graph holds, and where
    -- (the organizer and meeting may since have changed in the platform).
    registration_id          TEXT,
    registered_organizer_id  TEXT,
    registered_meeting_id    TEXT,
    registered_audience      TEXT CHECK (registered_audience IN ('everyone', 'organization')),

    -- pending:   desired may differ from actual; due at next_attempt_at.
    -- in_flight: claimed under lease_token until lease_expires_at.
    -- retrying:  the last attempt failed transiently; due at next_attempt_at.
    -- synced:    desired equals actual.
    -- failed:    permanent error or attempts exhausted; waits for a platform
    --            change or `regsync retry`.
    state                TEXT NOT NULL DEFAULT 'pending'
                         CHECK (state IN ('pending', 'in_flight', 'retrying', 'synced', 'failed')),
    -- True from the moment a Graph write may have been sent until its outcome
    -- is known. While true, the next attempt GETs the registration before it
    -- may POST or DELETE: the exactly-once rule.
    needs_lookup         BOOLEAN NOT NULL DEFAULT FALSE,
    -- Where the last write that may have acted was sent: the lookup target.
    lookup_organizer_id  TEXT,
    lookup_meeting_id    TEXT,
    attempts             INTEGER NOT NULL DEFAULT 0,
    next_attempt_at      TIMESTAMPTZ NOT NULL DEFAULT now(),

    -- The lease: a fresh token per claim fences every later write, so a worker
    -- whose lease expired can never overwrite its successor's outcome.
    lease_token          UUID,
    lease_expires_at     TIMESTAMPTZ,
    claimed_by           UUID,

    last_error           TEXT,
    last_http_status     INTEGER,
    last_synced_at       TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT meetings_external_id_key UNIQUE (external_id),
    CONSTRAINT meetings_lease_consistent CHECK ((state = 'in_flight') = (lease_token IS NOT NULL))
);

-- What is due: the claim query scans only unsettled rows, so a table of
-- 100,000 synced meetings costs nothing to ask.
CREATE INDEX meetings_due_idx ON meetings (next_attempt_at)
    WHERE state IN ('pending', 'retrying');
-- Expired leases (a crashed or paused worker) are found through this index.
CREATE INDEX meetings_lease_idx ON meetings (lease_expires_at)
    WHERE state = 'in_flight';

-- A deployment-wide Retry-After: when Graph throttles one replica, every
-- replica holds its requests until throttled_until. One row.
CREATE TABLE graph_throttle (
    singleton        BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    throttled_until  TIMESTAMPTZ NOT NULL
);
INSERT INTO graph_throttle (throttled_until) VALUES ('1970-01-01T00:00:00Z');

-- One row per poll cycle (`regsync once`, or a scheduled poll of `run`).
CREATE TABLE sync_runs (
    id                BIGSERIAL PRIMARY KEY,
    started_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at       TIMESTAMPTZ,
    -- running, complete, partial (a page failed: nothing deregistered for
    -- missing), failed (the cycle could not run).
    status            TEXT NOT NULL DEFAULT 'running'
                      CHECK (status IN ('running', 'complete', 'partial', 'failed')),
    meetings_seen     INTEGER NOT NULL DEFAULT 0,
    meetings_changed  INTEGER NOT NULL DEFAULT 0,
    rejected          INTEGER NOT NULL DEFAULT 0,
    created           INTEGER NOT NULL DEFAULT 0,
    deleted           INTEGER NOT NULL DEFAULT 0,
    failed            INTEGER NOT NULL DEFAULT 0,
    error             TEXT
);

-- Append-only audit of every Graph request: the trail operators and Microsoft
-- support need (client-request-id, request-id), and the tests' oracle.
CREATE TABLE graph_calls (
    id                 BIGSERIAL PRIMARY KEY,
    at                 TIMESTAMPTZ NOT NULL DEFAULT now(),
    meeting_id         BIGINT REFERENCES meetings (id),
    external_id        TEXT,
    method             TEXT NOT NULL,
    path               TEXT NOT NULL,
    http_status        INTEGER,
    duration_ms        INTEGER NOT NULL,
    graph_request_id   TEXT,
    client_request_id  UUID NOT NULL,
    error_code         TEXT,
    -- created, adopted, found, absent, deleted, throttled, transient, permanent, auth, unauthorized
    outcome            TEXT NOT NULL
);
CREATE INDEX graph_calls_meeting_idx ON graph_calls (meeting_id);
CREATE INDEX graph_calls_at_idx ON graph_calls (at);

-- Platform items that failed validation, kept so operators can fix them.
CREATE TABLE rejected_items (
    id           BIGSERIAL PRIMARY KEY,
    seen_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    sync_run_id  BIGINT REFERENCES sync_runs (id),
    external_id  TEXT,
    reason       TEXT NOT NULL,
    raw          TEXT NOT NULL
);
CREATE INDEX rejected_items_seen_idx ON rejected_items (seen_at);

CREATE SCHEMA ops;

CREATE VIEW ops.meeting_status AS
SELECT external_id, organizer_id, online_meeting_id, allowed_registrant, desired, state,
       needs_lookup, registration_id, attempts, last_error, last_http_status,
       next_attempt_at, last_synced_at, updated_at
FROM meetings;

CREATE VIEW ops.sync_runs AS
SELECT id, started_at, finished_at, status, meetings_seen, meetings_changed, rejected,
       created, deleted, failed, error
FROM sync_runs;

CREATE VIEW ops.graph_calls AS
SELECT at, external_id, method, path, http_status, duration_ms, graph_request_id,
       client_request_id, error_code, outcome
FROM graph_calls;

CREATE VIEW ops.rejected_items AS
SELECT seen_at, external_id, reason, raw
FROM rejected_items;
