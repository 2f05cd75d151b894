-- When each Graph request left (regsync's clock) and, for a write, the time
-- until which the lease it was sent under held at least: with Graph's
-- arrival times they show that a request reached Graph while its sender
-- still owned the row, and that one given up on (no answer) did not arrive
-- after `sent_at + duration_ms`.
ALTER TABLE graph_calls
    ADD COLUMN sent_at     TIMESTAMPTZ,
    ADD COLUMN lease_until TIMESTAMPTZ;

CREATE OR REPLACE VIEW ops.graph_calls AS
SELECT at, external_id, method, path, http_status, duration_ms, graph_request_id,
       client_request_id, error_code, outcome, inner_error, response_date, ags_diagnostic, organizer_id,
       sent_at, lease_until
FROM graph_calls;
