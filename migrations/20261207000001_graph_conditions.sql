-- What Microsoft support asks for with a request's client-request-id: the
-- error's innerError (request-id, client-request-id, date, nested codes) and
-- the Date and x-ms-ags-diagnostic response headers.
ALTER TABLE graph_calls
    ADD COLUMN inner_error    JSONB,
    ADD COLUMN response_date  TEXT,
    ADD COLUMN ags_diagnostic TEXT;

CREATE OR REPLACE VIEW ops.graph_calls AS
SELECT at, external_id, method, path, http_status, duration_ms, graph_request_id,
       client_request_id, error_code, outcome, inner_error, response_date, ags_diagnostic
FROM graph_calls;

COMMENT ON COLUMN graph_calls.outcome IS
    'created, found, absent, deleted (the call did what it asked); conflict (409 to a create); '
    'throttled (429, 509, or a 5xx with Retry-After); transient (5xx, 408, timeout, dropped connection: '
    'Graph may have acted); rejected (400/403/404 and other refusals); retired (the registration API '
    'itself refuses: a 404 that is not "not found", a 410, a 403 "not supported"); unauthorized (401); '
    'unexpected_body (a success whose body is not the documented JSON)';

-- A refusing API stops Graph writes for the whole deployment: the reason is
-- kept with the throttle hold, which also times the probe that ends it.
ALTER TABLE graph_throttle
    ADD COLUMN suspended_reason TEXT,
    ADD COLUMN suspended_since  TIMESTAMPTZ;

-- One row: whether Graph writes are suspended, why, since when, and when
-- the next probe may go.
CREATE VIEW ops.graph_suspension AS
SELECT suspended_reason IS NOT NULL AS suspended,
       suspended_reason AS reason,
       suspended_since AS since,
       CASE WHEN suspended_reason IS NOT NULL THEN throttled_until END AS next_probe_at
FROM graph_throttle;
