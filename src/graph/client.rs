//! The registration calls (docs/graph-api.md has Microsoft's pages). Each
//! request carries a fresh `client-request-id` and is returned as a
//! [`CallRecord`] for the audit table.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::assertion::CertificateKey;
use super::auth::{AppCredential, Credentials, TokenCache};
use super::wire::{CreateRegistration, ErrorBody, Registration, EXTERNAL_REGISTRATION_TYPE};
use super::{Deleted, Error, TIMEOUT_KEY};
use crate::config::{GraphAuth, GraphSettings};
use crate::domain::{AllowedRegistrant, CallRecord, Location, OrganizerId, RegistrationId, RemoteRegistration};
use crate::http;
use crate::http::parse_retry_after;

/// Everything but RFC 3986 unreserved characters is encoded, so an id can
/// never add a segment, a query or a fragment to the path.
pub(super) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Leave to send one request: the pace allowed it and a token is at hand.
/// The caller takes it before its last checks (the lease, the throttle:
/// `store::send::prepare_send`), so nothing slow sits between those and
/// the request, and bounds it with [`Permit::send_by`].
pub struct Permit {
    pub(super) token: Arc<SecretString>,
    send_by: Option<Instant>,
    /// Whose token it is, for the audit row.
    acting: Option<OrganizerId>,
}

/// What a token says about itself, for `regsync doctor`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct TokenClaims {
    /// The resource it is for (Graph's root URL or app id).
    #[serde(default)]
    pub aud: Option<String>,
    /// Application permissions (app tokens).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Delegated permissions, space-separated (a signed-in user's token).
    #[serde(default)]
    pub scp: Option<String>,
}

impl Permit {
    /// The claims of the token this permit carries, when it is a JWT. Read
    /// only to report them: Graph, not regsync, decides what a token allows.
    pub fn claims(&self) -> Option<TokenClaims> {
        super::sign_in::jwt_claims(self.token.expose_secret())
    }

    /// The request leaves only before `deadline` (on the monotonic clock,
    /// which counts while the process is paused), checked right before the
    /// socket write; later it fails with [`Error::PermitExpired`], unsent.
    pub fn send_by(self, deadline: Instant) -> Self {
        Self { send_by: Some(deadline), ..self }
    }

    /// The request acts for `organizer` (recorded with the call).
    pub fn acting_for(self, organizer: &OrganizerId) -> Self {
        Self { acting: Some(organizer.clone()), ..self }
    }
}

/// A Graph client with one connection pool, one token cache and one pace.
pub struct Client {
    pub(super) http: reqwest::Client,
    pub(super) settings: GraphSettings,
    pub(super) base_url: String,
    /// The app's token; `None` with delegated sign-in, where each organizer's
    /// token comes from its sign-in ([`Client::permit_as`]).
    tokens: Option<TokenCache>,
    pace: Option<governor::DefaultDirectRateLimiter>,
}

impl Client {
    /// Builds the client from settings (validated before).
    ///
    /// # Errors
    /// Missing credentials or an HTTP client that cannot be built.
    pub fn new(settings: &GraphSettings) -> Result<Self, Error> {
        let setup = |what: &str| Error::Setup(what.to_owned());
        // Graph and the token endpoint never redirect these calls: a
        // redirect is refused rather than followed with a token or a secret.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout())
            .user_agent(crate::http::USER_AGENT)
            .build()
            .map_err(|e| setup(&e.to_string()))?;
        let client_id = settings.client_id.clone().ok_or_else(|| setup("graph.client_id is not set"))?;
        let credential = match settings.auth {
            GraphAuth::ClientSecret => Some(AppCredential::Secret(
                settings.client_secret.clone().ok_or_else(|| setup("graph.client_secret is not set"))?,
            )),
            GraphAuth::Certificate => {
                let (Some(certificate), Some(key)) = (&settings.certificate_path, &settings.private_key_path) else {
                    return Err(setup("graph.certificate_path and graph.private_key_path are not set"));
                };
                Some(AppCredential::Certificate(CertificateKey::load(certificate, key)?))
            }
            GraphAuth::Federated => Some(AppCredential::Federated(
                settings.federated_token_file.clone().ok_or_else(|| setup("graph.federated_token_file is not set"))?,
            )),
            GraphAuth::Delegated => None,
        };
        let tokens = credential.map(|credential| {
            let token_url = login_url(settings, "token");
            TokenCache::new(
                http.clone(),
                Credentials { token_url, client_id, credential, scope: settings.scope.clone() },
            )
        });
        let pace = std::num::NonZeroU32::new(settings.max_requests_per_second)
            .map(|rate| governor::RateLimiter::direct(governor::Quota::per_second(rate)));
        Ok(Self {
            tokens,
            settings: settings.clone(),
            http,
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            pace,
        })
    }

    /// Waits for the pace and a valid token.
    ///
    /// # Errors
    /// [`Error::Token`] when no token can be had.
    pub async fn permit(&self) -> Result<Permit, Error> {
        let Some(tokens) = &self.tokens else {
            return Err(Error::Setup("graph.auth is delegated: calls carry an organizer's token".into()));
        };
        let token = tokens.token().await?;
        Ok(self.permit_as(token).await)
    }

    /// Waits for the pace; the request carries `token` (an organizer's,
    /// with delegated sign-in).
    pub async fn permit_as(&self, token: Arc<SecretString>) -> Permit {
        if let Some(pace) = &self.pace {
            pace.until_ready().await;
        }
        Permit { token, send_by: None, acting: None }
    }

    /// Whether calls act as signed-in organizers (`graph.auth = delegated`).
    pub fn is_delegated(&self) -> bool {
        self.tokens.is_none()
    }

    /// Enables external registration (`POST`, 201 with the registration).
    ///
    /// # Errors
    /// Classified failures; `Conflict` when one may already exist.
    pub async fn create(
        &self,
        permit: Permit,
        at: &Location,
        allowed: AllowedRegistrant,
        calls: &mut Vec<CallRecord>,
    ) -> Result<RemoteRegistration, Error> {
        let body = CreateRegistration { odata_type: EXTERNAL_REGISTRATION_TYPE, allowed_registrant: allowed.as_str() };
        let body = serde_json::to_value(body).map_err(|e| Error::Setup(e.to_string()))?;
        let (status, bytes) = self.send(permit, Method::POST, self.path(at)?, Some(&body), calls).await?;
        match decode(status, &bytes)? {
            // Graph's answer names the kind it created; without it the
            // registration cannot be proven regsync's: look it up.
            _ if !matches!(status, StatusCode::OK | StatusCode::CREATED) => {
                Err(unexpected(status, "create answered a success status other than 201"))
            }
            RemoteRegistration::Foreign { odata_type } if odata_type == NO_ODATA_TYPE => {
                Err(unexpected(status, "the created registration has no @odata.type"))
            }
            made => Ok(made),
        }
    }

    /// Reads the registration; `None` when Graph has none (404).
    ///
    /// # Errors
    /// Classified failures.
    pub async fn get(
        &self,
        permit: Permit,
        at: &Location,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Option<RemoteRegistration>, Error> {
        let answer = self.send(permit, Method::GET, self.path(at)?, None, calls).await;
        absent_on_404(answer, calls)?.map(|(status, bytes)| decode(status, &bytes)).transpose()
    }

    /// Disables external registration (204); a 404 means it is already gone.
    ///
    /// # Errors
    /// Classified failures.
    pub async fn delete(&self, permit: Permit, at: &Location, calls: &mut Vec<CallRecord>) -> Result<Deleted, Error> {
        let answer = self.send(permit, Method::DELETE, self.path(at)?, None, calls).await;
        Ok(match absent_on_404(answer, calls)? {
            Some(_) => Deleted::Removed,
            None => Deleted::AlreadyGone,
        })
    }

    pub(super) fn path(&self, at: &Location) -> Result<String, Error> {
        let path = Self::app_path(at)?;
        // A signed-in organizer's token acts on their own meetings, by the
        // documented delegated path.
        Ok(if self.is_delegated() {
            format!("/me/onlineMeetings/{}/registration", segment(at.meeting.as_str())?)
        } else {
            path
        })
    }

    fn app_path(at: &Location) -> Result<String, Error> {
        Ok(format!(
            "/users/{}/onlineMeetings/{}/registration",
            segment(at.organizer.as_str())?,
            segment(at.meeting.as_str())?
        ))
    }

    /// Sends one request. Returns the status and body of a 2xx; everything
    /// else as an [`Error`]. A 401 drops the token from the cache, so the
    /// caller's next permit carries a fresh one; the caller re-sends through
    /// its own checks, never from here.
    pub(super) async fn send(
        &self,
        permit: Permit,
        method: Method,
        path: String,
        body: Option<&serde_json::Value>,
        calls: &mut Vec<CallRecord>,
    ) -> Result<(StatusCode, bytes::Bytes), Error> {
        let Permit { token, send_by, acting } = permit;
        let client_request_id = Uuid::new_v4();
        let mut request = self
            .http
            .request(method.clone(), format!("{}{}", self.base_url, path))
            .bearer_auth(token.expose_secret())
            .header("client-request-id", client_request_id.to_string());
        if let Some(body) = body {
            request = request.json(body);
        }
        // Crash-matrix hook: the process pauses (or dies) between the
        // pre-send checks and the request.
        fail_point!("before-send", |_| std::process::abort());
        // Model step \[S4\] (model/exactly_once.pml). The last check before
        // the request leaves. What remains is the time reqwest takes to
        // connect and write, bounded by graph.timeout_ms.
        if send_by.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(Error::PermitExpired);
        }
        let started = Instant::now();
        let sent = request.send().await;
        // Crash-matrix hook: the request went out; its answer (or its
        // loss) is neither read nor recorded.
        fail_point!("after-send", |_| std::process::abort());
        let answer = Answer::read(sent).await;
        let inner_error = answer.body.as_ref().ok().and_then(|(status, _, bytes)| inner_error(*status, bytes));
        let outcome = answer.body.and_then(|(status, headers, bytes)| classify(&method, status, &headers, bytes));
        let record = CallRecord {
            method: method_name(&method),
            path,
            http_status: answer.status,
            duration: started.elapsed(),
            graph_request_id: answer.headers.request_id,
            client_request_id,
            inner_error,
            response_date: answer.headers.date,
            ags_diagnostic: answer.headers.ags_diagnostic,
            error_code: match &outcome {
                Err(Error::Retired { code, .. }) => Some(code.clone()),
                Err(Error::Rejected { code, .. } | Error::Conflict { code }) => Some(code.clone()),
                _ => None,
            },
            outcome: match &outcome {
                Ok(_) if method == Method::POST => "created",
                Ok(_) if method == Method::DELETE => "deleted",
                Ok(_) => "found",
                Err(e) => e.kind(),
            },
            organizer: acting,
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
        calls.push(record);
        if let (Err(Error::Unauthorized), Some(tokens)) = (&outcome, &self.tokens) {
            // A revoked or rotated token: the next permit fetches a new one.
            tokens.invalidate(&token).await;
        }
        outcome
    }
}

/// `{authority_url}/{tenant}/oauth2/v2.0/{endpoint}` (`token` or
/// `devicecode`), the tenant one percent-encoded segment.
pub fn login_url(settings: &GraphSettings, endpoint: &str) -> String {
    format!(
        "{}/{}/oauth2/v2.0/{endpoint}",
        settings.authority_url.trim_end_matches('/'),
        utf8_percent_encode(settings.tenant_id.as_deref().unwrap_or_default(), SEGMENT)
    )
}

/// `id` as one path segment of a Graph URL. Percent-encoding leaves dots
/// alone and URL parsing resolves dot segments, so those (and an empty id)
/// would change the path: refused.
pub(super) fn segment(id: &str) -> Result<String, Error> {
    if id.is_empty() || id == "." || id == ".." {
        return Err(Error::InvalidId(format!("{id:?} cannot be used as a Graph path segment")));
    }
    Ok(utf8_percent_encode(id, SEGMENT).to_string())
}

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

fn decode(status: StatusCode, bytes: &[u8]) -> Result<RemoteRegistration, Error> {
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
const NO_ODATA_TYPE: &str = "no @odata.type";

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
struct Diagnostics {
    request_id: Option<String>,
    date: Option<String>,
    ags_diagnostic: Option<String>,
}

/// What came back for one request, read in full.
struct Answer {
    status: Option<u16>,
    headers: Diagnostics,
    body: Result<(StatusCode, HeaderMap, bytes::Bytes), Error>,
}

impl Answer {
    async fn read(sent: reqwest::Result<reqwest::Response>) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OnlineMeetingId, OrganizerId};

    #[test]
    fn ids_are_single_percent_encoded_path_segments() {
        let organizer = OrganizerId("a/b?c#d%e f".into());
        let meeting = OnlineMeetingId("1*x*0**19:meeting_é@thread.v2".into());
        let path = Client::app_path(&Location { organizer, meeting }).unwrap();
        assert_eq!(
            path,
            "/users/a%2Fb%3Fc%23d%25e%20f/onlineMeetings/1%2Ax%2A0%2A%2A19%3Ameeting_%C3%A9%40thread.v2/registration"
        );
    }

    #[test]
    fn dot_segments_are_refused() {
        let organizer = OrganizerId("..".into());
        let meeting = OnlineMeetingId("m".into());
        assert!(Client::app_path(&Location { organizer, meeting }).is_err());
        for id in ["", ".", ".."] {
            assert!(segment(id).is_err(), "{id:?}");
        }
        assert_eq!(segment("...").unwrap(), "...", "three dots are a name");
    }
}
