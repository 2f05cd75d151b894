-- Incremental listings (source.changed_since_param): per listing -- the
-- meetings, the flat registrant listing, or one meeting's registrants --
-- the newest modification time a complete listing showed, and when the last
-- complete full listing began (sync.full_listing_schedule counts from it).
-- The overlap is applied when the watermark is sent, so changing it takes
-- effect at the next poll.
CREATE TABLE listing_watermarks (
    listing        TEXT PRIMARY KEY,
    changed_since  TIMESTAMPTZ,
    full_listed_at TIMESTAMPTZ,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
