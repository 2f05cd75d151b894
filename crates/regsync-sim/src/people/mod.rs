//! People: the platform's registrants and its write-back endpoint, and
//! Graph's two ways to enrol them, as Microsoft documents them.
//!
//! - Platform: `GET /platform/meetings/{id}/registrants` and the flat
//!   `GET /platform/registrants` (`limit`, `cursor` as for meetings);
//!   write-backs to `/platform/meetings/{id}/registrants/{rid}/join-link`
//!   and `…/status` (any method) are recorded.
//! - Meeting registration (beta): `POST …/registration/registrants` needs
//!   `@odata.type` `#microsoft.graph.externalMeetingRegistrant` and `id`
//!   (plus `tenantId`/`userId` for an `organization` meeting) and answers
//!   **200** with a personal `joinWebUrl`, which the list (ten per page,
//!   `@odata.nextLink`) shows as `null`; `DELETE …/registrants/{id}`
//!   answers 204. There is no `GET` of one registrant (the resource has
//!   List, Create and Delete): it answers 405. Deleting the meeting's
//!   registration deletes its registrants. A second
//!   create with the same `id` is answered 409 (Microsoft does not say;
//!   this is the simulator's assumption).
//! - Webinars (v1.0): `GET /solutions/virtualEvents/webinars/{id}` (with
//!   its `status`), `POST …/registrations` answering **204 without a body**
//!   (application permission), the list with `@odata.nextLink` (ten per
//!   page, no `$filter`), `POST …/registrations/{id}/cancel` answering 204.
//!   A registration for a webinar that is not published is accepted and
//!   never arrives. More than 15 writes in 30 seconds are answered 429 with
//!   `Retry-After`. The list may lag behind creates (`Sim::lag_webinar_list`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::graph::{graph_error, unauthenticated};
use super::{DropConnection, Fault, State};

mod attendance;
mod beta;
mod knobs;
mod listing;
mod questions;
mod subscriptions;
mod webinar;

use attendance::*;
use beta::*;
use listing::*;
use questions::*;
use webinar::*;

pub use attendance::{SimAttendee, SimReport};
pub use questions::{RegistrationConfig, SimQuestion};
pub use subscriptions::{SentNotification, SimSubscription};
pub use webinar::{SimWebinar, WebinarRegistration};

type Shared = Arc<Mutex<State>>;

const REGISTRANT_TYPE: &str = "#microsoft.graph.externalMeetingRegistrant";
/// Microsoft's published limit on virtual-event writes.
const WEBINAR_WRITES: usize = 15;
const WEBINAR_WINDOW: Duration = Duration::from_secs(30);
/// Items per page of Graph's lists.
const GRAPH_PAGE: usize = 10;

/// A person the platform registered for a meeting.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimRegistrant {
    /// Platform id.
    pub id: String,
    /// The platform meeting's id.
    pub meeting_id: String,
    /// E-mail.
    pub email: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// `registered` or `cancelled`.
    pub status: String,
    /// Their Entra tenant, for a person of the organizer's organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Their Entra object id, with `tenant_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// RFC 3339: when the platform last changed them.
    #[serde(default = "first_listed")]
    pub updated_at: String,
    /// The rest of the item: answers to the platform's registration form.
    #[serde(flatten, default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub form: serde_json::Map<String, Value>,
}

fn first_listed() -> String {
    "2026-11-28T10:00:00Z".into()
}

impl SimRegistrant {
    /// The same person as a member of the organizer's organization (who may
    /// register for an `organization` meeting).
    pub fn in_organization(self) -> Self {
        let user_id = format!("user-{}", self.id);
        Self { tenant_id: Some(crate::TENANT.to_owned()), user_id: Some(user_id), ..self }
    }

    /// The `n`-th registrant of `meeting_id`.
    pub fn new(meeting_id: &str, n: usize) -> Self {
        Self {
            id: format!("{meeting_id}-p{n:03}"),
            meeting_id: meeting_id.to_owned(),
            email: format!("person{n}.{meeting_id}@fabrikam.example"),
            first_name: format!("Person{n}"),
            last_name: "Example".into(),
            status: "registered".into(),
            tenant_id: None,
            user_id: None,
            updated_at: first_listed(),
            form: serde_json::Map::new(),
        }
    }

    /// The same person with `field` of their registration form answered.
    pub fn answering(mut self, field: &str, value: Value) -> Self {
        self.form.insert(field.to_owned(), value);
        self
    }
}

/// One write-back the platform received.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteBack {
    /// Method.
    pub method: String,
    /// Meeting id in the path.
    pub meeting_id: String,
    /// Registrant id in the path.
    pub registrant_id: String,
    /// The JSON body.
    pub body: Value,
    /// The status answered.
    pub status: u16,
}

/// A registrant Graph holds on a meeting's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphRegistrant {
    /// The id the creator gave.
    pub id: String,
    /// The join link it got.
    pub join_web_url: String,
}

/// One request about people at Graph, as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeopleRequest {
    /// `POST registrant`, `GET registrants`, `DELETE registrant`, `POST registration`,
    /// `GET registrations`, `POST cancel`, `GET webinar`.
    pub call: String,
    /// The status answered (0: dropped).
    pub status: u16,
    /// Whether it changed Graph's state.
    pub acted: bool,
    /// When it arrived.
    pub at: Instant,
}

/// The people side of the simulator's state.
#[derive(Default)]
pub(crate) struct People {
    pub(crate) platform: Vec<SimRegistrant>,
    pub(crate) write_backs: Vec<WriteBack>,
    pub(crate) write_back_faults: VecDeque<u16>,
    pub(crate) registrants: HashMap<(String, String), BTreeMap<String, GraphRegistrant>>,
    pub(crate) webinars: HashMap<String, SimWebinar>,
    /// Attendance reports by event or online meeting id, oldest first.
    pub(crate) attendance: HashMap<String, Vec<SimReport>>,
    /// Change-notification subscriptions, and what was sent.
    pub(crate) subscriptions: Vec<SimSubscription>,
    pub(crate) notifications: Vec<SentNotification>,
    pub(crate) lose_notifications: bool,
    pub(crate) log: Vec<PeopleRequest>,
    /// How long a new webinar registration stays out of the list.
    pub(crate) list_lag: Duration,
    /// The platform's registrant pages lead back to themselves.
    pub(crate) loop_pages: bool,
    /// A get of one registration by alternate key is refused (403), as for
    /// an app without the permission.
    pub(crate) refuse_get_by_key: bool,
    /// Registrant listing requests the platform answered.
    pub(crate) listing_requests: u64,
    /// Webinars whose status reads are held until the test lets them go.
    pub(crate) held_status: HashMap<String, tokio::sync::watch::Receiver<bool>>,
    /// Status reads that arrived and are held.
    pub(crate) held_arrivals: u64,
    next: u64,
}

impl People {
    fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

pub(super) fn routes() -> Router<Shared> {
    let registrants = "/graph/beta/users/{organizer}/onlineMeetings/{meeting}/registration/registrants";
    let mine = "/graph/beta/me/onlineMeetings/{meeting}/registration/registrants";
    let webinar = "/graph/v1.0/solutions/virtualEvents/{collection}/{webinar}";
    Router::new()
        .route("/platform/meetings/{meeting}/registrants", get(list_meeting))
        .route("/platform/registrants", get(list_all))
        .route("/platform/meetings/{meeting}/registrants/{registrant}", get(get_registrant))
        .route("/platform/meetings/{meeting}/registrants/{registrant}/join-link", any(write_back))
        .route("/platform/meetings/{meeting}/registrants/{registrant}/status", any(write_back))
        .route("/platform/meetings/{meeting}/registrants/{registrant}/attendance", any(write_back))
        .route(registrants, get(list_registrants).post(enrol))
        .route(&format!("{registrants}/{{registrant}}"), get(no_get_of_one).delete(remove_registrant))
        .route(mine, get(list_mine).post(enrol_mine))
        .route(&format!("{mine}/{{registrant}}"), get(no_get_of_one).delete(remove_mine))
        .route(webinar, get(get_webinar))
        .route(&format!("{webinar}/registrations"), get(list_registrations).post(register))
        .route(&format!("{webinar}/{{key}}"), get(get_registration_by_key))
        .route(&format!("{webinar}/registrationConfiguration"), get(get_configuration))
        .route(&format!("{webinar}/registrationConfiguration/questions"), get(list_questions))
        .route(&format!("{webinar}/sessions"), get(list_sessions))
        .route(&format!("{webinar}/sessions/{{session}}/attendanceReports"), get(list_event_reports))
        .route(
            &format!("{webinar}/sessions/{{session}}/attendanceReports/{{report}}/attendanceRecords"),
            get(list_event_records),
        )
        .route("/graph/v1.0/subscriptions", get(subscriptions::list).post(subscriptions::create))
        .route(
            "/graph/v1.0/subscriptions/{id}",
            axum::routing::patch(subscriptions::renew).delete(subscriptions::remove),
        )
        .route("/graph/beta/users/{organizer}/onlineMeetings/{meeting}/attendanceReports", get(list_meeting_reports))
        .route(
            "/graph/beta/users/{organizer}/onlineMeetings/{meeting}/attendanceReports/{report}/attendanceRecords",
            get(list_meeting_records),
        )
        .route(&format!("{webinar}/registrations/{{registration}}/cancel"), post(cancel))
}

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

async fn write_back(
    AxumState(state): AxumState<Shared>,
    method: Method,
    Path((meeting_id, registrant_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = lock(&state);
    if let Some(refused) = s.platform.refused(&headers) {
        return refused;
    }
    let status = s.people.write_back_faults.pop_front().unwrap_or(200);
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.people.write_backs.push(WriteBack { method: method.to_string(), meeting_id, registrant_id, body, status });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if status.is_success() {
        return status.into_response();
    }
    (status, Json(json!({"error": "the platform refused the join link", "status": status.as_u16()}))).into_response()
}

/// What a request meets before it acts: the token, then a queued fault
/// for its method.
fn before(
    s: &mut State,
    headers: &HeaderMap,
    organizer: Option<&str>,
    method: &str,
) -> Result<Option<Fault>, Box<Response>> {
    if let Some((status, body)) = unauthenticated(s, headers, organizer) {
        return Err(Box::new((status, Json(body)).into_response()));
    }
    if let Some(retired) = s.retired {
        let (status, code, message) = retired.answer();
        return Err(Box::new(error(status, code, message)));
    }
    if method == "-" {
        // Reads that never fail by injection.
        return Ok(None);
    }
    let queued = s.faults.iter().position(|(m, _)| m.is_none_or(|m| m == method)).and_then(|i| s.faults.remove(i));
    Ok(queued.map(|(_, f)| f).or_else(|| random_fault(s)))
}

/// A fault drawn from the configured rates, as for registrations.
fn random_fault(s: &State) -> Option<Fault> {
    let rates = s.rates;
    let roll: f64 = rand::random();
    if roll < rates.throttle {
        Some(Fault::Status { status: 429, retry_after: Some(format!("{}", rates.retry_after_secs)) })
    } else if roll < rates.throttle + rates.error {
        Some(Fault::Status { status: 503, retry_after: None })
    } else if roll < rates.throttle + rates.error + rates.lost_response {
        Some(Fault::LostResponse)
    } else {
        None
    }
}

/// Answers `answer` after `fault`: a status instead, or acts and drops the
/// connection.
async fn after(fault: Option<Fault>, answer: Response, drop_connection: &DropConnection) -> Response {
    match fault {
        Some(Fault::LostResponse) | Some(Fault::SlowResponse(_)) => {
            drop_connection.0.notify_one();
            std::future::pending::<()>().await;
            unreachable!("the connection is dropped")
        }
        Some(Fault::ActThenStatus(status)) => {
            let (status, body) = graph_error(status, "UnknownError", "Gateway timeout.");
            (status, Json(body)).into_response()
        }
        _ => answer,
    }
}

fn log(s: &mut State, call: &str, status: StatusCode, acted: bool) {
    log_status(s, call, status.as_u16(), acted);
}

fn log_status(s: &mut State, call: &str, status: u16, acted: bool) {
    s.people.log.push(PeopleRequest { call: call.into(), status, acted, at: Instant::now() });
}

/// The status logged for `answer` after `fault` (0: the answer is lost).
fn logged_status(fault: &Option<Fault>, answer: &Response) -> u16 {
    match fault {
        Some(Fault::LostResponse | Fault::SlowResponse(_)) => 0,
        _ => answer.status().as_u16(),
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    let (status, body) = graph_error(status, code, message);
    (status, Json(body)).into_response()
}

/// A status fault answers without acting.
fn status_fault(fault: &Option<Fault>) -> Option<Response> {
    match fault {
        Some(Fault::Status { status, retry_after }) => {
            let mut response = error(*status, "generalException", "An internal error occurred.");
            if let Some(value) = retry_after.as_deref().and_then(|v| v.parse().ok()) {
                response.headers_mut().insert("retry-after", value);
            }
            Some(response)
        }
        _ => None,
    }
}
