-- The status write-back: what regsync last told the platform of a
-- registrant's status (`cancelled` when their meeting was cancelled,
-- `registered` when they were enrolled anew), so each change is sent once.
ALTER TABLE registrants
    ADD COLUMN status_written_back    TEXT,
    ADD COLUMN status_written_back_at TIMESTAMPTZ;

CREATE OR REPLACE VIEW ops.registrant_status AS
SELECT external_id, meeting_external_id, desired, state, registrant_id, join_web_url, written_back_at, attempts,
       last_error, last_error_category AS error_category, last_http_status, next_attempt_at, updated_at,
       status_written_back, status_written_back_at
FROM registrants;
