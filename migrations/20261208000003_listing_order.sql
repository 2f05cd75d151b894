-- When the listing that last wrote a meeting began (the database's clock):
-- an ingest never applies a listing older than the one a row already holds
-- (a slow replica's old listing must not undo a newer one's cancellation),
-- and the missing-meeting policy spares rows a newer listing has seen.
ALTER TABLE meetings ADD COLUMN listed_at TIMESTAMPTZ;
