//! The status read-back's storage: which events have registrations to read
//! back, and what each registration's status in Teams is.

use std::time::Duration;

use serde::Serialize;
use sqlx::types::Json;
use sqlx::PgPool;

use super::{query_error, Error};

/// An event whose registrations regsync made.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnrolledEvent {
    /// The platform's meeting id.
    pub meeting_external_id: String,
    /// The webinar's or town hall's id.
    pub event_id: String,
    /// Its organizer, whose token reads it.
    pub organizer_id: Option<String>,
}

/// The events with registrations regsync made that have not ended more
/// than `after_end` ago (a change in Teams after that matters to no one).
///
/// # Errors
/// The statement failed.
pub async fn enrolled_events(pool: &PgPool, after_end: Duration) -> Result<Vec<EnrolledEvent>, Error> {
    sqlx::query_as(
        r#"
        SELECT m.external_id AS meeting_external_id, m.online_meeting_id AS event_id, m.organizer_id
        FROM meetings m
        WHERE m.desired = 'registered' AND m.online_meeting_id IS NOT NULL
          AND (m.ends_at IS NULL OR m.ends_at > now() - make_interval(secs => $1))
          AND EXISTS (SELECT 1 FROM registrants r
                      WHERE r.meeting_external_id = m.external_id AND r.registrant_id IS NOT NULL)
        ORDER BY m.starts_at NULLS LAST, m.external_id
        "#,
    )
    .bind(after_end.as_secs_f64())
    .fetch_all(pool)
    .await
    .map_err(query_error("list events to read back"))
}

/// One registration as the event lists it.
#[derive(Debug, Clone, Serialize)]
pub struct SeenStatus<'a> {
    /// Graph's id.
    pub id: &'a str,
    /// The platform's id.
    pub external_id: &'a str,
    /// Its status in Teams.
    pub status: &'static str,
}

/// Records the statuses event `meeting`'s list shows, for the registrations
/// regsync keeps; a registrant whose status differs from what the platform
/// was last told is due (a write-back follows). How many changed.
///
/// # Errors
/// The statement failed.
pub async fn record_statuses(pool: &PgPool, meeting: &str, seen: &[SeenStatus<'_>]) -> Result<u64, Error> {
    if seen.is_empty() {
        return Ok(0);
    }
    let counts = sqlx::query_as(
        r#"
        WITH i AS (SELECT * FROM jsonb_to_recordset($2) AS i(id text, external_id text, status text)),
        changed AS (
            UPDATE registrants r SET
                teams_status = i.status, teams_status_at = now(),
                -- Only a status the platform was not told makes work.
                state = CASE WHEN r.state = 'in_flight' OR coalesce(r.status_written_back, 'registered') = i.status
                             THEN r.state ELSE 'pending' END,
                next_attempt_at = CASE WHEN r.state = 'in_flight'
                                         OR coalesce(r.status_written_back, 'registered') = i.status
                                       THEN r.next_attempt_at ELSE now() END,
                -- In flight: its outcome sees the change and makes it due.
                meeting_changed = r.meeting_changed
                    OR (r.state = 'in_flight' AND coalesce(r.status_written_back, 'registered') <> i.status)
            FROM i
            WHERE r.meeting_external_id = $1 AND r.external_id = i.external_id AND r.registrant_id = i.id
              AND r.teams_status IS DISTINCT FROM i.status
            RETURNING r.state
        )
        SELECT count(*) AS changed, count(*) FILTER (WHERE state = 'pending') AS due FROM changed
        "#,
    )
    .bind(meeting)
    .bind(Json(seen))
    .fetch_one(pool)
    .await
    .map_err(query_error("record statuses in Teams"))?;
    let (changed, due): (i64, i64) = counts;
    if due > 0 {
        super::push::notify_due(pool).await?;
    }
    Ok(u64::try_from(changed).unwrap_or_default())
}

/// The organizer of `meeting`, whose token reads its event.
///
/// # Errors
/// The statement failed.
pub async fn organizer_of(pool: &PgPool, meeting: &str) -> Result<Option<String>, Error> {
    sqlx::query_scalar("SELECT organizer_id FROM meetings WHERE external_id = $1")
        .bind(meeting)
        .fetch_optional(pool)
        .await
        .map(Option::flatten)
        .map_err(query_error("find a meeting's organizer"))
}
