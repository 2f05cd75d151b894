//! PostgreSQL: the only place SQL lives, one file per table group.
//! `meetings`: what the platform says (bulk ingest, operator retries, counts and failures); `claims`: leases with
//! fencing tokens; `send`: the pre-send gate and intent; `outcome`: the
//! fenced outcome write with its audit rows;
//! `throttle`: the deployment-wide Graph hold; `sign_ins`: delegated
//! sign-ins, sealed, with the refresh lock; `runs`: poll cycles, their
//! rejected items and the poll lease; `dashboard`: the deployment's
//! figures and replica heartbeats; `retention`: pruning old rows;
//! `watermarks`: where incremental listings resume; `push`: webhook
//! deliveries and the wake-up of every replica.
//! Calls no other regsync module but `config` and `domain`.

pub mod attendance;
#[cfg(feature = "bench")]
pub mod bench;
pub mod claims;
pub mod dashboard;
#[cfg(feature = "demo")]
pub mod demo;
pub mod evidence;
pub mod meetings;
pub mod missing;
pub mod organizers;
pub mod outcome;
pub mod push;
pub mod readback;
pub mod registrants;
pub mod resolutions;
pub mod retention;
pub mod runs;
pub mod send;
pub mod sign_ins;
pub mod subscriptions;
pub mod throttle;
pub mod watermarks;

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::config::DatabaseSettings;

pub use claims::Claimed;
pub use meetings::{FailedMeeting, StateCount, Upserted};
pub use outcome::Outcome;
pub use runs::RunReport;
pub use send::{Gate, Intent, SendGate};

/// A database operation that failed. Like every regsync error, its message
/// is complete, cause included, and it exposes no `source()` (crate docs).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A statement failed; `op` names what regsync was doing.
    #[error("database: {op} failed: {cause}")]
    Query {
        /// The operation.
        op: &'static str,
        /// The cause.
        cause: sqlx::Error,
    },
    /// Migrations could not be applied.
    #[error("database: migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// Connection settings are unusable.
    #[error("database: {0}")]
    Settings(String),
}

/// SQL assignments that make the row aliased `$row` due now with its
/// attempts reset, unless a worker holds it: an in-flight row takes the
/// change up when its outcome is written (the outcome statements compare
/// what the platform wants with what the worker was given).
macro_rules! due_unless_in_flight {
    ($row:literal) => {
        concat!(
            "state = CASE WHEN ",
            $row,
            ".state = 'in_flight' THEN ",
            $row,
            ".state ELSE 'pending' END,
            attempts = CASE WHEN ",
            $row,
            ".state = 'in_flight' THEN ",
            $row,
            ".attempts ELSE 0 END,
            next_attempt_at = CASE WHEN ",
            $row,
            ".state = 'in_flight' THEN ",
            $row,
            ".next_attempt_at ELSE now() END"
        )
    };
}
pub(crate) use due_unless_in_flight;

/// The statement that treats the rows of `$table` (aliased `$row`) that a
/// complete listing no longer holds as cancelled on the platform, due now
/// unless in flight; `$missing` selects them.
macro_rules! unregister_missing_sql {
    ($table:literal, $row:literal, $missing:literal) => {
        concat!(
            "UPDATE ",
            $table,
            " AS ",
            $row,
            " SET desired = 'unregistered', updated_at = now(), ",
            $crate::store::due_unless_in_flight!($row),
            " WHERE ",
            $row,
            ".desired = 'registered' AND ",
            $missing
        )
    };
}
pub(crate) use unregister_missing_sql;

/// A `state` column's value as the domain's [`crate::domain::RowState`];
/// the table's check constraint admits no other.
///
/// # Errors
/// A value the constraint should have refused.
pub(crate) fn row_state(text: &str) -> Result<crate::domain::RowState, sqlx::Error> {
    crate::domain::RowState::parse(text)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown row state {text:?}").into()))
}

/// Runs `statement` within `within` on this side of the connection. The
/// server's `statement_timeout` cannot fire when the server is gone
/// silently (a half-open connection: no reset, no answer, and no TCP
/// keepalive in the driver): the engine's statements are bounded here, and
/// a statement given up on is dropped with its connection. A timeout is a
/// transient failure, like a lost connection.
///
/// # Errors
/// The statement's, or the timeout.
pub async fn bounded<T>(
    within: std::time::Duration,
    op: &'static str,
    statement: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(within, statement).await {
        Ok(done) => done,
        Err(_) => Err(Error::Query {
            op,
            cause: sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the database did not answer within {} s; the connection is dropped", within.as_secs()),
            )),
        }),
    }
}

/// Runs `write` until it succeeds, fails for good, or `give_up` has
/// passed, retrying while the database is briefly away (backoff from
/// 100 ms to 5 s): for writes whose loss would cost more than the wait, such
/// as the outcome of a Graph call that already happened, or refreshed
/// tokens whose predecessor is spent.
///
/// # Errors
/// The last error.
pub async fn with_retries<T, W>(give_up: std::time::Duration, write: impl Fn() -> W) -> Result<T, Error>
where
    W: std::future::Future<Output = Result<T, Error>>,
{
    let give_up = tokio::time::Instant::now() + give_up;
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        match write().await {
            Err(e) if e.is_transient() && tokio::time::Instant::now() + delay < give_up => {
                tracing::warn!(error = %e, "cannot write yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

impl Error {
    /// A connection loss, restart, deadlock or serialization failure that a
    /// later try may not hit (SQLSTATE 08xxx, 57P01, 40001, 40P01, pool timeouts).
    pub fn is_transient(&self) -> bool {
        let Self::Query { cause, .. } = self else { return false };
        match cause {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "40001" | "40P01")
            }),
            _ => false,
        }
    }

    /// A connection refused for a reason waiting will not change: the TLS
    /// handshake or certificate check failed, or the connection settings are
    /// unusable.
    pub fn is_connection_setup(&self) -> bool {
        let cause = match self {
            Self::Query { cause, .. } | Self::Migrate(sqlx::migrate::MigrateError::Execute(cause)) => cause,
            Self::Settings(_) => return true,
            Self::Migrate(_) => return false,
        };
        match cause {
            sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => true,
            // rustls reports a certificate it refuses as invalid data.
            sqlx::Error::Io(e) => e.kind() == std::io::ErrorKind::InvalidData,
            _ => false,
        }
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(e)
    }
}

/// Text as PostgreSQL can store it and operators may read it: without
/// credentials ([`crate::http::scrub`]) and without NUL characters, which
/// remote answers (an error body, an item) may hold.
pub(crate) fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    match crate::http::scrub(text) {
        scrubbed if scrubbed.contains('\0') => scrubbed.replace('\0', "\u{FFFD}").into(),
        scrubbed => scrubbed,
    }
}

pub(crate) fn query_error(op: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |cause| Error::Query { op, cause }
}

/// Opens a pool. Connections are tested before use, so a restarted server
/// costs one failed check rather than one failed statement.
///
/// # Errors
/// The settings are unusable. The pool connects lazily: an unreachable server
/// is reported by the first statement, not here.
pub fn connect(settings: &DatabaseSettings) -> Result<PgPool, Error> {
    let options = settings.connect_options().map_err(|e| Error::Settings(e.to_string()))?;
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout())
        .idle_timeout(Duration::from_secs(300))
        .test_before_acquire(true)
        .after_connect(|connection, _| Box::pin(async move { durable_commits(connection).await }))
        .connect_lazy_with(options))
}

/// A committed intent is the exactly-once protocol's memory of a write that
/// may have reached Graph: it must survive a server crash whatever the
/// server, database or role sets. Only `off` is raised (to `on`); `local`,
/// `remote_write` and `remote_apply` are durable locally and stay as they are.
async fn durable_commits(connection: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off'",
    )
    .execute(connection)
    .await?;
    Ok(())
}

/// A pool of its own for `/readyz` and `/metrics`: two connections whose
/// statements end within two seconds, so no number of scrapes can take a
/// connection from the engine or keep the database busy for long.
///
/// # Errors
/// The settings are unusable.
pub fn connect_observer(settings: &DatabaseSettings) -> Result<PgPool, Error> {
    let observer = DatabaseSettings {
        max_connections: 2,
        acquire_timeout_ms: 2_000,
        statement_timeout_ms: 2_000,
        ..settings.clone()
    };
    connect(&observer)
}

/// Applies the embedded migrations. sqlx holds a Postgres advisory lock while
/// it migrates, so replicas starting together are safe.
///
/// # Errors
/// The database is unreachable or a migration failed.
pub async fn migrate(pool: &PgPool) -> Result<(), Error> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Checks, without changing anything, that every migration this build
/// knows has been applied.
///
/// # Errors
/// [`Error::Settings`] naming the first missing migration (and what to
/// run), or the query failed.
pub async fn check_migrated(pool: &PgPool) -> Result<(), Error> {
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await
        .or_else(
            // No table at all: nothing was ever applied.
            |e| match &e {
                sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => Ok(Vec::new()),
                _ => Err(query_error("read applied migrations")(e)),
            },
        )?;
    match MIGRATOR.iter().find(|m| !applied.contains(&m.version)) {
        None => Ok(()),
        Some(m) => Err(Error::Settings(format!(
            "the database lacks migration {} ({}): run `regsync migrate` with this version first",
            m.version, m.description
        ))),
    }
}

/// A cheap round trip for readiness checks.
///
/// # Errors
/// The database is unreachable.
pub async fn ping(pool: &PgPool) -> Result<(), Error> {
    sqlx::query("SELECT 1").execute(pool).await.map_err(query_error("ping"))?;
    Ok(())
}

/// Drops and creates a database by name (for the demo's own database and
/// the tests' per-test databases). The name is quoted as an identifier.
///
/// # Errors
/// The statements failed (for example, no CREATEDB right).
pub async fn recreate_database(admin: &mut sqlx::PgConnection, name: &str) -> Result<(), Error> {
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    sqlx::query(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        .execute(&mut *admin)
        .await
        .map_err(query_error("drop database"))?;
    sqlx::query(&format!("CREATE DATABASE {quoted}"))
        .execute(&mut *admin)
        .await
        .map_err(query_error("create database"))?;
    Ok(())
}
