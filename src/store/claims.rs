//! Claims on meetings: leases with fencing tokens, the pre-send intent, the
//! fenced outcome write (with the audit rows) and the release of unstarted
//! claims. Every statement after the claim names the lease token.

use std::borrow::Cow;
use std::time::Duration;

use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::throttle::throttle_sql;
use super::{query_error, Error};
use crate::domain::{
    Actual, AllowedRegistrant, CallRecord, Desired, ExternalId, Location, OnlineMeetingId, OrganizerId, RegistrationId,
};

/// A meeting claimed under a lease: a snapshot of the row at claim time.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Row id.
    pub id: i64,
    /// The fencing token every later write must present.
    pub lease_token: Uuid,
    /// The platform's id.
    pub external_id: ExternalId,
    /// What the platform wants.
    pub desired: Desired,
    /// Where the platform says the meeting is.
    pub location: Location,
    /// Who may register.
    pub allowed_registrant: AllowedRegistrant,
    /// What Graph holds, as far as regsync knows.
    pub actual: Option<Actual>,
    /// The last write's outcome is unknown: look it up before anything else.
    pub needs_lookup: bool,
    /// Where that write went.
    pub lookup_at: Option<Location>,
    /// Real attempts so far.
    pub attempts: i32,
    /// Graph has answered about this meeting's registration before.
    pub graph_checked: bool,
}

/// The sync states of `ops.meeting_status.state` that an outcome can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextState {
    /// Due again at once (more work to do).
    Pending,
    /// Due again after a delay.
    Retrying,
    /// Desired equals actual.
    Synced,
    /// Parked until the platform data changes or `regsync retry`.
    Failed,
}

impl NextState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Retrying => "retrying",
            Self::Synced => "synced",
            Self::Failed => "failed",
        }
    }
}

/// What one reconcile leaves in the row; written with the lease release.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The new state.
    pub state: NextState,
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
    /// Graph answered about the meeting's registration in this reconcile.
    pub checked: bool,
    /// While `needs_lookup`, the lookup waits at least this long from now:
    /// a request Graph may still be working on finishes first.
    pub lookup_settle: Duration,
}

/// The answer of [`prepare_send`].
#[derive(Debug, Clone, PartialEq)]
pub enum SendGate {
    /// The lease is ours and renewed; the intent is committed: send. `probe`:
    /// this is the one request after a throttle hold; report its answer with
    /// [`crate::store::throttle::end_recovery`] unless it is throttled again.
    Open {
        /// Whether this request is the probe.
        probe: bool,
    },
    /// The deployment is throttled for this long: do not send.
    Throttled(Duration),
    /// Another worker owns the row now: do not send, write nothing.
    LeaseLost,
    /// Another meeting stands in the way of this write, which was not
    /// committed: for a delete, another active meeting now maps to the same
    /// Teams meeting (hand the registration over, do not delete it); for a
    /// create, another meeting still holds, or may hold, a registration
    /// there (wait for it).
    Contested {
        /// That meeting's platform id.
        by: String,
    },
}

/// A Graph write about to be sent, for its intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent<'a> {
    /// A registration is created there.
    Create(&'a Location),
    /// The registration there is deleted.
    Delete(&'a Location),
}

impl<'a> Intent<'a> {
    fn at(self) -> &'a Location {
        match self {
            Self::Create(at) | Self::Delete(at) => at,
        }
    }
}

/// Model step \[S1\] (model/exactly_once.pml).
///
/// Claims up to `limit` due meetings in one statement: pending or retrying
/// rows whose time has come, and in-flight rows whose lease expired (their
/// worker died or stalled; that counts as an attempt, and a meeting whose
/// workers stopped `max_attempts` times is parked as failed instead of being
/// claimed again). Each gets a fresh lease token. Nothing is claimed while
/// the deployment is throttled or its probe is out, and no meeting whose
/// unknown outcome must still settle (`lookup_not_before`), whatever made it
/// due.
///
/// # Guarantees
/// `FOR UPDATE SKIP LOCKED` plus the re-checked predicate means two claimers
/// never get the same row; all times are the database's clock.
///
/// # Errors
/// The statement failed.
pub async fn claim_due(
    pool: &PgPool,
    limit: u32,
    ttl: Duration,
    max_attempts: u32,
    replica: Uuid,
) -> Result<Vec<Claimed>, Error> {
    let rows = sqlx::query(concat!(
        "WITH ",
        throttle_sql!(held),
        r#",
        -- Two index scans, not one OR: expired leases first (their worker is
        -- gone), then what is due, oldest first.
        expired AS (
            SELECT id FROM meetings
            WHERE state = 'in_flight' AND lease_expires_at < now() AND NOT EXISTS (SELECT 1 FROM held)
              AND (NOT needs_lookup OR lookup_not_before IS NULL OR lookup_not_before <= now())
            LIMIT $1 FOR UPDATE SKIP LOCKED
        ),
        fresh AS (
            SELECT id, next_attempt_at FROM meetings
            WHERE state IN ('pending', 'retrying') AND next_attempt_at <= now() AND NOT EXISTS (SELECT 1 FROM held)
              AND (NOT needs_lookup OR lookup_not_before IS NULL OR lookup_not_before <= now())
            ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
        ),
        due AS (
            (SELECT id FROM expired) UNION ALL (SELECT id FROM fresh ORDER BY next_attempt_at) LIMIT $1
        ),
        taken AS (
            -- A worker that stops every time on this meeting (a crash it
            -- causes) must not get it back forever.
            SELECT m.id, m.state = 'in_flight' AND m.attempts + 1 >= $4 AS parked
            FROM meetings m JOIN due ON m.id = due.id
        ),
        claimed AS (
            UPDATE meetings AS m SET
                state            = CASE WHEN parked THEN 'failed' ELSE 'in_flight' END,
                attempts         = m.attempts + CASE WHEN m.state = 'in_flight' THEN 1 ELSE 0 END,
                lease_token      = CASE WHEN parked THEN NULL ELSE gen_random_uuid() END,
                lease_expires_at = CASE WHEN parked THEN NULL ELSE now() + make_interval(secs => $2) END,
                claimed_by       = CASE WHEN parked THEN NULL ELSE $3 END,
                last_error       = CASE WHEN parked THEN format(
                    'its worker stopped %s times while handling it (sync.max_attempts): look for a crash in the logs, '
                    'then run `regsync retry %s`', m.attempts + 1, m.external_id) ELSE m.last_error END,
                updated_at       = CASE WHEN parked THEN now() ELSE m.updated_at END
            FROM taken
            WHERE m.id = taken.id
            RETURNING m.id, m.lease_token, m.external_id, m.desired, m.organizer_id, m.online_meeting_id,
                      m.allowed_registrant, m.registration_id, m.registered_organizer_id, m.registered_meeting_id,
                      m.registered_audience, m.needs_lookup, m.lookup_organizer_id, m.lookup_meeting_id, m.attempts,
                      m.graph_checked, taken.parked
        )
        SELECT * FROM claimed WHERE NOT parked
        "#
    ))
    .bind(i64::from(limit))
    .bind(ttl.as_secs_f64())
    .bind(replica)
    .bind(i32::try_from(max_attempts).unwrap_or(i32::MAX))
    .fetch_all(pool)
    .await
    .map_err(query_error("claim due meetings"))?;
    rows.iter().map(claimed_from_row).collect::<Result<_, sqlx::Error>>().map_err(query_error("read claimed meetings"))
}

fn location(organizer: Option<String>, meeting: Option<String>) -> Option<Location> {
    Some(Location { organizer: OrganizerId(organizer?), meeting: OnlineMeetingId(meeting?) })
}

fn claimed_from_row(row: &sqlx::postgres::PgRow) -> Result<Claimed, sqlx::Error> {
    let audience = |value: Option<String>| value.as_deref().and_then(AllowedRegistrant::parse);
    let registration_id: Option<String> = row.try_get("registration_id")?;
    let registered_at = location(row.try_get("registered_organizer_id")?, row.try_get("registered_meeting_id")?);
    let actual = match (registration_id, registered_at) {
        (Some(id), Some(location)) => Some(Actual {
            registration_id: RegistrationId(id),
            location,
            audience: audience(row.try_get("registered_audience")?),
        }),
        _ => None,
    };
    let desired: String = row.try_get("desired")?;
    Ok(Claimed {
        id: row.try_get("id")?,
        lease_token: row.try_get("lease_token")?,
        external_id: ExternalId(row.try_get("external_id")?),
        desired: if desired == "unregistered" { Desired::Unregistered } else { Desired::Registered },
        location: Location {
            organizer: OrganizerId(row.try_get("organizer_id")?),
            meeting: OnlineMeetingId(row.try_get("online_meeting_id")?),
        },
        // The column's CHECK constraint allows only the two values.
        allowed_registrant: audience(row.try_get("allowed_registrant")?).unwrap_or(AllowedRegistrant::Everyone),
        actual,
        needs_lookup: row.try_get("needs_lookup")?,
        lookup_at: location(row.try_get("lookup_organizer_id")?, row.try_get("lookup_meeting_id")?),
        attempts: row.try_get("attempts")?,
        graph_checked: row.try_get("graph_checked")?,
    })
}

/// Model step \[S3\] (model/exactly_once.pml).
///
/// The pre-send step, one round trip: checks the deployment-wide throttle
/// (and takes the probe after a hold, for `probe_ttl`),
/// checks the lease is still ours and renews it, and — for a write —
/// checks no other meeting stands in its way and commits the intent
/// (`needs_lookup` and where the write goes) together with what regsync
/// knows Graph holds. Nothing is written when throttled or contested.
///
/// # Errors
/// The statement failed: do not send.
pub async fn prepare_send(
    pool: &PgPool,
    claimed: &Claimed,
    write: Option<Intent<'_>>,
    actual: Option<&Actual>,
    ttl: Duration,
    probe_ttl: Duration,
) -> Result<SendGate, Error> {
    let params = GateParams {
        meeting_id: claimed.id,
        lease_token: claimed.lease_token,
        write: match write {
            Some(Intent::Create(_)) => "create",
            Some(Intent::Delete(_)) => "delete",
            None => "lookup",
        },
        write_organizer_id: write.map(|w| w.at().organizer.as_str()),
        write_meeting_id: write.map(|w| w.at().meeting.as_str()),
        registration_id: actual.map(|a| a.registration_id.as_str()),
        registered_organizer_id: actual.map(|a| a.location.organizer.as_str()),
        registered_meeting_id: actual.map(|a| a.location.meeting.as_str()),
        registered_audience: actual.and_then(|a| a.audience).map(AllowedRegistrant::as_str),
        lease_ttl_secs: ttl.as_secs_f64(),
        probe_ttl_secs: probe_ttl.as_secs_f64(),
    };
    // Parameters are unpacked by name from one JSON document, as in
    // [`record_outcome`].
    let row = sqlx::query(concat!(
        r#"
        WITH p AS (
            SELECT * FROM jsonb_to_record($1) AS p(
                meeting_id int8, lease_token uuid, write text, write_organizer_id text, write_meeting_id text,
                registration_id text, registered_organizer_id text, registered_meeting_id text,
                registered_audience text, lease_ttl_secs float8, probe_ttl_secs float8)
        ),
        "#,
        throttle_sql!(gate),
        r#",
        -- Who else wants or holds a registration where this write goes.
        other AS (
            (SELECT external_id FROM meetings, p
             WHERE p.write = 'delete' AND desired = 'registered' AND meetings.organizer_id = p.write_organizer_id
               AND online_meeting_id = p.write_meeting_id AND id <> p.meeting_id LIMIT 1)
            UNION ALL
            (SELECT external_id FROM meetings, p
             WHERE p.write = 'create' AND meetings.registration_id IS NOT NULL
               AND meetings.registered_organizer_id = p.write_organizer_id
               AND meetings.registered_meeting_id = p.write_meeting_id AND id <> p.meeting_id LIMIT 1)
            UNION ALL
            (SELECT external_id FROM meetings, p
             WHERE p.write = 'create' AND needs_lookup AND lookup_organizer_id = p.write_organizer_id
               AND lookup_meeting_id = p.write_meeting_id AND id <> p.meeting_id LIMIT 1)
            LIMIT 1
        ),
        u AS (
            UPDATE meetings AS m SET
                needs_lookup            = m.needs_lookup OR p.write <> 'lookup',
                lookup_organizer_id     = CASE WHEN p.write <> 'lookup' THEN p.write_organizer_id
                                               ELSE m.lookup_organizer_id END,
                lookup_meeting_id       = CASE WHEN p.write <> 'lookup' THEN p.write_meeting_id
                                               ELSE m.lookup_meeting_id END,
                registration_id         = p.registration_id,
                registered_organizer_id = p.registered_organizer_id,
                registered_meeting_id   = p.registered_meeting_id,
                registered_audience     = p.registered_audience,
                lease_expires_at        = now() + make_interval(secs => p.lease_ttl_secs)
            FROM p
            WHERE m.id = p.meeting_id AND m.lease_token = p.lease_token AND (SELECT wait FROM t) = interval '0'
              AND NOT EXISTS (SELECT 1 FROM other)
            RETURNING 1
        )
        SELECT EXTRACT(EPOCH FROM (SELECT wait FROM t))::float8 AS wait_secs,
               EXISTS (SELECT 1 FROM meetings, p WHERE id = p.meeting_id AND meetings.lease_token = p.lease_token)
                   AS owned,
               EXISTS (SELECT 1 FROM u) AS committed,
               (SELECT external_id FROM other) AS contested_by,
               EXISTS (SELECT 1 FROM probe) AS probe
        "#
    ))
    .bind(Json(params))
    .fetch_one(pool)
    .await
    .map_err(query_error("commit intent"))?;
    let read = |e| query_error("commit intent")(e);
    let wait: f64 = row.try_get("wait_secs").map_err(read)?;
    let owned: bool = row.try_get("owned").map_err(read)?;
    let committed: bool = row.try_get("committed").map_err(read)?;
    let contested_by: Option<String> = row.try_get("contested_by").map_err(read)?;
    let probe: bool = row.try_get("probe").map_err(read)?;
    Ok(if wait > 0.0 {
        SendGate::Throttled(Duration::from_secs_f64(wait))
    } else if !owned {
        SendGate::LeaseLost
    } else if let Some(by) = contested_by {
        SendGate::Contested { by }
    } else if committed {
        SendGate::Open { probe }
    } else {
        SendGate::LeaseLost
    })
}

/// Model step \[S8\] (model/exactly_once.pml); the `lookup_not_before` it sets is \[S9\].
///
/// Writes a reconcile's outcome, releases the lease and appends the Graph
/// calls it made to the audit table, in one statement. The write is fenced:
/// it applies only while `claimed.lease_token` still owns the row. If the
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
    let applied: bool = sqlx::query_scalar(
        r#"
        WITH o AS (
            SELECT * FROM jsonb_to_record($1) AS o(
                meeting_id int8, lease_token uuid, external_id text,
                state text, attempts int4, next_attempt_in_secs float8,
                needs_lookup bool, lookup_organizer_id text, lookup_meeting_id text, lookup_settle_secs float8,
                registration_id text, registered_organizer_id text, registered_meeting_id text,
                registered_audience text, checked bool, last_error text, last_http_status int4,
                organizer_id text, online_meeting_id text, allowed_registrant text, desired text)
        ),
        audit AS (
            INSERT INTO graph_calls (meeting_id, external_id, method, path, http_status, duration_ms,
                                     graph_request_id, client_request_id, error_code, outcome)
            SELECT o.meeting_id, o.external_id, c.*
            FROM o, jsonb_to_recordset($2) AS c(method text, path text, http_status int4, duration_ms int4,
                                                graph_request_id text, client_request_id uuid, error_code text,
                                                outcome text)
        ),
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
                updated_at = now(),
                lease_token = NULL, lease_expires_at = NULL, claimed_by = NULL
            FROM o
            WHERE m.id = o.meeting_id AND m.lease_token = o.lease_token
            RETURNING 1
        )
        SELECT EXISTS (SELECT 1 FROM done)
        "#,
    )
    .bind(Json(OutcomeRow::new(claimed, outcome)))
    .bind(Json(audit))
    .fetch_one(pool)
    .await
    .map_err(query_error("record outcome"))?;
    Ok(applied)
}

/// The values [`prepare_send`] reads, named as its statement reads them.
#[derive(Serialize)]
struct GateParams<'a> {
    meeting_id: i64,
    lease_token: Uuid,
    /// `create`, `delete` or `lookup`.
    write: &'static str,
    /// Where the write goes (none for a lookup).
    write_organizer_id: Option<&'a str>,
    write_meeting_id: Option<&'a str>,
    /// What regsync knows Graph holds, committed with the intent.
    registration_id: Option<&'a str>,
    registered_organizer_id: Option<&'a str>,
    registered_meeting_id: Option<&'a str>,
    registered_audience: Option<&'static str>,
    lease_ttl_secs: f64,
    probe_ttl_secs: f64,
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
    /// The platform's data as claimed: a change since makes the row due.
    organizer_id: &'a str,
    online_meeting_id: &'a str,
    allowed_registrant: &'static str,
    desired: &'static str,
}

impl<'a> OutcomeRow<'a> {
    fn new(claimed: &'a Claimed, outcome: &'a Outcome) -> Self {
        let actual = outcome.actual.as_ref();
        Self {
            meeting_id: claimed.id,
            lease_token: claimed.lease_token,
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
            organizer_id: claimed.location.organizer.as_str(),
            online_meeting_id: claimed.location.meeting.as_str(),
            allowed_registrant: claimed.allowed_registrant.as_str(),
            desired: claimed.desired.as_str(),
        }
    }
}

/// One `graph_calls` row, named as [`record_outcome`] reads it.
#[derive(Serialize)]
struct AuditRow<'a> {
    method: &'static str,
    path: &'a str,
    http_status: Option<i32>,
    duration_ms: i32,
    graph_request_id: Option<&'a str>,
    client_request_id: Uuid,
    error_code: Option<Cow<'a, str>>,
    outcome: &'static str,
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
        }
    }
}

/// Gives back claimed meetings that were never started (shutdown, a hold):
/// due again at once, as they were. Fenced by each lease token.
///
/// # Errors
/// The statement failed.
pub async fn release(pool: &PgPool, claimed: &[Claimed]) -> Result<u64, Error> {
    let ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
    let tokens: Vec<Uuid> = claimed.iter().map(|c| c.lease_token).collect();
    let result = sqlx::query(
        r#"
        UPDATE meetings SET
            state = CASE WHEN attempts > 0 OR needs_lookup THEN 'retrying' ELSE 'pending' END,
            lease_token = NULL, lease_expires_at = NULL, claimed_by = NULL, next_attempt_at = now()
        WHERE (id, lease_token) IN (SELECT * FROM UNNEST($1::int8[], $2::uuid[]))
        "#,
    )
    .bind(&ids)
    .bind(&tokens)
    .execute(pool)
    .await
    .map_err(query_error("release claims"))?;
    Ok(result.rows_affected())
}
