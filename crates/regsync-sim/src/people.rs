//! People: the platform's registrants and its write-back endpoint, and
//! Graph's two ways to enrol them, as Microsoft documents them.
//!
//! - Platform: `GET /platform/meetings/{id}/registrants` and the flat
//!   `GET /platform/registrants` (`limit`, `cursor` as for meetings);
//!   write-backs to `/platform/meetings/{id}/registrants/{rid}/join-link`
//!   (any method) are recorded.
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
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::graph::{graph_error, unauthenticated};
use super::{DropConnection, Fault, State};

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
}

impl SimRegistrant {
    /// The `n`-th registrant of `meeting_id`.
    pub fn new(meeting_id: &str, n: usize) -> Self {
        Self {
            id: format!("{meeting_id}-p{n:03}"),
            meeting_id: meeting_id.to_owned(),
            email: format!("person{n}.{meeting_id}@fabrikam.example"),
            first_name: format!("Person{n}"),
            last_name: "Example".into(),
            status: "registered".into(),
        }
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

/// A webinar and its registrations.
#[derive(Debug, Clone, Default)]
pub struct SimWebinar {
    /// `draft`, `published` or `canceled`.
    pub status: String,
    /// Its registrations, in order.
    pub registrations: Vec<WebinarRegistration>,
}

/// One webinar registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebinarRegistration {
    /// Graph's id.
    pub id: String,
    /// `externalRegistrationInformation.registrationId`.
    pub external_id: String,
    /// E-mail.
    pub email: String,
    /// `registered` or `canceled`.
    pub status: String,
    /// Whether Teams has it (a registration made while the webinar was a
    /// draft never arrives).
    pub arrived: bool,
    /// When the webinar's list starts to show it (the list lags behind
    /// creates: Graph is eventually consistent).
    pub listed_from: Instant,
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
    let webinar = "/graph/v1.0/solutions/virtualEvents/webinars/{webinar}";
    Router::new()
        .route("/platform/meetings/{meeting}/registrants", get(list_meeting))
        .route("/platform/registrants", get(list_all))
        .route("/platform/meetings/{meeting}/registrants/{registrant}/join-link", any(write_back))
        .route(registrants, get(list_registrants).post(enrol))
        .route(&format!("{registrants}/{{registrant}}"), get(no_get_of_one).delete(remove_registrant))
        .route(mine, get(list_mine).post(enrol_mine))
        .route(&format!("{mine}/{{registrant}}"), get(no_get_of_one).delete(remove_mine))
        .route(webinar, get(get_webinar))
        .route(&format!("{webinar}/registrations"), get(list_registrations).post(register))
        .route(&format!("{webinar}/{{key}}"), get(get_registration_by_key))
        .route(&format!("{webinar}/registrations/{{registration}}/cancel"), post(cancel))
}

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

fn registrant_page(s: &mut State, headers: &HeaderMap, meeting: Option<&str>, q: PageQuery) -> Response {
    if let Some(refused) = s.platform.refused(headers) {
        return refused;
    }
    s.people.listing_requests += 1;
    let limit = q.limit.unwrap_or(200).clamp(1, 1_000);
    let offset = q.cursor.as_deref().and_then(|c| c.strip_prefix("o:")).and_then(|n| n.parse().ok()).unwrap_or(0);
    let all: Vec<&SimRegistrant> =
        s.people.platform.iter().filter(|r| meeting.is_none_or(|m| r.meeting_id == m)).collect();
    let items: Vec<&SimRegistrant> = all.iter().skip(offset).take(limit).copied().collect();
    let next = match s.people.loop_pages {
        true => Some(format!("o:{offset}")),
        false => (offset + limit < all.len()).then(|| format!("o:{}", offset + limit)),
    };
    Json(json!({"registrants": items, "next_cursor": next})).into_response()
}

async fn list_meeting(
    AxumState(state): AxumState<Shared>,
    Path(meeting): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    registrant_page(&mut lock(&state), &headers, Some(&meeting), q)
}

async fn list_all(AxumState(state): AxumState<Shared>, Query(q): Query<PageQuery>, headers: HeaderMap) -> Response {
    registrant_page(&mut lock(&state), &headers, None, q)
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

async fn enrol(
    AxumState(state): AxumState<Shared>,
    drop_connection: Extension<DropConnection>,
    Path((organizer, meeting)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    enrol_at(state, drop_connection, Some(organizer), meeting, headers, body).await
}

async fn enrol_mine(
    AxumState(state): AxumState<Shared>,
    drop_connection: Extension<DropConnection>,
    Path(meeting): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    enrol_at(state, drop_connection, None, meeting, headers, body).await
}

/// The organizer of a `/me` request: the signed-in user.
fn me(s: &State, headers: &HeaderMap) -> Option<String> {
    super::bearer(headers).and_then(|t| s.tokens.get(t).cloned().flatten())
}

async fn enrol_at(
    state: Shared,
    Extension(drop_connection): Extension<DropConnection>,
    organizer: Option<String>,
    meeting: String,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (answer, fault) = {
        let mut s = lock(&state);
        let organizer = match organizer.or_else(|| me(&s, &headers)) {
            Some(organizer) => organizer,
            None => return error(401, "InvalidAuthenticationToken", "Access token is empty or invalid."),
        };
        let fault = match before(&mut s, &headers, Some(&organizer), "POST") {
            Ok(fault) => fault,
            Err(refused) => return *refused,
        };
        if let Some(refused) = status_fault(&fault) {
            log(&mut s, "POST registrant", refused.status(), false);
            return refused;
        }
        let key = (organizer, meeting);
        let audience = match s.registrations.get(&key).filter(|r| r.is_external()) {
            Some(r) => r.allowed_registrant.clone(),
            None => {
                log(&mut s, "POST registrant", StatusCode::NOT_FOUND, false);
                return error(404, "itemNotFound", "The meeting has no external registration.");
            }
        };
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let id = parsed["id"].as_str().unwrap_or_default().to_owned();
        let answer = if parsed["@odata.type"] != REGISTRANT_TYPE || id.is_empty() {
            error(400, "BadRequest", "Provide @odata.type #microsoft.graph.externalMeetingRegistrant and an id.")
        } else if audience == "organization"
            && (parsed["tenantId"].as_str().is_none() || parsed["userId"].as_str().is_none())
        {
            error(400, "BadRequest", "An organization-only meeting needs the registrant's tenantId and userId.")
        } else if s.people.registrants.get(&key).is_some_and(|r| r.contains_key(&id)) {
            error(409, "Conflict", "A registrant with this id exists.")
        } else {
            let n = s.people.next_id();
            let join_web_url = format!(
                "https://teams.microsoft.com/l/meetup-join/19%3ameeting_{}%40thread.v2/0?context=%7b%22prid%22%3a%22{id}%22%2c%22n%22%3a{n}%7d",
                key.1
            );
            s.people
                .registrants
                .entry(key)
                .or_default()
                .insert(id.clone(), GraphRegistrant { id: id.clone(), join_web_url: join_web_url.clone() });
            Json(json!({"@odata.type": REGISTRANT_TYPE, "id": id, "joinWebUrl": join_web_url, "tenantId": parsed["tenantId"], "userId": parsed["userId"]})).into_response()
        };
        let acted = answer.status() == StatusCode::OK;
        log_status(&mut s, "POST registrant", logged_status(&fault, &answer), acted);
        (answer, fault)
    };
    after(fault, answer, &drop_connection).await
}

async fn list_registrants(
    AxumState(state): AxumState<Shared>,
    Path((organizer, meeting)): Path<(String, String)>,
    Query(q): Query<SkipQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    list_registrants_of(state, Some(organizer), meeting, q, uri, headers)
}

async fn list_mine(
    AxumState(state): AxumState<Shared>,
    Path(meeting): Path<String>,
    Query(q): Query<SkipQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    list_registrants_of(state, None, meeting, q, uri, headers)
}

/// The registrants of a meeting's registration, ten per page.
fn list_registrants_of(
    state: Shared,
    organizer: Option<String>,
    meeting: String,
    q: SkipQuery,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&state);
    let Some(organizer) = organizer.or_else(|| me(&s, &headers)) else {
        return error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.");
    };
    if let Err(refused) = before(&mut s, &headers, Some(&organizer), "-") {
        return *refused;
    }
    let key = (organizer, meeting);
    let answer = if !s.registrations.get(&key).is_some_and(|r| r.is_external()) {
        error(404, "itemNotFound", "The meeting has no external registration.")
    } else {
        let all: Vec<Value> = s
            .people
            .registrants
            .get(&key)
            .map(|r| {
                r.values().map(|r| json!({"@odata.type": REGISTRANT_TYPE, "id": r.id, "joinWebUrl": null})).collect()
            })
            .unwrap_or_default();
        Json(page_of(&all, q.skip.unwrap_or(0), &headers, uri.path())).into_response()
    };
    log(&mut s, "GET registrants", answer.status(), false);
    answer
}

/// One page of `all` from `skip`, with a next link when more follow.
fn page_of(all: &[Value], skip: usize, headers: &HeaderMap, path: &str) -> Value {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
    let mut body = json!({"value": all.iter().skip(skip).take(GRAPH_PAGE).collect::<Vec<_>>()});
    if skip + GRAPH_PAGE < all.len() {
        body["@odata.nextLink"] = json!(format!("http://{host}{path}?$skiptoken={}", skip + GRAPH_PAGE));
    }
    body
}

/// There is no `GET` of one external registrant.
async fn no_get_of_one() -> Response {
    error(405, "MethodNotAllowed", "The HTTP method 'GET' is not allowed for this resource.")
}

async fn remove_registrant(
    AxumState(state): AxumState<Shared>,
    Path((organizer, meeting, registrant)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    one_registrant(state, Some(organizer), meeting, registrant, headers).await
}

async fn remove_mine(
    AxumState(state): AxumState<Shared>,
    Path((meeting, registrant)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    one_registrant(state, None, meeting, registrant, headers).await
}

/// `DELETE` of one registrant.
async fn one_registrant(
    state: Shared,
    organizer: Option<String>,
    meeting: String,
    registrant: String,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&state);
    let Some(organizer) = organizer.or_else(|| me(&s, &headers)) else {
        return error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.");
    };
    let fault = match before(&mut s, &headers, Some(&organizer), "DELETE") {
        Ok(fault) => fault,
        Err(refused) => return *refused,
    };
    let call = "DELETE registrant";
    if let Some(refused) = status_fault(&fault) {
        log(&mut s, call, refused.status(), false);
        return refused;
    }
    let held = s.people.registrants.entry((organizer, meeting)).or_default();
    let answer = if held.remove(&registrant).is_some() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(404, "itemNotFound", "The registrant was not found.")
    };
    let acted = answer.status() == StatusCode::NO_CONTENT;
    log(&mut s, call, answer.status(), acted);
    answer
}

async fn get_webinar(AxumState(state): AxumState<Shared>, Path(webinar): Path<String>, headers: HeaderMap) -> Response {
    let mut s = lock(&state);
    if let Err(refused) = before(&mut s, &headers, None, "-") {
        return *refused;
    }
    let answer = match s.people.webinars.get(&webinar) {
        Some(w) => Json(json!({"id": webinar, "status": w.status, "displayName": "Simulated webinar"})).into_response(),
        None => error(404, "itemNotFound", "The webinar was not found."),
    };
    log(&mut s, "GET webinar", answer.status(), false);
    answer
}

/// The webinar write limit: `Some(response)` when this write is one too many.
fn over_write_limit(s: &mut State) -> Option<Response> {
    let now = Instant::now();
    let recent: Vec<Instant> = s
        .people
        .log
        .iter()
        .filter(|r| {
            (r.call == "POST registration" || r.call == "POST cancel") && now.duration_since(r.at) < WEBINAR_WINDOW
        })
        .map(|r| r.at)
        .collect();
    if recent.len() < WEBINAR_WRITES {
        return None;
    }
    let oldest = recent[recent.len() - WEBINAR_WRITES];
    let wait = (oldest + WEBINAR_WINDOW).saturating_duration_since(now).as_secs_f64().ceil().max(1.0);
    let mut response = error(429, "TooManyRequests", "Virtual event write limit: 15 per 30 seconds.");
    response.headers_mut().insert("retry-after", format!("{wait}").parse().expect("a number"));
    Some(response)
}

async fn register(
    AxumState(state): AxumState<Shared>,
    Extension(drop_connection): Extension<DropConnection>,
    Path(webinar): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (answer, fault) = {
        let mut s = lock(&state);
        let fault = match before(&mut s, &headers, None, "POST") {
            Ok(fault) => fault,
            Err(refused) => return *refused,
        };
        if let Some(refused) = status_fault(&fault).or_else(|| over_write_limit(&mut s)) {
            log(&mut s, "POST registration", refused.status(), false);
            return refused;
        }
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let external_id = parsed["externalRegistrationInformation"]["registrationId"].as_str().unwrap_or_default();
        let required = ["firstName", "lastName", "email", "preferredTimezone", "preferredLanguage"];
        let answer = if let Some(missing) = required.iter().find(|f| parsed[**f].as_str().is_none_or(str::is_empty)) {
            error(400, "BadRequest", &format!("{missing} is required."))
        } else if external_id.chars().count() > 256 {
            error(400, "BadRequest", "externalRegistrationInformation.registrationId is longer than 256 characters.")
        } else {
            let n = s.people.next_id();
            let listed_from = Instant::now() + s.people.list_lag;
            match s.people.webinars.get_mut(&webinar) {
                None => error(404, "itemNotFound", "The webinar was not found."),
                Some(w) => {
                    let arrived = w.status == "published";
                    w.registrations.push(WebinarRegistration {
                        id: format!("reg-{n:06}"),
                        external_id: external_id.to_owned(),
                        email: parsed["email"].as_str().unwrap_or_default().to_owned(),
                        status: "registered".into(),
                        arrived,
                        listed_from,
                    });
                    StatusCode::NO_CONTENT.into_response()
                }
            }
        };
        let acted = answer.status() == StatusCode::NO_CONTENT;
        log_status(&mut s, "POST registration", logged_status(&fault, &answer), acted);
        (answer, fault)
    };
    after(fault, answer, &drop_connection).await
}

/// `GET …/registrations(email='{email}')`: the alternate key Graph's
/// metadata declares. The list's lag applies to it too.
async fn get_registration_by_key(
    AxumState(state): AxumState<Shared>,
    Path((webinar, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&state);
    if let Err(refused) = before(&mut s, &headers, None, "-") {
        return *refused;
    }
    let email =
        key.strip_prefix("registrations(email='").and_then(|k| k.strip_suffix("')")).map(|e| e.replace("''", "'"));
    let answer = match (email, s.people.webinars.get(&webinar)) {
        (None, _) => error(400, "BadRequest", "Resource not found for the segment."),
        (Some(_), _) if s.people.refuse_get_by_key => error(403, "Forbidden", "Insufficient privileges."),
        (Some(_), None) => error(404, "itemNotFound", "The webinar was not found."),
        (Some(email), Some(w)) => {
            let now = Instant::now();
            let visible = w.registrations.iter().filter(|r| r.arrived && r.listed_from <= now);
            let mine: Vec<&WebinarRegistration> = visible.filter(|r| r.email.eq_ignore_ascii_case(&email)).collect();
            // The live one if there is one, else the latest.
            match mine.iter().find(|r| r.status == "registered").or(mine.last()) {
                Some(r) => Json(json!({"id": r.id, "email": r.email, "status": r.status,
                    "externalRegistrationInformation": {"referrer": null, "registrationId": r.external_id}}))
                .into_response(),
                None => error(404, "itemNotFound", "The registration was not found."),
            }
        }
    };
    log(&mut s, "GET registration", answer.status(), false);
    answer
}

#[derive(Deserialize)]
struct SkipQuery {
    #[serde(rename = "$skiptoken")]
    skip: Option<usize>,
}

async fn list_registrations(
    AxumState(state): AxumState<Shared>,
    Path(webinar): Path<String>,
    Query(q): Query<SkipQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&state);
    if let Err(refused) = before(&mut s, &headers, None, "-") {
        return *refused;
    }
    let answer = match s.people.webinars.get(&webinar) {
        None => error(404, "itemNotFound", "The webinar was not found."),
        Some(w) => {
            let visible: Vec<Value> = w
                .registrations
                .iter()
                .filter(|r| r.arrived && r.listed_from <= Instant::now())
                .map(|r| {
                    json!({"id": r.id, "email": r.email, "status": r.status,
                    "externalRegistrationInformation": {"referrer": null, "registrationId": r.external_id}})
                })
                .collect();
            Json(page_of(&visible, q.skip.unwrap_or(0), &headers, uri.path())).into_response()
        }
    };
    log(&mut s, "GET registrations", answer.status(), false);
    answer
}

async fn cancel(
    AxumState(state): AxumState<Shared>,
    Path((webinar, registration)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&state);
    let fault = match before(&mut s, &headers, None, "POST") {
        Ok(fault) => fault,
        Err(refused) => return *refused,
    };
    if let Some(refused) = status_fault(&fault).or_else(|| over_write_limit(&mut s)) {
        log(&mut s, "POST cancel", refused.status(), false);
        return refused;
    }
    let found = s
        .people
        .webinars
        .get_mut(&webinar)
        .and_then(|w| w.registrations.iter_mut().find(|r| r.id == registration && r.status == "registered"));
    let answer = match found {
        Some(r) => {
            r.status = "canceled".into();
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(404, "itemNotFound", "The registration was not found."),
    };
    let acted = answer.status() == StatusCode::NO_CONTENT;
    log(&mut s, "POST cancel", answer.status(), acted);
    answer
}
