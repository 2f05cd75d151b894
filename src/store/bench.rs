//! SQL the benchmark measures regsync against: the plainest bulk upsert of
//! the same rows into a same-shaped table.

use sqlx::PgPool;

use super::meetings::page_columns;
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
    let [ids, organizers, online, audiences, desired] = page_columns(meetings);
    sqlx::query(
        r#"
        INSERT INTO bench_raw (external_id, organizer_id, online_meeting_id, allowed_registrant, desired)
        SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
        ON CONFLICT (external_id) DO NOTHING
        "#,
    )
    .bind(ids)
    .bind(organizers)
    .bind(online)
    .bind(audiences)
    .bind(desired)
    .execute(pool)
    .await
    .map_err(query_error("raw upsert"))?;
    Ok(())
}
