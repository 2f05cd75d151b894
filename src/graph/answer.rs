//! What every answer of Graph means: the classification of a status and
//! body into success or a typed [`Error`] (with the operator's fix), and
//! the diagnostics kept with each call for the audit table.

use std::time::SystemTime;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use super::wire::{ErrorBody, Registration, EXTERNAL_REGISTRATION_TYPE};
use super::{Error, TIMEOUT_KEY};
use crate::domain::{AllowedRegistrant, CallRecord, RegistrationId, RemoteRegistration};
use crate::http;
use crate::http::parse_retry_after;

/// Model step \[S5\] (model/exactly_once.pml): what an answer means.
fn classify(
    method: &Method,
    status: StatusCode,
    headers: &HeaderMap,
    body: bytes::Bytes,
) -> Result<(StatusCode, bytes::Bytes), Error> {
    if status.is_success() {
        return Ok((status, body));
    }
    let retry_after = header(headers, "retry-after").and_then(|v| parse_retry_after(&v, SystemTime::now()));
    let detail: Option<ErrorBody> = serde_json::from_slice(&body).ok();
    let code = detail.as_ref().and_then(|d| d.error.code.clone()).unwrap_or_else(|| status.as_u16().to_string());
    let message = detail.and_then(|d| d.error.message).unwrap_or_default().trim_end_matches('.').to_owned();
    let s = status.as_u16();
    Err(match s {
        401 => Error::Unauthorized,
        // Microsoft's error page: 429 and 509 are throttling, and any 5xx
        // that says when to come back is a wait, not a failure.
        429 | 509 => Error::Throttled { status: s, retry_after },
        500..=599 if retry_after.is_some() => Error::Throttled { status: s, retry_after },
        // A 404 means "none here" only when Graph says the item was not
        // found; any other 404, a 410 or "not supported" is the API itself.
        404 if !is_not_found(&code) => Error::Retired { status: s, code, message },
        410 => Error::Retired { status: s, code, message },
        // Graph says so in the code, or only in words ("Application
        // permissions are not supported for this operation").
        403 if is_not_supported(&code) || is_not_supported(&message.replace(' ', "")) => {
            Error::Retired { status: s, code, message }
        }
        // Only a create has a documented 409 ("already exists").
        409 if *method == Method::POST => Error::Conflict { code },
        // A timeout: the request may have acted, as with any other.
        408 => Error::Transient { status: Some(s), may_have_acted: true, detail: format!("HTTP {s} {code} {message}") },
        // A lookup or delete refused; retried with backoff like a 5xx.
        409 => {
            Error::Transient { status: Some(s), may_have_acted: false, detail: format!("HTTP {s} {code} {message}") }
        }
        400..=499 => Error::Rejected { status: s, hint: rejection_hint(method, s, &code), code, message },
        _ => Error::Transient {
            status: Some(s),
            may_have_acted: true,
            detail: format!("HTTP {s} {code} {message}").trim().into(),
        },
    })
}

/// Graph's "not found" codes (`itemNotFound`, `ResourceNotFound`,
/// `Request_ResourceNotFound`, ...): their case and prefix vary by service.
fn is_not_found(code: &str) -> bool {
    code.to_ascii_lowercase().ends_with("notfound")
}

/// Codes that say the operation or permission is not supported at all
/// (`notSupported`, `NotSupported`, `UnsupportedApiVersion`, ...), as
/// opposed to this app lacking access to this meeting.
fn is_not_supported(code: &str) -> bool {
    let code = code.to_ascii_lowercase();
    code.contains("notsupported") || code.starts_with("unsupported")
}

/// The action an operator takes for a permanent Graph error.
fn rejection_hint(method: &Method, status: u16, code: &str) -> String {
    let verb = if *method == Method::DELETE { "remove" } else { "enable" };
    match status {
        403 => format!(
            "The app may not {verb} registration for this organizer: grant the application access policy to the organizer \
             (Grant-CsApplicationAccessPolicy -PolicyName <policy> -Identity <organizer id>) and check the \
             OnlineMeetings.ReadWrite.All permission has admin consent; policy changes take up to 30 minutes"
        ),
        404 => "Graph has no such online meeting for this organizer: check the platform's organizer_id and online_meeting_id".into(),
        400 => format!("Graph refused the request ({code}): check the meeting's ids; the meeting may not allow external registration"),
        _ => format!("Graph refused the request ({code}); fix the cause, then run `regsync retry`"),
    }
}

pub(super) fn decode(status: StatusCode, bytes: &[u8]) -> Result<RemoteRegistration, Error> {
    let registration: Registration = serde_json::from_slice(bytes).map_err(|e| unexpected(status, &e.to_string()))?;
    // Only a body that says it is an external registration is regsync's to
    // adopt or delete.
    let odata_type = registration.odata_type.unwrap_or_else(|| NO_ODATA_TYPE.to_owned());
    if !odata_type.eq_ignore_ascii_case(EXTERNAL_REGISTRATION_TYPE) {
        return Ok(RemoteRegistration::Foreign { odata_type });
    }
    if registration.id.is_empty() {
        return Err(unexpected(status, "the registration has an empty id"));
    }
    Ok(RemoteRegistration::External {
        id: RegistrationId(registration.id),
        allowed_registrant: registration.allowed_registrant.as_deref().and_then(AllowedRegistrant::parse),
    })
}

/// How a registration without `@odata.type` is named to operators.
pub(super) const NO_ODATA_TYPE: &str = "no @odata.type";

pub(super) fn unexpected(status: StatusCode, detail: &str) -> Error {
    Error::UnexpectedBody { status: status.as_u16(), detail: detail.to_owned() }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// A 404 as "Graph has none" (`None`), marked `absent` in the audit.
pub(super) fn absent_on_404<T>(answer: Result<T, Error>, calls: &mut [CallRecord]) -> Result<Option<T>, Error> {
    match answer {
        Ok(answer) => Ok(Some(answer)),
        Err(Error::Rejected { status: 404, .. }) => {
            mark_last(calls, "absent");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

pub(super) fn mark_last(calls: &mut [CallRecord], outcome: &'static str) {
    if let Some(last) = calls.last_mut() {
        last.outcome = outcome;
    }
}

/// An error answer's `innerError`, as JSON text (at most 4 KiB of it).
fn inner_error(status: StatusCode, body: &[u8]) -> Option<String> {
    if status.is_success() {
        return None;
    }
    let inner = serde_json::from_slice::<ErrorBody>(body).ok()?.error.inner_error?;
    // PostgreSQL's jsonb refuses the NUL escape.
    Some(inner.to_string().replace("\\u0000", "\\ufffd")).filter(|text| text.len() <= 4096)
}

/// The response headers Microsoft support asks for with `client-request-id`.
#[derive(Default)]
pub(super) struct Diagnostics {
    pub request_id: Option<String>,
    pub date: Option<String>,
    pub ags_diagnostic: Option<String>,
}

/// What came back for one request, read in full.
pub(super) struct Answer {
    pub status: Option<u16>,
    pub headers: Diagnostics,
    pub body: Result<(StatusCode, HeaderMap, bytes::Bytes), Error>,
}

/// What was sent, for the audit record of its answer.
pub(super) struct Sent<'a> {
    pub method: &'a Method,
    pub path: String,
    pub started: std::time::Instant,
    pub sent_at: chrono::DateTime<chrono::Utc>,
    pub lease_until: Option<chrono::DateTime<chrono::Utc>>,
    pub client_request_id: uuid::Uuid,
    /// Whose token it carried.
    pub acting: Option<crate::domain::OrganizerId>,
}

impl Answer {
    /// What the answer to `sent` means, and its audit record (also logged).
    pub(super) fn record(self, sent: Sent<'_>) -> (CallRecord, Result<(StatusCode, bytes::Bytes), Error>) {
        let method = sent.method;
        let inner_error = self.body.as_ref().ok().and_then(|(status, _, bytes)| inner_error(*status, bytes));
        let outcome = self.body.and_then(|(status, headers, bytes)| classify(method, status, &headers, bytes));
        let record = CallRecord {
            method: method_name(method),
            path: sent.path,
            http_status: self.status,
            duration: sent.started.elapsed(),
            sent_at: sent.sent_at,
            lease_until: sent.lease_until,
            graph_request_id: self.headers.request_id,
            client_request_id: sent.client_request_id,
            inner_error,
            response_date: self.headers.date,
            ags_diagnostic: self.headers.ags_diagnostic,
            error_code: match &outcome {
                Err(Error::Retired { code, .. } | Error::Rejected { code, .. } | Error::Conflict { code }) => {
                    Some(code.clone())
                }
                _ => None,
            },
            outcome: match &outcome {
                Ok(_) if *method == Method::POST => "created",
                Ok(_) if *method == Method::DELETE => "deleted",
                Ok(_) => "found",
                Err(e) => e.kind(),
            },
            organizer: sent.acting,
        };
        tracing::info!(
            method = record.method,
            status = record.http_status,
            client_request_id = %record.client_request_id,
            request_id = record.graph_request_id.as_deref().unwrap_or(""),
            date = record.response_date.as_deref().unwrap_or(""),
            ags_diagnostic = record.ags_diagnostic.as_deref().unwrap_or(""),
            took_ms = record.duration.as_millis() as u64,
            outcome = record.outcome,
            "graph call"
        );
        (record, outcome)
    }

    pub(super) async fn read(sent: reqwest::Result<reqwest::Response>) -> Self {
        let response = match sent {
            Ok(response) => response,
            // A failed connect never reached Graph; anything later may have.
            Err(e) => {
                let may_have_acted = !e.is_connect();
                let detail = http::error_text(&e, TIMEOUT_KEY);
                let body = Err(Error::Transient { status: None, may_have_acted, detail });
                return Self { status: None, headers: Diagnostics::default(), body };
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let diagnostics = Diagnostics {
            request_id: header(&headers, "request-id"),
            date: header(&headers, "date"),
            ags_diagnostic: header(&headers, "x-ms-ags-diagnostic"),
        };
        let body = match response.bytes().await {
            Ok(bytes) => Ok((status, headers, bytes)),
            Err(e) => Err(Error::Transient {
                status: Some(status.as_u16()),
                may_have_acted: true,
                detail: http::error_text(&e, TIMEOUT_KEY),
            }),
        };
        Self { status: Some(status.as_u16()), headers: diagnostics, body }
    }
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        _ => "GET",
    }
}
