//! Incremental listings' watermarks (`listing_watermarks`): per listing, the
//! newest modification time a complete listing showed and when the last
//! complete full listing began.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{query_error, Error};

/// What the database holds for one listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Watermark {
    /// The newest modification time a complete listing showed.
    pub changed_since: Option<DateTime<Utc>>,
    /// When the last complete full listing began.
    pub full_listed_at: Option<DateTime<Utc>>,
}

/// The watermark of `listing` (`meetings`, `registrants`, or
/// `registrants:{meeting id}`); the default when it has none yet.
///
/// # Errors
/// The statement failed.
pub async fn of(pool: &PgPool, listing: &str) -> Result<Watermark, Error> {
    let found = sqlx::query_as("SELECT changed_since, full_listed_at FROM listing_watermarks WHERE listing = $1")
        .bind(listing)
        .fetch_optional(pool)
        .await
        .map_err(query_error("read a listing watermark"))?;
    Ok(found.unwrap_or_default())
}

/// A complete listing of `listing` that began at `listed_at` showed items
/// changed up to `newest`: the watermark only moves forward, and a full
/// listing (`full`) restarts the full-listing schedule from `listed_at`.
///
/// # Errors
/// The statement failed.
pub async fn advance(
    pool: &PgPool,
    listing: &str,
    newest: Option<DateTime<Utc>>,
    full: bool,
    listed_at: DateTime<Utc>,
) -> Result<(), Error> {
    sqlx::query(
        r#"
        INSERT INTO listing_watermarks AS w (listing, changed_since, full_listed_at)
        VALUES ($1, $2, CASE WHEN $3 THEN $4::timestamptz END)
        ON CONFLICT (listing) DO UPDATE SET
            changed_since  = GREATEST(w.changed_since, EXCLUDED.changed_since),
            full_listed_at = GREATEST(w.full_listed_at, EXCLUDED.full_listed_at),
            updated_at     = now()
        "#,
    )
    .bind(listing)
    .bind(newest)
    .bind(full)
    .bind(listed_at)
    .execute(pool)
    .await
    .map_err(query_error("advance a listing watermark"))?;
    Ok(())
}
