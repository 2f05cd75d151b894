//! The platform's registrants: one list per meeting (`registrants.path`
//! with `{meeting_id}`) or one for all, paged, authenticated and mapped
//! like the meetings; and the write-back of each registrant's join link.

use serde_json::Value;

use super::wire::{self, Page, Parsed, RAW_KEEP_BYTES};
use super::{Client, Error, Listing, PageRequest};
use crate::config::{RegistrantsSettings, WritebackSettings};
use crate::domain::{Desired, ExternalRegistrant, Person, RejectedItem, Selector};

/// Where each registrant field sits, and the status words.
#[derive(Debug, Clone)]
pub struct RegistrantShape {
    items_pointer: String,
    id: Selector,
    meeting_id: Selector,
    status: Selector,
    updated_at: Selector,
    person: [(&'static str, Selector); 7],
    /// Question name and where its answer is.
    answers: Vec<(String, Selector)>,
    statuses: Vec<(String, Option<Desired>)>,
}

impl RegistrantShape {
    /// Compiles `[registrants]`.
    ///
    /// # Errors
    /// A selector that does not parse (validation names it first).
    pub fn new(settings: &RegistrantsSettings) -> Result<Self, Error> {
        let f = &settings.fields;
        let select = |key: &str, text: &str| Selector::parse(text).map_err(|e| Error::Setup(format!("{key}: {e}")));
        let mut statuses: Vec<(String, Option<Desired>)> = settings
            .status_map
            .iter()
            .map(|(word, meaning)| {
                let desired = match meaning.as_str() {
                    "registered" => Some(Desired::Registered),
                    "cancelled" => Some(Desired::Unregistered),
                    _ => None,
                };
                (word.trim().to_lowercase(), desired)
            })
            .collect();
        for (word, desired) in [
            ("registered", Desired::Registered),
            ("active", Desired::Registered),
            ("cancelled", Desired::Unregistered),
            ("canceled", Desired::Unregistered),
        ] {
            statuses.push((word.into(), Some(desired)));
        }
        Ok(Self {
            items_pointer: settings.items_pointer.clone(),
            id: select("registrants.fields.id", &f.id)?,
            meeting_id: select("registrants.fields.meeting_id", &f.meeting_id)?,
            status: select("registrants.fields.status", &f.status)?,
            updated_at: select("registrants.fields.updated_at", &f.updated_at)?,
            person: [
                ("email", select("registrants.fields.email", &f.email)?),
                ("first_name", select("registrants.fields.first_name", &f.first_name)?),
                ("last_name", select("registrants.fields.last_name", &f.last_name)?),
                ("tenant_id", select("registrants.fields.tenant_id", &f.tenant_id)?),
                ("user_id", select("registrants.fields.user_id", &f.user_id)?),
                ("preferred_timezone", select("registrants.fields.preferred_timezone", &f.preferred_timezone)?),
                ("preferred_language", select("registrants.fields.preferred_language", &f.preferred_language)?),
            ],
            answers: settings
                .answers
                .iter()
                .map(|(name, text)| Ok((name.clone(), select(&format!("registrants.answers.{name}"), text)?)))
                .collect::<Result<_, Error>>()?,
            statuses,
        })
    }

    /// One item: a registrant, ignored, or rejected with the reason. A
    /// per-meeting list names its meeting (`meeting`); a flat list's items
    /// carry it.
    pub(super) fn parse(
        &self,
        item: &Value,
        meeting: Option<&str>,
    ) -> Result<Parsed<ExternalRegistrant>, RejectedItem> {
        let raw = serde_json::to_string(item).unwrap_or_default();
        let id = wire::platform_id(item, "id", &self.id);
        let reject = |reason: String| RejectedItem {
            external_id: id.as_ref().ok().cloned().flatten(),
            reason: format!("registrant: {reason}"),
            raw: wire::truncate(&raw, RAW_KEEP_BYTES),
        };
        if !item.is_object() {
            return Err(reject("item is not an object".into()));
        }
        let external_id = id.clone().map_err(&reject)?.ok_or_else(|| reject(wire::missing("id", &self.id)))?;
        let meeting_external_id = match meeting {
            Some(meeting) => meeting.to_owned(),
            None => wire::platform_id(item, "meeting_id", &self.meeting_id)
                .map_err(&reject)?
                .ok_or_else(|| reject(wire::missing("meeting_id", &self.meeting_id)))?,
        };
        let desired = match wire::status_word(item, &self.status).map_err(&reject)? {
            None => Desired::Registered,
            Some(word) => match self.statuses.iter().find(|(w, _)| *w == word.trim().to_lowercase()) {
                Some((_, Some(desired))) => *desired,
                Some((_, None)) => return Ok(Parsed::Ignored(Some(external_id))),
                None => {
                    return Err(reject(format!(
                        "status is {word:?}, which is not \"registered\" or \"cancelled\": map it with \
                         registrants.status_map.{word}"
                    )))
                }
            },
        };
        let mut values = Vec::with_capacity(self.person.len());
        for (name, selector) in &self.person {
            values.push(wire::text_field(item, name, selector, false).map_err(&reject)?.map(|v| v.trim().to_owned()));
        }
        let [email, first_name, last_name, tenant_id, user_id, preferred_timezone, preferred_language] =
            <[Option<String>; 7]>::try_from(values).map_err(|_| reject("internal: field count".into()))?;
        let person =
            Person { email, first_name, last_name, tenant_id, user_id, preferred_timezone, preferred_language };
        let updated_at = super::times::time_at(item, &self.updated_at);
        // Checked against the event's questions when the registration is
        // sent: only Graph knows which are required and their types.
        let answers = self
            .answers
            .iter()
            .filter_map(|(name, selector)| Some((name.clone(), selector.select(item)?.clone())))
            .collect();
        Ok(Parsed::Accepted(ExternalRegistrant {
            external_id,
            meeting_external_id,
            desired,
            person,
            updated_at,
            answers,
        }))
    }
}

/// Why a write-back failed.
#[derive(Debug, thiserror::Error)]
pub enum WritebackError {
    /// The platform refused (4xx): a reason an operator can read.
    #[error("the platform refused the write-back ({method} {url}): HTTP {status}: {body}")]
    Refused {
        /// Method.
        method: String,
        /// URL (no credentials).
        url: String,
        /// Status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// Timeout, connection, 5xx: tried again later.
    #[error("the write-back did not reach the platform ({url}): {reason}")]
    Failed {
        /// URL (no credentials).
        url: String,
        /// Why.
        reason: String,
    },
}

impl WritebackError {
    /// Worth trying again.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }
}

/// What one write-back carries.
#[derive(Debug, Clone, Copy)]
pub struct Writeback<'a> {
    /// The platform's meeting id.
    pub meeting_id: &'a str,
    /// The platform's registrant id.
    pub registrant_id: &'a str,
    /// The personal join link (meeting registration target).
    pub join_web_url: Option<&'a str>,
    /// Graph's registration id.
    pub registration_id: Option<&'a str>,
    /// The registrant's status (`{status}`, for the status write-back).
    pub status: Option<&'a str>,
    /// More placeholders and their values (the attendance write-back's).
    pub extra: &'a [(&'static str, String)],
}

impl Client {
    /// `path` below `source.base_url`.
    fn under_base(&self, path: &str) -> String {
        format!("{}{path}", self.settings.base_url.as_deref().unwrap_or_default().trim_end_matches('/'))
    }

    /// The registrant listing of `meeting` (a per-meeting path) or of all
    /// meetings (`None`, a flat path); with `since`, only who changed at or
    /// after it (`registrants.changed_since_param`).
    ///
    /// # Errors
    /// The path does not make a URL.
    pub fn registrant_listing(
        &self,
        settings: &RegistrantsSettings,
        meeting: Option<&str>,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Listing, Error> {
        let path = match meeting {
            Some(id) => {
                let segment = wire::path_segment(id)
                    .ok_or_else(|| Error::Setup(format!("meeting id {id:?} cannot be put into a URL path")))?;
                settings.path.replace("{meeting_id}", &segment)
            }
            None => settings.path.clone(),
        };
        let url = reqwest::Url::parse(&self.under_base(&path))
            .map_err(|e| Error::Setup(format!("source.base_url + registrants.path is not a URL: {e}")))?;
        let listing = Listing { url, meeting: meeting.map(str::to_owned) };
        Ok(listing.changed_since(&self.settings, &settings.changed_since_param, since))
    }

    /// One page of a registrant listing, validated item by item.
    ///
    /// # Errors
    /// As [`Client::fetch_page`].
    pub async fn fetch_registrants(
        &self,
        shape: &RegistrantShape,
        listing: &Listing,
        request: &PageRequest,
    ) -> Result<Page<ExternalRegistrant>, Error> {
        let meeting = listing.meeting.as_deref();
        self.fetch(&listing.url, request, |body| {
            wire::parse_items(body, &self.shape, &shape.items_pointer, |item| shape.parse(item, meeting))
        })
        .await
    }

    /// Sends one write-back as `[writeback]` says, with the platform's
    /// credentials.
    ///
    /// # Errors
    /// [`WritebackError`]: refused (4xx) or not delivered.
    pub async fn write_back(&self, settings: &WritebackSettings, values: Writeback<'_>) -> Result<(), WritebackError> {
        let segment = |v: &str| {
            wire::path_segment(v).ok_or_else(|| WritebackError::Refused {
                method: settings.method.clone(),
                url: settings.url.clone(),
                status: 0,
                body: format!("id {v:?} cannot be put into a URL path"),
            })
        };
        let path = settings
            .url
            .replace("{meeting_id}", &segment(values.meeting_id)?)
            .replace("{registrant_id}", &segment(values.registrant_id)?);
        let url = if path.starts_with('/') { self.under_base(&path) } else { path };
        // Values go into JSON strings: escaped as JSON, without the quotes.
        let json = |v: Option<&str>| {
            let quoted = serde_json::to_string(v.unwrap_or_default()).unwrap_or_default();
            quoted[1..quoted.len().saturating_sub(1).max(1)].to_owned()
        };
        let body = settings
            .body
            .replace("{join_web_url}", &json(values.join_web_url))
            .replace("{registration_id}", &json(values.registration_id))
            .replace("{registrant_id}", &json(Some(values.registrant_id)))
            .replace("{status}", &json(values.status));
        let body =
            values.extra.iter().fold(body, |body, (placeholder, value)| body.replace(placeholder, &json(Some(value))));
        let method = reqwest::Method::from_bytes(settings.method.to_ascii_uppercase().as_bytes())
            .unwrap_or(reqwest::Method::PUT);
        // The URL as errors show it: without the user and password that
        // source.base_url may carry.
        let shown = crate::http::scrub(&url).into_owned();
        let failed = |reason: String| WritebackError::Failed { url: shown.clone(), reason };
        let authorization = match &self.rotating {
            Some(rotating) => Some(rotating.header().await.map_err(|e| failed(e.to_string()))?),
            None => None,
        };
        if let Some(pace) = &self.pace {
            pace.until_ready().await;
        }
        let mut request = self.http.request(method.clone(), &url).header("content-type", "application/json").body(body);
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let response =
            request.send().await.map_err(|e| failed(crate::http::error_text(&e.without_url(), "source.timeout_ms")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let body: String = text.chars().take(300).collect();
        if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
            return Err(WritebackError::Refused {
                method: method.to_string(),
                url: shown,
                status: status.as_u16(),
                body,
            });
        }
        Err(failed(format!("HTTP {status}: {body}")))
    }
}
