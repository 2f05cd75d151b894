-- The first migration's comment on graph_calls.outcome listed values regsync
-- never writes. The values it writes, one per Graph request:
COMMENT ON COLUMN graph_calls.outcome IS
    'created, found, absent, deleted (the call did what it asked); conflict (409 to a create); '
    'throttled (429, or 503 with Retry-After); transient (5xx, 408, timeout, dropped connection: '
    'Graph may have acted); rejected (400/403/404 and other refusals); unauthorized (401); '
    'unexpected_body (a success whose body is not the documented JSON)';
COMMENT ON COLUMN ops.graph_calls.outcome IS
    'created, found, absent, deleted, conflict, throttled, transient, rejected, unauthorized, '
    'unexpected_body: see graph_calls.outcome';
