//! The simulated Graph lookups of what platforms hold: a user by UPN
//! (`GET /users/{id | userPrincipalName}`) and an online meeting by its join
//! link (`GET /users/{userId}/onlineMeetings?$filter=JoinWebUrl eq '…'`).
//! Every organizer of a listed meeting is a user whose UPN is
//! [`upn_of`] its id; every online meeting's join link is [`join_url_of`] it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::json;

use super::graph::{graph_error, unauthenticated};
use super::State;

/// The domain of the simulated tenant's users.
pub const DOMAIN: &str = "contoso.example";

/// The UPN of the user whose object id is `organizer`.
pub fn upn_of(organizer: &str) -> String {
    format!("{organizer}@{DOMAIN}")
}

/// The join link of the online meeting `meeting`, shaped like Teams' links
/// (the thread id percent-encoded in the path, a JSON context).
pub fn join_url_of(meeting: &str) -> String {
    format!(
        "https://teams.microsoft.com/l/meetup-join/19%3ameeting_{}%40thread.v2/0?context=%7b%22Tid%22%3a%22{}%22%7d",
        utf8_percent_encode(meeting, NON_ALPHANUMERIC),
        super::TENANT
    )
}

/// One lookup as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupRequest {
    /// `user` or `meeting`.
    pub kind: &'static str,
    /// The UPN or id asked for, or the join link.
    pub value: String,
    /// The status answered.
    pub status: u16,
}

type Shared = Arc<Mutex<State>>;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/graph/beta/users/{user}", get(user))
        .route("/graph/beta/users/{user}/onlineMeetings", get(meetings))
}

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// What every Graph request meets first: the token, then any throttling.
fn refused(s: &State, headers: &HeaderMap, user: Option<&str>) -> Option<(StatusCode, serde_json::Value)> {
    if let Some(refused) = unauthenticated(s, headers, user) {
        return Some(refused);
    }
    s.storm
        .as_ref()
        .filter(|(until, _)| tokio::time::Instant::now() < *until)
        .map(|_| graph_error(429, "TooManyRequests", "Please retry again later."))
}

fn answer(
    s: &mut State,
    kind: &'static str,
    value: String,
    (status, body): (StatusCode, serde_json::Value),
) -> Response {
    s.lookups.push(LookupRequest { kind, value, status: status.as_u16() });
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert("date", super::graph_date(s));
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
    }
    response
}

/// Every Graph request takes the configured latency.
async fn latency(state: &Shared) {
    let latency = lock(state).rates.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

/// `GET /users/{id | userPrincipalName}`: the user, or 404.
async fn user(AxumState(state): AxumState<Shared>, Path(user): Path<String>, headers: HeaderMap) -> Response {
    latency(&state).await;
    let mut s = lock(&state);
    let result = refused(&s, &headers, None).unwrap_or_else(|| {
        let wanted = user.to_lowercase();
        let reassigned = s.reassigned_upns.get(&wanted);
        let id = reassigned.or_else(|| {
            s.online_meetings.iter().map(|(organizer, _)| organizer).find(|organizer| {
                organizer.to_lowercase() == wanted || upn_of(organizer).to_lowercase() == wanted
            })
        });
        match id {
            Some(id) => (StatusCode::OK, json!({"@odata.context": "https://graph.microsoft.com/beta/$metadata#users(id)/$entity", "id": id})),
            None => graph_error(
                404,
                "Request_ResourceNotFound",
                &format!("Resource '{user}' does not exist or one of its queried reference-property objects are not present."),
            ),
        }
    });
    answer(&mut s, "user", user, result)
}

/// `GET /users/{userId}/onlineMeetings?$filter=JoinWebUrl eq '…'`: a
/// collection with the one meeting, or empty.
async fn meetings(
    AxumState(state): AxumState<Shared>,
    Path(user): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    latency(&state).await;
    let mut s = lock(&state);
    let filter = query.get("$filter").cloned().unwrap_or_default();
    let join_url = join_url_literal(&filter);
    // A signed-in user reads only their own meetings.
    let result = refused(&s, &headers, Some(&user)).unwrap_or_else(|| {
        let Some(join_url) = &join_url else {
            return graph_error(400, "BadRequest", "Filter is not supported: use JoinWebUrl eq '{joinWebUrl}'.");
        };
        if s.forbidden_organizers.contains(&user) {
            return graph_error(403, "Forbidden", "No application access policy found for this app.");
        }
        // A misbehaving filter answers every meeting of the organizer.
        let mut found: Vec<_> = s
            .online_meetings
            .iter()
            .filter(|(organizer, meeting)| *organizer == user && (s.misfilter || join_url_of(meeting) == *join_url))
            .map(|(_, meeting)| json!({"id": meeting, "joinWebUrl": join_url_of(meeting)}))
            .collect();
        found.sort_by_key(|m| m["id"].as_str().map(str::to_owned));
        (StatusCode::OK, json!({"@odata.context": "https://graph.microsoft.com/beta/$metadata#users('x')/onlineMeetings", "value": found}))
    });
    answer(&mut s, "meeting", join_url.unwrap_or(filter), result)
}

/// The string literal of `JoinWebUrl eq '…'`, its doubled quotes undone.
fn join_url_literal(filter: &str) -> Option<String> {
    let (property, rest) = filter.split_once(" eq ")?;
    let literal = rest.strip_prefix('\'')?.strip_suffix('\'')?;
    if !property.trim().eq_ignore_ascii_case("JoinWebUrl") || literal.replace("''", "").contains('\'') {
        return None;
    }
    Some(literal.replace("''", "'"))
}
