//! Graph's meeting-registration registrants (beta): enrol, list, remove.

use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::*;

pub(super) async fn enrol(
    AxumState(state): AxumState<Shared>,
    drop_connection: Extension<DropConnection>,
    Path((organizer, meeting)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    enrol_at(state, drop_connection, Some(organizer), meeting, headers, body).await
}

pub(super) async fn enrol_mine(
    AxumState(state): AxumState<Shared>,
    drop_connection: Extension<DropConnection>,
    Path(meeting): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    enrol_at(state, drop_connection, None, meeting, headers, body).await
}

/// The organizer of a `/me` request: the signed-in user.
pub(super) fn me(s: &State, headers: &HeaderMap) -> Option<String> {
    crate::bearer(headers).and_then(|t| s.tokens.get(t).cloned().flatten())
}

pub(super) async fn enrol_at(
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

pub(super) async fn list_registrants(
    AxumState(state): AxumState<Shared>,
    Path((organizer, meeting)): Path<(String, String)>,
    Query(q): Query<SkipQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    list_registrants_of(state, Some(organizer), meeting, q, uri, headers)
}

pub(super) async fn list_mine(
    AxumState(state): AxumState<Shared>,
    Path(meeting): Path<String>,
    Query(q): Query<SkipQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    list_registrants_of(state, None, meeting, q, uri, headers)
}

/// The registrants of a meeting's registration, ten per page.
pub(super) fn list_registrants_of(
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
pub(super) fn page_of(all: &[Value], skip: usize, headers: &HeaderMap, path: &str) -> Value {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
    let mut body = json!({"value": all.iter().skip(skip).take(GRAPH_PAGE).collect::<Vec<_>>()});
    if skip + GRAPH_PAGE < all.len() {
        body["@odata.nextLink"] = json!(format!("http://{host}{path}?$skiptoken={}", skip + GRAPH_PAGE));
    }
    body
}

/// There is no `GET` of one external registrant.
pub(super) async fn no_get_of_one() -> Response {
    error(405, "MethodNotAllowed", "The HTTP method 'GET' is not allowed for this resource.")
}

pub(super) async fn remove_registrant(
    AxumState(state): AxumState<Shared>,
    Path((organizer, meeting, registrant)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    one_registrant(state, Some(organizer), meeting, registrant, headers).await
}

pub(super) async fn remove_mine(
    AxumState(state): AxumState<Shared>,
    Path((meeting, registrant)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    one_registrant(state, None, meeting, registrant, headers).await
}

/// `DELETE` of one registrant.
pub(super) async fn one_registrant(
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
