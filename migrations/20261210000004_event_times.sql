-- When each event starts and ends (source.fields.starts_at, ends_at): the
-- write queue takes cancellations first, then the events starting soonest,
-- then the rest; the end schedules attendance. The due index follows that
-- order, so a claim reads the first rows of it.
ALTER TABLE meetings ADD COLUMN starts_at TIMESTAMPTZ, ADD COLUMN ends_at TIMESTAMPTZ;

DROP INDEX meetings_due_idx;
CREATE INDEX meetings_due_idx ON meetings ((desired <> 'unregistered'), starts_at, next_attempt_at)
    WHERE state IN ('pending', 'retrying');
