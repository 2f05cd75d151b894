//! Graph's virtual-event registrations (v1.0), for webinars and town halls
//! alike: the event, register (with answers to its registration
//! questions), list, get by alternate key, cancel, and the write limit.

use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::*;

/// A webinar or town hall and its registrations.
#[derive(Debug, Clone, Default)]
pub struct SimWebinar {
    /// A town hall (`/solutions/virtualEvents/townhalls`), not a webinar.
    pub townhall: bool,
    /// `draft`, `published` or `canceled`.
    pub status: String,
    /// Capacity, waitlist and approval.
    pub config: RegistrationConfig,
    /// Its registration questions.
    pub questions: Vec<SimQuestion>,
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
    /// `registered`, `canceled`, `waitlisted`, `pendingApproval` or
    /// `rejectedByOrganizer`.
    pub status: String,
    /// The `registrationQuestionAnswers` it was created with.
    pub answers: Vec<Value>,
    /// Whether Teams has it (a registration made while the webinar was a
    /// draft never arrives).
    pub arrived: bool,
    /// When the webinar's list starts to show it (the list lags behind
    /// creates: Graph is eventually consistent).
    pub listed_from: Instant,
}

impl SimWebinar {
    /// Its collection under `/solutions/virtualEvents`.
    pub fn collection(&self) -> &'static str {
        if self.townhall {
            "townhalls"
        } else {
            "webinars"
        }
    }
}

/// The event `id` in `collection` (`webinars` or `townhalls`): a town
/// hall's id under webinars is not found, as at Graph.
pub(super) fn event<'a>(people: &'a People, collection: &str, id: &str) -> Option<&'a SimWebinar> {
    people.webinars.get(id).filter(|w| w.collection() == collection)
}

pub(super) fn event_mut<'a>(people: &'a mut People, collection: &str, id: &str) -> Option<&'a mut SimWebinar> {
    people.webinars.get_mut(id).filter(|w| w.collection() == collection)
}

/// A read about one event, logged as `call`: refused as any request is,
/// 404 for an event not in `collection`, else what `answer` makes of it.
pub(super) fn read_event(
    state: &Shared,
    headers: &HeaderMap,
    (collection, id): (&str, &str),
    call: &str,
    answer: impl FnOnce(&People, &SimWebinar) -> Response,
) -> Response {
    let mut s = lock(state);
    if let Err(refused) = before(&mut s, headers, None, "-") {
        return *refused;
    }
    let answer = match event(&s.people, collection, id) {
        None => error(404, "itemNotFound", "The virtual event was not found."),
        Some(w) => answer(&s.people, w),
    };
    log(&mut s, call, answer.status(), false);
    answer
}

pub(super) async fn get_webinar(
    AxumState(state): AxumState<Shared>,
    Path((collection, webinar)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let held = lock(&state).people.held_status.get(&webinar).cloned();
    if let Some(mut released) = held {
        lock(&state).people.held_arrivals += 1;
        let _ = released.wait_for(|go| *go).await;
    }
    let mut s = lock(&state);
    if let Err(refused) = before(&mut s, &headers, None, "-") {
        return *refused;
    }
    let answer = match event(&s.people, &collection, &webinar) {
        Some(w) => Json(json!({"id": webinar, "status": w.status, "displayName": "Simulated webinar"})).into_response(),
        None => error(404, "itemNotFound", "The webinar was not found."),
    };
    log(&mut s, "GET webinar", answer.status(), false);
    answer
}

/// The webinar write limit: `Some(response)` when this write is one too many.
pub(super) fn over_write_limit(s: &mut State) -> Option<Response> {
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

pub(super) async fn register(
    AxumState(state): AxumState<Shared>,
    Extension(drop_connection): Extension<DropConnection>,
    Path((collection, webinar)): Path<(String, String)>,
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
            match event_mut(&mut s.people, &collection, &webinar) {
                None => error(404, "itemNotFound", "The webinar was not found."),
                Some(w) => match check_answers(w, &parsed) {
                    Err(why) => error(400, "BadRequest", &why),
                    Ok(()) => {
                        let arrived = w.status == "published";
                        let status = status_of_new(w).to_owned();
                        w.registrations.push(WebinarRegistration {
                            id: format!("reg-{n:06}"),
                            external_id: external_id.to_owned(),
                            email: parsed["email"].as_str().unwrap_or_default().to_owned(),
                            status,
                            answers: parsed["registrationQuestionAnswers"].as_array().cloned().unwrap_or_default(),
                            arrived,
                            listed_from,
                        });
                        StatusCode::NO_CONTENT.into_response()
                    }
                },
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
pub(super) async fn get_registration_by_key(
    AxumState(state): AxumState<Shared>,
    Path((collection, webinar, key)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&state);
    if let Err(refused) = before(&mut s, &headers, None, "-") {
        return *refused;
    }
    let email =
        key.strip_prefix("registrations(email='").and_then(|k| k.strip_suffix("')")).map(|e| e.replace("''", "'"));
    let answer = match (email, event(&s.people, &collection, &webinar)) {
        (None, _) => error(400, "BadRequest", "Resource not found for the segment."),
        (Some(_), _) if s.people.refuse_get_by_key => error(403, "Forbidden", "Insufficient privileges."),
        (Some(_), None) => error(404, "itemNotFound", "The webinar was not found."),
        (Some(email), Some(w)) => {
            let now = Instant::now();
            let visible = w.registrations.iter().filter(|r| r.arrived && r.listed_from <= now);
            let mine: Vec<&WebinarRegistration> = visible.filter(|r| r.email.eq_ignore_ascii_case(&email)).collect();
            // The live one if there is one, else the latest.
            match mine.iter().find(|r| r.status != "canceled").or(mine.last()) {
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
pub(super) struct SkipQuery {
    #[serde(rename = "$skiptoken")]
    pub(super) skip: Option<usize>,
}

pub(super) async fn list_registrations(
    AxumState(state): AxumState<Shared>,
    Path((collection, webinar)): Path<(String, String)>,
    Query(q): Query<SkipQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&state);
    if let Err(refused) = before(&mut s, &headers, None, "-") {
        return *refused;
    }
    let answer = match event(&s.people, &collection, &webinar) {
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

pub(super) async fn cancel(
    AxumState(state): AxumState<Shared>,
    Path((collection, webinar, registration)): Path<(String, String, String)>,
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
        .filter(|w| w.collection() == collection)
        .and_then(|w| w.registrations.iter_mut().find(|r| r.id == registration && r.status != "canceled"));
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
