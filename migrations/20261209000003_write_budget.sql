-- Microsoft's limit on virtual-event writes (graph.virtual_event_writes_per_30s)
-- is the deployment's, shared by every replica: one row per write, counted
-- from when it is sent until 30 s after its answer. A write whose answer
-- was never recorded (its process died) counts until its sent time plus the
-- request timeout plus the window.
CREATE TABLE virtual_event_writes (
    id          BIGSERIAL PRIMARY KEY,
    sent_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    answered_at TIMESTAMPTZ
);
CREATE INDEX virtual_event_writes_sent_at_idx ON virtual_event_writes (sent_at);
