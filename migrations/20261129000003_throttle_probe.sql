-- After a Retry-After hold ends, Graph gets one probe request before the
-- deployment resumes full speed: `recovering` is set by every throttle, and
-- cleared by the first answer that is not a throttle. While a probe is out
-- (`probe_until` in the future) nobody else sends.
ALTER TABLE graph_throttle
    ADD COLUMN recovering BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN probe_until TIMESTAMPTZ;
