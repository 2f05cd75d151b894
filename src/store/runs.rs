//! Poll cycles: their rows (`sync_runs`), the platform items each rejected,
//! the poll lease that lets one replica poll per tick, and the claims of
//! the periodic jobs (read-back, attendance, subscriptions), one replica per
//! period.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{query_error, Error};
use crate::domain::RejectedItem;

/// The figures of one finished cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// complete, partial or failed.
    pub status: &'static str,
    /// Items read from the platform (valid and rejected).
    pub meetings_seen: u64,
    /// Meetings inserted or changed.
    pub meetings_changed: u64,
    /// Items rejected.
    pub rejected: u64,
    /// Registrations created.
    pub created: u64,
    /// Registrations deleted.
    pub deleted: u64,
    /// Meetings parked as failed.
    pub failed: u64,
    /// Why the cycle was partial or failed.
    pub error: Option<String>,
}

/// Opens a cycle row.
///
/// # Errors
/// The statement failed.
pub async fn start_run(pool: &PgPool) -> Result<(i64, DateTime<Utc>), Error> {
    sqlx::query_as("INSERT INTO sync_runs DEFAULT VALUES RETURNING id, started_at")
        .fetch_one(pool)
        .await
        .map_err(query_error("start sync run"))
}

/// Closes a cycle row with its figures.
///
/// # Errors
/// The statement failed.
pub async fn finish_run(pool: &PgPool, run_id: i64, report: &RunReport) -> Result<(), Error> {
    let count = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
    sqlx::query(
        r#"
        UPDATE sync_runs SET finished_at = now(), status = $2, meetings_seen = $3, meetings_changed = $4,
            rejected = $5, created = $6, deleted = $7, failed = $8, error = $9
        WHERE id = $1
        "#,
    )
    .bind(run_id)
    .bind(report.status)
    .bind(count(report.meetings_seen))
    .bind(count(report.meetings_changed))
    .bind(count(report.rejected))
    .bind(count(report.created))
    .bind(count(report.deleted))
    .bind(count(report.failed))
    .bind(report.error.as_deref().map(super::storable))
    .execute(pool)
    .await
    .map_err(query_error("finish sync run"))?;
    Ok(())
}

/// Records rejected platform items in one statement: a new row per item
/// and reason, or one more sighting of a known one.
///
/// # Errors
/// The statement failed.
pub async fn insert_rejected(pool: &PgPool, run_id: Option<i64>, items: &[RejectedItem]) -> Result<(), Error> {
    if items.is_empty() {
        return Ok(());
    }
    let ids: Vec<Option<_>> = items.iter().map(|i| i.external_id.as_deref().map(super::storable)).collect();
    let reasons: Vec<_> = items.iter().map(|i| super::storable(&i.reason)).collect();
    let raws: Vec<_> = items.iter().map(|i| super::storable(&i.raw)).collect();
    sqlx::query(
        r#"
        INSERT INTO rejected_items AS r (sync_run_id, external_id, reason, raw, item_key)
        SELECT DISTINCT ON (coalesce(id, md5(raw)), reason) $1, id, reason, raw, coalesce(id, md5(raw))
        FROM UNNEST($2::text[], $3::text[], $4::text[]) AS i(id, reason, raw)
        -- One row per item and reason: a later sighting counts, it adds no row.
        ON CONFLICT (item_key, reason) DO UPDATE SET
            seen_at = now(), times_seen = r.times_seen + 1, raw = EXCLUDED.raw, sync_run_id = EXCLUDED.sync_run_id
        "#,
    )
    .bind(run_id)
    .bind(&ids)
    .bind(&reasons)
    .bind(&raws)
    .execute(pool)
    .await
    .map_err(query_error("record rejected items"))?;
    Ok(())
}

/// When the last complete or partial poll finished, if any.
///
/// # Errors
/// The statement failed.
pub async fn last_poll_at(pool: &PgPool) -> Result<Option<DateTime<Utc>>, Error> {
    sqlx::query_scalar("SELECT max(finished_at) FROM sync_runs WHERE status IN ('complete', 'partial')")
        .fetch_one(pool)
        .await
        .map_err(query_error("read last poll"))
}

/// Claims periodic job `name` for this run when it is due, and sets it due
/// again `every` later: one replica of the deployment runs it per period.
///
/// # Errors
/// The statement failed.
pub async fn claim_job(pool: &PgPool, name: &str, every: Duration) -> Result<bool, Error> {
    let claimed = sqlx::query(
        r#"
        INSERT INTO periodic_jobs AS j (name, next_run_at) VALUES ($1, now() + make_interval(secs => $2))
        ON CONFLICT (name) DO UPDATE SET next_run_at = EXCLUDED.next_run_at WHERE j.next_run_at <= now()
        "#,
    )
    .bind(name)
    .bind(every.as_secs_f64())
    .execute(pool)
    .await
    .map_err(query_error("claim a periodic job"))?;
    Ok(claimed.rows_affected() == 1)
}

/// Takes the deployment's poll lease for `window` if no replica holds it,
/// or if the lease runs longer than `window` from now: it was taken under a
/// longer `sync.poll_schedule`, and a shorter one takes effect at once.
/// Returns whether this replica should poll now.
///
/// # Errors
/// The statement failed.
pub async fn claim_poll(pool: &PgPool, replica: uuid::Uuid, window: Duration) -> Result<bool, Error> {
    let taken = sqlx::query(
        "UPDATE poll_lease SET holder = $1, until = now() + make_interval(secs => $2) \
         WHERE until <= now() OR until > now() + make_interval(secs => $2)",
    )
    .bind(replica)
    .bind(window.as_secs_f64())
    .execute(pool)
    .await
    .map_err(query_error("claim the poll"))?;
    Ok(taken.rows_affected() == 1)
}
