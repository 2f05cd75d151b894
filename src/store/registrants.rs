//! Registrants (`registrants`): bulk ingest, claims under a lease with a
//! fencing token, the pre-send gate that commits a write's intent, and the
//! fenced outcome with its audit rows — the meetings' protocol, for people.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::throttle::throttle_sql;
use super::{query_error, storable, Error, NextState, SendGate};
use crate::domain::{
    AllowedRegistrant, CallRecord, Desired, ExternalRegistrant, FailureCategory, Location, OnlineMeetingId,
    OrganizerId, Person, RegistrationId,
};

/// A claimed registrant, with what regsync knows of its meeting.
#[derive(Debug, Clone)]
pub struct ClaimedRegistrant {
    /// Row id.
    pub id: i64,
    /// The fencing token every later write must present.
    pub lease_token: Uuid,
    /// The platform's registrant id.
    pub external_id: String,
    /// The platform's meeting id.
    pub meeting_external_id: String,
    /// Registered or cancelled on the platform.
    pub desired: Desired,
    /// Who they are.
    pub person: Person,
    /// Real attempts so far.
    pub attempts: i32,
    /// The last write's outcome is unknown: look at `lookup_at` first.
    pub needs_lookup: bool,
    /// Where that write went.
    pub lookup_at: Option<String>,
    /// Where Graph holds the registrant, as far as regsync knows.
    pub enrolled_at: Option<String>,
    /// Graph's id of it.
    pub registrant_id: Option<String>,
    /// Its personal join link.
    pub join_web_url: Option<String>,
    /// What the platform acknowledged last.
    pub written_back_value: Option<String>,
    /// How long ago the intent of the write whose outcome is unknown was
    /// committed, by the database's clock.
    pub intent_age: Option<Duration>,
    /// The meeting, if the platform listed it.
    pub meeting: Option<MeetingView>,
}

/// What a registrant needs of its meeting.
#[derive(Debug, Clone)]
pub struct MeetingView {
    /// Active on the platform.
    pub desired: Desired,
    /// Its sync state.
    pub state: String,
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

/// SQL: a CTE `woken` that makes due the registrants of the platform
/// meetings a sub-select (`$meetings`, a literal) names: the statements
/// that change a meeting embed it, so its registrants follow in the same
/// statement. An in-flight registrant takes the change up at its own
/// outcome (`meeting_changed`). Rows are locked in the order the registrant
/// ingest locks them, so the two never deadlock.
macro_rules! wake_registrants {
    ($meetings:literal) => {
        concat!(
            "woken AS (
        UPDATE registrants r SET
            state = CASE WHEN r.state = 'in_flight' THEN r.state ELSE 'pending' END,
            attempts = CASE WHEN r.state = 'in_flight' THEN r.attempts ELSE 0 END,
            next_attempt_at = now(),
            meeting_changed = r.state = 'in_flight',
            updated_at = now()
        WHERE r.id IN (
            SELECT id FROM registrants WHERE meeting_external_id IN (",
            $meetings,
            ")
            ORDER BY meeting_external_id, external_id FOR UPDATE)
        RETURNING 1
    )"
        )
    };
}
pub(super) use wake_registrants;

/// Stores a page of registrants in one statement: new ones become due, and
/// a changed one (status, or who they are) is due again. Returns how many
/// rows were inserted or changed.
///
/// # Errors
/// The statement failed.
pub async fn upsert_page(pool: &PgPool, registrants: &[ExternalRegistrant]) -> Result<u64, Error> {
    #[derive(Serialize)]
    struct Item<'a> {
        external_id: &'a str,
        meeting_external_id: &'a str,
        desired: &'static str,
        email: Option<&'a str>,
        first_name: Option<&'a str>,
        last_name: Option<&'a str>,
        tenant_id: Option<&'a str>,
        user_id: Option<&'a str>,
        preferred_timezone: Option<&'a str>,
        preferred_language: Option<&'a str>,
    }
    if registrants.is_empty() {
        return Ok(0);
    }
    let items: Vec<Item<'_>> = registrants
        .iter()
        .map(|r| Item {
            external_id: &r.external_id,
            meeting_external_id: &r.meeting_external_id,
            desired: r.desired.as_str(),
            email: r.person.email.as_deref(),
            first_name: r.person.first_name.as_deref(),
            last_name: r.person.last_name.as_deref(),
            tenant_id: r.person.tenant_id.as_deref(),
            user_id: r.person.user_id.as_deref(),
            preferred_timezone: r.person.preferred_timezone.as_deref(),
            preferred_language: r.person.preferred_language.as_deref(),
        })
        .collect();
    let changed = sqlx::query(
        r#"
        INSERT INTO registrants AS r (external_id, meeting_external_id, desired, email, first_name, last_name,
                                      tenant_id, user_id, preferred_timezone, preferred_language)
        SELECT * FROM jsonb_to_recordset($1) AS i(external_id text, meeting_external_id text, desired text,
            email text, first_name text, last_name text, tenant_id text, user_id text, preferred_timezone text,
            preferred_language text)
        -- Rows locked in the order meetings' changes wake them in.
        ORDER BY meeting_external_id, external_id
        ON CONFLICT (meeting_external_id, external_id) DO UPDATE SET
            desired = EXCLUDED.desired, email = EXCLUDED.email, first_name = EXCLUDED.first_name,
            last_name = EXCLUDED.last_name, tenant_id = EXCLUDED.tenant_id, user_id = EXCLUDED.user_id,
            preferred_timezone = EXCLUDED.preferred_timezone, preferred_language = EXCLUDED.preferred_language,
            -- In flight: the outcome write sees the change and makes it due.
            state = CASE WHEN r.state = 'in_flight' THEN r.state ELSE 'pending' END,
            attempts = CASE WHEN r.state = 'in_flight' THEN r.attempts ELSE 0 END,
            next_attempt_at = now(), updated_at = now()
        WHERE (r.desired, r.email, r.first_name, r.last_name, r.tenant_id, r.user_id, r.preferred_timezone,
               r.preferred_language)
              IS DISTINCT FROM (EXCLUDED.desired, EXCLUDED.email, EXCLUDED.first_name, EXCLUDED.last_name,
                                EXCLUDED.tenant_id, EXCLUDED.user_id, EXCLUDED.preferred_timezone,
                                EXCLUDED.preferred_language)
        "#,
    )
    .bind(Json(items))
    .execute(pool)
    .await
    .map_err(query_error("store registrants"))?
    .rows_affected();
    Ok(changed)
}

/// [`claim_due`]: `$1` the batch size, `$2` the lease in seconds, `$3` the
/// replica, `$4` `sync.max_attempts`, `$5` the round's start: a registrant
/// rescheduled during the round is not claimed again in it.
const CLAIM_DUE: &str = concat!(
    "WITH ",
    throttle_sql!(held),
    r#",
    due AS (
        SELECT id FROM registrants
        WHERE ((state IN ('pending', 'retrying') AND next_attempt_at <= $5)
               OR (state = 'in_flight' AND lease_expires_at < $5))
          AND NOT EXISTS (SELECT 1 FROM held)
          AND (NOT needs_lookup OR lookup_not_before IS NULL OR lookup_not_before <= $5)
        ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
    ),
    "#,
    super::claims::lease_or_park!("registrants", "'regsync retry --failed'"),
    r#"
        RETURNING m.*, taken.parked
    )
    SELECT c.*, EXTRACT(EPOCH FROM now() - c.intent_at)::float8 AS intent_age_secs, m.desired AS m_desired, m.state AS m_state, m.organizer_id AS m_organizer_id,
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
            state: row.try_get("m_state")?,
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
        id: row.try_get("id")?,
        lease_token: row.try_get("lease_token")?,
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
        attempts: row.try_get("attempts")?,
        needs_lookup: row.try_get("needs_lookup")?,
        lookup_at: row.try_get("lookup_at")?,
        enrolled_at: row.try_get("enrolled_at")?,
        registrant_id: row.try_get("registrant_id")?,
        join_web_url: row.try_get("join_web_url")?,
        written_back_value: row.try_get("written_back_value")?,
        intent_age: row
            .try_get::<Option<f64>, _>("intent_age_secs")?
            .map(|secs| Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)),
        meeting,
    })
}

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
) -> Result<SendGate, Error> {
    let row = sqlx::query(PREPARE_SEND)
        .bind(claimed.id)
        .bind(claimed.lease_token)
        .bind(write_at)
        .bind(ttl.as_secs_f64())
        .bind(probe_ttl.as_secs_f64())
        .fetch_one(pool)
        .await
        .map_err(query_error("commit a registrant's intent"))?;
    super::send::read_gate(&row, "commit a registrant's intent")
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
    .bind(claimed.id)
    .bind(claimed.lease_token)
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
    pub state: NextState,
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
/// the array of audit rows, `$17` the lookup's settle time in seconds.
const RECORD_OUTCOME: &str = concat!(
    r#"
        WITH r AS (
            UPDATE registrants SET
                -- The platform or the meeting changed while it was in
                -- flight: due again, on what holds now.
                state = CASE WHEN meeting_changed OR (desired <> $4 AND $3 <> 'failed') THEN 'pending' ELSE $3 END,
                meeting_changed = FALSE,
                needs_lookup = $5, lookup_at = $6, enrolled_at = $7, registrant_id = $8, join_web_url = $9,
                lookup_not_before = CASE WHEN $5 THEN GREATEST(lookup_not_before, now() + make_interval(secs => $17))
                                    END,
                intent_at = CASE WHEN $5 THEN intent_at END,
                written_back_value = coalesce($10, written_back_value),
                written_back_at = CASE WHEN $10 IS NOT NULL THEN now() ELSE written_back_at END,
                attempts = $11,
                next_attempt_at = now() + CASE WHEN meeting_changed OR desired <> $4 THEN interval '0'
                                               ELSE make_interval(secs => $12) END,
                last_error = $13, last_http_status = $14, last_error_category = $15,
                lease_token = NULL, lease_expires_at = NULL, claimed_by = NULL, updated_at = now()
            WHERE id = $1 AND lease_token = $2
            RETURNING id, external_id
        ),
    "#,
    super::outcome::audit_sql!("registrant_id", "r.id", "r.external_id", "r", "$16"),
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
    let audit: Vec<super::outcome::AuditRow<'_>> = calls.iter().map(Into::into).collect();
    let applied = sqlx::query(RECORD_OUTCOME)
        .bind(claimed.id)
        .bind(claimed.lease_token)
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
        .fetch_one(pool)
        .await
        .map_err(query_error("record a registrant's outcome"))?;
    applied.try_get(0).map_err(query_error("record a registrant's outcome"))
}

/// Starts a round of registrant reconciles: the database's time (rows
/// rescheduled after it wait for the next round), after making due every
/// registrant that waited for a meeting that is ready now.
///
/// # Errors
/// The statement failed.
pub async fn start_round(pool: &PgPool) -> Result<DateTime<Utc>, Error> {
    sqlx::query_scalar(
        r#"
        WITH woken AS (
            UPDATE registrants r SET next_attempt_at = now()
            FROM meetings m
            WHERE r.state = 'retrying' AND r.last_error_category = 'meeting_not_ready' AND r.next_attempt_at > now()
              AND m.external_id = r.meeting_external_id AND m.state = 'synced'
            RETURNING 1
        )
        SELECT now() + interval '1 millisecond' FROM (SELECT count(*) FROM woken) w
        "#,
    )
    .fetch_one(pool)
    .await
    .map_err(query_error("start a round of registrants"))
}

/// The platform meeting ids whose registrants are listed one meeting at a
/// time: every meeting the platform lists as active.
///
/// # Errors
/// The statement failed.
pub async fn active_meetings(pool: &PgPool) -> Result<Vec<String>, Error> {
    sqlx::query_scalar("SELECT external_id FROM meetings WHERE desired = 'registered' ORDER BY external_id")
        .fetch_all(pool)
        .await
        .map_err(query_error("list active meetings"))
}

/// Cancels the registrants of `meeting` (or of every meeting, for a flat
/// listing) that a complete listing no longer holds: `listed` is every
/// (meeting, registrant) it held. An in-flight one is left to its worker,
/// whose outcome sees the change.
///
/// # Errors
/// The statement failed.
pub async fn unregister_missing(
    pool: &PgPool,
    meeting: Option<&str>,
    listed: &[(String, String)],
) -> Result<u64, Error> {
    let (meetings, ids): (Vec<&str>, Vec<&str>) = listed.iter().map(|(m, r)| (m.as_str(), r.as_str())).unzip();
    let result = sqlx::query(
        r#"
        UPDATE registrants AS r SET
            desired = 'unregistered', updated_at = now(),
            state           = CASE WHEN r.state = 'in_flight' THEN r.state ELSE 'pending' END,
            attempts        = CASE WHEN r.state = 'in_flight' THEN r.attempts ELSE 0 END,
            next_attempt_at = CASE WHEN r.state = 'in_flight' THEN r.next_attempt_at ELSE now() END
        WHERE r.desired = 'registered' AND ($1::text IS NULL OR r.meeting_external_id = $1)
          AND NOT EXISTS (SELECT 1 FROM unnest($2::text[], $3::text[]) AS l(meeting, id)
                          WHERE l.meeting = r.meeting_external_id AND l.id = r.external_id)
        "#,
    )
    .bind(meeting)
    .bind(meetings)
    .bind(ids)
    .execute(pool)
    .await
    .map_err(query_error("cancel missing registrants"))?;
    Ok(result.rows_affected())
}

/// Makes every failed registrant due again with its attempts reset.
///
/// # Errors
/// The statement failed.
pub async fn retry_failed(pool: &PgPool) -> Result<u64, Error> {
    let reset = sqlx::query(
        "UPDATE registrants SET state = 'pending', attempts = 0, next_attempt_at = now(), updated_at = now() \
         WHERE state = 'failed'",
    )
    .execute(pool)
    .await
    .map_err(query_error("retry failed registrants"))?;
    Ok(reset.rows_affected())
}

/// Registrants not settled yet (pending, retrying or in flight).
///
/// # Errors
/// The statement failed.
pub async fn open_count(pool: &PgPool) -> Result<i64, Error> {
    sqlx::query_scalar("SELECT count(*) FROM registrants WHERE state IN ('pending', 'retrying', 'in_flight')")
        .fetch_one(pool)
        .await
        .map_err(query_error("count open registrants"))
}

/// Registrants per state, for `regsync status`.
///
/// # Errors
/// The statement failed.
pub async fn count_by_state(pool: &PgPool) -> Result<Vec<super::StateCount>, Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM registrants GROUP BY state ORDER BY state")
            .fetch_all(pool)
            .await
            .map_err(query_error("count registrants by state"))?;
    Ok(rows.into_iter().map(|(state, count)| super::StateCount { state, count }).collect())
}
