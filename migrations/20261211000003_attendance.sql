-- Attendance: after an event ends, its attendance reports are read and
-- every registrant of it gets one row — attendees with their figures,
-- registrants who did not attend with none — written back to the platform
-- once, and again only when the figures change.
CREATE TABLE attendance (
    meeting_external_id    TEXT NOT NULL,
    registrant_external_id TEXT NOT NULL,
    email                  TEXT,
    attended               BOOLEAN NOT NULL,
    total_seconds          BIGINT NOT NULL,
    first_join             TIMESTAMPTZ,
    last_leave             TIMESTAMPTZ,
    -- The figures as one text, compared to what the platform acknowledged
    -- (`written_back`) or refused (`refused`).
    figures                TEXT NOT NULL,
    written_back           TEXT,
    written_back_at        TIMESTAMPTZ,
    refused                TEXT,
    attempts               INTEGER NOT NULL DEFAULT 0,
    next_attempt_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_expires_at       TIMESTAMPTZ,
    last_error             TEXT,
    read_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (meeting_external_id, registrant_external_id)
);
-- Ended events are found by their end.
CREATE INDEX meetings_ends_at_idx ON meetings (ends_at) WHERE ends_at IS NOT NULL;

CREATE INDEX attendance_due_idx ON attendance (next_attempt_at)
    WHERE written_back IS DISTINCT FROM figures AND refused IS DISTINCT FROM figures;

-- People a report shows whom no registrant matches (walk-ins, guests).
CREATE TABLE unmatched_attendees (
    meeting_external_id TEXT NOT NULL,
    email               TEXT,
    display_name        TEXT,
    total_seconds       BIGINT NOT NULL,
    read_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX unmatched_attendees_meeting_idx ON unmatched_attendees (meeting_external_id);

-- When each ended event's attendance is read next, and whether a report
-- was found yet.
CREATE TABLE attendance_reads (
    meeting_external_id TEXT PRIMARY KEY,
    next_read_at        TIMESTAMPTZ NOT NULL,
    last_read_at        TIMESTAMPTZ NOT NULL,
    report_found        BOOLEAN NOT NULL,
    last_error          TEXT
);

CREATE VIEW ops.attendance AS
SELECT meeting_external_id, registrant_external_id, attended, total_seconds, first_join, last_leave, written_back_at,
       last_error
FROM attendance;

CREATE VIEW ops.unmatched_attendees AS
SELECT meeting_external_id, email, display_name, total_seconds
FROM unmatched_attendees;
