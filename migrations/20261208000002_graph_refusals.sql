-- Evidence for the scope of Graph's refusals that may mean "the API is
-- gone" (a 404 that is not "not found", a 410, a 403 "not supported"): one
-- row per refused call, with the organizer and row it was about. A refusal
-- becomes the deployment's only when two organizers meet it within the
-- window; otherwise it is the row's (a departed organizer answers 404
-- UnknownError, and must not stop anyone else).
CREATE TABLE graph_refusals (
    id           BIGSERIAL PRIMARY KEY,
    kind         TEXT NOT NULL,
    organizer_id TEXT NOT NULL,
    row_key      TEXT NOT NULL,
    at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX graph_refusals_kind_at_idx ON graph_refusals (kind, at);
