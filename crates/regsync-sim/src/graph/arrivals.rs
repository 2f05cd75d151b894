//! When each request reached the simulated Graph, on the wall clock, by its
//! `client-request-id`: set beside the caller's own books (when it sent a
//! request, when it gave up on it, until when its lease held), it shows
//! whether anything arrived after its sender stopped counting on it.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// One request's arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    /// Its `client-request-id` header.
    pub client_request_id: Option<String>,
    /// Its method.
    pub method: String,
    /// Its path.
    pub path: String,
    /// When its head was read.
    pub at: SystemTime,
}

/// Records every request under `/graph/` as it arrives, before any
/// handler's latency or fault.
pub(crate) async fn record_arrival(
    State(state): State<Arc<Mutex<super::super::State>>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path().starts_with("/graph/") {
        let arrival = Arrival {
            client_request_id: request
                .headers()
                .get("client-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            method: request.method().to_string(),
            path: request.uri().path().to_owned(),
            at: SystemTime::now(),
        };
        state.lock().unwrap_or_else(|p| p.into_inner()).arrivals.push(arrival);
    }
    next.run(request).await
}
