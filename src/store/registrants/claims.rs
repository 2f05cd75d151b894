//! Claiming due registrants under a lease, with what regsync knows of
//! their meeting.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::super::throttle::throttle_sql;
use super::super::{query_error, Error};
use crate::domain::{AllowedRegistrant, Desired, Location, OnlineMeetingId, OrganizerId, Person, RegistrationId};

/// A claimed registrant, with what regsync knows of its meeting.
#[derive(Debug, Clone)]
pub struct ClaimedRegistrant {
    /// The row held, for the engine.
    pub claim: crate::store::claims::Claim,
    /// The platform's registrant id.
    pub external_id: String,
    /// The platform's meeting id.
    pub meeting_external_id: String,
    /// Registered or cancelled on the platform.
    pub desired: Desired,
    /// Who they are.
    pub person: Person,
    /// Where the write whose outcome is unknown went.
    pub lookup_at: Option<String>,
    /// Where Graph holds the registrant, as far as regsync knows.
    pub enrolled_at: Option<String>,
    /// Graph's id of it.
    pub registrant_id: Option<String>,
    /// Its personal join link.
    pub join_web_url: Option<String>,
    /// What the platform acknowledged last.
    pub written_back_value: Option<String>,
    /// The status the platform was last told (status write-back).
    pub status_written_back: Option<String>,
    /// How long ago the intent of the write whose outcome is unknown was
    /// committed, by the database's clock.
    pub intent_age: Option<Duration>,
    /// Their registration's status in Teams, as last read back.
    pub teams_status: Option<crate::domain::TeamsStatus>,
    /// That status was seen after the platform last changed them: of the
    /// two, the change made in Teams is the later.
    pub teams_change_is_latest: bool,
    /// Their answers to registration questions, by configured name.
    pub answers: std::collections::BTreeMap<String, serde_json::Value>,
    /// The meeting, if the platform listed it.
    pub meeting: Option<MeetingView>,
}

/// What a registrant needs of its meeting.
#[derive(Debug, Clone)]
pub struct MeetingView {
    /// Active on the platform.
    pub desired: Desired,
    /// Its sync state.
    pub state: crate::domain::RowState,
    /// Its organizer and online meeting (or webinar, in the meeting column).
    pub organizer_id: Option<String>,
    /// The online meeting id, or the webinar id.
    pub online_meeting_id: Option<String>,
    /// Where its external registration is and its id, when it has one.
    pub registered: Option<(Location, RegistrationId)>,
    /// Who may register.
    pub allowed_registrant: AllowedRegistrant,
    /// Why it is not synced, if it is not.
    pub last_error: Option<String>,
}

/// [`claim_due`]: `$1` the batch size, `$2` the lease in seconds, `$3` the
/// replica, `$4` `sync.max_attempts`, `$5` the round's start: a registrant
/// rescheduled during the round is not claimed again in it.
const CLAIM_DUE: &str = concat!(
    "WITH ",
    throttle_sql!(held),
    r#",
    -- The write queue's order: cancellations, then the registrants of the
    -- events starting soonest, then the rest.
    due AS (
        SELECT r.id FROM registrants r
        LEFT JOIN meetings e ON e.external_id = r.meeting_external_id
        WHERE ((r.state IN ('pending', 'retrying') AND r.next_attempt_at <= $5)
               OR (r.state = 'in_flight' AND r.lease_expires_at < $5))
          AND NOT EXISTS (SELECT 1 FROM held)
          AND (NOT r.needs_lookup OR r.lookup_not_before IS NULL OR r.lookup_not_before <= $5)
        ORDER BY r.desired <> 'unregistered', e.starts_at, r.next_attempt_at LIMIT $1 FOR UPDATE OF r SKIP LOCKED
    ),
    "#,
    crate::store::claims::lease_or_park!("registrants", "'regsync retry --failed'"),
    r#"
        RETURNING m.*, taken.parked
    )
    SELECT c.*, EXTRACT(EPOCH FROM now() - c.intent_at)::float8 AS intent_age_secs,
           coalesce(c.teams_status_at >= c.platform_changed_at, FALSE) AS teams_change_is_latest, m.desired AS m_desired, m.state AS m_state, m.organizer_id AS m_organizer_id,
           m.online_meeting_id AS m_online_meeting_id, m.registration_id AS m_registration_id,
           m.registered_organizer_id AS m_registered_organizer_id,
           m.registered_meeting_id AS m_registered_meeting_id, m.allowed_registrant AS m_allowed_registrant,
           m.last_error AS m_last_error, m.id IS NOT NULL AS m_listed
    FROM claimed c LEFT JOIN meetings m ON m.external_id = c.meeting_external_id
    WHERE NOT c.parked
    "#
);

/// Claims up to `limit` due registrants (pending or retrying whose time has
/// come, and in-flight ones whose lease expired, which counts an attempt),
/// each under a fresh lease token, with their meeting. Nothing is claimed
/// while Graph holds the deployment.
///
/// # Errors
/// The statement failed.
pub async fn claim_due(
    pool: &PgPool,
    limit: u32,
    ttl: Duration,
    max_attempts: u32,
    replica: Uuid,
    round: DateTime<Utc>,
) -> Result<Vec<ClaimedRegistrant>, Error> {
    let rows = sqlx::query(CLAIM_DUE)
        .bind(i64::from(limit))
        .bind(ttl.as_secs_f64())
        .bind(replica)
        .bind(i32::try_from(max_attempts).unwrap_or(i32::MAX))
        .bind(round)
        .fetch_all(pool)
        .await
        .map_err(query_error("claim due registrants"))?;
    rows.iter().map(claimed).collect::<Result<_, _>>().map_err(query_error("claim due registrants"))
}

fn claimed(row: &sqlx::postgres::PgRow) -> Result<ClaimedRegistrant, sqlx::Error> {
    let desired = |text: String| if text == "registered" { Desired::Registered } else { Desired::Unregistered };
    let listed: bool = row.try_get("m_listed")?;
    let meeting = if listed {
        let registration: Option<String> = row.try_get("m_registration_id")?;
        let registered =
            match (registration, row.try_get("m_registered_organizer_id")?, row.try_get("m_registered_meeting_id")?) {
                (Some(id), Some(organizer), Some(meeting)) => Some((
                    Location { organizer: OrganizerId(organizer), meeting: OnlineMeetingId(meeting) },
                    RegistrationId(id),
                )),
                _ => None,
            };
        let audience: Option<String> = row.try_get("m_allowed_registrant")?;
        Some(MeetingView {
            desired: desired(row.try_get("m_desired")?),
            state: crate::store::row_state(row.try_get("m_state")?)?,
            organizer_id: row.try_get("m_organizer_id")?,
            online_meeting_id: row.try_get("m_online_meeting_id")?,
            registered,
            allowed_registrant: audience
                .as_deref()
                .and_then(AllowedRegistrant::parse)
                .unwrap_or(AllowedRegistrant::Everyone),
            last_error: row.try_get("m_last_error")?,
        })
    } else {
        None
    };
    Ok(ClaimedRegistrant {
        claim: crate::store::claims::Claim::of(row)?,
        external_id: row.try_get("external_id")?,
        meeting_external_id: row.try_get("meeting_external_id")?,
        desired: desired(row.try_get("desired")?),
        person: Person {
            email: row.try_get("email")?,
            first_name: row.try_get("first_name")?,
            last_name: row.try_get("last_name")?,
            tenant_id: row.try_get("tenant_id")?,
            user_id: row.try_get("user_id")?,
            preferred_timezone: row.try_get("preferred_timezone")?,
            preferred_language: row.try_get("preferred_language")?,
        },
        lookup_at: row.try_get("lookup_at")?,
        enrolled_at: row.try_get("enrolled_at")?,
        registrant_id: row.try_get("registrant_id")?,
        join_web_url: row.try_get("join_web_url")?,
        written_back_value: row.try_get("written_back_value")?,
        status_written_back: row.try_get("status_written_back")?,
        intent_age: row
            .try_get::<Option<f64>, _>("intent_age_secs")?
            .map(|secs| Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)),
        teams_status: row
            .try_get::<Option<String>, _>("teams_status")?
            .as_deref()
            .and_then(crate::domain::TeamsStatus::from_str_stored),
        teams_change_is_latest: row.try_get("teams_change_is_latest")?,
        answers: row.try_get::<sqlx::types::Json<_>, _>("answers")?.0,
        meeting,
    })
}
