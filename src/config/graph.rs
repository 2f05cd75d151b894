//! Graph's settings: the target API, the credential kind, the national cloud,
//! and the client's limits.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// Which Graph API regsync drives (`graph.target`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Beta `externalMeetingRegistration` on online meetings, and
    /// `externalMeetingRegistrant`s for registrants.
    #[default]
    MeetingRegistration,
    /// v1.0 virtual-event webinars: a platform meeting is a webinar, each
    /// registrant a webinar registration.
    VirtualEventWebinar,
    /// v1.0 virtual-event town halls, in the webinar's shape.
    VirtualEventTownhall,
}

impl Target {
    /// The kind of virtual event a platform meeting is, on a v1.0 target.
    pub fn event_kind(self) -> Option<crate::domain::EventKind> {
        match self {
            Self::MeetingRegistration => None,
            Self::VirtualEventWebinar => Some(crate::domain::EventKind::Webinar),
            Self::VirtualEventTownhall => Some(crate::domain::EventKind::Townhall),
        }
    }

    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MeetingRegistration => "meeting_registration",
            Self::VirtualEventWebinar => "virtual_event_webinar",
            Self::VirtualEventTownhall => "virtual_event_townhall",
        }
    }
}

/// How regsync proves who it is to the identity platform (`graph.auth`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum GraphAuth {
    /// The app's client secret (client credentials).
    #[default]
    ClientSecret,
    /// A client assertion signed with the app's certificate key.
    Certificate,
    /// A client assertion from another identity provider, read from a file
    /// for every token (workload identity federation).
    Federated,
    /// Organizers sign in (`regsync login`); regsync acts for each of them.
    Delegated,
}

impl GraphAuth {
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecret => "client_secret",
            Self::Certificate => "certificate",
            Self::Federated => "federated",
            Self::Delegated => "delegated",
        }
    }
}

/// A Microsoft cloud: its Graph root, identity platform and token scope.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    /// Microsoft Graph global service (including GCC).
    #[default]
    Global,
    /// US Government L4 (GCC High).
    Usgov,
    /// US Government L5 (DoD).
    UsgovDod,
    /// Microsoft Graph China, operated by 21Vianet.
    China,
}

impl Cloud {
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Usgov => "usgov",
            Self::UsgovDod => "usgov-dod",
            Self::China => "china",
        }
    }

    /// The Graph host's root URL.
    pub fn graph_root(self) -> &'static str {
        match self {
            Self::Global => "https://graph.microsoft.com",
            Self::Usgov => "https://graph.microsoft.us",
            Self::UsgovDod => "https://dod-graph.microsoft.us",
            Self::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    /// The identity platform's root URL.
    pub fn authority(self) -> &'static str {
        match self {
            Self::Global => "https://login.microsoftonline.com",
            Self::Usgov | Self::UsgovDod => "https://login.microsoftonline.us",
            Self::China => "https://login.partner.microsoftonline.cn",
        }
    }
}

/// `[graph]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphSettings {
    /// The API regsync drives.
    pub target: Target,
    /// The credential kind.
    pub auth: GraphAuth,
    /// The Microsoft cloud; sets `base_url`, `authority_url` and `scope`
    /// where they are left at the global defaults.
    pub cloud: Cloud,
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
    /// PEM certificate registered with the app (`certificate`).
    pub certificate_path: Option<PathBuf>,
    /// PEM private key of that certificate (`certificate`).
    pub private_key_path: Option<PathBuf>,
    /// File holding the federated assertion, read for every token
    /// (`federated`); `AZURE_FEDERATED_TOKEN_FILE` when unset.
    pub federated_token_file: Option<PathBuf>,
    /// Token scope for client credentials.
    pub scope: String,
    /// Graph calls in flight at once, per process.
    pub max_concurrency: usize,
    /// Total time allowed for one request.
    pub timeout_ms: u64,
    /// The longest the path to Graph can still hold a request's bytes after
    /// regsync gave up on it and aborted its connection (a buffering proxy);
    /// 0 for a direct path, where the abort leaves nothing to deliver.
    pub max_network_delay_ms: u64,
    /// Requests per second this process sends at most; 0 for no pacing.
    pub max_requests_per_second: u32,
    /// While the registration API refuses every call, how long between
    /// probes that look whether it answers again.
    pub suspended_probe_interval_ms: u64,
    /// Virtual-event writes (registrations, cancellations) this process
    /// sends at most per 30 seconds: Microsoft's limit is 15 per app.
    pub virtual_event_writes_per_30s: u32,
    /// How long a webinar registration whose create outcome is unknown may
    /// stay unlisted before regsync believes it was not made: Graph's list
    /// is eventually consistent and promises no read-after-write.
    pub list_settle_secs: u64,
    /// How long a UPN's or join link's resolution is trusted before it is
    /// looked up again (a UPN can be given to another person).
    pub resolution_max_age_secs: u64,
}

impl Default for GraphSettings {
    fn default() -> Self {
        Self {
            target: Target::MeetingRegistration,
            auth: GraphAuth::ClientSecret,
            cloud: Cloud::Global,
            base_url: "https://graph.microsoft.com/beta".into(),
            authority_url: "https://login.microsoftonline.com".into(),
            tenant_id: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            certificate_path: None,
            private_key_path: None,
            federated_token_file: None,
            scope: "https://graph.microsoft.com/.default".into(),
            max_concurrency: 4,
            timeout_ms: 30_000,
            max_network_delay_ms: 0,
            // Graph publishes no limit for onlineMeetings; the nearest one
            // is the Teams service limit for writes: 30 per second per app
            // per tenant.
            max_requests_per_second: 30,
            suspended_probe_interval_ms: 300_000,
            virtual_event_writes_per_30s: 15,
            // Microsoft documents no bound on the lag; minutes cover the
            // replication delays seen in Microsoft 365, and waiting costs
            // only a late enrolment for a person whose answer was lost.
            list_settle_secs: 300,
            resolution_max_age_secs: 86_400,
        }
    }
}

impl GraphSettings {
    /// Per-request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// How long after a write with an unknown outcome its lookup waits: the
    /// write may still reach Graph until its timeout, plus what the path
    /// can hold after it; a lookup sooner could miss it and write again.
    pub fn unknown_outcome_settle(&self) -> Duration {
        self.timeout() + Duration::from_millis(self.max_network_delay_ms)
    }

    /// How long a resolution is trusted (`resolution_max_age_secs`).
    pub fn resolution_max_age(&self) -> Duration {
        Duration::from_secs(self.resolution_max_age_secs)
    }

    /// How long an unknown create may stay unlisted (`list_settle_secs`).
    pub fn list_settle(&self) -> Duration {
        Duration::from_secs(self.list_settle_secs)
    }

    /// Time between probes while Graph writes are suspended.
    pub fn suspended_probe_interval(&self) -> Duration {
        Duration::from_millis(self.suspended_probe_interval_ms)
    }

    /// The API version root `target` lives at.
    pub fn version(&self) -> &'static str {
        match self.target {
            Target::MeetingRegistration => "beta",
            Target::VirtualEventWebinar | Target::VirtualEventTownhall => "v1.0",
        }
    }

    /// Puts the cloud's Graph root, authority and scope in place of the
    /// global defaults, leaving any value set explicitly.
    pub(super) fn apply_cloud(&mut self) {
        let global = Self::default();
        let cloud = self.cloud;
        if self.base_url == global.base_url {
            self.base_url = format!("{}/{}", cloud.graph_root(), self.version());
        }
        if self.authority_url == global.authority_url {
            self.authority_url = cloud.authority().to_owned();
        }
        if self.scope == global.scope {
            self.scope = format!("{}/.default", cloud.graph_root());
        }
    }
}
