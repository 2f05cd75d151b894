//! Claims on meetings: leases with fencing tokens, the pre-send intent, the
//! fenced outcome write (with the audit rows) and the release of unstarted
//! claims. Every statement after the claim names the lease token.

use std::time::Duration;

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
    let row = sqlx::query(concat!(
        "WITH ",
        throttle_sql!(gate),
        r#",
        -- Who else wants or holds a registration where this write goes.
        other AS (
            (SELECT external_id FROM meetings
             WHERE $12 = 'delete' AND desired = 'registered' AND organizer_id = $4 AND online_meeting_id = $5
               AND id <> $1 LIMIT 1)
            UNION ALL
            (SELECT external_id FROM meetings
             WHERE $12 = 'create' AND registration_id IS NOT NULL
               AND registered_organizer_id = $4 AND registered_meeting_id = $5 AND id <> $1 LIMIT 1)
            UNION ALL
            (SELECT external_id FROM meetings
             WHERE $12 = 'create' AND needs_lookup AND lookup_organizer_id = $4 AND lookup_meeting_id = $5
               AND id <> $1 LIMIT 1)
            LIMIT 1
        ),
        u AS (
            UPDATE meetings SET
                needs_lookup            = needs_lookup OR $3,
                lookup_organizer_id     = CASE WHEN $3 THEN $4 ELSE lookup_organizer_id END,
                lookup_meeting_id       = CASE WHEN $3 THEN $5 ELSE lookup_meeting_id END,
                registration_id         = $6,
                registered_organizer_id = $7,
                registered_meeting_id   = $8,
                registered_audience     = $9,
                lease_expires_at        = now() + make_interval(secs => $10)
            WHERE id = $1 AND lease_token = $2 AND (SELECT wait FROM t) = interval '0'
              AND NOT EXISTS (SELECT 1 FROM other)
            RETURNING 1
        )
        SELECT EXTRACT(EPOCH FROM (SELECT wait FROM t))::float8 AS wait_secs,
               EXISTS (SELECT 1 FROM meetings WHERE id = $1 AND lease_token = $2) AS owned,
               EXISTS (SELECT 1 FROM u) AS committed,
               (SELECT external_id FROM other) AS contested_by,
               EXISTS (SELECT 1 FROM probe) AS probe
        "#
    ))
    .bind(claimed.id)
    .bind(claimed.lease_token)
    .bind(write.is_some())
    .bind(write.map(|w| w.at().organizer.as_str()))
    .bind(write.map(|w| w.at().meeting.as_str()))
    .bind(actual.map(|a| a.registration_id.as_str()))
    .bind(actual.map(|a| a.location.organizer.as_str()))
    .bind(actual.map(|a| a.location.meeting.as_str()))
    .bind(actual.and_then(|a| a.audience).map(AllowedRegistrant::as_str))
    .bind(ttl.as_secs_f64())
    .bind(probe_ttl.as_secs_f64())
    .bind(match write {
        Some(Intent::Create(_)) => "create",
        Some(Intent::Delete(_)) => "delete",
        None => "lookup",
    })
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
    let actual = outcome.actual.as_ref();
    let mut methods = Vec::with_capacity(calls.len());
    let mut paths = Vec::with_capacity(calls.len());
    let mut statuses = Vec::with_capacity(calls.len());
    let mut durations = Vec::with_capacity(calls.len());
    let mut request_ids = Vec::with_capacity(calls.len());
    let mut client_ids = Vec::with_capacity(calls.len());
    let mut codes = Vec::with_capacity(calls.len());
    let mut outcomes = Vec::with_capacity(calls.len());
    for c in calls {
        methods.push(c.method);
        paths.push(c.path.as_str());
        statuses.push(c.http_status.map(i32::from));
        durations.push(i32::try_from(c.duration.as_millis()).unwrap_or(i32::MAX));
        request_ids.push(c.graph_request_id.as_deref());
        client_ids.push(c.client_request_id);
        codes.push(c.error_code.as_deref().map(super::storable));
        outcomes.push(c.outcome);
    }
    let row = sqlx::query(
        r#"
        WITH audit AS (
            INSERT INTO graph_calls (meeting_id, external_id, method, path, http_status, duration_ms,
                                     graph_request_id, client_request_id, error_code, outcome)
            SELECT $1, $3, * FROM UNNEST($20::text[], $21::text[], $22::int4[], $23::int4[], $24::text[],
                                         $25::uuid[], $26::text[], $27::text[])
        ),
        done AS (
            UPDATE meetings AS m SET
                -- `changed`: the platform changed the meeting while it was in
                -- flight; it is due again. The sub-select reads the row being
                -- updated, so if a poll's change committed while this write
                -- waited for the row lock, PostgreSQL re-evaluates it on the
                -- new version.
                (state, attempts, next_attempt_at, last_synced_at) = (
                    SELECT CASE WHEN changed THEN 'pending' ELSE $4 END,
                           CASE WHEN changed THEN 0 ELSE $5 END,
                           now() + CASE WHEN changed THEN interval '0' ELSE make_interval(secs => $6) END,
                           CASE WHEN $4 = 'synced' AND NOT changed THEN now() ELSE m.last_synced_at END
                    FROM (SELECT (m.organizer_id, m.online_meeting_id, m.allowed_registrant, m.desired)
                                 IS DISTINCT FROM ($16, $17, $18, $19) AS changed) AS platform
                ),
                needs_lookup = $7,
                lookup_organizer_id = $8,
                lookup_meeting_id = $9,
                lookup_not_before = CASE WHEN $7 THEN GREATEST(m.lookup_not_before, now() + make_interval(secs => $28))
                                    END,
                registration_id = $10,
                registered_organizer_id = $11,
                registered_meeting_id = $12,
                registered_audience = $13,
                graph_checked = m.graph_checked OR $29,
                last_error = $14,
                last_http_status = $15,
                updated_at = now(),
                lease_token = NULL, lease_expires_at = NULL, claimed_by = NULL
            WHERE m.id = $1 AND m.lease_token = $2
            RETURNING 1
        )
        SELECT EXISTS (SELECT 1 FROM done) AS applied
        "#,
    )
    .bind(claimed.id)
    .bind(claimed.lease_token)
    .bind(claimed.external_id.as_str())
    .bind(outcome.state.as_str())
    .bind(outcome.attempts)
    .bind(outcome.next_attempt_in.as_secs_f64())
    .bind(outcome.needs_lookup)
    .bind(outcome.lookup_at.as_ref().map(|l| l.organizer.as_str()))
    .bind(outcome.lookup_at.as_ref().map(|l| l.meeting.as_str()))
    .bind(actual.map(|a| a.registration_id.as_str()))
    .bind(actual.map(|a| a.location.organizer.as_str()))
    .bind(actual.map(|a| a.location.meeting.as_str()))
    .bind(actual.and_then(|a| a.audience).map(AllowedRegistrant::as_str))
    .bind(outcome.last_error.as_deref().map(super::storable))
    .bind(outcome.last_http_status.map(i32::from))
    .bind(claimed.location.organizer.as_str())
    .bind(claimed.location.meeting.as_str())
    .bind(claimed.allowed_registrant.as_str())
    .bind(claimed.desired.as_str())
    .bind(&methods)
    .bind(&paths)
    .bind(&statuses)
    .bind(&durations)
    .bind(&request_ids)
    .bind(&client_ids)
    .bind(&codes)
    .bind(&outcomes)
    .bind(outcome.lookup_settle.as_secs_f64())
    .bind(outcome.checked)
    .fetch_one(pool)
    .await
    .map_err(query_error("record outcome"))?;
    row.try_get("applied").map_err(query_error("record outcome"))
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
