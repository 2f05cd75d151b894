//! A registrant's pre-send gate (lease, throttle, the write's intent) and
//! its fenced outcome with the audit rows.

use std::time::Duration;

use sqlx::types::Json;
use sqlx::{PgPool, Row};

use super::super::send::Gate;
use super::super::throttle::throttle_sql;
use super::super::{query_error, storable, Error};
use super::ClaimedRegistrant;
use crate::domain::RowState;
use crate::domain::{CallRecord, FailureCategory};

/// [`prepare_send`]: `$1` id, `$2` lease token, `$3` where a write goes
/// (null for a read), `$4` lease seconds, `$5` probe seconds.
const PREPARE_SEND: &str = concat!(
    "WITH p AS (SELECT $5::float8 AS probe_ttl_secs), ",
    throttle_sql!(gate, "EXISTS (SELECT 1 FROM registrants WHERE id = $1 AND lease_token = $2)"),
    r#",
    u AS (
        UPDATE registrants SET
            needs_lookup     = needs_lookup OR $3::text IS NOT NULL,
            lookup_at        = coalesce($3::text, lookup_at),
            intent_at        = CASE WHEN $3::text IS NOT NULL THEN now() ELSE intent_at END,
            lease_expires_at = now() + make_interval(secs => $4)
        WHERE id = $1 AND lease_token = $2 AND (SELECT wait FROM t) = interval '0'
        RETURNING 1
    )
    SELECT EXTRACT(EPOCH FROM (SELECT wait FROM t))::float8 AS wait_secs,
           EXISTS (SELECT 1 FROM registrants WHERE id = $1 AND lease_token = $2) AS owned,
           EXISTS (SELECT 1 FROM u) AS committed,
           EXISTS (SELECT 1 FROM probe) AS probe,
           -- No other registrant stands in the way of a registrant's write.
           NULL::text AS contested_by
    "#
);

/// The pre-send step for a registrant, one round trip: the deployment-wide
/// throttle (and the probe after a hold), the lease renewed, and for a
/// write (`write_at`, where it goes) its intent committed.
///
/// # Errors
/// The statement failed: do not send.
pub async fn prepare_send(
    pool: &PgPool,
    claimed: &ClaimedRegistrant,
    write_at: Option<&str>,
    ttl: Duration,
    probe_ttl: Duration,
) -> Result<Gate, Error> {
    let row = sqlx::query(PREPARE_SEND)
        .bind(claimed.claim.lease.row)
        .bind(claimed.claim.lease.token)
        .bind(write_at)
        .bind(ttl.as_secs_f64())
        .bind(probe_ttl.as_secs_f64())
        .fetch_one(pool)
        .await
        .map_err(query_error("commit a registrant's intent"))?;
    // No other row can stand in a registrant's way.
    Ok(crate::store::send::read_gate(&row, "commit a registrant's intent")?.0)
}

/// Renews the lease on `claimed` if it is still this worker's; whether it
/// was.
///
/// # Errors
/// The statement failed.
pub async fn renew_lease(pool: &PgPool, claimed: &ClaimedRegistrant, ttl: Duration) -> Result<bool, Error> {
    let renewed = sqlx::query(
        "UPDATE registrants SET lease_expires_at = now() + make_interval(secs => $3) \
         WHERE id = $1 AND lease_token = $2",
    )
    .bind(claimed.claim.lease.row)
    .bind(claimed.claim.lease.token)
    .bind(ttl.as_secs_f64())
    .execute(pool)
    .await
    .map_err(query_error("renew a registrant's lease"))?;
    Ok(renewed.rows_affected() == 1)
}

/// What one registrant reconcile leaves in its row.
#[derive(Debug, Clone)]
pub struct RegistrantOutcome {
    /// The new state.
    pub state: RowState,
    /// The last write's outcome is still unknown.
    pub needs_lookup: bool,
    /// Where that write went.
    pub lookup_at: Option<String>,
    /// Where Graph holds the registrant now.
    pub enrolled_at: Option<String>,
    /// Graph's id of it.
    pub registrant_id: Option<String>,
    /// Its join link.
    pub join_web_url: Option<String>,
    /// What the platform acknowledged, when a write-back succeeded now.
    pub written_back_value: Option<String>,
    /// The status the platform acknowledged, when a status write-back
    /// succeeded now.
    pub status_written_back: Option<String>,
    /// Real attempts.
    pub attempts: i32,
    /// Delay before it is due again.
    pub next_attempt_in: Duration,
    /// While the outcome is unknown: no lookup before this much time.
    pub lookup_settle: Duration,
    /// What went wrong and what to do.
    pub last_error: Option<String>,
    /// Graph's (or the platform's) status of the last failure.
    pub last_http_status: Option<u16>,
    /// The last failure's category.
    pub error_category: Option<FailureCategory>,
}

/// [`record_outcome`]: `$1` id, `$2` lease token, `$3`… the outcome, `$16`
/// the array of audit rows, `$17` the lookup's settle time in seconds, `$18`
/// the status written back now.
const RECORD_OUTCOME: &str = concat!(
    r#"
        WITH r AS (
            UPDATE registrants SET
                -- The platform or the meeting changed while it was in
                -- flight: due again, on what holds now.
                state = CASE WHEN meeting_changed OR (desired <> $4 AND $3 <> 'failed') THEN 'pending' ELSE $3 END,
                meeting_changed = FALSE,
                needs_lookup = $5, lookup_at = $6, enrolled_at = $7, registrant_id = $8, join_web_url = $9,
                -- A status seen in Teams is of the registration it was seen on.
                teams_status = CASE WHEN registrant_id IS NOT DISTINCT FROM $8 THEN teams_status END,
                teams_status_at = CASE WHEN registrant_id IS NOT DISTINCT FROM $8 THEN teams_status_at END,
                lookup_not_before = CASE WHEN $5 THEN GREATEST(lookup_not_before, now() + make_interval(secs => $17))
                                    END,
                intent_at = CASE WHEN $5 THEN intent_at END,
                written_back_value = coalesce($10, written_back_value),
                written_back_at = CASE WHEN $10 IS NOT NULL THEN now() ELSE written_back_at END,
                status_written_back = coalesce($18, status_written_back),
                status_written_back_at = CASE WHEN $18 IS NOT NULL THEN now() ELSE status_written_back_at END,
                attempts = $11,
                next_attempt_at = now() + CASE WHEN meeting_changed OR desired <> $4 THEN interval '0'
                                               ELSE make_interval(secs => $12) END,
                last_error = $13, last_http_status = $14, last_error_category = $15,
                lease_token = NULL, lease_expires_at = NULL, claimed_by = NULL, updated_at = now()
            WHERE id = $1 AND lease_token = $2
            RETURNING id, external_id
        ),
    "#,
    crate::store::outcome::audit_sql!("registrant_id", "r.id", "r.external_id", "r", "$16"),
    r#"
        SELECT EXISTS (SELECT 1 FROM r)
    "#
);

/// Writes `outcome` and the audit rows of `calls`, fenced by the lease: a
/// worker whose lease passed on writes nothing. A registrant the platform
/// changed while it was in flight is due again. Whether it applied.
///
/// # Errors
/// The statement failed.
pub async fn record_outcome(
    pool: &PgPool,
    claimed: &ClaimedRegistrant,
    outcome: &RegistrantOutcome,
    calls: &[CallRecord],
) -> Result<bool, Error> {
    let audit: Vec<crate::store::outcome::AuditRow<'_>> = calls.iter().map(Into::into).collect();
    let applied = sqlx::query(RECORD_OUTCOME)
        .bind(claimed.claim.lease.row)
        .bind(claimed.claim.lease.token)
        .bind(outcome.state.as_str())
        .bind(claimed.desired.as_str())
        .bind(outcome.needs_lookup)
        .bind(outcome.lookup_at.as_deref())
        .bind(outcome.enrolled_at.as_deref())
        .bind(outcome.registrant_id.as_deref())
        .bind(outcome.join_web_url.as_deref())
        .bind(outcome.written_back_value.as_deref())
        .bind(outcome.attempts)
        .bind(outcome.next_attempt_in.as_secs_f64())
        .bind(outcome.last_error.as_deref().map(storable))
        .bind(outcome.last_http_status.map(i32::from))
        .bind(outcome.error_category.map(FailureCategory::as_str))
        .bind(Json(audit))
        .bind(outcome.lookup_settle.as_secs_f64())
        .bind(outcome.status_written_back.as_deref())
        .fetch_one(pool)
        .await
        .map_err(query_error("record a registrant's outcome"))?;
    applied.try_get(0).map_err(query_error("record a registrant's outcome"))
}
