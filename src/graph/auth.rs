//! Tokens from the identity platform. App tokens (client credentials with a
//! secret, a certificate or a federated assertion) are cached until shortly
//! before they expire and fetched by one caller at a time (single flight),
//! so a burst of Graph calls costs one token request. [`request_token`] is
//! the one token request every grant goes through.
//! <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow>

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use super::assertion::{self, CertificateKey, ASSERTION_TYPE};
use super::wire::{TokenError, TokenResponse};
use super::{Error, TIMEOUT_KEY};
use crate::config::GraphAuth;
use crate::http;

/// Refresh this long before expiry (or at 80 % of the lifetime if shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// How the app proves itself in a client-credentials request.
pub enum AppCredential {
    /// `client_secret`.
    Secret(SecretString),
    /// A client assertion signed with the certificate's key.
    Certificate(CertificateKey),
    /// A client assertion read from this file for every request.
    Federated(std::path::PathBuf),
}

impl AppCredential {
    /// The form fields that authenticate the app.
    fn fields(&self, client_id: &str, token_url: &str) -> Result<Vec<(&'static str, SecretString)>, Error> {
        let assertion = |a: SecretString| {
            vec![("client_assertion_type", SecretString::from(ASSERTION_TYPE)), ("client_assertion", a)]
        };
        Ok(match self {
            Self::Secret(secret) => vec![("client_secret", secret.clone())],
            Self::Certificate(key) => assertion(key.assertion(client_id, token_url)?),
            Self::Federated(file) => assertion(assertion::federated(file)?),
        })
    }

    fn kind(&self) -> GraphAuth {
        match self {
            Self::Secret(_) => GraphAuth::ClientSecret,
            Self::Certificate(_) => GraphAuth::Certificate,
            Self::Federated(_) => GraphAuth::Federated,
        }
    }
}

/// What the token request needs.
pub struct Credentials {
    /// `{authority_url}/{tenant}/oauth2/v2.0/token`.
    pub token_url: String,
    /// The app's client id.
    pub client_id: String,
    /// The app's credential.
    pub credential: AppCredential,
    /// `https://graph.microsoft.com/.default`.
    pub scope: String,
}

/// Tokens are refreshed at least daily, whatever lifetime the answer claims.
pub(super) const MAX_TOKEN_LIFETIME_SECS: u64 = 86_400;

/// After a refused token request, callers get the same error for this long
/// instead of asking again: a broken secret must not turn into a storm of
/// token requests (the identity platform throttles those).
const FAILURE_MEMORY: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Cached {
    token: Arc<SecretString>,
    refresh_at: Instant,
}

#[derive(Default)]
struct TokenState {
    cached: Option<Cached>,
    failed: Option<(Instant, Error)>,
}

/// A shared, single-flight token cache.
pub struct TokenCache {
    http: reqwest::Client,
    credentials: Credentials,
    slot: Mutex<TokenState>,
}

impl TokenCache {
    /// A cache that fetches with `http`.
    pub fn new(http: reqwest::Client, credentials: Credentials) -> Self {
        Self { http, credentials, slot: Mutex::new(TokenState::default()) }
    }

    /// A valid token, fetched if the cached one is missing or near expiry.
    ///
    /// # Errors
    /// [`Error::Token`] when the identity platform refuses or cannot be reached.
    pub async fn token(&self) -> Result<Arc<SecretString>, Error> {
        let mut slot = self.slot.lock().await;
        if let Some(c) = slot.cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        if let Some((at, e)) = slot.failed.as_ref().filter(|(at, e)| at.elapsed() < failure_memory(e)) {
            tracing::debug!(ago_ms = at.elapsed().as_millis() as u64, "reusing the last token failure");
            return Err(e.clone());
        }
        match self.fetch().await {
            Ok(fresh) => {
                let token = fresh.token.clone();
                *slot = TokenState { cached: Some(fresh), failed: None };
                Ok(token)
            }
            Err(e) => {
                slot.failed = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// Drops `token` from the cache after Graph answered 401 to it, unless a
    /// newer token already replaced it.
    pub async fn invalidate(&self, token: &Arc<SecretString>) {
        let mut slot = self.slot.lock().await;
        if slot.cached.as_ref().is_some_and(|c| Arc::ptr_eq(&c.token, token)) {
            slot.cached = None;
        }
    }

    async fn fetch(&self) -> Result<Cached, Error> {
        let c = &self.credentials;
        let mut form = vec![
            ("client_id", SecretString::from(c.client_id.as_str())),
            ("scope", SecretString::from(c.scope.as_str())),
            ("grant_type", SecretString::from("client_credentials")),
        ];
        form.extend(c.credential.fields(&c.client_id, &c.token_url)?);
        let started = Instant::now();
        let parsed: TokenResponse = request_token(&self.http, &c.token_url, &form, c.credential.kind()).await?;
        let refresh_in = refresh_in(parsed.expires_in);
        tracing::debug!(
            lifetime_secs = parsed.expires_in,
            took_ms = started.elapsed().as_millis() as u64,
            "fetched Graph token"
        );
        Ok(Cached { token: Arc::new(SecretString::from(parsed.access_token)), refresh_at: started + refresh_in })
    }
}

/// When a token that lives `expires_in` seconds is refreshed: before the
/// last five minutes or fifth of its life, and at least daily.
pub fn refresh_in(expires_in: u64) -> Duration {
    // Remote input: a day at most, so no lifetime can overflow a clock.
    let lifetime = Duration::from_secs(expires_in.min(MAX_TOKEN_LIFETIME_SECS));
    lifetime - REFRESH_MARGIN.min(lifetime / 5)
}

/// One request to the identity platform (a token of any grant, or a device
/// code) at `token_url`: the answer `T`, or the
/// endpoint's refusal as [`Error::Token`] with its `error`, the first line
/// of its description, its trace and correlation ids, and a hint for
/// `kind`. The form's values are secrets and are never logged.
///
/// # Errors
/// [`Error::Token`] when the endpoint refuses or cannot be reached.
pub async fn request_token<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    token_url: &str,
    form: &[(&'static str, SecretString)],
    kind: GraphAuth,
) -> Result<T, Error> {
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.expose_secret())).collect();
    let response = client.post(token_url).form(&form).send().await.map_err(|e| Error::Token {
        status: None,
        error: "unreachable".into(),
        detail: http::error_text(&e, TIMEOUT_KEY),
        hint: TOKEN_UNREACHABLE_HINT,
        retry_after: None,
    })?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::http::parse_retry_after(v, std::time::SystemTime::now()));
    let body = response.bytes().await.unwrap_or_default();
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| Error::Token {
            status: Some(status.as_u16()),
            error: "bad_response".into(),
            detail: format!("token response is not the expected JSON: {e}"),
            hint: "check graph.authority_url: it must point at the identity platform",
            retry_after: None,
        });
    }
    let parsed: Option<TokenError> = serde_json::from_slice(&body).ok();
    let error = parsed.as_ref().and_then(|p| p.error.clone()).unwrap_or_else(|| format!("http_{}", status.as_u16()));
    let ids = parsed.as_ref().map(TokenError::support_ids).unwrap_or_default();
    // The first line names the AADSTS code; the rest repeats the ids.
    let detail = parsed
        .and_then(|p| p.error_description)
        .map(|d| d.lines().next().unwrap_or_default().to_owned())
        .unwrap_or_else(|| format!("HTTP {status}"));
    if matches!(error.as_str(), "authorization_pending" | "slow_down") {
        // A device-code sign-in still waiting for its user.
        tracing::debug!(error, "device-code sign-in not finished yet");
    } else {
        tracing::warn!(status = status.as_u16(), error, detail, ids, "the identity platform refused a token request");
    }
    Err(Error::Token {
        status: Some(status.as_u16()),
        hint: token_hint(kind, &error, &detail),
        detail: if ids.is_empty() { detail } else { format!("{detail} ({ids})") },
        error,
        retry_after,
    })
}

/// How long a token failure is reused: the endpoint's `Retry-After` when it
/// sent one, [`FAILURE_MEMORY`] otherwise.
fn failure_memory(e: &Error) -> Duration {
    e.retry_after().unwrap_or(FAILURE_MEMORY)
}

const TOKEN_UNREACHABLE_HINT: &str = "check network access to graph.authority_url";

/// What an operator should do about a token error. Branches on `error`, and
/// on AADSTS codes only to sharpen the hint (they are not a contract).
fn token_hint(kind: GraphAuth, error: &str, detail: &str) -> &'static str {
    if detail.contains("AADSTS700027") {
        return "the client assertion's signature is not valid: upload the certificate in graph.certificate_path \
                to the app registration (Certificates & secrets) and check graph.private_key_path is its key";
    }
    if detail.contains("AADSTS500133") || detail.contains("AADSTS50013") || detail.contains("AADSTS700024") {
        return "the client assertion is outside its valid time: check this machine's clock (NTP)";
    }
    if detail.contains("AADSTS70021") || detail.contains("AADSTS700211") || detail.contains("AADSTS700213") {
        return "no federated credential of the app matches the assertion: check the issuer, subject and audience \
                of the app's federated credential against the token in graph.federated_token_file";
    }
    if kind == GraphAuth::Delegated && (detail.contains("AADSTS7000218") || error == "unauthorized_client") {
        return "device-code sign-in needs a public client: in the app registration allow public client flows \
                (Authentication > Allow public client flows), and check graph.client_id and graph.tenant_id";
    }
    match (kind, error) {
        (GraphAuth::Delegated, "invalid_grant") => {
            return "the sign-in has expired or was revoked: the organizer must sign in again with `regsync login`";
        }
        (GraphAuth::Certificate, "invalid_client") => {
            return "client authentication failed: check graph.client_id and that the certificate in \
                    graph.certificate_path is uploaded to the app registration";
        }
        (GraphAuth::Federated, "invalid_client") => {
            return "client authentication failed: check graph.client_id and the app's federated credential";
        }
        _ => {}
    }
    if detail.contains("AADSTS7000222") {
        return "the client secret has expired: create a new one in the app registration and update graph.client_secret";
    }
    if detail.contains("AADSTS7000215") {
        return "the client secret is wrong (often the secret's id was used instead of its value): update graph.client_secret";
    }
    if detail.contains("AADSTS700016") {
        return "the app is not found in the tenant: check graph.client_id and graph.tenant_id, and that an admin consented";
    }
    if detail.contains("AADSTS90002") {
        return "the tenant is not found: check graph.tenant_id";
    }
    match error {
        "invalid_client" => "client authentication failed: check graph.client_id and graph.client_secret",
        "unauthorized_client" => "the app may not use the client-credentials grant: check the app registration",
        "invalid_scope" | "invalid_resource" => "check graph.scope: it must be https://graph.microsoft.com/.default",
        "invalid_request" => "the token request was refused: check graph.tenant_id and graph.client_id",
        "temporarily_unavailable" => "the identity platform is temporarily unavailable; regsync retries",
        _ => "check graph.authority_url, graph.tenant_id, graph.client_id and graph.client_secret",
    }
}
