//! The platform's OAuth 2.0 client-credentials endpoint, and tokens that
//! expire as a page is asked for.

use super::*;

/// The platform's OAuth 2.0 client-credentials endpoint and the tokens it
/// issued, when the listing asks for one.
#[derive(Default)]
pub(crate) struct PlatformOAuth {
    /// `expires_in` of issued tokens.
    pub(crate) lifetime_secs: u64,
    /// Sent as `expires_in` instead, exactly as given (any JSON number).
    pub(crate) expires_in_as: Option<Value>,
    /// Tokens and when each expires.
    pub(crate) tokens: HashMap<String, tokio::time::Instant>,
    /// Tokens issued so far.
    pub(crate) issued: u64,
}

/// How long a token "that never expires" lives here.
const FAR_FUTURE: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

/// `POST /platform/oauth2/token`: RFC 6749 client credentials, the client
/// authenticated with HTTP Basic.
pub(super) async fn token(
    AxumState(state): AxumState<Arc<Mutex<State>>>,
    headers: axum::http::HeaderMap,
    axum::extract::Form(form): axum::extract::Form<HashMap<String, String>>,
) -> Response {
    use base64::Engine as _;
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let Some(oauth) = s.platform.oauth.as_mut() else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "not_found"}))).into_response();
    };
    let expected = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        crate::PLATFORM_CLIENT_ID,
        crate::PLATFORM_CLIENT_SECRET
    ));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Basic {expected}")) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client", "error_description": "Client authentication failed"})),
        )
            .into_response();
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "unsupported_grant_type"}))).into_response();
    }
    let access_token = format!("plat-{}", uuid::Uuid::new_v4().simple());
    let now = tokio::time::Instant::now();
    let expiry = now.checked_add(std::time::Duration::from_secs(oauth.lifetime_secs)).unwrap_or(now + FAR_FUTURE);
    oauth.tokens.insert(access_token.clone(), expiry);
    oauth.issued += 1;
    let expires_in = oauth.expires_in_as.clone().unwrap_or(json!(oauth.lifetime_secs));
    Json(json!({"access_token": access_token, "token_type": "Bearer", "expires_in": expires_in})).into_response()
}

/// A 401 for an expired token, when `fault` says so; every token expires.
pub(super) fn expire_tokens(listing: &mut Listing, page_index: usize) -> Option<Response> {
    if listing.page_faults.get(&page_index) != Some(&PageFault::TokenExpired) {
        return None;
    }
    listing.page_faults.remove(&page_index);
    if let Some(oauth) = listing.oauth.as_mut() {
        oauth.tokens.clear();
    }
    let body = Json(json!({"error": "invalid_token", "error_description": "The access token expired"}));
    Some((StatusCode::UNAUTHORIZED, body).into_response())
}
