//! The simulated identity platform (`POST /login/{tenant}/oauth2/v2.0/token`)
//! and Graph registration endpoints
//! (`/graph/beta/users/{userId}/onlineMeetings/{meetingId}/registration`),
//! with the rules regsync relies on: bearer tokens checked, `@odata.type`
//! required, 201 with an id, 404 for unknown meetings or no registration,
//! 409 for a second registration, 403 without an access policy, `request-id`
//! on every answer.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{DropConnection, Fault, State, Stats, RETRY_AFTER_TOLERANCE};

mod arrivals;
mod batch;
mod knobs;

pub(crate) use arrivals::record_arrival;
pub use arrivals::Arrival;
pub(crate) use batch::serve_batches;

const EXTERNAL: &str = "#microsoft.graph.externalMeetingRegistration";

/// Graph's `x-ms-ags-diagnostic` header: which data centre served the call.
const AGS_DIAGNOSTIC: &str =
    r#"{"ServerInfo":{"DataCenter":"Sim","Slice":"E","Ring":"1","ScaleUnit":"000","RoleInstance":"sim-1"}}"#;

/// A registration the simulated Graph holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registration {
    /// Its id.
    pub id: String,
    /// Its `@odata.type`.
    pub odata_type: String,
    /// Its audience.
    pub allowed_registrant: String,
}

impl Registration {
    pub(crate) fn is_external(&self) -> bool {
        self.odata_type == EXTERNAL
    }
}

/// One Graph registration request, as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphRequest {
    /// GET, POST or DELETE.
    pub method: String,
    /// Decoded `userId` path segment.
    pub organizer: String,
    /// Decoded `meetingId` path segment.
    pub meeting: String,
    /// The status answered (0: the connection was dropped).
    pub status: u16,
    /// Whether the request changed Graph's state.
    pub acted: bool,
    /// Whether a registration existed when it arrived.
    pub registration_existed: bool,
    /// Whether it arrived inside an announced Retry-After window.
    pub inside_retry_after: bool,
    /// The `client-request-id` header.
    pub client_request_id: Option<String>,
    /// When it arrived.
    pub at: Instant,
}

type Shared = Arc<Mutex<State>>;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/graph/beta/users/{organizer}/onlineMeetings/{meeting}/registration",
            get(registration).post(registration).delete(registration),
        )
        .route(
            "/graph/beta/me/onlineMeetings/{meeting}/registration",
            get(my_registration).post(my_registration).delete(my_registration),
        )
        .route("/_sim/stats", get(stats))
        .route("/_sim/rates", post(set_rates))
}

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

async fn stats(AxumState(state): AxumState<Shared>) -> Json<Stats> {
    Json(lock(&state).stats())
}

/// `POST /_sim/rates` with [`super::FaultRates`] as JSON (durations in ms).
async fn set_rates(AxumState(state): AxumState<Shared>, Json(rates): Json<super::FaultRates>) -> StatusCode {
    lock(&state).rates = rates;
    StatusCode::NO_CONTENT
}

pub(crate) fn graph_error(status: u16, code: &str, message: &str) -> (StatusCode, Value) {
    let body = json!({"error": {"code": code, "message": message, "innerError": {
        "date": "2026-11-29T10:00:00", "request-id": uuid::Uuid::new_v4().to_string()}}});
    (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), body)
}

/// A 401, as Graph answers a request without a token it issued; a 403
/// when a signed-in user's token asks for another user's meetings.
pub(crate) fn unauthenticated(s: &State, headers: &HeaderMap, organizer: Option<&str>) -> Option<(StatusCode, Value)> {
    match super::bearer(headers).and_then(|t| s.tokens.get(t)) {
        None => Some(graph_error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")),
        Some(Some(oid)) if s.refused_users.contains(oid) => {
            Some(graph_error(401, "InvalidAuthenticationToken", "Access token validation failure."))
        }
        Some(Some(oid)) if organizer.is_some_and(|o| o != oid) => {
            Some(graph_error(403, "Forbidden", "A signed-in user may act only on their own online meetings."))
        }
        Some(_) => None,
    }
}

/// `/me/onlineMeetings/{id}/registration`: the signed-in user's meeting.
/// An app token has no "me" (400, as Graph answers).
async fn my_registration(
    AxumState(state): AxumState<Shared>,
    drop_connection: Extension<DropConnection>,
    method: Method,
    Path(meeting): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = {
        let s = lock(&state);
        super::bearer(&headers)
            .and_then(|t| s.tokens.get(t).cloned())
            .filter(|oid| !oid.as_ref().is_some_and(|oid| s.refused_users.contains(oid)))
    };
    match user {
        None => {
            let (status, body) = graph_error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.");
            (status, Json(body)).into_response()
        }
        Some(None) => {
            let (status, body) =
                graph_error(400, "BadRequest", "/me request is only valid with delegated authentication flow.");
            (status, Json(body)).into_response()
        }
        Some(Some(oid)) => {
            registration(AxumState(state), drop_connection, method, Path((oid, meeting)), headers, body).await
        }
    }
}

/// What happens after the state change: answer, drop or answer late.
enum After {
    Answer,
    Drop,
    Late(std::time::Duration),
    ActLate(std::time::Duration),
}

#[allow(clippy::too_many_arguments)]
async fn registration(
    AxumState(state): AxumState<Shared>,
    Extension(drop_connection): Extension<DropConnection>,
    method: Method,
    Path((organizer, meeting)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let latency = lock(&state).rates.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let client_request_id = headers.get("client-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let organizer_key = (organizer.clone(), meeting.clone());
    let request_body = body.clone();
    let (status, body, after, retry_after) = {
        let mut s = lock(&state);
        let key = (organizer.clone(), meeting.clone());
        let existed = s.registrations.contains_key(&key);
        let window = s.throttle_window.filter(|(_, until)| arrived < *until);
        let inside_retry_after = window.is_some_and(|(from, _)| arrived > from + RETRY_AFTER_TOLERANCE);
        let mut acted = false;
        let (status, body, after, retry_after) = handle(&mut s, &method, &key, &headers, &body, window, &mut acted);
        if window.is_none() {
            if let Some(secs) = retry_after.as_deref().and_then(|r| r.parse::<f64>().ok()) {
                let now = Instant::now();
                s.throttle_window = Some((now, now + std::time::Duration::from_secs_f64(secs)));
            }
        }
        s.log.push(GraphRequest {
            method: method.to_string(),
            organizer,
            meeting,
            status: if matches!(after, After::Drop) { 0 } else { status.as_u16() },
            acted,
            registration_existed: existed,
            inside_retry_after,
            client_request_id: client_request_id.clone(),
            at: arrived,
        });
        (status, body, after, retry_after)
    };
    let (status, body) = match after {
        After::ActLate(delay) => {
            tokio::time::sleep(delay).await;
            let mut s = lock(&state);
            let key = (organizer_key.0, organizer_key.1);
            let mut acted = false;
            let answer = act(&mut s, &method, &key, &request_body, &mut acted);
            if let Some(entry) = s.log.iter_mut().rev().find(|r| r.client_request_id == client_request_id) {
                entry.acted = acted;
                entry.status = answer.0.as_u16();
            }
            answer
        }
        _ => (status, body),
    };
    match after {
        After::Answer | After::ActLate(_) => {}
        After::Late(delay) => tokio::time::sleep(delay).await,
        After::Drop => {
            drop_connection.0.notify_one();
            std::future::pending::<()>().await;
        }
    }
    let mut response =
        if status == StatusCode::NO_CONTENT { status.into_response() } else { (status, Json(body)).into_response() };
    let h = response.headers_mut();
    h.insert("request-id", uuid::Uuid::new_v4().to_string().parse().expect("a uuid is a valid header value"));
    h.insert("x-ms-ags-diagnostic", AGS_DIAGNOSTIC.parse().expect("a valid header value"));
    h.insert("date", super::graph_date(&lock(&state)));
    if let Some(id) = client_request_id.and_then(|id| id.parse().ok()) {
        h.insert("client-request-id", id);
    }
    if let Some(retry_after) = retry_after.and_then(|r| r.parse().ok()) {
        h.insert("retry-after", retry_after);
    }
    response
}

#[allow(clippy::too_many_arguments)]
fn handle(
    s: &mut State,
    method: &Method,
    key: &(String, String),
    headers: &HeaderMap,
    body: &[u8],
    window: Option<(Instant, Instant)>,
    acted: &mut bool,
) -> (StatusCode, Value, After, Option<String>) {
    if let Some((st, b)) = unauthenticated(s, headers, Some(&key.0)) {
        return (st, b, After::Answer, None);
    }
    if let Some((status, code, message)) = s.retired.map(super::Retirement::answer) {
        let (st, b) = graph_error(status, code, message);
        return (st, b, After::Answer, None);
    }
    if let Some((_, until)) = window {
        let left = until.saturating_duration_since(Instant::now()).as_secs_f64().max(0.1);
        let (st, b) = graph_error(429, "TooManyRequests", "Please retry again later.");
        return (st, b, After::Answer, Some(format!("{left:.1}")));
    }
    if let Some((_, retry_after)) = s.storm.clone().filter(|(until, _)| Instant::now() < *until) {
        let (st, b) = graph_error(429, "TooManyRequests", "Please retry again later.");
        return (st, b, After::Answer, Some(retry_after));
    }
    let name = method.as_str();
    let queued =
        s.faults.iter().position(|(m, _)| m.is_none_or(|m| m == name)).and_then(|i| s.faults.remove(i)).map(|(_, f)| f);
    let rates = s.rates;
    let fault = queued.or_else(|| {
        let roll: f64 = rand::random();
        if roll < rates.throttle {
            Some(Fault::Status { status: 429, retry_after: Some(format!("{}", rates.retry_after_secs)) })
        } else if roll < rates.throttle + rates.error {
            Some(Fault::Status { status: if rand::random::<bool>() { 500 } else { 503 }, retry_after: None })
        } else if roll < rates.throttle + rates.error + rates.lost_response {
            Some(Fault::LostResponse)
        } else if roll < rates.throttle + rates.error + rates.lost_response + rates.timeout {
            Some(Fault::SlowResponse(rates.timeout_delay))
        } else {
            None
        }
    });
    let after = match fault {
        Some(Fault::Status { status, retry_after }) => {
            let (st, b) = match status {
                429 => graph_error(429, "TooManyRequests", "Please retry again later."),
                503 => graph_error(503, "serviceNotAvailable", "The service is temporarily unavailable."),
                other => graph_error(other, "generalException", "An internal error occurred."),
            };
            return (st, b, After::Answer, retry_after);
        }
        Some(Fault::ActThenStatus(status)) => {
            let _ = act(s, method, key, body, acted);
            let (st, b) = graph_error(status, "UnknownError", "Gateway timeout.");
            return (st, b, After::Answer, None);
        }
        Some(Fault::LostResponse) => After::Drop,
        Some(Fault::SlowResponse(d)) => After::Late(d),
        Some(Fault::ActLate(d)) => return (StatusCode::ACCEPTED, Value::Null, After::ActLate(d), None),
        None => After::Answer,
    };
    let (st, b) = act(s, method, key, body, acted);
    (st, b, after, None)
}

/// The documented behaviour of create, get and delete.
fn act(s: &mut State, method: &Method, key: &(String, String), body: &[u8], acted: &mut bool) -> (StatusCode, Value) {
    if s.departed_organizers.contains(&key.0) {
        return graph_error(404, "UnknownError", "");
    }
    if s.forbidden_organizers.contains(&key.0) {
        return graph_error(403, "Forbidden", "No application access policy found for this app.");
    }
    if !s.online_meetings.contains(key) {
        return graph_error(404, "itemNotFound", "The online meeting was not found.");
    }
    let view = |r: &Registration| {
        let mut v = json!({"id": r.id, "allowedRegistrant": r.allowed_registrant});
        if !r.odata_type.is_empty() {
            v["@odata.type"] = json!(r.odata_type);
        }
        v
    };
    match *method {
        Method::GET => match s.registrations.get(key) {
            Some(r) => (StatusCode::OK, view(r)),
            None => graph_error(404, "itemNotFound", "The registration was not found."),
        },
        Method::DELETE => match s.registrations.remove(key) {
            Some(_) => {
                // Its registrants go with it.
                s.people.registrants.remove(key);
                *acted = true;
                (StatusCode::NO_CONTENT, Value::Null)
            }
            None => graph_error(404, "itemNotFound", "The registration was not found."),
        },
        _ => {
            let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            if parsed["@odata.type"] != EXTERNAL {
                return graph_error(400, "BadRequest", "Invalid request. Provide microsoft.graph.meetingRegistration or microsoft.graph.externalMeetingRegistration in request body.");
            }
            let allowed = parsed["allowedRegistrant"].as_str().unwrap_or_default().to_owned();
            if allowed != "everyone" && allowed != "organization" {
                return graph_error(400, "BadRequest", "Invalid value for allowedRegistrant.");
            }
            if s.registrations.contains_key(key) && !s.allow_duplicates {
                return graph_error(409, "Conflict", "Conflict");
            }
            let id = s.new_id();
            let registration = Registration { id, odata_type: EXTERNAL.into(), allowed_registrant: allowed };
            let mut answer = view(&registration);
            answer["@odata.context"] =
                json!("https://graph.microsoft.com/beta/$metadata#users('x')/onlineMeetings('y')/registration/$entity");
            s.registrations.insert(key.clone(), registration);
            *acted = true;
            (StatusCode::CREATED, answer)
        }
    }
}
