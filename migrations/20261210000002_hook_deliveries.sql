-- Webhook deliveries (POST /hooks/platform) the deployment accepted, by
-- signature: the same signature again, at any replica, is a replay. A
-- signature older than hooks.tolerance_secs is refused as stale anyway, so
-- rows are kept only a day.
CREATE TABLE hook_deliveries (
    signature   TEXT PRIMARY KEY,
    signed_at   TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX hook_deliveries_received_at_idx ON hook_deliveries (received_at);
