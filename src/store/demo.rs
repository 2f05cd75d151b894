//! The figures of `regsync demo`'s summary table (feature `demo`).

use sqlx::{PgPool, Row};

use super::{query_error, Error};

/// The figures of the demo's summary table.
#[derive(Debug, Clone, Default)]
pub struct DemoFigures {
    /// Meetings with a registration recorded.
    pub registered: i64,
    /// Cancelled meetings without a registration.
    pub deregistered: i64,
    /// Failed meetings and why.
    pub failed: Vec<(String, String)>,
    /// Rejected platform items.
    pub rejected: i64,
    /// Graph requests by `METHOD STATUS`.
    pub graph_calls: Vec<(String, i64)>,
    /// Registrants enrolled at Teams.
    pub enrolled: i64,
    /// Registrants whose link the platform acknowledged.
    pub written_back: i64,
    /// Registrants in all.
    pub registrants: i64,
}

/// Reads the demo's figures.
///
/// # Errors
/// A statement failed.
pub async fn figures(pool: &PgPool) -> Result<DemoFigures, Error> {
    let op = "read the demo summary";
    let counts = sqlx::query(
        r#"
        SELECT count(*) FILTER (WHERE registration_id IS NOT NULL) AS registered,
               count(*) FILTER (WHERE desired = 'unregistered' AND state = 'synced') AS deregistered,
               (SELECT count(*) FROM rejected_items) AS rejected,
               (SELECT count(*) FROM registrants WHERE registrant_id IS NOT NULL) AS enrolled,
               (SELECT count(*) FROM registrants WHERE written_back_at IS NOT NULL) AS written_back,
               (SELECT count(*) FROM registrants) AS registrants
        FROM meetings
        "#,
    )
    .fetch_one(pool)
    .await
    .map_err(query_error(op))?;
    let failed = sqlx::query_as::<_, (String, Option<String>)>(
        "SELECT external_id, last_error FROM meetings WHERE state = 'failed' ORDER BY external_id",
    )
    .fetch_all(pool)
    .await
    .map_err(query_error(op))?;
    let graph_calls = sqlx::query_as::<_, (String, i64)>(
        r#"
        SELECT method || ' ' || coalesce(http_status::text, 'no answer') AS call, count(*)
        FROM graph_calls GROUP BY 1 ORDER BY 1
        "#,
    )
    .fetch_all(pool)
    .await
    .map_err(query_error(op))?;
    Ok(DemoFigures {
        registered: counts.try_get("registered").map_err(query_error(op))?,
        deregistered: counts.try_get("deregistered").map_err(query_error(op))?,
        rejected: counts.try_get("rejected").map_err(query_error(op))?,
        failed: failed.into_iter().map(|(id, e)| (id, e.unwrap_or_default())).collect(),
        graph_calls,
        enrolled: counts.try_get("enrolled").map_err(query_error(op))?,
        written_back: counts.try_get("written_back").map_err(query_error(op))?,
        registrants: counts.try_get("registrants").map_err(query_error(op))?,
    })
}

/// The figures of the demo's second act, on the v1.0 webinar target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuccessorFigures {
    /// Webinar registrations regsync made and keeps.
    pub registered: i64,
    /// Registrations cancelled in Teams.
    pub cancelled_in_teams: i64,
    /// Registrations awaiting the organizer's approval.
    pub awaiting_approval: i64,
    /// Registrants the platform was told a status from Teams.
    pub statuses_told: i64,
    /// Registrants whose attendance the platform acknowledged.
    pub attendance_written_back: i64,
    /// Of those, the ones who attended.
    pub attended: i64,
    /// Attendees no registrant matches.
    pub unmatched: i64,
}

/// Reads the second act's figures.
///
/// # Errors
/// The statement failed.
pub async fn successor_figures(pool: &PgPool) -> Result<SuccessorFigures, Error> {
    let row = sqlx::query(
        r#"
        SELECT (SELECT count(*) FROM registrants WHERE registrant_id IS NOT NULL) AS registered,
               (SELECT count(*) FROM registrants WHERE teams_status = 'cancelled') AS cancelled_in_teams,
               (SELECT count(*) FROM registrants WHERE teams_status = 'pending_approval') AS awaiting_approval,
               (SELECT count(*) FROM registrants WHERE status_written_back_at IS NOT NULL) AS statuses_told,
               (SELECT count(*) FROM attendance WHERE written_back = figures) AS attendance_written_back,
               (SELECT count(*) FROM attendance WHERE written_back = figures AND attended) AS attended,
               (SELECT count(*) FROM unmatched_attendees) AS unmatched
        "#,
    )
    .fetch_one(pool)
    .await
    .map_err(query_error("read the demo's second act"))?;
    let get = |name: &str| row.try_get::<i64, _>(name).map_err(query_error("read the demo's second act"));
    Ok(SuccessorFigures {
        registered: get("registered")?,
        cancelled_in_teams: get("cancelled_in_teams")?,
        awaiting_approval: get("awaiting_approval")?,
        statuses_told: get("statuses_told")?,
        attendance_written_back: get("attendance_written_back")?,
        attended: get("attended")?,
        unmatched: get("unmatched")?,
    })
}
