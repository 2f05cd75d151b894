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
