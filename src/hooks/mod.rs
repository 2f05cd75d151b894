//! The listener of its own (`hooks.listen`) for changes pushed to regsync:
//! Graph's change notifications (`graph`), and `POST /hooks/platform`: the
//! platform's webhook names a meeting or registrant, or carries it, signed
//! with a shared secret. Checks run cheapest first, so a flood or a forgery
//! costs nothing else: the client's rate (429), the size (413), the
//! signature (401), its age (408), the body (422), a replay at any replica
//! (409); then the change is stored and every replica woken (202).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use ring::hmac;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};

mod graph;

use crate::domain::RejectedItem;
use crate::store;
use crate::sync::push::{self, PushError, Pushed};
use crate::sync::Ctx;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "regsync-signature";

/// What every delivery is checked against.
struct Hooks {
    ctx: Arc<Ctx>,
    key: hmac::Key,
    clients: governor::DefaultKeyedRateLimiter<IpAddr>,
}

/// The webhook endpoint over `ctx`'s settings (`[hooks]`); serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`, since the rate is
/// kept per client address.
pub fn router(ctx: Arc<Ctx>) -> Router {
    let settings = &ctx.settings.hooks;
    let secret = settings.secret.as_ref().map(|s| s.expose_secret().as_bytes().to_vec()).unwrap_or_default();
    let rate = NonZeroU32::new(settings.client_rate_per_second).unwrap_or(NonZeroU32::MIN);
    let hooks = Hooks {
        key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        clients: governor::RateLimiter::keyed(governor::Quota::per_second(rate)),
        ctx: ctx.clone(),
    };
    // The platform's endpoint only with its secret; Graph's only when
    // subscriptions are made.
    let platform = settings.secret.is_some();
    let graph = ctx.settings.notifications.enabled();
    let mut router = Router::new();
    if graph {
        router = router.merge(graph::router(ctx.clone()));
    }
    if platform {
        router = router.merge(Router::new().route("/hooks/platform", post(deliver)).with_state(Arc::new(hooks)));
    }
    router
}

/// A delivery's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Delivery {
    kind: String,
    id: String,
    #[serde(default)]
    meeting_id: Option<String>,
    #[serde(default)]
    item: Option<Value>,
}

async fn deliver(
    State(hooks): State<Arc<Hooks>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let settings = &hooks.ctx.settings.hooks;
    if hooks.clients.check_key(&peer.ip()).is_err() {
        return answer(StatusCode::TOO_MANY_REQUESTS, "too many deliveries from this address; try again in a second");
    }
    if hooks.clients.len() > 10_000 {
        hooks.clients.retain_recent();
    }
    let too_large = || answer(StatusCode::PAYLOAD_TOO_LARGE, "the body is larger than hooks.max_body_bytes");
    let declared = headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > settings.max_body_bytes as u64) {
        return too_large();
    }
    let Ok(body) = axum::body::to_bytes(body, settings.max_body_bytes).await else { return too_large() };
    let signature = match Signature::parse(headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok())) {
        Some(signature) if signature.verifies(&hooks.key, &body) => signature,
        _ => return answer(StatusCode::UNAUTHORIZED, "missing or wrong Regsync-Signature"),
    };
    let age = (Utc::now() - signature.signed_at).num_seconds().unsigned_abs();
    if age > settings.tolerance_secs {
        return answer(StatusCode::REQUEST_TIMEOUT, "the signed timestamp is older than hooks.tolerance_secs");
    }
    let ctx = &hooks.ctx;
    let pushed = match read(&body) {
        Ok(pushed) => pushed,
        Err(why) => {
            let rejected = RejectedItem { external_id: None, reason: format!("webhook: {why}"), raw: lossy(&body) };
            if let Err(e) = store::runs::insert_rejected(&ctx.pool, None, &[rejected]).await {
                tracing::warn!(error = %e, "cannot record a rejected webhook delivery");
            }
            return answer(StatusCode::UNPROCESSABLE_ENTITY, &why);
        }
    };
    match store::push::record_delivery(&ctx.pool, &signature.hex, signature.signed_at).await {
        Ok(true) => {}
        Ok(false) => return answer(StatusCode::CONFLICT, "this delivery was received before (a replay)"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot record a webhook delivery; the platform may deliver it again");
            return unavailable();
        }
    }
    match push::ingest(ctx, pushed).await {
        Ok(changed) => (StatusCode::ACCEPTED, Json(json!({"accepted": true, "changed": changed}))).into_response(),
        Err(PushError::Invalid(why)) => answer(StatusCode::UNPROCESSABLE_ENTITY, &why),
        Err(e) => {
            // Not carried out: the platform's retry of it must not be a replay.
            if let Err(forget) = store::push::forget_delivery(&ctx.pool, &signature.hex).await {
                tracing::warn!(error = %forget, "cannot forget a delivery that failed");
            }
            // The cause is logged, not told: the caller is outside.
            tracing::warn!(error = %e, "a pushed change could not be stored; the platform may deliver it again");
            match e {
                PushError::Platform(_) => answer(
                    StatusCode::BAD_GATEWAY,
                    "the item could not be read from the platform; deliver it again later",
                ),
                _ => unavailable(),
            }
        }
    }
}

/// The body as a change, or why it is not one.
fn read(body: &[u8]) -> Result<Pushed, String> {
    let delivery: Delivery = serde_json::from_slice(body).map_err(|e| format!("the body is not a delivery: {e}"))?;
    let id = delivery.id.trim().to_owned();
    if id.is_empty() {
        return Err("\"id\" is empty".into());
    }
    if delivery.item.as_ref().is_some_and(|item| !item.is_object()) {
        return Err("\"item\" is not an object".into());
    }
    match (delivery.kind.as_str(), delivery.meeting_id.map(|m| m.trim().to_owned())) {
        ("meeting", _) => Ok(Pushed::Meeting { id, item: delivery.item }),
        ("registrant", Some(meeting_id)) if !meeting_id.is_empty() => {
            Ok(Pushed::Registrant { id, meeting_id, item: delivery.item })
        }
        ("registrant", _) => Err("a registrant's delivery needs \"meeting_id\"".into()),
        (other, _) => Err(format!("\"kind\" is {other:?}, not \"meeting\" or \"registrant\"")),
    }
}

/// `Regsync-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
struct Signature {
    signed_at: DateTime<Utc>,
    t: String,
    hex: String,
    tag: Vec<u8>,
}

impl Signature {
    fn parse(header: Option<&str>) -> Option<Self> {
        let (mut t, mut v1) = (None, None);
        for part in header?.split(',') {
            match part.trim().split_once('=') {
                Some(("t", value)) => t = Some(value.trim()),
                Some(("v1", value)) => v1 = Some(value.trim()),
                _ => {}
            }
        }
        let (t, hex) = (t?, v1?.to_ascii_lowercase());
        let signed_at = DateTime::from_timestamp(t.parse().ok()?, 0)?;
        Some(Self { signed_at, t: t.to_owned(), tag: hex::decode(&hex).ok()?, hex })
    }

    /// Compared in constant time.
    fn verifies(&self, key: &hmac::Key, body: &[u8]) -> bool {
        let signed = [self.t.as_bytes(), b".", body].concat();
        hmac::verify(key, &signed, &self.tag).is_ok()
    }
}

/// The signature header for `body` at `t` (unix seconds): what a platform
/// sends, and what the simulator and tests sign with.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, &[t.to_string().as_bytes(), b".", body].concat());
    format!("t={t},v1={}", hex::encode(tag.as_ref()))
}

fn answer(status: StatusCode, why: &str) -> Response {
    (status, Json(json!({"error": why}))).into_response()
}

fn unavailable() -> Response {
    let mut response =
        answer(StatusCode::SERVICE_UNAVAILABLE, "regsync cannot store the change now; deliver it again later");
    response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
    response
}

fn lossy(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(2_048)]).into_owned()
}
