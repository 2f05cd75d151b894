-- Delegated sign-ins (graph.auth = "delegated"): one row per organizer who
-- signed in with `regsync login`. Tokens are sealed (AES-256-GCM under
-- security.encryption_key, bound to the organizer) and never stored in the
-- clear. The refresh token replaces itself on every use; the row lock taken
-- around a refresh makes replicas redeem each refresh token once.
CREATE TABLE sign_ins (
    organizer_id          TEXT PRIMARY KEY,          -- the user's object id (oid)
    upn                   TEXT,                      -- who signed in, for people
    sealed_refresh_token  BYTEA NOT NULL,
    sealed_access_token   BYTEA,                     -- shared, so replicas need not refresh
    access_expires_at     TIMESTAMPTZ,
    scopes                TEXT,                      -- the delegated permissions granted
    signed_in_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    refreshed_at          TIMESTAMPTZ,
    -- Set when the identity platform refused the refresh token
    -- (invalid_grant): the organizer must sign in again.
    revoked_at            TIMESTAMPTZ,
    revoked_reason        TEXT
);

CREATE VIEW ops.sign_ins AS
SELECT organizer_id, upn, scopes, signed_in_at, refreshed_at, access_expires_at, revoked_at, revoked_reason,
       revoked_at IS NULL AS usable
FROM sign_ins;
