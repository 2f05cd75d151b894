-- One poll per scheduled tick across replicas: a replica polls only after
-- taking this lease, which lasts half the schedule's period, so the other
-- replicas' schedulers firing for the same tick find it taken and skip.
-- Only efficiency depends on it: polls are idempotent.
CREATE TABLE poll_lease (
    singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    holder     UUID,
    until      TIMESTAMPTZ NOT NULL
);
INSERT INTO poll_lease (until) VALUES ('1970-01-01T00:00:00Z');
