-- Status read-back: a registration's status in Teams (the person cancelled,
-- the organizer approved or rejected, the waitlist moved), as the event's
-- registration list last showed it, and when regsync saw it. The platform's
-- own last change of the registrant is kept beside it: the later of the two
-- wins a conflict.
ALTER TABLE registrants
    ADD COLUMN teams_status        TEXT CHECK (teams_status IN
                                   ('registered', 'cancelled', 'waitlisted', 'pending_approval', 'rejected')),
    ADD COLUMN teams_status_at     TIMESTAMPTZ,
    ADD COLUMN platform_changed_at TIMESTAMPTZ NOT NULL DEFAULT now();

-- Work done on a period by one replica of the deployment at a time (the
-- status read-back, the attendance reads): when each is next due.
CREATE TABLE periodic_jobs (
    name        TEXT PRIMARY KEY,
    next_run_at TIMESTAMPTZ NOT NULL
);

CREATE OR REPLACE VIEW ops.registrant_status AS
SELECT external_id, meeting_external_id, desired, state, registrant_id, join_web_url, written_back_at, attempts,
       last_error, last_error_category AS error_category, last_http_status, next_attempt_at, updated_at,
       status_written_back, status_written_back_at, teams_status, teams_status_at
FROM registrants;
