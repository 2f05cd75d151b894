//! The fenced outcome write: a reconcile's result, the lease release and
//! the audit rows of its Graph calls, in one statement.

use std::borrow::Cow;
use std::time::Duration;

use serde::Serialize;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{query_error, Claimed, Error};
use crate::domain::RowState;
use crate::domain::{Actual, AllowedRegistrant, CallRecord, FailureCategory, Location};

/// What one reconcile leaves in the row; written with the lease release.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The new state.
    pub state: RowState,
    /// What Graph holds now.
    pub actual: Option<Actual>,
    /// Whether the last write's outcome is still unknown.
    pub needs_lookup: bool,
    /// Where that write went.
    pub lookup_at: Option<Location>,
    /// Real attempts.
    pub attempts: i32,
    /// Delay before the row is due again.
    pub next_attempt_in: Duration,
    /// What went wrong and what to do, for operators.
    pub last_error: Option<String>,
    /// Graph's status of the last failure.
    pub last_http_status: Option<u16>,
    /// The last failure's category.
    pub error_category: Option<FailureCategory>,
    /// Graph answered about the meeting's registration in this reconcile.
    pub checked: bool,
    /// While `needs_lookup`, the lookup waits at least this long from now:
    /// a request Graph may still be working on finishes first.
    pub lookup_settle: Duration,
}

/// The CTE `audit` that writes a reconcile's Graph calls: for the row whose
/// id and external id are `$id` and `$external_id` in `$from`, in the
/// column `$owner`, from the array of [`AuditRow`]s in parameter `$rows`.
macro_rules! audit_sql {
    ($owner:literal, $id:literal, $external_id:literal, $from:literal, $rows:literal) => {
        concat!(
            "audit AS (
        INSERT INTO graph_calls (",
            $owner,
            ", external_id, method, path, http_status, duration_ms,
                                 graph_request_id, client_request_id, error_code, outcome, inner_error,
                                 response_date, ags_diagnostic, organizer_id, sent_at, lease_until)
        SELECT ",
            $id,
            ", ",
            $external_id,
            ", c.method, c.path, c.http_status, c.duration_ms, c.graph_request_id,
               c.client_request_id, c.error_code, c.outcome, c.inner_error::jsonb, c.response_date,
               c.ags_diagnostic, c.organizer_id, c.sent_at, c.lease_until
        FROM ",
            $from,
            ", jsonb_to_recordset(",
            $rows,
            ") AS c(method text, path text, http_status int4,
            duration_ms int4, graph_request_id text, client_request_id uuid, error_code text, outcome text,
            inner_error text, response_date text, ags_diagnostic text, organizer_id text, sent_at timestamptz,
            lease_until timestamptz)
    )"
        )
    };
}
pub(super) use audit_sql;

/// [`record_outcome`]: `$1` is an [`OutcomeRow`], `$2` an array of [`AuditRow`]s.
const RECORD_OUTCOME: &str = concat!(
    r#"
    WITH o AS (
        SELECT * FROM jsonb_to_record($1) AS o(
            meeting_id int8, lease_token uuid, external_id text,
            state text, attempts int4, next_attempt_in_secs float8,
            needs_lookup bool, lookup_organizer_id text, lookup_meeting_id text, lookup_settle_secs float8,
            registration_id text, registered_organizer_id text, registered_meeting_id text,
            registered_audience text, checked bool, last_error text, last_http_status int4, last_error_category text,
            organizer_id text, online_meeting_id text, allowed_registrant text, desired text)
    ),
    "#,
    audit_sql!("meeting_id", "o.meeting_id", "o.external_id", "o", "$2"),
    r#",
    done AS (
        UPDATE meetings AS m SET
            -- `changed`: the platform changed the meeting while it was in
            -- flight; it is due again. The sub-select reads the row being
            -- updated, so if a poll's change committed while this write
            -- waited for the row lock, PostgreSQL re-evaluates it on the
            -- new version.
            (state, attempts, next_attempt_at, last_synced_at) = (
                SELECT CASE WHEN changed THEN 'pending' ELSE o.state END,
                       CASE WHEN changed THEN 0 ELSE o.attempts END,
                       now() + CASE WHEN changed THEN interval '0'
                                    ELSE make_interval(secs => o.next_attempt_in_secs) END,
                       CASE WHEN o.state = 'synced' AND NOT changed THEN now() ELSE m.last_synced_at END
                FROM (SELECT (m.organizer_id, m.online_meeting_id, m.allowed_registrant, m.desired)
                             IS DISTINCT FROM (o.organizer_id, o.online_meeting_id, o.allowed_registrant,
                                               o.desired) AS changed) AS platform
            ),
            needs_lookup = o.needs_lookup,
            lookup_organizer_id = o.lookup_organizer_id,
            lookup_meeting_id = o.lookup_meeting_id,
            lookup_not_before = CASE WHEN o.needs_lookup
                                     THEN GREATEST(m.lookup_not_before,
                                                   now() + make_interval(secs => o.lookup_settle_secs))
                                END,
            registration_id = o.registration_id,
            registered_organizer_id = o.registered_organizer_id,
            registered_meeting_id = o.registered_meeting_id,
            registered_audience = o.registered_audience,
            graph_checked = m.graph_checked OR o.checked,
            last_error = o.last_error,
            last_http_status = o.last_http_status,
            last_error_category = o.last_error_category,
            updated_at = now(),
            lease_token = NULL, lease_expires_at = NULL, claimed_by = NULL
        FROM o
        WHERE m.id = o.meeting_id AND m.lease_token = o.lease_token
        RETURNING 1
    ),
    -- Graph deletes registrants with their registration: when the outcome
    -- changes which registration the meeting holds, its registrants are due
    -- (an in-flight one when its own outcome is written). The sub-select
    -- reads the row as it was before this statement.
    "#,
    super::registrants::wake_registrants!(
        "SELECT o.external_id FROM o WHERE EXISTS (SELECT 1 FROM done)
           AND (SELECT m.registration_id FROM meetings m WHERE m.id = o.meeting_id) IS DISTINCT FROM o.registration_id"
    ),
    r#"
    SELECT EXISTS (SELECT 1 FROM done)
    "#
);

/// Model step \[S8\] (model/exactly_once.pml); the `lookup_not_before` it sets is \[S9\].
///
/// Writes a reconcile's outcome, releases the lease and appends the Graph
/// calls it made to the audit table, in one statement. The write is fenced:
/// it applies only while `claimed.claim.lease.token` still owns the row. If the
/// platform changed the meeting while it was in flight, the row becomes
/// pending again instead of taking the outcome's state.
///
/// Returns whether the outcome was applied (false: the lease was lost).
///
/// # Errors
/// The statement failed.
pub async fn record_outcome(
    pool: &PgPool,
    claimed: &Claimed,
    outcome: &Outcome,
    calls: &[CallRecord],
) -> Result<bool, Error> {
    // Parameters travel as two JSON documents unpacked by name
    // (`jsonb_to_record`), so no value can be bound to the wrong column.
    let audit: Vec<AuditRow> = calls.iter().map(AuditRow::from).collect();
    let applied: bool = sqlx::query_scalar(RECORD_OUTCOME)
        .bind(Json(OutcomeRow::new(claimed, outcome)))
        .bind(Json(audit))
        .fetch_one(pool)
        .await
        .map_err(query_error("record outcome"))?;
    Ok(applied)
}

/// The values [`record_outcome`] writes, named as its statement reads them.
#[derive(Serialize)]
struct OutcomeRow<'a> {
    meeting_id: i64,
    lease_token: Uuid,
    external_id: &'a str,
    state: &'static str,
    attempts: i32,
    next_attempt_in_secs: f64,
    needs_lookup: bool,
    lookup_organizer_id: Option<&'a str>,
    lookup_meeting_id: Option<&'a str>,
    lookup_settle_secs: f64,
    registration_id: Option<&'a str>,
    registered_organizer_id: Option<&'a str>,
    registered_meeting_id: Option<&'a str>,
    registered_audience: Option<&'static str>,
    checked: bool,
    last_error: Option<Cow<'a, str>>,
    last_http_status: Option<i32>,
    last_error_category: Option<&'static str>,
    /// The platform's data as claimed: a change since makes the row due.
    /// An id still to resolve is NULL, as in the row.
    organizer_id: Option<&'a str>,
    online_meeting_id: Option<&'a str>,
    allowed_registrant: &'static str,
    desired: &'static str,
}

impl<'a> OutcomeRow<'a> {
    fn new(claimed: &'a Claimed, outcome: &'a Outcome) -> Self {
        let actual = outcome.actual.as_ref();
        Self {
            meeting_id: claimed.claim.lease.row,
            lease_token: claimed.claim.lease.token,
            external_id: claimed.external_id.as_str(),
            state: outcome.state.as_str(),
            attempts: outcome.attempts,
            next_attempt_in_secs: outcome.next_attempt_in.as_secs_f64(),
            needs_lookup: outcome.needs_lookup,
            lookup_organizer_id: outcome.lookup_at.as_ref().map(|l| l.organizer.as_str()),
            lookup_meeting_id: outcome.lookup_at.as_ref().map(|l| l.meeting.as_str()),
            lookup_settle_secs: outcome.lookup_settle.as_secs_f64(),
            registration_id: actual.map(|a| a.registration_id.as_str()),
            registered_organizer_id: actual.map(|a| a.location.organizer.as_str()),
            registered_meeting_id: actual.map(|a| a.location.meeting.as_str()),
            registered_audience: actual.and_then(|a| a.audience).map(AllowedRegistrant::as_str),
            checked: outcome.checked,
            last_error: outcome.last_error.as_deref().map(super::storable),
            last_http_status: outcome.last_http_status.map(i32::from),
            last_error_category: outcome.error_category.map(FailureCategory::as_str),
            organizer_id: Some(claimed.location.organizer.as_str()).filter(|id| !id.is_empty()),
            online_meeting_id: Some(claimed.location.meeting.as_str()).filter(|id| !id.is_empty()),
            allowed_registrant: claimed.allowed_registrant.as_str(),
            desired: claimed.desired.as_str(),
        }
    }
}

/// One `graph_calls` row, named as [`record_outcome`] reads it.
#[derive(Serialize)]
pub(super) struct AuditRow<'a> {
    method: &'static str,
    path: &'a str,
    http_status: Option<i32>,
    duration_ms: i32,
    graph_request_id: Option<&'a str>,
    client_request_id: Uuid,
    error_code: Option<Cow<'a, str>>,
    outcome: &'static str,
    inner_error: Option<Cow<'a, str>>,
    response_date: Option<Cow<'a, str>>,
    ags_diagnostic: Option<Cow<'a, str>>,
    organizer_id: Option<&'a str>,
    sent_at: chrono::DateTime<chrono::Utc>,
    lease_until: Option<chrono::DateTime<chrono::Utc>>,
}

impl<'a> From<&'a CallRecord> for AuditRow<'a> {
    fn from(c: &'a CallRecord) -> Self {
        Self {
            method: c.method,
            path: &c.path,
            http_status: c.http_status.map(i32::from),
            duration_ms: i32::try_from(c.duration.as_millis()).unwrap_or(i32::MAX),
            graph_request_id: c.graph_request_id.as_deref(),
            client_request_id: c.client_request_id,
            error_code: c.error_code.as_deref().map(super::storable),
            outcome: c.outcome,
            inner_error: c.inner_error.as_deref().map(super::storable),
            response_date: c.response_date.as_deref().map(super::storable),
            ags_diagnostic: c.ags_diagnostic.as_deref().map(super::storable),
            organizer_id: c.organizer.as_ref().map(|o| o.as_str()),
            sent_at: c.sent_at,
            lease_until: c.lease_until,
        }
    }
}
