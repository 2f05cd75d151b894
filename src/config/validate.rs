//! Every setting checked at once, each problem a line naming its key.

use secrecy::{ExposeSecret, SecretString};

use super::{Cloud, Error, GraphAuth, Scope, Settings, Target};
use crate::domain::AllowedRegistrant;

impl Settings {
    /// Checks every setting and reports all problems at once, one line each.
    ///
    /// # Errors
    /// [`Error::Invalid`] listing each bad key.
    pub fn validate(&self) -> Result<(), Error> {
        self.validate_for(Scope::Everything)
    }

    /// [`Settings::validate`] for what `scope` needs: with
    /// [`Scope::Database`] the platform and Graph settings may be missing.
    ///
    /// # Errors
    /// [`Error::Invalid`] listing each bad key.
    pub fn validate_for(&self, scope: Scope) -> Result<(), Error> {
        let mut bad = Vec::new();
        self.check_database(&mut bad);
        if scope == Scope::Everything {
            self.check_required(&mut bad);
            self.check_urls(&mut bad);
            self.check_graph(&mut bad);
            self.check_source(&mut bad);
            self.check_registrants(&mut bad);
            self.check_attendance(&mut bad);
        }
        self.check_limits(&mut bad);
        self.check_sync(&mut bad);
        if scope == Scope::Everything {
            self.check_hooks(&mut bad);
            self.check_notifications(&mut bad);
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(bad))
        }
    }

    /// Graph's change notifications: a URL Graph can reach, a secret, a
    /// listener, and a target that has them.
    fn check_notifications(&self, bad: &mut Vec<String>) {
        let n = &self.notifications;
        if !n.enabled() {
            return;
        }
        if let Err(why) = crate::http::credentials_may_go_to(&n.public_url) {
            bad.push(format!("notifications.public_url {why}"));
        }
        if !self.hooks.enabled() {
            bad.push(
                "notifications.public_url needs hooks.listen: Graph's notifications arrive at POST /hooks/graph on \
                 that listener (behind the public URL)"
                    .into(),
            );
        }
        match n.client_state.as_ref().map(|s| s.expose_secret().len()) {
            None | Some(0) => bad.push(
                "notifications.client_state is required with notifications.public_url \
                 (REGSYNC__NOTIFICATIONS__CLIENT_STATE or REGSYNC__NOTIFICATIONS__CLIENT_STATE_FILE)"
                    .into(),
            ),
            Some(len) if !(16..=128).contains(&len) => bad.push(format!(
                "notifications.client_state is {len} bytes; Graph takes at most 128, and fewer than 16 are guessable"
            )),
            Some(_) => {}
        }
        if self.graph.target.event_kind().is_none() {
            bad.push(
                "notifications.public_url is set, but only webinars and town halls have registration notifications: \
                 graph.target is \"meeting_registration\""
                    .into(),
            );
        }
    }

    /// The webhook listener, when on: an address, a secret worth the name,
    /// limits above zero.
    fn check_hooks(&self, bad: &mut Vec<String>) {
        let h = &self.hooks;
        if !h.enabled() {
            return;
        }
        if h.listen.parse::<std::net::SocketAddr>().is_err() {
            bad.push(format!("hooks.listen {:?} is not an address such as 0.0.0.0:9443", h.listen));
        }
        if h.listen.trim() == self.server.listen.trim() {
            bad.push("hooks.listen must differ from server.listen: /metrics stays private".into());
        }
        match h.secret.as_ref().map(|s| s.expose_secret().len()) {
            // Graph's notifications alone need no platform secret.
            None if self.notifications.enabled() => {}
            None | Some(0) => bad.push(
                "hooks.secret is required with hooks.listen (REGSYNC__HOOKS__SECRET or REGSYNC__HOOKS__SECRET_FILE)"
                    .into(),
            ),
            Some(n) if n < 16 => bad.push(format!(
                "hooks.secret is {n} bytes; use at least 16 (32 random bytes, e.g. openssl rand -hex 32)"
            )),
            Some(_) => {}
        }
        if h.tolerance_secs == 0 || h.tolerance_secs > 86_400 {
            bad.push(format!("hooks.tolerance_secs must be between 1 and 86400, got {}", h.tolerance_secs));
        }
        if h.max_body_bytes == 0 {
            bad.push("hooks.max_body_bytes must be at least 1".into());
        }
        if h.client_rate_per_second == 0 {
            bad.push("hooks.client_rate_per_second must be at least 1".into());
        }
    }

    /// The database URL: present and parseable.
    fn check_database(&self, bad: &mut Vec<String>) {
        match self.database.url.as_ref().filter(|u| !u.expose_secret().is_empty()) {
            None => bad.push(
                "database.url is required (set it in the config file, REGSYNC__DATABASE__URL, \
                 REGSYNC__DATABASE__URL_FILE or DATABASE_URL)"
                    .into(),
            ),
            Some(url) => {
                if let Err(e) = url.expose_secret().parse::<sqlx::postgres::PgConnectOptions>() {
                    // The URL may hold a password: name the problem, not the value.
                    bad.push(format!("database.url is not a valid Postgres URL: {}", redact_sqlx_error(&e)));
                }
            }
        }
    }

    /// The platform's and Graph's keys without a default.
    fn check_required(&self, bad: &mut Vec<String>) {
        let mut require = |present: bool, key: &str, env: &str| {
            if !present {
                bad.push(format!("{key} is required (set it in the config file or {env})"));
            }
        };
        let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
        let secret_set = |v: &Option<SecretString>| v.as_ref().is_some_and(|v| !v.expose_secret().is_empty());
        require(set(&self.source.base_url), "source.base_url", "REGSYNC__SOURCE__BASE_URL");
        require(set(&self.graph.tenant_id), "graph.tenant_id", "REGSYNC__GRAPH__TENANT_ID");
        require(set(&self.graph.client_id), "graph.client_id", "REGSYNC__GRAPH__CLIENT_ID");
        let g = &self.graph;
        match g.auth {
            GraphAuth::ClientSecret => require(
                secret_set(&g.client_secret),
                "graph.client_secret",
                "REGSYNC__GRAPH__CLIENT_SECRET or REGSYNC__GRAPH__CLIENT_SECRET_FILE",
            ),
            GraphAuth::Certificate => {
                require(g.certificate_path.is_some(), "graph.certificate_path", "REGSYNC__GRAPH__CERTIFICATE_PATH");
                require(g.private_key_path.is_some(), "graph.private_key_path", "REGSYNC__GRAPH__PRIVATE_KEY_PATH");
            }
            GraphAuth::Federated => require(
                g.federated_token_file.is_some(),
                "graph.federated_token_file",
                "REGSYNC__GRAPH__FEDERATED_TOKEN_FILE or AZURE_FEDERATED_TOKEN_FILE",
            ),
            GraphAuth::Delegated => self.check_encryption_key(bad),
        }
    }

    /// The key that seals sign-ins: 32 bytes, base64.
    pub(super) fn check_encryption_key(&self, bad: &mut Vec<String>) {
        use base64::Engine as _;
        match &self.security.encryption_key {
            None => bad.push(
                "security.encryption_key is required when graph.auth is delegated (set it in the config file, \
                 REGSYNC__SECURITY__ENCRYPTION_KEY or REGSYNC__SECURITY__ENCRYPTION_KEY_FILE; make one with \
                 `openssl rand -base64 32`)"
                    .into(),
            ),
            Some(key) => {
                let decoded = base64::engine::general_purpose::STANDARD.decode(key.expose_secret().trim());
                if decoded.map(|k| k.len()) != Ok(32) {
                    bad.push(
                        "security.encryption_key must be 32 bytes, base64-encoded (make one with \
                         `openssl rand -base64 32`)"
                            .into(),
                    );
                }
            }
        }
    }

    /// Where Graph credentials and tokens may go, and whether this cloud and
    /// root have the registration API.
    fn check_graph(&self, bad: &mut Vec<String>) {
        let g = &self.graph;
        if g.target.event_kind().is_some() && g.auth == GraphAuth::Delegated {
            bad.push(format!(
                "graph.target = {:?} registers other people, which needs application permission \
                 (VirtualEventRegistration-Anon.ReadWrite.All): graph.auth cannot be \"delegated\"",
                g.target.as_str()
            ));
        }
        for (key, url) in [("graph.base_url", &g.base_url), ("graph.authority_url", &g.authority_url)] {
            if let Err(why) = crate::http::credentials_may_go_to(url) {
                bad.push(format!("{key} {why}"));
            }
        }
        if g.cloud != Cloud::Global {
            bad.push(format!(
                "graph.cloud is {:?}: the meeting registration API is available only in the global cloud \
                 (Microsoft Graph global service), not in US Government or China",
                g.cloud.as_str()
            ));
        }
        let Ok(base) = reqwest::Url::parse(&g.base_url) else { return };
        let version = g.version();
        if !base.path().trim_end_matches('/').ends_with(&format!("/{version}")) {
            let why = match g.target {
                Target::MeetingRegistration => "the externalMeetingRegistration API exists only in beta".to_owned(),
                virtual_event => format!("graph.target = {:?} is the v1.0 API", virtual_event.as_str()),
            };
            bad.push(format!(
                "graph.base_url must be Graph's {version} root (for example https://graph.microsoft.com/{version}), \
                 got {:?}: {why}",
                g.base_url
            ));
        }
        // The simulator on loopback accepts the global scope.
        let loopback = crate::http::is_loopback(&base);
        let scope_host = reqwest::Url::parse(&g.scope).ok().and_then(|u| u.host_str().map(str::to_owned));
        if !loopback && scope_host.as_deref() != base.host_str() {
            bad.push(format!(
                "graph.scope {:?} is not for graph.base_url's host {:?}: a token for one Graph host is refused by \
                 another (use https://{}/.default)",
                g.scope,
                base.host_str().unwrap_or_default(),
                base.host_str().unwrap_or_default()
            ));
        }
    }

    /// URLs that must parse.
    fn check_urls(&self, bad: &mut Vec<String>) {
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
    }

    /// Sizes, intervals and timeouts that must not be zero.
    fn check_limits(&self, bad: &mut Vec<String>) {
        for (key, value) in [
            ("database.max_connections", u64::from(self.database.max_connections)),
            ("database.acquire_timeout_ms", self.database.acquire_timeout_ms),
            ("source.timeout_ms", self.source.timeout_ms),
            ("sync.reconcile_interval_ms", self.sync.reconcile_interval_ms),
            ("sync.lease_ttl_ms", self.sync.lease_ttl_ms),
            ("retention.max_age_days", u64::from(self.retention.max_age_days)),
            ("retention.batch_size", u64::from(self.retention.batch_size)),
            ("graph.suspended_probe_interval_ms", self.graph.suspended_probe_interval_ms),
            ("graph.virtual_event_writes_per_30s", u64::from(self.graph.virtual_event_writes_per_30s)),
            ("graph.resolution_max_age_secs", self.graph.resolution_max_age_secs),
        ] {
            if value == 0 {
                bad.push(format!("{key} must be at least 1"));
            }
        }
        if self.graph.max_concurrency == 0 {
            bad.push("graph.max_concurrency must be at least 1".into());
        }
        if self.graph.timeout_ms == 0 {
            bad.push("graph.timeout_ms must be at least 1".into());
        }
        if self.graph.resolution_max_age_secs > 365 * 86_400 {
            bad.push(format!(
                "graph.resolution_max_age_secs ({}) is more than a year: a UPN given to another person would keep \
                 the first person's id that long",
                self.graph.resolution_max_age_secs
            ));
        }
        if self.graph.list_settle_secs > 86_400 {
            bad.push(format!(
                "graph.list_settle_secs ({}) is more than a day: a person whose answer was lost would wait that long",
                self.graph.list_settle_secs
            ));
        }
    }

    /// The engine: audience, attempts, backoff, lease and timeout, schedule, listen address.
    fn check_sync(&self, bad: &mut Vec<String>) {
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
        for (key, schedule) in [
            ("sync.poll_schedule", &self.sync.poll_schedule),
            ("sync.full_listing_schedule", &self.sync.full_listing_schedule),
        ] {
            if let Err(e) = parse_schedule(schedule) {
                bad.push(format!("{key} {schedule:?} is not a cron expression with a seconds field: {e}"));
            }
        }
        // An incremental listing keeps its watermark from each item's time.
        for (param_key, param, field_key, field) in [
            (
                "source.changed_since_param",
                &self.source.changed_since_param,
                "source.fields.updated_at",
                &self.source.fields.updated_at,
            ),
            (
                "registrants.changed_since_param",
                &self.registrants.changed_since_param,
                "registrants.fields.updated_at",
                &self.registrants.fields.updated_at,
            ),
        ] {
            if !param.trim().is_empty() && field.trim().is_empty() {
                bad.push(format!(
                    "{param_key} = {param:?} needs {field_key}: the watermark is the newest modification time a listing shows"
                ));
            }
        }
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            bad.push(format!("server.listen must be an address like 127.0.0.1:9090, got {:?}", self.server.listen));
        }
    }
}

/// Parses a schedule the way the scheduler does (seconds field required).
pub(super) fn parse_schedule(expr: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

/// A database URL error without the URL (it may hold a password).
pub(super) fn redact_sqlx_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Configuration(inner) => inner.to_string(),
        other => other.to_string(),
    }
}
