//! The missing-meeting policy (`sync.on_missing = "unregister"`): the ids
//! a full listing held, noted page by page in the unlogged `listed_ids` so a
//! listing of any size costs regsync no memory, and the meetings it did not
//! hold, treated as cancelled.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{query_error, Error};

/// Notes the ids one page of listing `run_id` holds (valid, rejected or
/// ignored), for [`unregister_missing`]: in the database, so a listing of
/// any size costs regsync no memory.
///
/// # Errors
/// The statement failed.
pub async fn note_listed(pool: &PgPool, run_id: i64, ids: &[&str]) -> Result<(), Error> {
    sqlx::query("INSERT INTO listed_ids (run_id, external_id) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING")
        .bind(run_id)
        .bind(ids)
        .execute(pool)
        .await
        .map_err(query_error("note listed ids"))?;
    Ok(())
}

/// After a complete listing `run_id` with `on_missing = "unregister"`:
/// every meeting it did not hold is treated as cancelled, and its noted ids
/// go (with any a crashed listing left).
///
/// # Errors
/// A statement failed.
pub async fn unregister_missing(pool: &PgPool, run_id: i64, listed_at: DateTime<Utc>) -> Result<u64, Error> {
    // Spared: a row a newer listing has seen since this one began.
    let result = sqlx::query(crate::store::unregister_missing_sql!(
        "meetings",
        "m",
        "NOT EXISTS (SELECT FROM listed_ids l WHERE l.run_id = $1 AND l.external_id = m.external_id) \
         AND (m.listed_at IS NULL OR m.listed_at <= $2)"
    ))
    .bind(run_id)
    .bind(listed_at)
    .execute(pool)
    .await
    .map_err(query_error("unregister missing meetings"))?;
    forget_listed(pool, run_id).await?;
    Ok(result.rows_affected())
}

/// Drops the ids listing `run_id` noted, and those of listings that
/// ended without cleaning up (a crash, a failed poll: finished, or begun
/// more than a day ago). Another listing still under way keeps its own.
///
/// # Errors
/// The statement failed.
pub async fn forget_listed(pool: &PgPool, run_id: i64) -> Result<(), Error> {
    sqlx::query(
        "DELETE FROM listed_ids l WHERE l.run_id = $1 \
         OR NOT EXISTS (SELECT FROM sync_runs r WHERE r.id = l.run_id AND r.finished_at IS NULL \
                        AND r.started_at > now() - interval '1 day')",
    )
    .bind(run_id)
    .execute(pool)
    .await
    .map_err(query_error("forget listed ids"))?;
    Ok(())
}
