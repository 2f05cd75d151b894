//! The platform's credentials: static ones, sent as default headers of the
//! HTTP client, and those whose header changes while regsync runs (a
//! bearer token file rotated in place, OAuth 2.0 client-credentials tokens
//! from the platform's token endpoint).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::Error;
use crate::config::{SourceAuth, SourceSettings};

/// The headers every request carries: the auth header of `source.auth`
/// (unless a [`Rotating`] credential sends it per request) and the extra
/// `source.headers`, all marked sensitive so they never show in debug
/// output.
pub(super) fn static_headers(settings: &SourceSettings, rotating: bool) -> Result<HeaderMap, Error> {
    let mut headers = HeaderMap::new();
    let token = settings.token.as_ref().map(|t| t.expose_secret());
    let auth = match (settings.auth, token) {
        (SourceAuth::Bearer, Some(token)) if !rotating => {
            Some((AUTHORIZATION, format!("Bearer {token}"), "source.token"))
        }
        (SourceAuth::ApiKey, Some(token)) => {
            let name = HeaderName::try_from(settings.api_key_header.as_str())
                .map_err(|_| Error::Setup("source.api_key_header is not a valid header name".into()))?;
            Some((name, token.to_owned(), "source.token"))
        }
        (SourceAuth::Basic, _) => {
            let user = settings.username.as_deref().unwrap_or_default();
            let password = settings.password.as_ref().map(|p| p.expose_secret()).unwrap_or_default();
            Some((AUTHORIZATION, basic(user, password), "source.username or source.password"))
        }
        _ => None,
    };
    let extra = settings.headers.iter().map(|(name, value)| {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| Error::Setup(format!("source.headers.{name} is not a valid header name")))?;
        Ok((name, value.expose_secret().to_owned(), "a source.headers value"))
    });
    for header in auth.into_iter().map(Ok).chain(extra) {
        let (name, value, what) = header?;
        headers.insert(name, sensitive(value, what)?);
    }
    Ok(headers)
}

/// A header value that never shows in debug output; `what` names the
/// setting it came from when it is not a valid value.
fn sensitive(value: String, what: &str) -> Result<HeaderValue, Error> {
    let mut value =
        HeaderValue::try_from(value).map_err(|_| Error::Setup(format!("{what} is not a valid header value")))?;
    value.set_sensitive(true);
    Ok(value)
}

/// HTTP Basic credentials (RFC 7617).
fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// The `Authorization` header of a credential that can change.
pub(super) enum Rotating {
    /// `source.token_file` with `auth = "bearer"`: read again when it changes.
    BearerFile { path: PathBuf, current: Mutex<Option<(SystemTime, HeaderValue)>> },
    /// `auth = "oauth2"`.
    OAuth2(OAuth2),
}

impl Rotating {
    /// The rotating credential `settings` configure, if any.
    pub(super) fn new(settings: &SourceSettings) -> Result<Option<Self>, Error> {
        Ok(match (settings.auth, &settings.token_file) {
            (SourceAuth::Bearer, Some(path)) => {
                Some(Self::BearerFile { path: path.clone(), current: Mutex::default() })
            }
            (SourceAuth::Oauth2, _) => Some(Self::OAuth2(OAuth2::new(settings)?)),
            _ => None,
        })
    }

    /// The header to send now.
    pub(super) async fn header(&self) -> Result<HeaderValue, Error> {
        match self {
            Self::BearerFile { path, current } => {
                let mut current = current.lock().await;
                let unreadable = |e: std::io::Error| Error::Token {
                    from: format!("source.token_file {}", path.display()),
                    reason: e.to_string(),
                };
                let modified = tokio::fs::metadata(path).await.and_then(|m| m.modified()).map_err(unreadable)?;
                if let Some((at, value)) = current.as_ref().filter(|(at, _)| *at == modified) {
                    tracing::trace!(?at, "bearer token file unchanged");
                    return Ok(value.clone());
                }
                let token = tokio::fs::read_to_string(path).await.map_err(unreadable)?;
                let value = bearer(token.trim())?;
                *current = Some((modified, value.clone()));
                Ok(value)
            }
            Self::OAuth2(oauth2) => oauth2.header().await,
        }
    }

    /// The platform refused `sent` (401): the next request gets a fresh one.
    pub(super) async fn refused(&self, sent: &HeaderValue) {
        match self {
            Self::BearerFile { current, .. } => *current.lock().await = None,
            Self::OAuth2(oauth2) => {
                let mut current = oauth2.current.lock().await;
                if current.as_ref().is_some_and(|t| t.value == *sent) {
                    *current = None;
                }
            }
        }
    }
}

fn bearer(token: &str) -> Result<HeaderValue, Error> {
    sensitive(format!("Bearer {token}"), "the platform token")
}

/// OAuth 2.0 client credentials (RFC 6749 §4.4), the client authenticated
/// with HTTP Basic (§2.3.1), which every such endpoint must accept.
pub(super) struct OAuth2 {
    http: reqwest::Client,
    token_url: String,
    client: HeaderValue,
    scope: Option<String>,
    current: Mutex<Option<Token>>,
}

struct Token {
    value: HeaderValue,
    refresh_at: Instant,
}

/// The token endpoint's answer (RFC 6749 §5.1).
#[derive(Deserialize)]
struct Issued {
    access_token: SecretString,
    #[serde(default, deserialize_with = "crate::http::lenient_secs_opt")]
    expires_in: Option<Duration>,
}

/// The token endpoint's refusal (RFC 6749 §5.2): never holds a secret.
#[derive(Deserialize)]
struct Refused {
    error: Option<String>,
    error_description: Option<String>,
}

/// A token is used until this much of its life is left (at most a quarter
/// of it), so no request leaves with one about to expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// The lifetime assumed when the endpoint does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

impl OAuth2 {
    fn new(settings: &SourceSettings) -> Result<Self, Error> {
        let o = &settings.oauth2;
        let missing = |key: &str| Error::Setup(format!("source.oauth2.{key} is not set"));
        let id = o.client_id.as_deref().ok_or_else(|| missing("client_id"))?;
        let secret = o.client_secret.as_ref().ok_or_else(|| missing("client_secret"))?;
        let client = sensitive(basic(id, secret.expose_secret()), "source.oauth2.client_id")?;
        // The token endpoint gets the client's credentials: no redirect at all.
        let http = reqwest::Client::builder()
            .timeout(settings.timeout())
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(crate::http::USER_AGENT)
            .build()
            .map_err(|e| Error::Setup(e.to_string()))?;
        Ok(Self {
            http,
            token_url: o.token_url.clone().ok_or_else(|| missing("token_url"))?,
            client,
            scope: o.scope.clone(),
            current: Mutex::default(),
        })
    }

    /// The cached token while it has life left; a new one otherwise. One
    /// task fetches while the others wait for it.
    async fn header(&self) -> Result<HeaderValue, Error> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(token.value.clone());
        }
        let token = self.fetch().await?;
        let value = token.value.clone();
        *current = Some(token);
        Ok(value)
    }

    async fn fetch(&self) -> Result<Token, Error> {
        let failed = |reason: String| Error::Token { from: self.token_url.clone(), reason };
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let response = self
            .http
            .post(&self.token_url)
            .header(reqwest::header::AUTHORIZATION, self.client.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| failed(crate::http::error_text(&e.without_url(), "source.timeout_ms")))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| failed(e.without_url().to_string()))?;
        if !status.is_success() {
            let refused: Option<Refused> = serde_json::from_slice(&body).ok();
            let (error, description) = refused.map(|r| (r.error, r.error_description)).unwrap_or_default();
            return Err(failed(format!(
                "HTTP {} {}{}: check source.oauth2.client_id, client_secret and scope",
                status.as_u16(),
                error.unwrap_or_default(),
                description.map(|d| format!(" ({})", d.lines().next().unwrap_or_default())).unwrap_or_default()
            )));
        }
        let issued: Issued =
            serde_json::from_slice(&body).map_err(|e| failed(format!("the answer is not a token: {e}")))?;
        let lifetime = issued.expires_in.unwrap_or(DEFAULT_LIFETIME);
        let refresh_at = Instant::now() + lifetime - REFRESH_MARGIN.min(lifetime / 4);
        tracing::debug!(lifetime_secs = lifetime.as_secs(), "platform token issued");
        Ok(Token { value: bearer(issued.access_token.expose_secret())?, refresh_at })
    }
}
