//! What `/readyz`, `/metrics` and the ops views report about the whole
//! deployment, and the heartbeat each `regsync run` keeps in `replicas`.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::{meetings, query_error, runs, Error, StateCount};

/// The deployment's figures: the same whichever replica reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deployment {
    /// Meetings per state.
    pub states: Vec<StateCount>,
    /// When the last complete or partial poll finished.
    pub last_poll: Option<DateTime<Utc>>,
    /// Meetings due now (pending or retrying, their time come).
    pub due_now: i64,
    /// How long the meeting waiting longest has been due, in seconds.
    pub oldest_due_age_secs: f64,
    /// Graph is held for the whole deployment now.
    pub throttled: bool,
    /// Why Graph writes are suspended for the deployment, if they are.
    pub suspended: Option<String>,
    /// Replicas that refreshed their heartbeat within 30 s.
    pub replicas_alive: i64,
}

/// Reads [`Deployment`].
///
/// # Errors
/// A statement failed.
pub async fn read(pool: &PgPool) -> Result<Deployment, Error> {
    let row = sqlx::query(
        r#"
        SELECT b.due_now, b.oldest_due_age_secs, t.held, s.reason AS suspended,
               (SELECT count(*) FROM ops.replicas WHERE alive) AS replicas_alive
        FROM ops.backlog b, ops.throttle t, ops.graph_suspension s
        "#,
    )
    .fetch_one(pool)
    .await
    .map_err(query_error("read the deployment's figures"))?;
    let read = |e| query_error("read the deployment's figures")(e);
    Ok(Deployment {
        states: meetings::count_by_state(pool).await?,
        last_poll: runs::last_poll_at(pool).await?,
        due_now: row.try_get("due_now").map_err(read)?,
        oldest_due_age_secs: row.try_get("oldest_due_age_secs").map_err(read)?,
        throttled: row.try_get("held").map_err(read)?,
        suspended: row.try_get("suspended").map_err(read)?,
        replicas_alive: row.try_get("replicas_alive").map_err(read)?,
    })
}

/// Records that `replica` (this process) is alive now.
///
/// # Errors
/// The statement failed.
pub async fn heartbeat(pool: &PgPool, replica: Uuid, host: &str, version: &str) -> Result<(), Error> {
    sqlx::query(
        r#"
        INSERT INTO replicas (id, host, version) VALUES ($1, $2, $3)
        ON CONFLICT (id) DO UPDATE SET last_seen_at = now()
        "#,
    )
    .bind(replica)
    .bind(host)
    .bind(version)
    .execute(pool)
    .await
    .map_err(query_error("record the replica's heartbeat"))?;
    Ok(())
}

/// Whether this pool's connections are encrypted (TLS), as the server sees
/// it.
///
/// # Errors
/// The statement failed.
pub async fn connection_uses_tls(pool: &PgPool) -> Result<bool, Error> {
    sqlx::query_scalar("SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)")
        .fetch_one(pool)
        .await
        .map_err(query_error("read the connection's TLS state"))
}
