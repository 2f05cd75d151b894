//! Claims on meetings: leases with fencing tokens, and the release of
//! claims never started. Every statement after the claim names the lease
//! token: the pre-send gate (`send`) and the outcome write (`outcome`).

use std::time::Duration;

use chrono::{DateTime, Utc};

use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::throttle::throttle_sql;
use super::{query_error, Error};
use crate::domain::{
    Actual, AllowedRegistrant, Desired, ExternalId, Location, Lookup, OnlineMeetingId, OrganizerId, RegistrationId,
};

/// Which row a worker holds, and the fencing token every later write of
/// it must present: what any kind of claimed row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The row's id.
    pub row: i64,
    /// The fencing token.
    pub token: Uuid,
}

/// What the engine reads of any claimed row: the lease, the attempts so
/// far, and whether the last write's outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The row held.
    pub lease: Lease,
    /// Real attempts so far.
    pub attempts: i32,
    /// The last write's outcome is unknown: look it up before anything else.
    pub needs_lookup: bool,
}

impl Claim {
    /// As a claim statement returns it (columns `id`, `lease_token`,
    /// `attempts`, `needs_lookup`).
    ///
    /// # Errors
    /// A column is missing or of another type.
    pub(super) fn of(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            lease: Lease { row: row.try_get("id")?, token: row.try_get("lease_token")? },
            attempts: row.try_get("attempts")?,
            needs_lookup: row.try_get("needs_lookup")?,
        })
    }
}

/// A meeting claimed under a lease: a snapshot of the row at claim time.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The row held, for the engine.
    pub claim: Claim,
    /// The platform's id.
    pub external_id: ExternalId,
    /// What the platform wants.
    pub desired: Desired,
    /// Where the platform says the meeting is. A part the platform named by
    /// UPN or join link is empty until resolved: see [`Claimed::next_lookup`].
    pub location: Location,
    /// The organizer's UPN, when the platform gave that instead of an id.
    pub organizer_upn: Option<String>,
    /// The Teams join link, when the platform gave that instead of an id.
    pub join_url: Option<String>,
    /// Who may register.
    pub allowed_registrant: AllowedRegistrant,
    /// What Graph holds, as far as regsync knows.
    pub actual: Option<Actual>,
    /// Where the write whose outcome is unknown went.
    pub lookup_at: Option<Location>,
    /// Graph has answered about this meeting's registration before.
    pub graph_checked: bool,
}

impl Claimed {
    /// The Graph id to look up before the meeting's location is known, or
    /// `None` once it is: the organizer first, since a join link is looked
    /// up among the organizer's meetings.
    pub fn next_lookup(&self) -> Option<Lookup> {
        if self.location.organizer.as_str().is_empty() {
            return self.organizer_upn.clone().map(|upn| Lookup::Organizer { upn });
        }
        if self.location.meeting.as_str().is_empty() {
            let organizer = self.location.organizer.clone();
            return self.join_url.clone().map(|join_url| Lookup::Meeting { organizer, join_url });
        }
        None
    }

    /// Takes in what `lookup` resolved to.
    pub fn resolved(&mut self, lookup: &Lookup, graph_id: &str) {
        match lookup {
            Lookup::Organizer { .. } => self.location.organizer = OrganizerId(graph_id.to_owned()),
            Lookup::Meeting { .. } => self.location.meeting = OnlineMeetingId(graph_id.to_owned()),
        }
    }
}

/// The CTEs `taken` and `claimed` of a claim over `$table` (aliased `m`),
/// from a CTE `due` of row ids: each row gets a fresh lease (`$2` seconds,
/// replica `$3`), and a row taken over from an expired lease counts an
/// attempt — one whose workers stopped `$4` (`sync.max_attempts`) times is
/// parked as failed instead, its `last_error` naming the command
/// `$retry` (an SQL expression) that makes it due again. `claimed` returns
/// the row and `parked`; the statement goes on with `RETURNING`.
macro_rules! lease_or_park {
    ($table:literal, $retry:literal) => {
        concat!(
            "taken AS (
        -- A worker that stops every time on this row (a crash it causes)
        -- must not get it back forever.
        SELECT m.id, m.state = 'in_flight' AND m.attempts + 1 >= $4 AS parked
        FROM ",
            $table,
            " m JOIN due ON m.id = due.id
    ),
    claimed AS (
        UPDATE ",
            $table,
            " AS m SET
            state            = CASE WHEN parked THEN 'failed' ELSE 'in_flight' END,
            attempts         = m.attempts + CASE WHEN m.state = 'in_flight' THEN 1 ELSE 0 END,
            lease_token      = CASE WHEN parked THEN NULL ELSE gen_random_uuid() END,
            lease_expires_at = CASE WHEN parked THEN NULL ELSE now() + make_interval(secs => $2) END,
            claimed_by       = CASE WHEN parked THEN NULL ELSE $3 END,
            last_error       = CASE WHEN parked THEN format(
                'its worker stopped %s times while handling it (sync.max_attempts): look for a crash in the logs, '
                'then run `%s`', m.attempts + 1, ",
            $retry,
            ") ELSE m.last_error END,
            last_error_category = CASE WHEN parked THEN 'worker_crashed' ELSE m.last_error_category END,
            updated_at       = CASE WHEN parked THEN now() ELSE m.updated_at END
        FROM taken
        WHERE m.id = taken.id"
        )
    };
}
pub(super) use lease_or_park;

/// [`claim_due`]: `$1` the batch size, `$2` the lease in seconds, `$3` the
/// replica, `$4` `sync.max_attempts`.
const CLAIM_DUE: &str = concat!(
    "WITH ",
    throttle_sql!(held),
    r#",
    -- Two index scans, not one OR: expired leases first (their worker is
    -- gone), then what is due in the write queue's order: cancellations,
    -- then the events starting soonest, then the rest (meetings_due_idx).
    expired AS (
        SELECT id FROM meetings
        WHERE state = 'in_flight' AND lease_expires_at < now() AND NOT EXISTS (SELECT 1 FROM held)
          AND (NOT needs_lookup OR lookup_not_before IS NULL OR lookup_not_before <= now())
        LIMIT $1 FOR UPDATE SKIP LOCKED
    ),
    fresh AS (
        SELECT id, desired <> 'unregistered' AS later, starts_at, next_attempt_at FROM meetings
        WHERE state IN ('pending', 'retrying') AND next_attempt_at <= now() AND NOT EXISTS (SELECT 1 FROM held)
          AND (NOT needs_lookup OR lookup_not_before IS NULL OR lookup_not_before <= now())
        ORDER BY desired <> 'unregistered', starts_at, next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
    ),
    due AS (
        (SELECT id FROM expired) UNION ALL (SELECT id FROM fresh ORDER BY later, starts_at, next_attempt_at) LIMIT $1
    ),
    "#,
    lease_or_park!("meetings", "'regsync retry ' || m.external_id"),
    r#"
        RETURNING m.id, m.lease_token, m.external_id, m.desired, m.organizer_id, m.online_meeting_id,
                  m.organizer_upn, m.join_url,
                  m.allowed_registrant, m.registration_id, m.registered_organizer_id, m.registered_meeting_id,
                  m.registered_audience, m.needs_lookup, m.lookup_organizer_id, m.lookup_meeting_id, m.attempts,
                  m.graph_checked, taken.parked
    )
    SELECT * FROM claimed WHERE NOT parked
    "#
);

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
    let rows = sqlx::query(CLAIM_DUE)
        .bind(i64::from(limit))
        .bind(ttl.as_secs_f64())
        .bind(replica)
        .bind(i32::try_from(max_attempts).unwrap_or(i32::MAX))
        .fetch_all(pool)
        .await
        .map_err(query_error("claim due meetings"))?;
    rows.iter().map(claimed_from_row).collect::<Result<_, sqlx::Error>>().map_err(query_error("read claimed meetings"))
}

/// A meeting as stored, for `regsync plan`: the row a claim would see, and
/// where it rests.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The row as a claim would see it (with a nil lease token).
    pub row: Claimed,
    /// Where it rests.
    pub state: crate::domain::RowState,
    /// When a pending or retrying meeting is due.
    pub next_attempt_at: DateTime<Utc>,
    /// What went wrong last.
    pub last_error: Option<String>,
}

/// Every stored meeting, read without a lock or a write.
///
/// # Errors
/// The statement failed.
pub async fn stored(pool: &PgPool) -> Result<Vec<Stored>, Error> {
    let rows = sqlx::query(
        r#"
        SELECT id, coalesce(lease_token, '00000000-0000-0000-0000-000000000000') AS lease_token, external_id, desired,
               organizer_id, online_meeting_id, organizer_upn, join_url, allowed_registrant, registration_id, registered_organizer_id,
               registered_meeting_id, registered_audience, needs_lookup, lookup_organizer_id, lookup_meeting_id,
               attempts, graph_checked, state, next_attempt_at, last_error
        FROM meetings ORDER BY external_id
        "#,
    )
    .fetch_all(pool)
    .await
    .map_err(query_error("read meetings"))?;
    rows.iter()
        .map(|r| {
            Ok(Stored {
                row: claimed_from_row(r)?,
                state: super::row_state(r.try_get("state")?)?,
                next_attempt_at: r.try_get("next_attempt_at")?,
                last_error: r.try_get("last_error")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(query_error("read meetings"))
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
        claim: Claim::of(row)?,
        external_id: ExternalId(row.try_get("external_id")?),
        desired: if desired == "unregistered" { Desired::Unregistered } else { Desired::Registered },
        location: Location {
            organizer: OrganizerId(row.try_get::<Option<String>, _>("organizer_id")?.unwrap_or_default()),
            meeting: OnlineMeetingId(row.try_get::<Option<String>, _>("online_meeting_id")?.unwrap_or_default()),
        },
        organizer_upn: row.try_get("organizer_upn")?,
        join_url: row.try_get("join_url")?,
        // The column's CHECK constraint allows only the two values.
        allowed_registrant: audience(row.try_get("allowed_registrant")?).unwrap_or(AllowedRegistrant::Everyone),
        actual,
        lookup_at: location(row.try_get("lookup_organizer_id")?, row.try_get("lookup_meeting_id")?),
        graph_checked: row.try_get("graph_checked")?,
    })
}

/// The tables whose rows the engine claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `meetings`.
    Meetings,
    /// `registrants`.
    Registrants,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Self::Meetings => "meetings",
            Self::Registrants => "registrants",
        }
    }
}

/// Releases claimed rows of `table` that were never started, if still
/// held with their leases: due again at once, `retrying` if they made
/// progress worth keeping. How many.
///
/// # Errors
/// The statement failed.
pub async fn release(pool: &PgPool, table: Table, leases: &[Lease]) -> Result<u64, Error> {
    let ids: Vec<i64> = leases.iter().map(|l| l.row).collect();
    let tokens: Vec<Uuid> = leases.iter().map(|l| l.token).collect();
    let result = sqlx::query(&format!(
        r#"
        UPDATE {} SET
            state = CASE WHEN attempts > 0 OR needs_lookup THEN 'retrying' ELSE 'pending' END,
            lease_token = NULL, lease_expires_at = NULL, claimed_by = NULL, next_attempt_at = now()
        WHERE (id, lease_token) IN (SELECT * FROM UNNEST($1::int8[], $2::uuid[]))
        "#,
        table.name()
    ))
    .bind(&ids)
    .bind(&tokens)
    .execute(pool)
    .await
    .map_err(query_error("release claims"))?;
    Ok(result.rows_affected())
}
