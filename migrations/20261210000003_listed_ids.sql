-- The ids a full listing held, page by page, for the missing-meeting policy
-- (sync.on_missing = "unregister"): kept in the database so that a listing
-- of any size costs regsync no memory. Unlogged: a crash loses only the
-- listing under way, which a crash makes partial anyway.
CREATE UNLOGGED TABLE listed_ids (
    run_id      BIGINT NOT NULL,
    external_id TEXT NOT NULL,
    PRIMARY KEY (run_id, external_id)
);
