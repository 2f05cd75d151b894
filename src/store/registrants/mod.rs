//! Registrants (`registrants`): bulk ingest, claims under a lease with a
//! fencing token (`claims`), the pre-send gate that commits a write's intent
//! and the fenced outcome with its audit rows (`send`) — the meetings'
//! protocol, for people.

mod claims;
mod send;

pub use claims::{claim_due, ClaimedRegistrant, MeetingView};
pub use send::{prepare_send, record_outcome, renew_lease, RegistrantOutcome};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::PgPool;

use super::{due_unless_in_flight, query_error, Error};
use crate::domain::ExternalRegistrant;

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
            ",
            $crate::store::due_unless_in_flight!("r"),
            ",
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
        answers: &'a std::collections::BTreeMap<String, serde_json::Value>,
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
            answers: &r.answers,
        })
        .collect();
    let changed = sqlx::query(concat!(
        r#"
        INSERT INTO registrants AS r (external_id, meeting_external_id, desired, email, first_name, last_name,
                                      tenant_id, user_id, preferred_timezone, preferred_language, answers)
        SELECT * FROM jsonb_to_recordset($1) AS i(external_id text, meeting_external_id text, desired text,
            email text, first_name text, last_name text, tenant_id text, user_id text, preferred_timezone text,
            preferred_language text, answers jsonb)
        -- Rows locked in the order meetings' changes wake them in.
        ORDER BY meeting_external_id, external_id
        ON CONFLICT (meeting_external_id, external_id) DO UPDATE SET
            desired = EXCLUDED.desired, email = EXCLUDED.email, first_name = EXCLUDED.first_name,
            last_name = EXCLUDED.last_name, tenant_id = EXCLUDED.tenant_id, user_id = EXCLUDED.user_id,
            preferred_timezone = EXCLUDED.preferred_timezone, preferred_language = EXCLUDED.preferred_language,
            answers = EXCLUDED.answers, platform_changed_at = now(),
            -- In flight: the outcome write sees the change and makes it due.
            "#,
        due_unless_in_flight!("r"),
        r#", updated_at = now()
        WHERE (r.desired, r.email, r.first_name, r.last_name, r.tenant_id, r.user_id, r.preferred_timezone,
               r.preferred_language, r.answers)
              IS DISTINCT FROM (EXCLUDED.desired, EXCLUDED.email, EXCLUDED.first_name, EXCLUDED.last_name,
                                EXCLUDED.tenant_id, EXCLUDED.user_id, EXCLUDED.preferred_timezone,
                                EXCLUDED.preferred_language, EXCLUDED.answers)
        "#
    ))
    .bind(Json(items))
    .execute(pool)
    .await
    .map_err(query_error("store registrants"))?
    .rows_affected();
    Ok(changed)
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
    let result = sqlx::query(crate::store::unregister_missing_sql!(
        "registrants",
        "r",
        "($1::text IS NULL OR r.meeting_external_id = $1)
          AND NOT EXISTS (SELECT 1 FROM unnest($2::text[], $3::text[]) AS l(meeting, id)
                          WHERE l.meeting = r.meeting_external_id AND l.id = r.external_id)"
    ))
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
    rows.into_iter()
        .map(|(state, count)| Ok(super::StateCount { state: super::row_state(&state)?, count }))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(query_error("count registrants by state"))
}
