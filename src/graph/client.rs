//! The registration calls (docs/graph-api.md has Microsoft's pages). Each
//! request carries a fresh `client-request-id` and is returned as a
//! [`CallRecord`] for the audit table.

use std::sync::Arc;
use std::time::Instant;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::answer::{absent_on_404, decode, unexpected, Answer, Sent, NO_ODATA_TYPE};
use super::assertion::CertificateKey;
use super::auth::{AppCredential, Credentials, TokenCache};
use super::wire::{CreateRegistration, EXTERNAL_REGISTRATION_TYPE};
use super::{Deleted, Error};
use crate::config::{GraphAuth, GraphSettings};
use crate::domain::{AllowedRegistrant, CallRecord, Location, OrganizerId, RemoteRegistration};

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
    /// The lease the request is sent under lasts at least until then.
    lease_until: Option<chrono::DateTime<chrono::Utc>>,
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

    /// The row's lease lasts at least until `until` (recorded with the call).
    pub fn under_lease(self, until: chrono::DateTime<chrono::Utc>) -> Self {
        Self { lease_until: Some(until), ..self }
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
            // Bytes of a request the client gave up on must not reach Graph
            // later: TCP would retransmit them once a broken path heals, after
            // regsync has concluded (and looked up) that they never arrived.
            // Data unacknowledged this long aborts the connection, and the
            // kernel discards what it holds: a request reaches Graph within
            // the timeout or never, as the model's late act (\[S5\], \[S9\])
            // assumes.
            .tcp_user_timeout(settings.timeout())
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
        Permit { token, send_by: None, lease_until: None, acting: None }
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
        let Permit { token, send_by, lease_until, acting } = permit;
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
        let (started, sent_at) = (Instant::now(), chrono::Utc::now());
        let sent = request.send().await;
        // Crash-matrix hook: the request went out; its answer (or its
        // loss) is neither read nor recorded.
        fail_point!("after-send", |_| std::process::abort());
        let answer = Answer::read(sent).await;
        let sent = Sent { method: &method, path, started, sent_at, lease_until, client_request_id, acting };
        let (record, outcome) = answer.record(sent);
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
