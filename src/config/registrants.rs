//! `[registrants]` and `[writeback]`: the people the platform registered
//! for its meetings, and where their join links go back.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[registrants]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrantsSettings {
    /// Lists registrants and enrols each at Teams; `false` keeps regsync to
    /// meeting-level registration.
    pub enabled: bool,
    /// Appended to `source.base_url`; `{meeting_id}` (the platform's
    /// meeting id, percent-encoded) makes it one listing per meeting.
    pub path: String,
    /// JSON pointer to the items array (`""`: the page is the array).
    pub items_pointer: String,
    /// Where each field sits in an item.
    pub fields: RegistrantFields,
    /// The platform's status words: `registered`, `cancelled` or `ignore`.
    pub status_map: BTreeMap<String, String>,
    /// `preferredTimezone` for registrants that name none (webinar target).
    pub default_timezone: String,
    /// `preferredLanguage` for registrants that name none (webinar target).
    pub default_language: String,
    /// As `source.changed_since_param`, for the registrant listing (format
    /// and overlap are the source's).
    pub changed_since_param: String,
    /// Where one registrant is read (a pushed change that names them);
    /// `{meeting_id}` and `{id}`. Empty: `{path}/{id}`.
    pub item_path: String,
    /// `registrants.answers.<question display name>`: where in the item the
    /// answer to that registration question is (a v1.0 target).
    pub answers: BTreeMap<String, String>,
    /// How often registration statuses in Teams are read back (seconds; 0:
    /// never). A v1.0 target.
    pub status_readback_secs: u64,
}

impl Default for RegistrantsSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            path: "/meetings/{meeting_id}/registrants".into(),
            items_pointer: "/registrants".into(),
            fields: RegistrantFields::default(),
            status_map: BTreeMap::new(),
            default_timezone: "UTC".into(),
            default_language: "en-us".into(),
            changed_since_param: String::new(),
            item_path: String::new(),
            answers: BTreeMap::new(),
            status_readback_secs: 0,
        }
    }
}

/// `[registrants.fields]`: a JSON pointer or JSONPath for each field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrantFields {
    /// The platform's registrant id (required).
    pub id: String,
    /// The platform's meeting id (required for a flat list; a per-meeting
    /// list knows it).
    pub meeting_id: String,
    /// E-mail (required by the webinar target).
    pub email: String,
    /// Given name (required by the webinar target).
    pub first_name: String,
    /// Family name (required by the webinar target).
    pub last_name: String,
    /// `registered` or `cancelled` (optional).
    pub status: String,
    /// Entra tenant of an `organization` meeting's registrant.
    pub tenant_id: String,
    /// Entra user of an `organization` meeting's registrant.
    pub user_id: String,
    /// Windows time zone name, e.g. `Pacific Standard Time`.
    pub preferred_timezone: String,
    /// Language tag, e.g. `en-us`.
    pub preferred_language: String,
    /// RFC 3339 time of the last change (optional; incremental listings
    /// keep their watermark from it).
    pub updated_at: String,
}

impl Default for RegistrantFields {
    fn default() -> Self {
        Self {
            id: "/id".into(),
            meeting_id: "/meeting_id".into(),
            email: "/email".into(),
            first_name: "/first_name".into(),
            last_name: "/last_name".into(),
            status: "/status".into(),
            tenant_id: "/tenant_id".into(),
            user_id: "/user_id".into(),
            preferred_timezone: "/preferred_timezone".into(),
            preferred_language: "/preferred_language".into(),
            updated_at: "/updated_at".into(),
        }
    }
}

/// `[writeback]`: one call per enrolled registrant to the platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WritebackSettings {
    /// HTTP method.
    pub method: String,
    /// An absolute URL, or a path appended to `source.base_url` when it
    /// starts with `/`; `{meeting_id}` and `{registrant_id}` are replaced
    /// (percent-encoded). Empty: no write-back.
    pub url: String,
    /// JSON body; `{join_web_url}`, `{registration_id}`, `{registrant_id}`
    /// are replaced with JSON-escaped values.
    pub body: String,
    /// HTTP method of the status write-back.
    pub status_method: String,
    /// The call that tells the platform a registrant's status changed
    /// (`cancelled` when their meeting was, `registered` when it is active
    /// again): as `url`. Empty: no status write-back.
    pub status_url: String,
    /// Its JSON body: the placeholders of `body` and `{status}`.
    pub status_body: String,
}

impl WritebackSettings {
    /// The status write-back as a write-back of its own.
    pub fn for_status(&self) -> Self {
        Self {
            method: self.status_method.clone(),
            url: self.status_url.clone(),
            body: self.status_body.clone(),
            ..Self::default()
        }
    }
}

impl Default for WritebackSettings {
    fn default() -> Self {
        Self {
            method: "PUT".into(),
            url: String::new(),
            body: r#"{"join_web_url": "{join_web_url}"}"#.into(),
            status_method: "PUT".into(),
            status_url: String::new(),
            status_body: r#"{"status": "{status}"}"#.into(),
        }
    }
}
