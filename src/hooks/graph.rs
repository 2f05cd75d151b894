//! `POST /hooks/graph`: Graph's change notifications on events'
//! registrations (`notifications.public_url` leads here through the
//! operator's proxy). A validation request (`?validationToken=`) is echoed
//! as text/plain; a delivery whose every item carries the configured
//! `clientState` is accepted (202) at once and acted on off the request —
//! Graph wants an answer within seconds —, any other is refused (401).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use ring::hmac;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::sync::notifications::{self, Notification};
use crate::sync::Ctx;

#[derive(Deserialize)]
struct Validation {
    #[serde(rename = "validationToken")]
    token: Option<String>,
}

#[derive(Deserialize)]
struct Delivery {
    value: Vec<Notification>,
}

/// The most a validation token may be: Graph's are short, and an echo is
/// no place for a large body.
const MAX_TOKEN_BYTES: usize = 1024;

/// What a delivery is checked against: the `clientState`'s tag under a key
/// of this process, so the comparison takes the same time whatever the
/// guess.
struct Graph {
    ctx: Arc<Ctx>,
    key: hmac::Key,
    tag: Option<hmac::Tag>,
}

/// `POST /hooks/graph` over `ctx`'s settings.
pub(super) fn router(ctx: Arc<Ctx>) -> Router {
    let key = hmac::Key::new(hmac::HMAC_SHA256, uuid::Uuid::new_v4().as_bytes());
    let secret = ctx.settings.notifications.client_state.as_ref().map(|s| s.expose_secret().to_owned());
    let tag = secret.filter(|s| !s.is_empty()).map(|s| hmac::sign(&key, s.as_bytes()));
    Router::new().route("/hooks/graph", post(receive)).with_state(Arc::new(Graph { ctx, key, tag }))
}

async fn receive(State(graph): State<Arc<Graph>>, Query(validation): Query<Validation>, body: Bytes) -> Response {
    if let Some(token) = validation.token {
        if token.len() > MAX_TOKEN_BYTES {
            return StatusCode::BAD_REQUEST.into_response();
        }
        return (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], token).into_response();
    }
    let ctx = graph.ctx.clone();
    if body.len() > ctx.settings.hooks.max_body_bytes.max(1 << 20) {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    let Ok(delivery) = serde_json::from_slice::<Delivery>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some(tag) = graph.tag.as_ref() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let ours = |n: &Notification| {
        n.client_state.as_deref().is_some_and(|c| hmac::verify(&graph.key, c.as_bytes(), tag.as_ref()).is_ok())
    };
    if delivery.value.is_empty() || !delivery.value.iter().all(ours) {
        tracing::warn!("a notification without the configured clientState was refused");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    tokio::spawn(async move {
        if let Err(e) = notifications::receive(&ctx, delivery.value).await {
            tracing::warn!(error = %e, "cannot act on a Graph notification; the next read-back catches up");
        }
    });
    StatusCode::ACCEPTED.into_response()
}
