//! `[source]`: the platform connector's settings.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

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
    /// HTTP Basic with `username` and `password`.
    Basic,
    /// OAuth 2.0 client credentials (`[source.oauth2]`): a bearer token
    /// from the platform's token endpoint, refreshed before it expires.
    Oauth2,
}

/// `[source.oauth2]`: the platform's token endpoint and app credentials.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceOAuth2 {
    /// The token endpoint, e.g. `https://api.example.com/oauth2/token`.
    pub token_url: Option<String>,
    /// The app's client id.
    pub client_id: Option<String>,
    /// The app's client secret.
    pub client_secret: Option<SecretString>,
    /// File holding the client secret (wins over `client_secret`).
    pub client_secret_file: Option<PathBuf>,
    /// The scope asked for, if the platform wants one.
    pub scope: Option<String>,
}

/// How the platform's list is paged.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Paging {
    /// An opaque cursor at `cursor_pointer`, sent back as `cursor_param`.
    #[default]
    Cursor,
    /// The next page's URL (absolute or relative) at `next_url_pointer`.
    NextUrl,
    /// The next page's URL in an RFC 8288 `Link: <…>; rel="next"` header.
    LinkHeader,
    /// Page numbers in `page_param`, from `first_page`.
    PageNumber,
    /// Item offsets in `offset_param`, from 0.
    Offset,
}

/// How a modification time is written into `changed_since_param`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// `2026-12-06T10:00:00Z`.
    #[default]
    Rfc3339,
    /// Seconds since 1970.
    Unix,
    /// Milliseconds since 1970.
    UnixMs,
}

impl TimeFormat {
    /// `at` as the platform reads it.
    pub fn format(self, at: chrono::DateTime<chrono::Utc>) -> String {
        match self {
            Self::Rfc3339 => at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            Self::Unix => at.timestamp().to_string(),
            Self::UnixMs => at.timestamp_millis().to_string(),
        }
    }
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
    /// `none`, `bearer`, `api_key`, `basic` or `oauth2`.
    pub auth: SourceAuth,
    /// Bearer token or API key.
    pub token: Option<SecretString>,
    /// File holding the token (wins over `token`). With `bearer` it is read
    /// again whenever it changes, so a rotated token needs no restart.
    pub token_file: Option<PathBuf>,
    /// `auth = "oauth2"`: the token endpoint and credentials.
    pub oauth2: SourceOAuth2,
    /// Header for `auth = "api_key"`.
    pub api_key_header: String,
    /// `auth = "basic"`: the user.
    pub username: Option<String>,
    /// `auth = "basic"`: the password.
    pub password: Option<SecretString>,
    /// File holding the password (wins over `password`).
    pub password_file: Option<PathBuf>,
    /// Extra static request headers, e.g. a second key header; values are
    /// treated as secrets.
    pub headers: std::collections::BTreeMap<String, SecretString>,
    /// Extra headers whose values are read from files (mounted secrets).
    pub header_files: std::collections::BTreeMap<String, PathBuf>,
    /// JSON pointer to the items array in a page.
    pub items_pointer: String,
    /// JSON pointer to the next cursor in a page (null or absent: last
    /// page; `""`: the platform does not page).
    pub cursor_pointer: String,
    /// How the list is paged.
    pub paging: Paging,
    /// `next_url`: JSON pointer to the next page's URL.
    pub next_url_pointer: String,
    /// JSON pointer to a boolean: `false` means this is the last page.
    pub has_more_pointer: String,
    /// JSON pointer to the number of items in the whole listing.
    pub total_pointer: String,
    /// `page_number`: the query parameter.
    pub page_param: String,
    /// `page_number`: the first page's number.
    pub first_page: u64,
    /// `offset`: the query parameter.
    pub offset_param: String,
    /// JSON pointer to a boolean: `false` means the platform truncated the
    /// result, so the listing is partial.
    pub complete_pointer: String,
    /// Each platform status value (compared without case; booleans as
    /// `true`/`false`) mapped to `active`, `cancelled` or `ignore`.
    pub status_map: std::collections::BTreeMap<String, String>,
    /// JSON pointers to each field inside an item.
    pub fields: FieldPointers,
    /// A listing with more pages than this is cut off and treated as partial.
    pub max_pages: u32,
    /// Requests per second toward the platform (0: no pace).
    pub max_requests_per_second: u32,
    /// A page that fails (network, 5xx, 429) is asked again this many
    /// times, with backoff or the platform's `Retry-After`, before the
    /// listing is declared partial.
    pub page_retries: u32,
    /// A page body larger than this fails the page.
    pub max_page_bytes: usize,
    /// An item whose JSON is larger than this is rejected.
    pub max_item_bytes: usize,
    /// The query parameter that filters the listing by modification time
    /// (`""`: every poll is a full listing).
    pub changed_since_param: String,
    /// How its value is written.
    pub changed_since_format: TimeFormat,
    /// The watermark is moved back by this much before it is sent (clock
    /// skew, changes committed late).
    pub changed_since_overlap_secs: u64,
    /// Where one meeting is read (a pushed change that names it); `{id}`
    /// is its id. Empty: `{meetings_path}/{id}`.
    pub item_path: String,
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
            oauth2: SourceOAuth2::default(),
            api_key_header: "x-api-key".into(),
            username: None,
            password: None,
            password_file: None,
            headers: std::collections::BTreeMap::new(),
            header_files: std::collections::BTreeMap::new(),
            items_pointer: "/meetings".into(),
            cursor_pointer: "/next_cursor".into(),
            paging: Paging::Cursor,
            next_url_pointer: "/next".into(),
            has_more_pointer: String::new(),
            total_pointer: String::new(),
            page_param: "page".into(),
            first_page: 1,
            offset_param: "offset".into(),
            complete_pointer: String::new(),
            status_map: std::collections::BTreeMap::new(),
            fields: FieldPointers::default(),
            max_pages: 10_000,
            max_requests_per_second: 10,
            page_retries: 3,
            max_page_bytes: 16 * 1024 * 1024,
            max_item_bytes: 16 * 1024,
            changed_since_param: String::new(),
            changed_since_format: TimeFormat::Rfc3339,
            changed_since_overlap_secs: 300,
            item_path: String::new(),
        }
    }
}

/// `[source.fields]`: JSON pointers into one item.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FieldPointers {
    /// The platform's meeting id (required).
    pub id: String,
    /// The organizer's Entra object id (required unless `organizer_upn` is set).
    pub organizer_id: String,
    /// Graph's online meeting id (required unless `join_url` is set).
    pub online_meeting_id: String,
    /// The organizer's UPN or e-mail, resolved through Graph; when set, it
    /// is used instead of `organizer_id`.
    pub organizer_upn: String,
    /// The Teams join link, resolved through Graph; when set, it is used
    /// instead of `online_meeting_id`.
    pub join_url: String,
    /// `everyone` or `organization` (optional).
    pub allowed_registrant: String,
    /// `active` or `cancelled` (optional).
    pub status: String,
    /// RFC 3339 time of the last change (optional).
    pub updated_at: String,
    /// RFC 3339 start of the event (optional): the soonest are written
    /// first.
    pub starts_at: String,
    /// RFC 3339 end of the event (optional).
    pub ends_at: String,
    /// The Teams webinar the meeting is (`graph.target =
    /// "virtual_event_webinar"`; used instead of the organizer and online
    /// meeting).
    pub webinar_id: String,
    /// The Teams town hall the meeting is (`graph.target =
    /// "virtual_event_townhall"`).
    pub townhall_id: String,
}

impl Default for FieldPointers {
    fn default() -> Self {
        Self {
            id: "/id".into(),
            organizer_id: "/organizer_id".into(),
            online_meeting_id: "/online_meeting_id".into(),
            organizer_upn: String::new(),
            join_url: String::new(),
            allowed_registrant: "/allowed_registrant".into(),
            status: "/status".into(),
            updated_at: "/updated_at".into(),
            starts_at: String::new(),
            ends_at: String::new(),
            webinar_id: "/webinar_id".into(),
            townhall_id: "/townhall_id".into(),
        }
    }
}

impl SourceSettings {
    /// Per-request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// How far the watermark is moved back.
    pub fn changed_since_overlap(&self) -> Duration {
        Duration::from_secs(self.changed_since_overlap_secs)
    }
}
