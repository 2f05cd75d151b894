//! Typed settings: built-in defaults < `config/default.toml` (or `--config`)
//! < `REGSYNC__SECTION__KEY` environment variables, plus `DATABASE_URL` and
//! `*_FILE` secrets. The only reader of regsync's environment variables.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::AllowedRegistrant;

mod attendance;
mod graph;
mod hooks;
mod load;
mod notifications;
mod registrants;
mod source;
mod validate;
mod validate_platform;

pub use attendance::{AttendanceSettings, AttendanceWriteback};
pub use graph::{Cloud, GraphAuth, GraphSettings, Target};
pub use hooks::HooksSettings;
pub use notifications::NotificationsSettings;
pub use registrants::{RegistrantFields, RegistrantsSettings, WritebackSettings};
pub use source::{FieldPointers, Paging, SourceAuth, SourceSettings, TimeFormat};

use validate::{parse_schedule, redact_sqlx_error};

/// Configuration that could not be loaded or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file or an environment variable could not be parsed.
    #[error("configuration: {0}")]
    Load(config::ConfigError),
    /// The configuration file is not valid TOML (the line is not shown: it
    /// may hold a secret).
    #[error("configuration: {path}: {detail}")]
    ParseFile {
        /// The file.
        path: String,
        /// Where and what, without the line's text.
        detail: String,
    },
    /// A `*_file` secret could not be read.
    #[error("configuration: {key}: cannot read {path}: {cause}")]
    ReadSecretFile {
        /// The setting naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        cause: std::io::Error,
    },
    /// One or more settings are missing or out of range; one line each.
    #[error("invalid configuration: {}", problems(.0))]
    Invalid(Vec<String>),
}

/// One problem on the same line; several on a line each.
fn problems(lines: &[String]) -> String {
    match lines {
        [one] => one.clone(),
        many => format!("\n  {}", many.join("\n  ")),
    }
}

impl From<config::ConfigError> for Error {
    fn from(e: config::ConfigError) -> Self {
        Self::Load(e)
    }
}

/// Every setting of regsync. See `config/default.toml` for each key.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// PostgreSQL.
    pub database: DatabaseSettings,
    /// The event platform's meeting list.
    pub source: SourceSettings,
    /// Microsoft Graph and the identity platform.
    pub graph: GraphSettings,
    /// The sync engine.
    pub sync: SyncSettings,
    /// Health and metrics server of `regsync run`.
    pub server: ServerSettings,
    /// Graceful shutdown.
    pub shutdown: ShutdownSettings,
    /// How long audit rows, rejected items and poll cycles are kept.
    pub retention: RetentionSettings,
    /// Keys that protect what regsync keeps at rest.
    pub security: SecuritySettings,
    /// The people registered for the platform's meetings.
    pub registrants: RegistrantsSettings,
    /// Where registrants' join links go back to the platform.
    pub writeback: WritebackSettings,
    /// The endpoint where the platform pushes its changes.
    pub hooks: HooksSettings,
    /// Attendance read after each event and written back.
    pub attendance: AttendanceSettings,
    /// Graph's change notifications on registrations.
    pub notifications: NotificationsSettings,
}

/// `[security]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    /// 32 bytes, base64: seals delegated refresh tokens in the database.
    pub encryption_key: Option<SecretString>,
    /// A file holding the key (wins over `encryption_key`).
    pub encryption_key_file: Option<PathBuf>,
}

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Postgres URL; falls back to `DATABASE_URL`.
    pub url: Option<SecretString>,
    /// A file holding the URL (a mounted secret), read at start.
    pub url_file: Option<PathBuf>,
    /// A file holding the password, which then replaces any in the URL.
    pub password_file: Option<PathBuf>,
    /// The password read from `password_file`.
    #[serde(skip)]
    pub password: Option<SecretString>,
    /// `run` and `once` apply pending migrations first; with `false` they
    /// refuse to start until `regsync migrate` has (for deployments that
    /// migrate in a separate step).
    pub migrate: bool,
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a pooled connection.
    pub acquire_timeout_ms: u64,
    /// Server-side limit on any one statement.
    pub statement_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            password_file: None,
            password: None,
            migrate: true,
            max_connections: 10,
            acquire_timeout_ms: 10_000,
            statement_timeout_ms: 30_000,
        }
    }
}

/// What to do with a meeting that a complete listing no longer contains.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnMissing {
    /// Leave it and its registration alone.
    #[default]
    Keep,
    /// Treat it as cancelled.
    Unregister,
}

/// `[sync]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSettings {
    /// Cron expression with a seconds field for polls of `regsync run`.
    pub poll_schedule: String,
    /// Real attempts (throttling excluded) before a meeting is `failed`.
    pub max_attempts: u32,
    /// First retry delay.
    pub backoff_base_ms: u64,
    /// Retry delay cap.
    pub backoff_max_ms: u64,
    /// `allowed_registrant` for items without one.
    pub default_allowed_registrant: String,
    /// `keep` or `unregister`.
    pub on_missing: OnMissing,
    /// How long a claim is owned before another worker may take it over.
    pub lease_ttl_ms: u64,
    /// Rows claimed per claim statement.
    pub claim_batch: u32,
    /// How often `regsync run` looks for due retries between polls.
    pub reconcile_interval_ms: u64,
    /// Cron (with seconds) for full listings while incremental ones run.
    pub full_listing_schedule: String,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            poll_schedule: "0 */5 * * * *".into(),
            max_attempts: 8,
            backoff_base_ms: 2_000,
            backoff_max_ms: 3_600_000,
            default_allowed_registrant: "everyone".into(),
            on_missing: OnMissing::Keep,
            lease_ttl_ms: 120_000,
            claim_batch: 32,
            reconcile_interval_ms: 1_000,
            full_listing_schedule: "0 0 3 * * *".into(),
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address of `/healthz`, `/readyz`, `/metrics`.
    pub listen: String,
    /// `/readyz` fails when the last successful poll is older than this.
    pub ready_max_poll_age_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9090".into(), ready_max_poll_age_secs: 1_800 }
    }
}

/// `[shutdown]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownSettings {
    /// How long in-flight work may take to finish after SIGTERM.
    pub grace_secs: u64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self { grace_secs: 30 }
    }
}

/// `[retention]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Graph call audit rows, rejected items (by their last sighting) and
    /// poll cycles older than this many days are deleted after each poll.
    pub max_age_days: u32,
    /// Rows deleted per statement.
    pub batch_size: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self { max_age_days: 90, batch_size: 1_000 }
    }
}

impl RetentionSettings {
    /// The age past which rows go.
    pub fn max_age(&self) -> Duration {
        Duration::from_secs(u64::from(self.max_age_days) * 86_400)
    }
}

const DEFAULT_FILE: &str = "config/default.toml";

/// What a command needs, so each checks only its own settings: `migrate`,
/// `status` and `retry` need no Graph credentials or platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The database only.
    Database,
    /// The database, the platform and Graph.
    Everything,
}

impl Settings {
    /// The default audience for items that do not name one.
    pub fn default_allowed_registrant(&self) -> AllowedRegistrant {
        AllowedRegistrant::parse(&self.sync.default_allowed_registrant).unwrap_or(AllowedRegistrant::Everyone)
    }
}

impl DatabaseSettings {
    /// Connection options with the statement timeout applied on every session.
    ///
    /// # Errors
    /// The URL is missing or invalid (already rejected by `validate`).
    pub fn connect_options(&self) -> Result<sqlx::postgres::PgConnectOptions, Error> {
        let url = self.url.as_ref().ok_or_else(|| Error::Invalid(vec!["database.url is required".into()]))?;
        let options: sqlx::postgres::PgConnectOptions = url
            .expose_secret()
            .parse()
            .map_err(|e| Error::Invalid(vec![format!("database.url: {}", redact_sqlx_error(&e))]))?;
        let options = match &self.password {
            Some(password) => options.password(password.expose_secret()),
            None => options,
        };
        Ok(options.application_name("regsync").options([("statement_timeout", self.statement_timeout_ms.to_string())]))
    }

    /// Whether `url` asks for an encrypted connection (`sslmode` require,
    /// verify-ca or verify-full).
    pub fn requires_tls(&self) -> bool {
        use sqlx::postgres::PgSslMode;
        self.connect_options()
            .is_ok_and(|o| matches!(o.get_ssl_mode(), PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull))
    }

    /// How long regsync waits for a statement's answer on its side: the
    /// server's `statement_timeout` and a margin (the server cannot time a
    /// statement out when it is gone).
    pub fn client_deadline(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms) + Duration::from_secs(5)
    }

    /// How long to wait for a pooled connection.
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}

impl SyncSettings {
    /// Claim lifetime.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }

    /// Interval between looks for due retries in `regsync run`.
    pub fn reconcile_interval(&self) -> Duration {
        Duration::from_millis(self.reconcile_interval_ms)
    }

    /// Whether `sync.full_listing_schedule` fired after `last` (the last
    /// complete full listing) and by `now`. A schedule that does not parse
    /// (validation refuses it) makes every listing full.
    pub fn full_listing_due(&self, last: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> bool {
        let Ok(cron) = parse_schedule(&self.full_listing_schedule) else { return true };
        cron.iter_after(last).next().is_none_or(|fired| fired <= now)
    }

    /// The shortest gap between two upcoming polls of `poll_schedule`
    /// (checked over the next ten); one minute if it cannot be computed.
    pub fn poll_period(&self) -> Duration {
        let Ok(cron) = parse_schedule(&self.poll_schedule) else { return Duration::from_secs(60) };
        let times: Vec<_> = cron.iter_after(chrono::Utc::now()).take(11).collect();
        times.windows(2).filter_map(|w| (w[1] - w[0]).to_std().ok()).min().unwrap_or(Duration::from_secs(60))
    }
}

impl ShutdownSettings {
    /// Grace period after the first signal.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_secs)
    }
}

#[cfg(test)]
mod tests;
