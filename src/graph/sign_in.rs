//! Delegated sign-in: the device-code flow `regsync login` runs, and the
//! refresh grant that turns an organizer's refresh token into an access
//! token (and a new refresh token, which replaces the old one).
//! <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-device-code>
//! <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow#refresh-the-access-token>

use std::time::Duration;

use base64::Engine as _;
use secrecy::SecretString;
use serde::Deserialize;

use super::auth::request_token;
use super::client::login_url;
use super::{Client, Error};
use crate::config::GraphAuth;

/// The delegated permissions regsync asks for, below the Graph root:
/// `OnlineMeetings.ReadWrite` for the registration calls, `offline_access`
/// for a refresh token, `openid profile` to learn who signed in.
const DELEGATED_SCOPES: &str = "OnlineMeetings.ReadWrite offline_access openid profile";

/// RFC 8628 §3.5: each `slow_down` adds five seconds to the interval.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// A device code the user enters at the verification page.
pub struct DeviceCode {
    /// The identity platform's ready-made instructions for the user.
    pub message: String,
    device_code: SecretString,
    interval: Duration,
    expires_in: Duration,
}

#[derive(Deserialize)]
struct DeviceCodeResponse {
    device_code: String,
    message: String,
    #[serde(default, deserialize_with = "crate::http::lenient_secs_opt")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "crate::http::lenient_secs_opt")]
    expires_in: Option<Duration>,
}

/// Why a sign-in ended without tokens.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The code expired before the user finished.
    #[error("the code expired before the sign-in finished: run `regsync login` again and enter the new code sooner")]
    Expired,
    /// The user declined.
    #[error("the sign-in was declined at the verification page; nothing was stored")]
    Declined,
    /// The identity platform refused otherwise, or could not be reached.
    #[error("{0}")]
    Refused(Error),
}

/// Tokens of a signed-in organizer.
pub struct UserTokens {
    /// The organizer's object id (`oid`).
    pub organizer_id: String,
    /// Who signed in (`preferred_username` or `upn`).
    pub upn: Option<String>,
    /// The access token.
    pub access_token: SecretString,
    /// Its lifetime in seconds (at most a day).
    pub expires_in: u64,
    /// The refresh token that replaces the one used.
    pub refresh_token: SecretString,
    /// The delegated permissions granted.
    pub scopes: Option<String>,
}

/// The claims regsync reads from an id or access token it was just handed
/// by the identity platform (over TLS, from the configured host); no
/// signature is checked because no decision but a label rests on it.
#[derive(Deserialize, Default)]
struct Who {
    #[serde(default)]
    oid: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    upn: Option<String>,
}

/// The payload of a JWT, decoded without checking its signature.
pub(super) fn jwt_claims<T: serde::de::DeserializeOwned>(token: &str) -> Option<T> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl Client {
    /// The delegated scopes for this cloud's Graph.
    fn delegated_scope(&self) -> String {
        let root = self.settings.scope.trim_end_matches("/.default");
        let mut scopes = DELEGATED_SCOPES.split(' ');
        let first = scopes.next().unwrap_or_default();
        std::iter::once(format!("{root}/{first}")).chain(scopes.map(str::to_owned)).collect::<Vec<_>>().join(" ")
    }

    /// Starts a device-code sign-in.
    ///
    /// # Errors
    /// The identity platform refused or could not be reached.
    pub async fn start_device_code(&self) -> Result<DeviceCode, Error> {
        let url = login_url(&self.settings, "devicecode");
        let form = [
            ("client_id", SecretString::from(self.client_id())),
            ("scope", SecretString::from(self.delegated_scope())),
        ];
        let code: DeviceCodeResponse = request_token(&self.http, &url, &form, GraphAuth::Delegated).await?;
        Ok(DeviceCode {
            message: code.message,
            device_code: SecretString::from(code.device_code),
            // Never faster than once a second, never slower than a minute.
            interval: code
                .interval
                .unwrap_or(Duration::from_secs(5))
                .clamp(Duration::from_secs(1), Duration::from_secs(60)),
            expires_in: code.expires_in.unwrap_or(Duration::from_secs(900)),
        })
    }

    /// Polls the token endpoint for `code` until the user signs in, the code
    /// expires or the user declines: never faster than the interval asked,
    /// and five seconds slower after each `slow_down`.
    ///
    /// # Errors
    /// [`SignInError`] saying how the sign-in ended.
    pub async fn finish_device_code(&self, code: &DeviceCode) -> Result<UserTokens, SignInError> {
        let url = login_url(&self.settings, "token");
        let form = [
            ("grant_type", SecretString::from("urn:ietf:params:oauth:grant-type:device_code")),
            ("client_id", SecretString::from(self.client_id())),
            ("device_code", code.device_code.clone()),
        ];
        let deadline = tokio::time::Instant::now() + code.expires_in;
        let mut interval = code.interval;
        loop {
            tokio::time::sleep(interval).await;
            match request_token(&self.http, &url, &form, GraphAuth::Delegated).await {
                Ok(answer) => return user_tokens(answer).map_err(SignInError::Refused),
                Err(Error::Token { error, .. }) if error == "authorization_pending" => {}
                Err(Error::Token { error, .. }) if error == "slow_down" => interval += SLOW_DOWN_STEP,
                Err(Error::Token { error, .. }) if error == "expired_token" || error == "bad_verification_code" => {
                    return Err(SignInError::Expired)
                }
                Err(Error::Token { error, .. }) if error == "authorization_declined" || error == "access_denied" => {
                    return Err(SignInError::Declined)
                }
                Err(e) => return Err(SignInError::Refused(e)),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SignInError::Expired);
            }
        }
    }

    /// Redeems `refresh_token` for the organizer's next tokens. The refresh
    /// token is spent by this call whatever happens to its answer.
    ///
    /// # Errors
    /// [`Error::Token`]; `invalid_grant` means the sign-in is over.
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<UserTokens, Error> {
        let form = [
            ("grant_type", SecretString::from("refresh_token")),
            ("client_id", SecretString::from(self.client_id())),
            ("refresh_token", refresh_token.clone()),
            ("scope", SecretString::from(self.delegated_scope())),
        ];
        let answer =
            request_token(&self.http, &login_url(&self.settings, "token"), &form, GraphAuth::Delegated).await?;
        user_tokens(answer)
    }

    fn client_id(&self) -> String {
        self.settings.client_id.clone().unwrap_or_default()
    }
}

fn user_tokens(answer: super::wire::TokenResponse) -> Result<UserTokens, Error> {
    let missing = |what: &str| Error::Token {
        status: None,
        error: "bad_response".into(),
        detail: format!("the token answer has no {what}"),
        hint: "the sign-in must ask for offline_access and openid: check the app's API permissions",
        retry_after: None,
    };
    let refresh_token = answer.refresh_token.ok_or_else(|| missing("refresh_token"))?;
    let who: Who = answer
        .id_token
        .as_deref()
        .and_then(jwt_claims)
        .or_else(|| jwt_claims(&answer.access_token))
        .unwrap_or_default();
    let organizer_id = who.oid.filter(|o| !o.is_empty()).ok_or_else(|| missing("oid claim"))?;
    Ok(UserTokens {
        organizer_id,
        upn: who.preferred_username.or(who.upn),
        access_token: SecretString::from(answer.access_token),
        // Remote input: at most a day, so no clock arithmetic can overflow.
        expires_in: answer.expires_in.min(super::auth::MAX_TOKEN_LIFETIME_SECS),
        refresh_token: SecretString::from(refresh_token),
        scopes: answer.scope,
    })
}

impl std::fmt::Debug for UserTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserTokens")
            .field("organizer_id", &self.organizer_id)
            .field("upn", &self.upn)
            .finish_non_exhaustive()
    }
}
