//! The pre-send gate: one round trip that checks the throttle, renews the
//! lease and commits a write's intent before it leaves.

use std::time::Duration;

use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::throttle::throttle_sql;
use super::{query_error, Claimed, Error};
use crate::domain::{Actual, AllowedRegistrant, Location};

/// The answer of a meeting's [`prepare_send`]: every row's [`Gate`], or
/// another meeting standing in the way.
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

/// [`prepare_send`]: `$1` is a [`GateParams`] document.
const PREPARE_SEND: &str = concat!(
    r#"
    WITH p AS (
        SELECT * FROM jsonb_to_record($1) AS p(
            meeting_id int8, lease_token uuid, write text, write_organizer_id text, write_meeting_id text,
            registration_id text, registered_organizer_id text, registered_meeting_id text,
            registered_audience text, lease_ttl_secs float8, probe_ttl_secs float8)
    ),
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
    "#,
    throttle_sql!(
        gate,
        "EXISTS (SELECT 1 FROM meetings, p WHERE id = p.meeting_id AND meetings.lease_token = p.lease_token)
         AND NOT EXISTS (SELECT 1 FROM other)"
    ),
    r#",
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
);

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
        meeting_id: claimed.claim.lease.row,
        lease_token: claimed.claim.lease.token,
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
    let row =
        sqlx::query(PREPARE_SEND).bind(Json(params)).fetch_one(pool).await.map_err(query_error("commit intent"))?;
    Ok(match read_gate(&row, "commit intent")? {
        (Gate::Throttled(wait), _) => SendGate::Throttled(wait),
        (_, Some(by)) => SendGate::Contested { by },
        (Gate::Open { probe }, None) => SendGate::Open { probe },
        (Gate::LeaseLost, None) => SendGate::LeaseLost,
    })
}

/// What every row's pre-send gate answers, whatever its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// The lease is ours and renewed; the intent is committed: send.
    /// `probe`: this is the one request after a throttle hold.
    Open {
        /// Whether this request is the probe.
        probe: bool,
    },
    /// The deployment is throttled for this long: do not send.
    Throttled(Duration),
    /// Another worker owns the row now: do not send, write nothing.
    LeaseLost,
}

/// What a pre-send statement answered (columns `wait_secs`, `owned`,
/// `committed`, `probe`, and `contested_by`: the other row standing in the
/// way, always null for a kind where none can) as every row's [`Gate`],
/// and who stands in the way of a row this worker owns.
///
/// # Errors
/// A column is missing or of another type.
pub(super) fn read_gate(row: &sqlx::postgres::PgRow, op: &'static str) -> Result<(Gate, Option<String>), Error> {
    let read = |e| query_error(op)(e);
    let wait: f64 = row.try_get("wait_secs").map_err(read)?;
    let owned: bool = row.try_get("owned").map_err(read)?;
    let committed: bool = row.try_get("committed").map_err(read)?;
    let contested_by: Option<String> = row.try_get("contested_by").map_err(read)?;
    let probe: bool = row.try_get("probe").map_err(read)?;
    let contested_by = contested_by.filter(|_| owned && wait <= 0.0);
    let gate = if wait > 0.0 {
        Gate::Throttled(Duration::from_secs_f64(wait))
    } else if owned && committed && contested_by.is_none() {
        Gate::Open { probe }
    } else {
        Gate::LeaseLost
    };
    Ok((gate, contested_by))
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
