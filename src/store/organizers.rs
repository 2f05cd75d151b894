//! Organizers as a scope (`organizer_conditions`, `ops.organizers`): the
//! condition that parks one organizer's rows, set by the error policy and
//! ended by a new sign-in or `regsync retry --organizer`.

use sqlx::PgPool;

use super::{query_error, storable, Error};
use crate::domain::{FailureCategory, OrganizerCondition};

/// Records `organizer`'s condition and why; `since` is kept while the
/// condition stays the same.
///
/// # Errors
/// The statement failed.
pub async fn set_condition(
    pool: &PgPool,
    organizer: &str,
    condition: OrganizerCondition,
    reason: &str,
) -> Result<(), Error> {
    sqlx::query(
        r#"
        INSERT INTO organizer_conditions (organizer_id, condition, reason) VALUES ($1, $2, $3)
        ON CONFLICT (organizer_id) DO UPDATE SET
            reason = EXCLUDED.reason,
            since = CASE WHEN organizer_conditions.condition = EXCLUDED.condition
                         THEN organizer_conditions.since ELSE now() END,
            condition = EXCLUDED.condition
        "#,
    )
    .bind(organizer)
    .bind(condition.as_str())
    .bind(storable(reason))
    .execute(pool)
    .await
    .map_err(query_error("record the organizer's condition"))?;
    Ok(())
}

/// `organizer`'s condition and its reason, if one holds.
///
/// # Errors
/// The statement failed.
pub async fn condition_of(pool: &PgPool, organizer: &str) -> Result<Option<(OrganizerCondition, String)>, Error> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT condition, reason FROM organizer_conditions WHERE organizer_id = $1")
            .bind(organizer)
            .fetch_optional(pool)
            .await
            .map_err(query_error("read the organizer's condition"))?;
    Ok(row.and_then(|(condition, reason)| OrganizerCondition::parse(&condition).map(|c| (c, reason))))
}

/// SQL that makes the rows of organizer `$1` (or UPN `$3`) that are not synced or in
/// flight (only those failed with category `$2`, when it is given) due now
/// with their attempts reset: meetings at or for the organizer, and the
/// registrants of those meetings; and ends the organizer's condition.
const ORGANIZER_ROWS_DUE: &str = r#"
    WITH m AS (
        UPDATE meetings SET state = 'pending', attempts = 0, next_attempt_at = now(), updated_at = now()
        WHERE (organizer_id = $1 OR registered_organizer_id = $1 OR lookup_organizer_id = $1
               OR lower(organizer_upn) = lower($3))
          AND state IN ('pending', 'retrying', 'failed')
          AND ($2::text IS NULL OR last_error_category = $2)
        RETURNING 1
    ),
    r AS (
        UPDATE registrants r SET state = 'pending', attempts = 0, next_attempt_at = now(), updated_at = now()
        FROM meetings mt
        WHERE mt.external_id = r.meeting_external_id
          AND (mt.organizer_id = $1 OR mt.registered_organizer_id = $1)
          AND r.state IN ('pending', 'retrying', 'failed')
          AND ($2::text IS NULL OR r.last_error_category = $2)
        RETURNING 1
    ),
    cleared AS (
        DELETE FROM organizer_conditions WHERE organizer_id = $1
    )
    SELECT (SELECT count(*) FROM m) + (SELECT count(*) FROM r)
"#;

/// Ends `organizer`'s condition and makes their waiting and failed rows due
/// now: all of them (`regsync retry --organizer`), or those failed with
/// `category` (a new sign-in: those that failed for want of it). Meetings
/// that name the organizer by `upn` count as theirs. How many rows.
///
/// # Errors
/// The statement failed.
pub async fn make_due<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    organizer: &str,
    upn: Option<&str>,
    category: Option<FailureCategory>,
) -> Result<u64, Error> {
    let due: i64 = sqlx::query_scalar(ORGANIZER_ROWS_DUE)
        .bind(organizer)
        .bind(category.map(FailureCategory::as_str))
        .bind(upn)
        .fetch_one(executor)
        .await
        .map_err(query_error("make the organizer's rows due"))?;
    Ok(u64::try_from(due).unwrap_or(0))
}
