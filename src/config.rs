//! Typed settings: built-in defaults < `config/default.toml` (or `--config`)
//! < `REGSYNC__SECTION__KEY` environment variables, plus `DATABASE_URL` and
//! `*_FILE` secrets. The only reader of regsync's environment variables.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::AllowedRegistrant;

/// Configuration that could not be loaded or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file or an environment variable could not be parsed.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A `*_file` secret could not be read.
    #[error("configuration: {key}: cannot read {path}: {source}")]
    ReadSecretFile {
        /// The setting naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// One or more settings are missing or out of range; one line each.
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl Error {
    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Load(_) => "load",
            Self::ReadSecretFile { .. } => "read_secret_file",
            Self::Invalid(_) => "invalid",
        }
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
}

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Postgres URL; falls back to `DATABASE_URL`.
    pub url: Option<SecretString>,
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a pooled connection.
    pub acquire_timeout_ms: u64,
    /// Server-side limit on any one statement.
    pub statement_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self { url: None, max_connections: 10, acquire_timeout_ms: 10_000, statement_timeout_ms: 30_000 }
    }
}

/// How the platform's API is authenticated.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SourceAuth {
    /// No auth header.
    #[default]
    None,
    /// `Authorization: Bearer {token}`.
    Bearer,
    /// `{api_key_header}: {token}`.
    ApiKey,
}

/// `[source]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceSettings {
    /// Platform API root, e.g. `https://events.example.com/api`.
    pub base_url: Option<String>,
    /// List endpoint, appended to `base_url`.
    pub meetings_path: String,
    /// Items asked for per page.
    pub page_size: u32,
    /// Query parameter carrying the page size.
    pub limit_param: String,
    /// Query parameter carrying the cursor.
    pub cursor_param: String,
    /// Per-request timeout.
    pub timeout_ms: u64,
    /// `none`, `bearer` or `api_key`.
    pub auth: SourceAuth,
    /// Bearer token or API key.
    pub token: Option<SecretString>,
    /// File holding the token (wins over `token`).
    pub token_file: Option<PathBuf>,
    /// Header for `auth = "api_key"`.
    pub api_key_header: String,
    /// JSON pointer to the items array in a page.
    pub items_pointer: String,
    /// JSON pointer to the next cursor in a page (null or absent: last page).
    pub cursor_pointer: String,
    /// JSON pointers to each field inside an item.
    pub fields: FieldPointers,
    /// A listing with more pages than this is cut off and treated as partial.
    pub max_pages: u32,
    /// A page body larger than this fails the page.
    pub max_page_bytes: usize,
    /// An item whose JSON is larger than this is rejected.
    pub max_item_bytes: usize,
}

impl Default for SourceSettings {
    fn default() -> Self {
        Self {
            base_url: None,
            meetings_path: "/meetings".into(),
            page_size: 200,
            limit_param: "limit".into(),
            cursor_param: "cursor".into(),
            timeout_ms: 30_000,
            auth: SourceAuth::None,
            token: None,
            token_file: None,
            api_key_header: "x-api-key".into(),
            items_pointer: "/meetings".into(),
            cursor_pointer: "/next_cursor".into(),
            fields: FieldPointers::default(),
            max_pages: 10_000,
            max_page_bytes: 16 * 1024 * 1024,
            max_item_bytes: 16 * 1024,
        }
    }
}

/// `[source.fields]`: JSON pointers into one item.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FieldPointers {
    /// The platform's meeting id (required).
    pub id: String,
    /// The organizer's Entra object id (required).
    pub organizer_id: String,
    /// Graph's online meeting id (required).
    pub online_meeting_id: String,
    /// `everyone` or `organization` (optional).
    pub allowed_registrant: String,
    /// `active` or `cancelled` (optional).
    pub status: String,
    /// RFC 3339 time of the last change (optional).
    pub updated_at: String,
}

impl Default for FieldPointers {
    fn default() -> Self {
        Self {
            id: "/id".into(),
            organizer_id: "/organizer_id".into(),
            online_meeting_id: "/online_meeting_id".into(),
            allowed_registrant: "/allowed_registrant".into(),
            status: "/status".into(),
            updated_at: "/updated_at".into(),
        }
    }
}

/// `[graph]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphSettings {
    /// Graph root, without a trailing slash.
    pub base_url: String,
    /// Identity platform root.
    pub authority_url: String,
    /// Entra tenant (GUID or domain).
    pub tenant_id: Option<String>,
    /// The app registration's client id.
    pub client_id: Option<String>,
    /// The app's client secret.
    pub client_secret: Option<SecretString>,
    /// File holding the client secret (wins over `client_secret`).
    pub client_secret_file: Option<PathBuf>,
    /// Token scope for client credentials.
    pub scope: String,
    /// Graph calls in flight at once, per process.
    pub max_concurrency: usize,
    /// Total time allowed for one request.
    pub timeout_ms: u64,
    /// Requests per second this process sends at most; 0 for no pacing.
    pub max_requests_per_second: u32,
}

impl Default for GraphSettings {
    fn default() -> Self {
        Self {
            base_url: "https://graph.microsoft.com/beta".into(),
            authority_url: "https://login.microsoftonline.com".into(),
            tenant_id: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            scope: "https://graph.microsoft.com/.default".into(),
            max_concurrency: 4,
            timeout_ms: 30_000,
            // Graph publishes no limit for onlineMeetings; the nearest one
            // is the Teams service limit for writes: 30 per second per app
            // per tenant.
            max_requests_per_second: 30,
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

const DEFAULT_FILE: &str = "config/default.toml";

impl Settings {
    /// Loads `path` (or `config/default.toml` when present), then the process
    /// environment, then validates.
    ///
    /// # Errors
    /// A file or variable that does not parse, an unreadable secret file, or
    /// any invalid setting (all reported at once).
    pub fn load(path: Option<&Path>) -> Result<Self, Error> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load_from(path, &env)
    }

    /// [`Settings::load`] with the environment given as a map (for tests).
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_from(path: Option<&Path>, env: &HashMap<String, String>) -> Result<Self, Error> {
        let file = match path {
            Some(path) => Some(config::File::from(path).required(true)),
            None if Path::new(DEFAULT_FILE).exists() => Some(config::File::with_name(DEFAULT_FILE)),
            None => None,
        };
        let regsync_env: HashMap<String, String> =
            env.iter().filter(|(k, _)| k.starts_with("REGSYNC__")).map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            builder = builder.add_source(file);
        }
        let layered = builder
            .add_source(
                config::Environment::with_prefix("REGSYNC")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(regsync_env)),
            )
            .build()?;
        let mut settings: Settings = layered.try_deserialize()?;
        if settings.database.url.is_none() {
            settings.database.url =
                env.get("DATABASE_URL").filter(|url| !url.is_empty()).map(|url| SecretString::from(url.clone()));
        }
        settings.read_secret_files()?;
        settings.validate()?;
        Ok(settings)
    }

    fn read_secret_files(&mut self) -> Result<(), Error> {
        fn read(key: &'static str, path: &Path) -> Result<SecretString, Error> {
            std::fs::read_to_string(path)
                .map(|s| SecretString::from(s.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|source| Error::ReadSecretFile { key, path: path.to_owned(), source })
        }
        if let Some(path) = &self.graph.client_secret_file {
            self.graph.client_secret = Some(read("graph.client_secret_file", path)?);
        }
        if let Some(path) = &self.source.token_file {
            self.source.token = Some(read("source.token_file", path)?);
        }
        Ok(())
    }

    /// Checks every setting and reports all problems at once, one line each.
    ///
    /// # Errors
    /// [`Error::Invalid`] listing each bad key.
    pub fn validate(&self) -> Result<(), Error> {
        let mut bad = Vec::new();
        let mut require = |present: bool, key: &str, env: &str| {
            if !present {
                bad.push(format!("{key} is required (set it in the config file or {env})"));
            }
        };
        let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
        let secret_set = |v: &Option<SecretString>| v.as_ref().is_some_and(|v| !v.expose_secret().is_empty());
        require(secret_set(&self.database.url), "database.url", "REGSYNC__DATABASE__URL or DATABASE_URL");
        require(set(&self.source.base_url), "source.base_url", "REGSYNC__SOURCE__BASE_URL");
        require(set(&self.graph.tenant_id), "graph.tenant_id", "REGSYNC__GRAPH__TENANT_ID");
        require(set(&self.graph.client_id), "graph.client_id", "REGSYNC__GRAPH__CLIENT_ID");
        require(
            secret_set(&self.graph.client_secret),
            "graph.client_secret",
            "REGSYNC__GRAPH__CLIENT_SECRET or REGSYNC__GRAPH__CLIENT_SECRET_FILE",
        );
        for (key, url) in [
            ("source.base_url", self.source.base_url.as_deref()),
            ("graph.base_url", Some(self.graph.base_url.as_str())),
            ("graph.authority_url", Some(self.graph.authority_url.as_str())),
        ] {
            if let Some(url) = url.filter(|u| !u.is_empty()) {
                match reqwest::Url::parse(url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                    _ => bad.push(format!("{key} must be an http(s) URL, got {url:?}")),
                }
            }
        }
        if let Some(url) = self.database.url.as_ref().filter(|u| !u.expose_secret().is_empty()) {
            if let Err(e) = url.expose_secret().parse::<sqlx::postgres::PgConnectOptions>() {
                // The URL may hold a password: name the problem, not the value.
                bad.push(format!("database.url is not a valid Postgres URL: {}", redact_sqlx_error(&e)));
            }
        }
        if self.source.auth != SourceAuth::None && self.source.token.is_none() {
            bad.push("source.token (or source.token_file) is required when source.auth is bearer or api_key".into());
        }
        if self.source.page_size == 0 {
            bad.push("source.page_size must be at least 1".into());
        }
        if self.source.max_pages == 0 {
            bad.push("source.max_pages must be at least 1".into());
        }
        for (key, ptr) in [
            ("source.items_pointer", &self.source.items_pointer),
            ("source.cursor_pointer", &self.source.cursor_pointer),
            ("source.fields.id", &self.source.fields.id),
            ("source.fields.organizer_id", &self.source.fields.organizer_id),
            ("source.fields.online_meeting_id", &self.source.fields.online_meeting_id),
            ("source.fields.allowed_registrant", &self.source.fields.allowed_registrant),
            ("source.fields.status", &self.source.fields.status),
            ("source.fields.updated_at", &self.source.fields.updated_at),
        ] {
            if !ptr.is_empty() && !ptr.starts_with('/') {
                bad.push(format!("{key} must be a JSON pointer starting with '/', got {ptr:?}"));
            }
        }
        if self.graph.max_concurrency == 0 {
            bad.push("graph.max_concurrency must be at least 1".into());
        }
        if self.graph.timeout_ms == 0 {
            bad.push("graph.timeout_ms must be at least 1".into());
        }
        if AllowedRegistrant::parse(&self.sync.default_allowed_registrant).is_none() {
            bad.push(format!(
                "sync.default_allowed_registrant must be \"everyone\" or \"organization\", got {:?}",
                self.sync.default_allowed_registrant
            ));
        }
        if self.sync.max_attempts == 0 {
            bad.push("sync.max_attempts must be at least 1".into());
        }
        if self.sync.backoff_base_ms == 0 || self.sync.backoff_base_ms > self.sync.backoff_max_ms {
            bad.push("sync.backoff_base_ms must be at least 1 and at most sync.backoff_max_ms".into());
        }
        if self.sync.claim_batch == 0 {
            bad.push("sync.claim_batch must be at least 1".into());
        }
        // A request must end well inside its lease, or a second worker could
        // take the meeting over while the first one's request is still open.
        if self.graph.timeout_ms.saturating_mul(4) > self.sync.lease_ttl_ms {
            bad.push(format!(
                "graph.timeout_ms ({}) must be at most a quarter of sync.lease_ttl_ms ({})",
                self.graph.timeout_ms, self.sync.lease_ttl_ms
            ));
        }
        if let Err(e) = parse_schedule(&self.sync.poll_schedule) {
            bad.push(format!(
                "sync.poll_schedule {:?} is not a cron expression with a seconds field: {e}",
                self.sync.poll_schedule
            ));
        }
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            bad.push(format!("server.listen must be an address like 127.0.0.1:9090, got {:?}", self.server.listen));
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(bad))
        }
    }

    /// The default audience for items that do not name one.
    pub fn default_allowed_registrant(&self) -> AllowedRegistrant {
        AllowedRegistrant::parse(&self.sync.default_allowed_registrant).unwrap_or(AllowedRegistrant::Everyone)
    }
}

/// Parses a schedule the way the scheduler does (seconds field required).
fn parse_schedule(expr: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

fn redact_sqlx_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Configuration(inner) => inner.to_string(),
        other => other.to_string(),
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
        Ok(options.application_name("regsync").options([("statement_timeout", self.statement_timeout_ms.to_string())]))
    }

    /// How long to wait for a pooled connection.
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}

impl SourceSettings {
    /// Per-request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

impl GraphSettings {
    /// Per-request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
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
}

impl SyncSettings {
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
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn complete_env() -> HashMap<String, String> {
        env(&[
            ("DATABASE_URL", "postgres://postgres@127.0.0.1/regsync"),
            ("REGSYNC__SOURCE__BASE_URL", "http://127.0.0.1:1"),
            ("REGSYNC__GRAPH__TENANT_ID", "tenant"),
            ("REGSYNC__GRAPH__CLIENT_ID", "client"),
            ("REGSYNC__GRAPH__CLIENT_SECRET", "s3cret"),
        ])
    }

    #[test]
    fn environment_fills_every_required_key() {
        let settings = Settings::load_from(None, &complete_env()).expect("valid");
        assert_eq!(settings.graph.client_id.as_deref(), Some("client"));
        assert_eq!(settings.source.page_size, 200);
        assert_eq!(settings.graph.base_url, "https://graph.microsoft.com/beta");
    }

    #[test]
    fn missing_keys_are_all_named_in_one_error() {
        let err = Settings::load_from(None, &HashMap::new()).unwrap_err().to_string();
        for key in ["database.url", "source.base_url", "graph.tenant_id", "graph.client_id", "graph.client_secret"] {
            assert!(err.contains(key), "{key} not named in {err}");
        }
    }

    #[test]
    fn numbers_from_the_environment_are_parsed() {
        let mut vars = complete_env();
        vars.insert("REGSYNC__GRAPH__MAX_CONCURRENCY".into(), "9".into());
        let settings = Settings::load_from(None, &vars).expect("valid");
        assert_eq!(settings.graph.max_concurrency, 9);
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        let mut vars = complete_env();
        vars.insert("REGSYNC__GRAPH__CLIENT_SECRT".into(), "typo".into());
        let err = Settings::load_from(None, &vars).unwrap_err().to_string();
        assert!(err.contains("client_secrt"), "{err}");
    }

    #[test]
    fn a_malformed_number_names_the_key() {
        let mut vars = complete_env();
        vars.insert("REGSYNC__SYNC__MAX_ATTEMPTS".into(), "many".into());
        let err = Settings::load_from(None, &vars).unwrap_err().to_string();
        assert!(err.contains("max_attempts"), "{err}");
    }

    #[test]
    fn a_timeout_longer_than_a_quarter_lease_is_rejected() {
        let mut vars = complete_env();
        vars.insert("REGSYNC__GRAPH__TIMEOUT_MS".into(), "60000".into());
        let err = Settings::load_from(None, &vars).unwrap_err().to_string();
        assert!(err.contains("graph.timeout_ms"), "{err}");
    }

    #[test]
    fn the_client_secret_can_come_from_a_file_and_never_prints() {
        let dir = std::env::temp_dir().join(format!("regsync-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "from-file-secret\n").unwrap();
        let mut vars = complete_env();
        vars.remove("REGSYNC__GRAPH__CLIENT_SECRET");
        vars.insert("REGSYNC__GRAPH__CLIENT_SECRET_FILE".into(), file.display().to_string());
        let settings = Settings::load_from(None, &vars).expect("valid");
        assert_eq!(settings.graph.client_secret.as_ref().unwrap().expose_secret(), "from-file-secret");
        assert!(!format!("{settings:?}").contains("from-file-secret"));
        assert!(!format!("{settings:?}").contains("postgres://"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_shipped_default_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_FILE);
        let settings = Settings::load_from(Some(&path), &complete_env()).expect("default.toml is valid");
        assert_eq!(settings.sync.poll_schedule, "0 */5 * * * *");
        assert_eq!(settings.sync.poll_period(), Duration::from_secs(300));
    }
}
