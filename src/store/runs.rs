//! Poll cycles (`sync_runs`), rejected platform items, the deployment-wide
//! Graph throttle, and the failure list of `regsync status`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

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

/// Ends the recovery after a throttle hold: the probe got an answer that was
/// not a throttle, so every replica may send at full speed again.
///
/// # Errors
/// The statement failed.
pub async fn end_recovery(pool: &PgPool) -> Result<(), Error> {
    sqlx::query("UPDATE graph_throttle SET recovering = FALSE, probe_until = NULL WHERE recovering")
        .execute(pool)
        .await
        .map_err(query_error("end throttle recovery"))?;
    Ok(())
}

/// A failed meeting for `regsync status`.
#[derive(Debug, Clone)]
pub struct FailedMeeting {
    /// The platform's id.
    pub external_id: String,
    /// What went wrong and what to do.
    pub last_error: Option<String>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Opens a cycle row.
///
/// # Errors
/// The statement failed.
pub async fn start(pool: &PgPool) -> Result<i64, Error> {
    sqlx::query_scalar("INSERT INTO sync_runs DEFAULT VALUES RETURNING id")
        .fetch_one(pool)
        .await
        .map_err(query_error("start sync run"))
}

/// Closes a cycle row with its figures.
///
/// # Errors
/// The statement failed.
pub async fn finish(pool: &PgPool, run_id: i64, report: &RunReport) -> Result<(), Error> {
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
pub async fn insert_rejected(pool: &PgPool, run_id: i64, items: &[RejectedItem]) -> Result<(), Error> {
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

/// Holds every replica's Graph requests for `wait` (never shortens a longer
/// hold). Returns how long the deployment is now held.
///
/// # Errors
/// The statement failed.
pub async fn hold_graph(pool: &PgPool, wait: Duration) -> Result<Duration, Error> {
    let secs: f64 = sqlx::query_scalar(
        r#"
        UPDATE graph_throttle SET throttled_until = GREATEST(throttled_until, now() + make_interval(secs => $1)),
                                  recovering = TRUE, probe_until = NULL
        RETURNING EXTRACT(EPOCH FROM (throttled_until - now()))::float8
        "#,
    )
    .bind(wait.as_secs_f64())
    .fetch_one(pool)
    .await
    .map_err(query_error("record Graph throttling"))?;
    Ok(Duration::from_secs_f64(secs.max(0.0)))
}

/// The most recent failed meetings.
///
/// # Errors
/// The statement failed.
pub async fn recent_failures(pool: &PgPool, limit: i64) -> Result<Vec<FailedMeeting>, Error> {
    let rows = sqlx::query(
        "SELECT external_id, last_error, updated_at FROM meetings WHERE state = 'failed' ORDER BY updated_at DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(query_error("list failures"))?;
    rows.iter()
        .map(|r| {
            Ok(FailedMeeting {
                external_id: r.try_get("external_id")?,
                last_error: r.try_get("last_error")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(query_error("list failures"))
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

/// The figures of the demo's summary table.
#[derive(Debug, Clone, Default)]
pub struct DemoFigures {
    /// Meetings with a registration recorded.
    pub registered: i64,
    /// Cancelled meetings without a registration.
    pub deregistered: i64,
    /// Failed meetings and why.
    pub failed: Vec<(String, String)>,
    /// Rejected platform items.
    pub rejected: i64,
    /// Graph requests by `METHOD STATUS`.
    pub graph_calls: Vec<(String, i64)>,
}

/// Reads the demo's figures.
///
/// # Errors
/// A statement failed.
pub async fn demo_figures(pool: &PgPool) -> Result<DemoFigures, Error> {
    let op = "read the demo summary";
    let counts = sqlx::query(
        r#"
        SELECT count(*) FILTER (WHERE registration_id IS NOT NULL) AS registered,
               count(*) FILTER (WHERE desired = 'unregistered' AND state = 'synced') AS deregistered,
               (SELECT count(*) FROM rejected_items) AS rejected
        FROM meetings
        "#,
    )
    .fetch_one(pool)
    .await
    .map_err(query_error(op))?;
    let failed = sqlx::query_as::<_, (String, Option<String>)>(
        "SELECT external_id, last_error FROM meetings WHERE state = 'failed' ORDER BY external_id",
    )
    .fetch_all(pool)
    .await
    .map_err(query_error(op))?;
    let graph_calls = sqlx::query_as::<_, (String, i64)>(
        r#"
        SELECT method || ' ' || coalesce(http_status::text, 'no answer') AS call, count(*)
        FROM graph_calls GROUP BY 1 ORDER BY 1
        "#,
    )
    .fetch_all(pool)
    .await
    .map_err(query_error(op))?;
    Ok(DemoFigures {
        registered: counts.try_get("registered").map_err(query_error(op))?,
        deregistered: counts.try_get("deregistered").map_err(query_error(op))?,
        rejected: counts.try_get("rejected").map_err(query_error(op))?,
        failed: failed.into_iter().map(|(id, e)| (id, e.unwrap_or_default())).collect(),
        graph_calls,
    })
}

/// Takes the deployment's poll lease for `window` if no replica holds it.
/// Returns whether this replica should poll now.
///
/// # Errors
/// The statement failed.
pub async fn claim_poll(pool: &PgPool, replica: uuid::Uuid, window: Duration) -> Result<bool, Error> {
    let taken = sqlx::query(
        "UPDATE poll_lease SET holder = $1, until = now() + make_interval(secs => $2) WHERE until <= now()",
    )
    .bind(replica)
    .bind(window.as_secs_f64())
    .execute(pool)
    .await
    .map_err(query_error("claim the poll"))?;
    Ok(taken.rows_affected() == 1)
}
