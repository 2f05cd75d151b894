-- What the ops dashboard needs: the backlog's true age, failures by
-- category, the throttle, live replicas and poll durations. Views only gain
-- columns (appended), per the `ops` contract.

-- When the meeting last became due. `updated_at` moves on every retry, so
-- it cannot tell how long a meeting has waited. New rows are due from their
-- insert; a trigger keeps the column right whatever statement moves a row
-- later: set when a meeting becomes due from `synced` or `failed`, kept
-- while it retries or is in flight, cleared once it settles. Its WHEN
-- clause lets the hot transitions that keep the value (a claim, a retry)
-- skip the function call.
ALTER TABLE meetings ADD COLUMN due_since TIMESTAMPTZ DEFAULT now();
UPDATE meetings SET due_since = CASE WHEN state IN ('pending', 'retrying', 'in_flight') THEN updated_at END;

CREATE FUNCTION meetings_due_since() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.due_since := CASE WHEN NEW.state IN ('synced', 'failed') THEN NULL ELSE now() END;
    RETURN NEW;
END
$$;

CREATE TRIGGER meetings_due_since BEFORE UPDATE OF state ON meetings
    FOR EACH ROW
    WHEN ((NEW.state IN ('synced', 'failed')) IS DISTINCT FROM (OLD.state IN ('synced', 'failed'))
          OR (OLD.due_since IS NULL AND NEW.state NOT IN ('synced', 'failed')))
    EXECUTE FUNCTION meetings_due_since();

-- A failure's category, for grouping: the free text in last_error says what
-- to do. Written by regsync with the error; NULL when there is none.
ALTER TABLE meetings ADD COLUMN last_error_category TEXT;
COMMENT ON COLUMN meetings.last_error_category IS
    'auth, permission, not_found, invalid_request, throttled, transient, target_retired, '
    'foreign_registration, shared_meeting, platform_data, worker_crashed, configuration';

-- One row per `regsync run` process, refreshed while it lives.
CREATE TABLE replicas (
    id            UUID PRIMARY KEY,
    host          TEXT NOT NULL,
    version       TEXT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE OR REPLACE VIEW ops.meeting_status AS
SELECT external_id, organizer_id, online_meeting_id, allowed_registrant, desired, state,
       needs_lookup, registration_id, attempts, last_error, last_http_status,
       next_attempt_at, last_synced_at, updated_at,
       due_since, last_error_category AS error_category
FROM meetings;

CREATE OR REPLACE VIEW ops.sync_runs AS
SELECT id, started_at, finished_at, status, meetings_seen, meetings_changed, rejected,
       created, deleted, failed, error,
       (EXTRACT(EPOCH FROM (finished_at - started_at)) * 1000)::bigint AS duration_ms
FROM sync_runs;

-- The deployment-wide Graph hold: `held` while no replica may send;
-- `probing` while the one request after a hold is out.
CREATE VIEW ops.throttle AS
SELECT throttled_until,
       throttled_until > now() AS held,
       GREATEST(EXTRACT(EPOCH FROM (throttled_until - now())), 0)::float8 AS held_for_secs,
       recovering,
       probe_until,
       recovering AND probe_until > now() AS probing
FROM graph_throttle;

-- A replica is alive while it refreshed its row within the last 30 s (it
-- does so every 10 s).
CREATE VIEW ops.replicas AS
SELECT id, host, version, started_at, last_seen_at, last_seen_at > now() - interval '30 seconds' AS alive
FROM replicas;

-- The backlog in one row.
CREATE VIEW ops.backlog AS
SELECT count(*) FILTER (WHERE state IN ('pending', 'retrying') AND next_attempt_at <= now()) AS due_now,
       count(*) FILTER (WHERE state = 'retrying') AS retrying,
       count(*) FILTER (WHERE state = 'in_flight') AS in_flight,
       -- In flight past its lease: its worker died or stalled; another
       -- replica takes it over (and looks its outcome up).
       count(*) FILTER (WHERE state = 'in_flight' AND lease_expires_at < now()) AS stuck_leases,
       count(*) FILTER (WHERE needs_lookup AND state IN ('pending', 'retrying', 'in_flight')) AS waiting_on_lookup,
       count(*) FILTER (WHERE state IN ('pending', 'retrying', 'in_flight')) AS open,
       coalesce(EXTRACT(EPOCH FROM (now() - min(due_since))), 0)::float8 AS oldest_due_age_secs
FROM meetings;
