//! SQL the benchmark measures regsync against: the plainest bulk upsert of
//! the same rows into a same-shaped table.

use sqlx::PgPool;

use super::meetings::PageColumns;
use super::{query_error, Error};
use crate::domain::ExternalMeeting;

/// Creates (or empties) `bench_raw`, shaped like `meetings`.
///
/// # Errors
/// The statements failed.
pub async fn prepare_raw_table(pool: &PgPool) -> Result<(), Error> {
    sqlx::query("DROP TABLE IF EXISTS bench_raw").execute(pool).await.map_err(query_error("drop bench_raw"))?;
    sqlx::query("CREATE TABLE bench_raw (LIKE meetings INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)")
        .execute(pool)
        .await
        .map_err(query_error("create bench_raw"))?;
    Ok(())
}

/// One `INSERT … SELECT FROM UNNEST … ON CONFLICT DO NOTHING` of a page.
///
/// # Errors
/// The statement failed.
pub async fn raw_upsert_page(pool: &PgPool, meetings: &[ExternalMeeting]) -> Result<(), Error> {
    let c = PageColumns::of(meetings);
    sqlx::query(
        r#"
        INSERT INTO bench_raw (external_id, organizer_id, organizer_upn, online_meeting_id, join_url,
                               allowed_registrant, desired)
        SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
        ON CONFLICT (external_id) DO NOTHING
        "#,
    )
    .bind(c.ids)
    .bind(c.organizer_ids)
    .bind(c.organizer_upns)
    .bind(c.online_meeting_ids)
    .bind(c.join_urls)
    .bind(c.audiences)
    .bind(c.desired)
    .execute(pool)
    .await
    .map_err(query_error("raw upsert"))?;
    Ok(())
}

/// A steady state for a large run: every meeting but the first `sample`
/// (in insertion order) recorded as synced — registered where active, looked
/// at where cancelled — as a deployment that has run for a while holds
/// them. Returns the cancelled meetings of the sample (each is looked up
/// once when first met cancelled).
///
/// # Errors
/// The statement failed.
pub async fn presync_all_but(pool: &PgPool, sample: i64) -> Result<i64, Error> {
    sqlx::query(
        r#"
        UPDATE meetings SET state = 'synced', graph_checked = true, last_synced_at = now(),
            registration_id = CASE WHEN desired = 'registered' THEN 'presynced-' || id END,
            registered_organizer_id = CASE WHEN desired = 'registered' THEN organizer_id END,
            registered_meeting_id = CASE WHEN desired = 'registered' THEN online_meeting_id END,
            registered_audience = CASE WHEN desired = 'registered' THEN allowed_registrant END
        WHERE id > (SELECT coalesce(max(id), 0) FROM (SELECT id FROM meetings ORDER BY id LIMIT $1) s)
        "#,
    )
    .bind(sample)
    .execute(pool)
    .await
    .map_err(query_error("presync meetings"))?;
    sqlx::query_scalar("SELECT count(*) FROM meetings WHERE state = 'pending' AND desired = 'unregistered'")
        .fetch_one(pool)
        .await
        .map_err(query_error("count cancelled meetings due"))
}
