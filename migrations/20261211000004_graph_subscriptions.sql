-- Graph change-notification subscriptions on each event's registrations
-- (notifications.public_url): one per event, renewed before its one-day
-- expiry; while one lives, the event's statuses are not polled.
CREATE TABLE graph_subscriptions (
    meeting_external_id TEXT PRIMARY KEY,
    event_id            TEXT NOT NULL,
    subscription_id     TEXT NOT NULL UNIQUE,
    expires_at          TIMESTAMPTZ NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    renewed_at          TIMESTAMPTZ
);
