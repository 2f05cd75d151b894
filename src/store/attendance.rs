//! Attendance's storage: which ended events are due a read, the figures of
//! each of their registrants and the attendees no registrant matches, and
//! the write-backs of those figures, each claimed by one replica.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgPool, Row};

use super::{query_error, storable, Error};
use crate::domain::Attendance;

/// An ended event whose attendance is due a read.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndedEvent {
    /// The platform's meeting id.
    pub meeting_external_id: String,
    /// The organizer (as registered, else as the platform names them).
    pub organizer_id: Option<String>,
    /// The online meeting, webinar or town hall id.
    pub online_meeting_id: Option<String>,
    /// When it ended.
    pub ends_at: DateTime<Utc>,
}

/// Up to `limit` events that ended at least `delay` and less than
/// `give_up` ago whose next read has come.
///
/// # Errors
/// The statement failed.
pub async fn due_events(
    pool: &PgPool,
    delay: Duration,
    give_up: Duration,
    limit: i64,
) -> Result<Vec<EndedEvent>, Error> {
    sqlx::query_as(
        r#"
        SELECT m.external_id AS meeting_external_id,
               coalesce(m.registered_organizer_id, m.organizer_id) AS organizer_id,
               coalesce(m.registered_meeting_id, m.online_meeting_id) AS online_meeting_id, m.ends_at
        FROM meetings m LEFT JOIN attendance_reads a ON a.meeting_external_id = m.external_id
        WHERE m.ends_at <= now() - make_interval(secs => $1) AND m.ends_at > now() - make_interval(secs => $2)
          AND m.desired = 'registered' AND coalesce(m.registered_meeting_id, m.online_meeting_id) IS NOT NULL
          AND (a.next_read_at IS NULL OR a.next_read_at <= now())
        ORDER BY m.ends_at LIMIT $3
        "#,
    )
    .bind(delay.as_secs_f64())
    .bind(give_up.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(query_error("list events due an attendance read"))
}

/// A registrant of an event, as attendance matches them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRegistrant {
    /// The platform's id.
    pub external_id: String,
    /// Graph's id of their registration.
    pub registrant_id: Option<String>,
    /// Their e-mail.
    pub email: Option<String>,
}

/// The registrants of `meeting`: registered on the platform, or at Teams.
///
/// # Errors
/// The statement failed.
pub async fn registrants_of(pool: &PgPool, meeting: &str) -> Result<Vec<EventRegistrant>, Error> {
    sqlx::query_as(
        "SELECT external_id, registrant_id, email FROM registrants
         WHERE meeting_external_id = $1 AND (desired = 'registered' OR registrant_id IS NOT NULL)
         ORDER BY external_id",
    )
    .bind(meeting)
    .fetch_all(pool)
    .await
    .map_err(query_error("list an event's registrants"))
}

/// An attendee no registrant matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unmatched {
    /// E-mail, if the report shows it.
    pub email: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Seconds attended.
    pub total_seconds: i64,
}

/// What one read of an event found.
#[derive(Debug, Clone, Default)]
pub struct EventAttendance {
    /// Each registrant's figures, by their platform id and e-mail.
    pub registrants: Vec<(String, Option<String>, Attendance)>,
    /// Attendees no registrant matches.
    pub unmatched: Vec<Unmatched>,
}

/// The figures as one comparable text.
fn figures(a: &Attendance) -> String {
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    format!("{}|{}|{}|{}", a.attended, a.total_seconds, time(a.first_join), time(a.last_leave))
}

/// Records a read of `meeting`: its registrants' figures (a changed one is
/// due a write-back), its unmatched attendees, and when to read it next
/// (`found`: a report was there).
///
/// # Errors
/// The statement failed.
pub async fn record_read(
    pool: &PgPool,
    meeting: &str,
    read: Option<&EventAttendance>,
    next_read_in: Duration,
    error: Option<&str>,
) -> Result<(), Error> {
    #[derive(Serialize)]
    struct Row<'a> {
        registrant: &'a str,
        email: Option<&'a str>,
        attended: bool,
        total_seconds: i64,
        first_join: Option<DateTime<Utc>>,
        last_leave: Option<DateTime<Utc>>,
        figures: String,
    }
    let rows: Vec<Row<'_>> = read
        .map(|r| {
            r.registrants
                .iter()
                .map(|(registrant, email, a)| Row {
                    registrant,
                    email: email.as_deref(),
                    attended: a.attended,
                    total_seconds: a.total_seconds,
                    first_join: a.first_join,
                    last_leave: a.last_leave,
                    figures: figures(a),
                })
                .collect()
        })
        .unwrap_or_default();
    let unmatched: Vec<&Unmatched> = read.map(|r| r.unmatched.iter().collect()).unwrap_or_default();
    let mut tx = pool.begin().await.map_err(query_error("record an attendance read"))?;
    sqlx::query(
        r#"
        INSERT INTO attendance AS a (meeting_external_id, registrant_external_id, email, attended, total_seconds,
                                     first_join, last_leave, figures)
        SELECT $1, i.registrant, i.email, i.attended, i.total_seconds, i.first_join, i.last_leave, i.figures
        FROM jsonb_to_recordset($2) AS i(registrant text, email text, attended boolean, total_seconds bigint,
                                          first_join timestamptz, last_leave timestamptz, figures text)
        ON CONFLICT (meeting_external_id, registrant_external_id) DO UPDATE SET
            email = EXCLUDED.email, attended = EXCLUDED.attended, total_seconds = EXCLUDED.total_seconds,
            first_join = EXCLUDED.first_join, last_leave = EXCLUDED.last_leave, figures = EXCLUDED.figures,
            read_at = now(), attempts = 0, next_attempt_at = now()
        WHERE a.figures IS DISTINCT FROM EXCLUDED.figures
        "#,
    )
    .bind(meeting)
    .bind(Json(&rows))
    .execute(&mut *tx)
    .await
    .map_err(query_error("record attendance"))?;
    if read.is_some() {
        sqlx::query("DELETE FROM unmatched_attendees WHERE meeting_external_id = $1")
            .bind(meeting)
            .execute(&mut *tx)
            .await
            .map_err(query_error("record unmatched attendees"))?;
        sqlx::query(
            "INSERT INTO unmatched_attendees (meeting_external_id, email, display_name, total_seconds)
             SELECT $1, i.email, i.display_name, i.total_seconds
             FROM jsonb_to_recordset($2) AS i(email text, display_name text, total_seconds bigint)",
        )
        .bind(meeting)
        .bind(Json(&unmatched))
        .execute(&mut *tx)
        .await
        .map_err(query_error("record unmatched attendees"))?;
    }
    sqlx::query(
        r#"
        INSERT INTO attendance_reads AS r (meeting_external_id, next_read_at, last_read_at, report_found, last_error)
        VALUES ($1, now() + make_interval(secs => $2), now(), $3, $4)
        ON CONFLICT (meeting_external_id) DO UPDATE SET next_read_at = EXCLUDED.next_read_at,
            last_read_at = now(), report_found = r.report_found OR EXCLUDED.report_found, last_error = $4
        "#,
    )
    .bind(meeting)
    .bind(next_read_in.as_secs_f64())
    .bind(read.is_some())
    .bind(error.map(storable))
    .execute(&mut *tx)
    .await
    .map_err(query_error("schedule the next attendance read"))?;
    tx.commit().await.map_err(query_error("record an attendance read"))
}

/// One registrant's figures due a write-back, claimed.
#[derive(Debug, Clone)]
pub struct DueWriteback {
    /// The platform's meeting id.
    pub meeting_external_id: String,
    /// The platform's registrant id.
    pub registrant_external_id: String,
    /// Their e-mail.
    pub email: Option<String>,
    /// The figures.
    pub attendance: Attendance,
    /// Them as one text, as claimed.
    pub figures: String,
    /// Failed attempts so far.
    pub attempts: i32,
}

/// Claims up to `limit` write-backs due now for `lease`: no other replica
/// sends them meanwhile.
///
/// # Errors
/// The statement failed.
pub async fn claim_writebacks(pool: &PgPool, limit: i64, lease: Duration) -> Result<Vec<DueWriteback>, Error> {
    let rows = sqlx::query(
        r#"
        UPDATE attendance a SET lease_expires_at = now() + make_interval(secs => $2)
        FROM (SELECT meeting_external_id, registrant_external_id FROM attendance
              WHERE written_back IS DISTINCT FROM figures AND refused IS DISTINCT FROM figures
                AND next_attempt_at <= now() AND (lease_expires_at IS NULL OR lease_expires_at < now())
              ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
        WHERE a.meeting_external_id = due.meeting_external_id AND a.registrant_external_id = due.registrant_external_id
        RETURNING a.meeting_external_id, a.registrant_external_id, a.email, a.attended, a.total_seconds,
                  a.first_join, a.last_leave, a.figures, a.attempts
        "#,
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await
    .map_err(query_error("claim attendance write-backs"))?;
    rows.iter()
        .map(|row| {
            Ok(DueWriteback {
                meeting_external_id: row.try_get("meeting_external_id")?,
                registrant_external_id: row.try_get("registrant_external_id")?,
                email: row.try_get("email")?,
                attendance: Attendance {
                    attended: row.try_get("attended")?,
                    total_seconds: row.try_get("total_seconds")?,
                    first_join: row.try_get("first_join")?,
                    last_leave: row.try_get("last_leave")?,
                },
                figures: row.try_get("figures")?,
                attempts: row.try_get("attempts")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(query_error("claim attendance write-backs"))
}

/// How a write-back of `due` ended.
#[derive(Debug, Clone)]
pub enum Sent {
    /// The platform acknowledged it.
    Acknowledged,
    /// It refused (4xx): not sent again until the figures change.
    Refused(String),
    /// It did not arrive: again after `retry_in`.
    Failed(String, Duration),
}

/// Records how the write-back of `due` ended; figures that changed
/// meanwhile stay due.
///
/// # Errors
/// The statement failed.
pub async fn record_writeback(pool: &PgPool, due: &DueWriteback, sent: &Sent) -> Result<(), Error> {
    let (written, refused, error, retry_in) = match sent {
        Sent::Acknowledged => (Some(due.figures.as_str()), None, None, Duration::ZERO),
        Sent::Refused(why) => (None, Some(due.figures.as_str()), Some(why.as_str()), Duration::ZERO),
        Sent::Failed(why, retry_in) => (None, None, Some(why.as_str()), *retry_in),
    };
    sqlx::query(
        r#"
        UPDATE attendance SET
            written_back = coalesce($3, written_back),
            written_back_at = CASE WHEN $3 IS NOT NULL THEN now() ELSE written_back_at END,
            refused = coalesce($4, refused),
            last_error = $5,
            attempts = CASE WHEN $5 IS NULL THEN 0 ELSE attempts + 1 END,
            next_attempt_at = now() + make_interval(secs => $6),
            lease_expires_at = NULL
        WHERE meeting_external_id = $1 AND registrant_external_id = $2
        "#,
    )
    .bind(&due.meeting_external_id)
    .bind(&due.registrant_external_id)
    .bind(written)
    .bind(refused)
    .bind(error.map(storable))
    .bind(retry_in.as_secs_f64())
    .execute(pool)
    .await
    .map_err(query_error("record an attendance write-back"))?;
    Ok(())
}
