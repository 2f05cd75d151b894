//! Evidence for the scope of a refusal (`graph_refusals`): who else met the
//! same refusal lately. The decision itself is `sync::scope`, pure.

use std::time::Duration;

use sqlx::PgPool;

use super::{query_error, Error};
use crate::domain::{Location, OnlineMeetingId, OrganizerId};

/// What the deployment has seen of one kind of refusal within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Distinct organizers refused this way, this one included.
    pub organizers: i64,
    /// Distinct rows of this organizer refused this way, this one included.
    pub organizer_rows: i64,
    /// This row was refused this way before, within the window.
    pub row_before: bool,
}

/// Records that `organizer`'s row `row_key` met refusal `kind`, forgets
/// refusals older than `window`, and returns the evidence, in one
/// statement.
///
/// # Errors
/// The statement failed.
pub async fn record_refusal(
    pool: &PgPool,
    kind: &str,
    organizer: &str,
    row_key: &str,
    window: Duration,
) -> Result<Seen, Error> {
    let (organizers, organizer_rows, row_before): (i64, i64, bool) = sqlx::query_as(
        r#"
        WITH pruned AS (
            DELETE FROM graph_refusals WHERE at < now() - make_interval(secs => $4)
        ),
        recent AS (
            SELECT organizer_id, row_key FROM graph_refusals
            WHERE kind = $1 AND at >= now() - make_interval(secs => $4)
        ),
        added AS (
            INSERT INTO graph_refusals (kind, organizer_id, row_key) VALUES ($1, $2, $3)
        )
        SELECT (SELECT count(DISTINCT organizer_id) FROM (SELECT organizer_id FROM recent UNION SELECT $2::text) o),
               (SELECT count(DISTINCT row_key)
                FROM (SELECT row_key FROM recent WHERE organizer_id = $2 UNION SELECT $3::text) r),
               EXISTS (SELECT 1 FROM recent WHERE row_key = $3)
        "#,
    )
    .bind(kind)
    .bind(organizer)
    .bind(row_key)
    .bind(window.as_secs_f64())
    .fetch_one(pool)
    .await
    .map_err(query_error("record a refusal"))?;
    Ok(Seen { organizers, organizer_rows, row_before })
}

/// A registration regsync knows exists (a synced meeting's recorded place),
/// preferably of another organizer than `organizer`: where a probe shows
/// whether the API itself refuses.
///
/// # Errors
/// The statement failed.
pub async fn known_registration(pool: &PgPool, organizer: &str) -> Result<Option<Location>, Error> {
    let found: Option<(String, String)> = sqlx::query_as(
        "SELECT registered_organizer_id, registered_meeting_id FROM meetings \
         WHERE state = 'synced' AND registration_id IS NOT NULL \
         ORDER BY registered_organizer_id = $1, updated_at DESC LIMIT 1",
    )
    .bind(organizer)
    .fetch_optional(pool)
    .await
    .map_err(query_error("find a known registration"))?;
    Ok(found
        .map(|(organizer, meeting)| Location { organizer: OrganizerId(organizer), meeting: OnlineMeetingId(meeting) }))
}
