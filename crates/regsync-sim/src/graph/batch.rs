//! Graph's JSON batching, `POST /graph/{version}/$batch`: up to 20 requests
//! with unique ids, each served by the same handlers as if sent alone (so
//! each is authenticated, delayed, throttled and logged on its own, and a
//! throttled one comes back as a 429 inside the batch's 200), run side by
//! side as Graph runs requests without `dependsOn`.

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::Path;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde_json::{json, Map, Value};
use tower::ServiceExt as _;

use super::graph_error;
use crate::DropConnection;

/// Graph's limit on requests in one batch.
const MOST: usize = 20;

/// `router` with `$batch` served over its own routes.
pub(crate) fn serve_batches(router: Router) -> Router {
    let inner = router.clone();
    router.route(
        "/graph/{version}/$batch",
        post(move |drop: Extension<DropConnection>, version: Path<String>, headers: HeaderMap, body: Bytes| {
            batch(inner.clone(), drop, version, headers, body)
        }),
    )
}

async fn batch(
    router: Router,
    Extension(drop): Extension<DropConnection>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let requests = match parse(&body) {
        Ok(requests) => requests,
        Err(message) => {
            let (status, body) = graph_error(400, "BadRequest", &message);
            return (status, Json(body)).into_response();
        }
    };
    let mut running = tokio::task::JoinSet::new();
    for (index, request) in requests.into_iter().enumerate() {
        let router = router.clone();
        let outer = headers.clone();
        let version = version.clone();
        let drop = drop.clone();
        running.spawn(async move { (index, answer(router, &version, &outer, drop, request).await) });
    }
    let mut responses = Vec::new();
    while let Some(Ok(done)) = running.join_next().await {
        responses.push(done);
    }
    // Graph answers in any order; this one keeps the batch's.
    responses.sort_by_key(|(index, _)| *index);
    Json(json!({"responses": responses.into_iter().map(|(_, r)| r).collect::<Vec<_>>()})).into_response()
}

struct Inner {
    id: String,
    method: String,
    url: String,
    headers: Map<String, Value>,
    body: Option<Value>,
}

fn parse(body: &[u8]) -> Result<Vec<Inner>, String> {
    let batch: Value = serde_json::from_slice(body).map_err(|e| format!("Invalid batch payload: {e}"))?;
    let items = batch["requests"].as_array().ok_or("Invalid batch payload: no requests array.")?;
    if items.len() > MOST {
        return Err(format!("Number of batch request steps exceeds the maximum of {MOST}."));
    }
    let mut requests: Vec<Inner> = Vec::new();
    for item in items {
        let text = |key: &str| item[key].as_str().map(str::to_owned).ok_or(format!("A batch request has no {key}."));
        let id = text("id")?;
        if requests.iter().any(|r| r.id == id) {
            return Err(format!("Batch request id {id} is not unique."));
        }
        requests.push(Inner {
            id,
            method: text("method")?,
            url: text("url")?,
            headers: item["headers"].as_object().cloned().unwrap_or_default(),
            body: item.get("body").cloned(),
        });
    }
    Ok(requests)
}

/// One request of the batch, through the router; its answer as a batch item.
async fn answer(router: Router, version: &str, outer: &HeaderMap, drop: DropConnection, request: Inner) -> Value {
    let slash = if request.url.starts_with('/') { "" } else { "/" };
    // A request that would drop its connection drops the batch's.
    let mut built = Request::builder()
        .method(request.method.as_str())
        .uri(format!("/graph/{version}{slash}{}", request.url))
        .extension(drop);
    // The batch's token and client-request-id cover its requests.
    for name in ["authorization", "client-request-id"] {
        if let Some(value) = outer.get(name) {
            built = built.header(name, value);
        }
    }
    for (name, value) in &request.headers {
        if let Some(value) = value.as_str() {
            built = built.header(name.as_str(), value);
        }
    }
    let body = request.body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty);
    let response = match built.body(body) {
        Ok(built) => router.oneshot(built).await.unwrap_or_else(|never| match never {}),
        Err(e) => {
            let (status, body) = graph_error(400, "BadRequest", &format!("Invalid batch request: {e}"));
            (status, Json(body)).into_response()
        }
    };
    let status = response.status();
    let mut headers = Map::new();
    for (name, value) in response.headers() {
        if let Ok(value) = value.to_str() {
            headers.insert(name.to_string(), json!(value));
        }
    }
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap_or_default();
    let body = serde_json::from_slice::<Value>(&bytes).ok();
    let mut item = json!({"id": request.id, "status": status.as_u16(), "headers": headers});
    if let Some(body) = body.filter(|_| status != StatusCode::NO_CONTENT) {
        item["body"] = body;
    }
    item
}
