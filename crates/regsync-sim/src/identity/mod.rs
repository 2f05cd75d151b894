//! The simulated identity platform (`/login/{tenant}/oauth2/v2.0/...`), as
//! Microsoft documents it:
//! - client credentials with a secret, a certificate assertion (PS256 or
//!   RS256, `x5t#S256` of a certificate registered with
//!   [`Sim::trust_certificate`](crate::Sim::trust_certificate), `aud` the
//!   token endpoint, `iss`/`sub` the client id, at most 10 minutes long) or a
//!   federated assertion (a token of the simulated external issuer,
//!   [`Sim::federated_assertion`](crate::Sim::federated_assertion));
//! - the device-code flow (`/devicecode`, then the token endpoint answering
//!   `authorization_pending`, `slow_down`, `expired_token` or
//!   `authorization_declined` as scripted, or the signed-in user's tokens);
//! - refresh tokens that replace themselves on every use; using one twice
//!   revokes its whole chain, as a careful provider does.
//!
//! Access tokens are JWTs (HS256 with the simulator's key) carrying `aud`,
//! `roles` (app) or `scp` and `oid` (delegated), so a client can read its
//! grants the way it would read Entra's.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Path, State as AxumState};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{State, CLIENT_ID, CLIENT_SECRET, TENANT};

mod assertion;
mod delegated;
mod knobs;

use assertion::*;
use delegated::*;

type Shared = Arc<Mutex<State>>;

/// The assertion type of certificate and federated credentials.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The device-code grant.
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The external issuer of federated assertions, and what the app's
/// federated credential expects of them.
pub const FEDERATED_ISSUER: &str = "https://oidc.sim.example/";
/// The subject the app's federated credential names.
pub const FEDERATED_SUBJECT: &str = "system:serviceaccount:regsync:regsync";
/// The audience Entra expects in a federated assertion.
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The Graph resource tokens are issued for.
pub const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";

/// What the next poll of a device code answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceAnswer {
    /// `authorization_pending`: the user has not finished.
    Pending,
    /// `slow_down`: polled too fast.
    SlowDown,
    /// `expired_token`: the code expired.
    Expired,
    /// `authorization_declined`: the user refused.
    Declined,
    /// The user signed in: their object id and UPN.
    SignedIn {
        /// `oid`.
        oid: String,
        /// `preferred_username`.
        upn: String,
    },
}

/// The identity platform's state.
pub(crate) struct Identity {
    /// Signs access, id and federated tokens.
    key: Vec<u8>,
    /// The certificate registered with the app (PEM), if any.
    pub(crate) certificate: Option<String>,
    /// Federated assertions issued and not yet expired (by `jti`).
    federated: HashMap<String, bool>,
    /// Id tokens and every assertion issued or received, for leak checks.
    issued: Vec<String>,
    /// The app's application permissions (`roles`).
    pub(crate) roles: Vec<String>,
    /// What the device-code polls answer, in order; then `Pending`.
    pub(crate) device_script: VecDeque<DeviceAnswer>,
    /// Device codes handed out: when each was last polled, and the
    /// interval it must keep (raised by five seconds per `slow_down`).
    device_codes: HashMap<String, (Option<Instant>, Duration)>,
    /// Device-code polls that came sooner than their interval.
    pub(crate) polls_too_soon: u64,
    /// Seconds between polls the device-code answer asks for.
    pub(crate) device_interval: u64,
    /// Refresh tokens: chain id, user and whether already redeemed.
    refresh_tokens: HashMap<String, RefreshToken>,
    /// Chains revoked (a reused token, or an admin's revocation).
    revoked_chains: Vec<u64>,
    next_chain: u64,
    /// Refresh tokens presented a second time.
    pub(crate) refresh_reuses: u64,
    /// Refresh grants answered with new tokens.
    pub(crate) refreshes: u64,
    /// Refresh grants to redeem and then answer 504, as if the answer was
    /// lost on its way back.
    pub(crate) lose_refresh_answers: u32,
    /// `expires_in` of delegated access tokens.
    pub(crate) delegated_lifetime: u64,
    /// The `aud` of access tokens: Graph's root in this cloud.
    pub(crate) audience: String,
    /// Who signs in when no answer is scripted (else: pending).
    pub(crate) default_user: Option<String>,
}

#[derive(Clone)]
struct RefreshToken {
    chain: u64,
    oid: String,
    upn: String,
    redeemed: bool,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            key: uuid::Uuid::new_v4().as_bytes().to_vec(),
            certificate: None,
            federated: HashMap::new(),
            issued: Vec::new(),
            roles: vec![
                "OnlineMeetings.ReadWrite.All".into(),
                "OnlineMeetings.Read.All".into(),
                "User.Read.All".into(),
                "VirtualEventRegistration-Anon.ReadWrite.All".into(),
                "VirtualEvent.Read.All".into(),
                "OnlineMeetingArtifact.Read.All".into(),
            ],
            device_script: VecDeque::new(),
            device_codes: HashMap::new(),
            polls_too_soon: 0,
            device_interval: 1,
            refresh_tokens: HashMap::new(),
            revoked_chains: Vec::new(),
            next_chain: 0,
            refresh_reuses: 0,
            refreshes: 0,
            lose_refresh_answers: 0,
            delegated_lifetime: 3599,
            audience: GRAPH_AUDIENCE.into(),
            default_user: None,
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl Identity {
    fn sign(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(&self.key))
            .expect("HS256 signs any claims")
    }

    /// A federated assertion of the external issuer, valid until
    /// [`Identity::expire_federated`].
    pub(crate) fn federated_assertion(&mut self) -> String {
        let jti = uuid::Uuid::new_v4().to_string();
        self.federated.insert(jti.clone(), true);
        let assertion = self.sign(&json!({"iss": FEDERATED_ISSUER, "sub": FEDERATED_SUBJECT,
            "aud": FEDERATED_AUDIENCE, "jti": jti, "iat": now_secs(), "exp": now_secs() + 3600}));
        self.issued.push(assertion.clone());
        assertion
    }

    /// Every federated assertion issued so far expires (the file rotated).
    pub(crate) fn expire_federated(&mut self) {
        self.federated.values_mut().for_each(|valid| *valid = false);
    }

    /// Refresh tokens, id tokens and assertions handed out or received.
    pub(crate) fn issued_secrets(&self) -> impl Iterator<Item = String> + '_ {
        self.refresh_tokens.keys().cloned().chain(self.issued.iter().cloned())
    }

    /// Revokes every sign-in of `oid`.
    pub(crate) fn revoke_user(&mut self, oid: &str) {
        let chains: Vec<u64> = self.refresh_tokens.values().filter(|r| r.oid == oid).map(|r| r.chain).collect();
        self.revoked_chains.extend(chains);
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/login/{tenant}/oauth2/v2.0/token", post(token))
        .route("/login/{tenant}/oauth2/v2.0/devicecode", post(device_code))
}

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The identity platform's error body, with the ids support asks for.
pub(crate) fn token_error(status: u16, error: &str, description: &str) -> Response {
    let code: u64 =
        description.trim_start_matches("AADSTS").split(':').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let (trace, correlation) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let body = json!({
        "error": error,
        "error_description": format!("{description}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: 2026-11-29 10:00:00Z"),
        "error_codes": [code],
        "timestamp": "2026-11-29 10:00:00Z",
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    let status = axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_REQUEST);
    (status, Json(body)).into_response()
}

/// `POST …/devicecode`: a code for the user to enter, and how often to poll.
async fn device_code(
    AxumState(state): AxumState<Shared>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut s = lock(&state);
    if tenant != TENANT {
        return token_error(400, "invalid_request", &format!("AADSTS90002: Tenant '{tenant}' not found."));
    }
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return token_error(400, "unauthorized_client", "AADSTS700016: Application was not found in the directory.");
    }
    let device_code = format!("simdc-{}", uuid::Uuid::new_v4().simple());
    let interval = s.identity.device_interval;
    s.identity.device_codes.insert(device_code.clone(), (None, Duration::from_secs(interval)));
    let user_code = format!("SIM{:05}", rand::random::<u32>() % 100_000);
    Json(json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": "https://microsoft.com/devicelogin",
        "expires_in": 900,
        "interval": interval,
        "message": format!("To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code {user_code} to authenticate."),
    }))
    .into_response()
}

async fn token(
    AxumState(state): AxumState<Shared>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let delay = lock(&state).token_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut s = lock(&state);
    s.token_requests += 1;
    if let Some(fault) = s.token_faults.pop_front() {
        let mut answer = token_error(fault.status, &fault.error, &fault.description);
        if let Some(retry_after) = s.token_retry_after.as_deref().and_then(|r| r.parse().ok()) {
            answer.headers_mut().insert("retry-after", retry_after);
        }
        return answer;
    }
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if tenant != TENANT {
        return token_error(400, "invalid_request", &format!("AADSTS90002: Tenant '{tenant}' not found."));
    }
    if field("client_id") != CLIENT_ID {
        return token_error(400, "unauthorized_client", "AADSTS700016: Application was not found in the directory.");
    }
    match field("grant_type") {
        "client_credentials" => {}
        DEVICE_CODE_GRANT => return device_poll(&mut s, field("device_code")),
        "refresh_token" => return refresh(&mut s, field("refresh_token")),
        _ => {
            return token_error(
                400,
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type.",
            )
        }
    }
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
    let audience = format!("http://{host}/login/{tenant}/oauth2/v2.0/token");
    let authenticated = match (form.get("client_secret"), field("client_assertion_type")) {
        (Some(secret), _) if secret == CLIENT_SECRET => Ok(()),
        (Some(_), _) => Err((401, "invalid_client", "AADSTS7000215: Invalid client secret provided.".to_owned())),
        (None, JWT_BEARER) => {
            s.identity.issued.push(field("client_assertion").to_owned());
            check_assertion(&mut s.identity, field("client_assertion"), &audience)
        }
        (None, _) => Err((
            400,
            "invalid_request",
            "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'."
                .to_owned(),
        )),
    };
    if let Err((status, error, description)) = authenticated {
        return token_error(status, error, &description);
    }
    if field("scope") != "https://graph.microsoft.com/.default" {
        return token_error(
            400,
            "invalid_scope",
            "AADSTS70011: The provided value for the input parameter 'scope' is not valid.",
        );
    }
    let lifetime = s.token_lifetime.unwrap_or(3599);
    let roles = s.identity.roles.clone();
    let access_token = s.identity.sign(&json!({"aud": s.identity.audience, "tid": TENANT, "appid": CLIENT_ID,
        "roles": roles, "jti": uuid::Uuid::new_v4(), "iat": now_secs(), "exp": now_secs().saturating_add(lifetime)}));
    s.tokens.insert(access_token.clone(), None);
    s.tokens_issued += 1;
    Json(json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": access_token}))
        .into_response()
}
