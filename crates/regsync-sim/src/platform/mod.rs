//! The simulated platform: `GET /platform/meetings?limit=&cursor=` in the
//! default JSON shape the README documents, with page faults.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::State;

mod changes;
mod knobs;
mod meeting;
mod oauth;
mod webhook;

pub(crate) use changes::{changed_since, now, parse_since};

pub use meeting::SimMeeting;
pub(crate) use oauth::PlatformOAuth;
use oauth::{expire_tokens, token};
pub use webhook::{signature, Delivery};

/// How a page fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFault {
    /// Answer 500.
    ServerError,
    /// Answer 200 with a body cut off mid-JSON.
    BrokenJson,
    /// Answer 502 with a body that holds a NUL byte.
    NulInErrorBody,
    /// Answer the page, marked incomplete (`"complete": false`), as a
    /// platform that truncated its result does.
    Incomplete,
    /// Answer the page with the cursor (or next link) of the page before:
    /// a platform that loops.
    RepeatCursor,
    /// Answer 429 with `Retry-After: 1` once; the next request for the page
    /// is answered normally.
    ThrottledOnce,
    /// Every OAuth token issued so far expires as this page is asked for:
    /// answered 401 once, as a platform answers an expired token.
    TokenExpired,
}

/// One entry of the list.
enum Item {
    Meeting(SimMeeting),
    Raw(Value),
    /// JSON text served as it is, even when it is not valid JSON.
    Text(String),
}

/// The list in platform order: typed meetings, or raw items for bad input,
/// with an index by id so seeding 100,000 meetings stays linear.
#[derive(Default)]
pub(crate) struct Listing {
    items: Vec<Item>,
    index: HashMap<String, usize>,
    pub(crate) page_faults: HashMap<usize, PageFault>,
    /// Every list request: when, and the status it got.
    pub(crate) requests: Vec<(tokio::time::Instant, u16)>,
    /// Headers every list request must carry (name lower-cased, value).
    pub(crate) required_headers: Vec<(String, String)>,
    /// Requests must carry a token from `POST /platform/oauth2/token`.
    pub(crate) oauth: Option<PlatformOAuth>,
    /// Meetings name their organizer by e-mail and their Teams meeting by
    /// join link, as real platforms do, instead of by Graph's ids.
    pub(crate) by_reference: bool,
    /// Where changes are announced.
    pub(crate) webhook: Option<webhook::Webhook>,
    /// Announcements and their answers.
    pub(crate) deliveries: Vec<Delivery>,
    /// Bumped on every change, so cached filter results are not reused.
    version: u64,
    /// The positions last filtered: for which `since`, at which version.
    since_cache: Option<(chrono::DateTime<chrono::Utc>, u64, Arc<Vec<usize>>)>,
    /// Each filtered list request: what it listed (`meetings`,
    /// `registrants`) and its `changed_since`.
    pub(crate) changed_since_asked: Vec<(&'static str, chrono::DateTime<chrono::Utc>)>,
}

impl Listing {
    /// A 401, as a platform answers a request without its credentials.
    pub(crate) fn refused(&self, headers: &axum::http::HeaderMap) -> Option<Response> {
        if let Some(oauth) = &self.oauth {
            let bearer = crate::bearer(headers);
            let valid =
                bearer.and_then(|t| oauth.tokens.get(t)).is_some_and(|expiry| tokio::time::Instant::now() < *expiry);
            if !valid {
                let body = Json(
                    json!({"error": "invalid_token", "error_description": "The access token is missing or expired"}),
                );
                return Some((StatusCode::UNAUTHORIZED, body).into_response());
            }
        }
        let missing = self
            .required_headers
            .iter()
            .find(|(name, value)| headers.get(name.as_str()).and_then(|v| v.to_str().ok()) != Some(value.as_str()))?;
        let body = Json(json!({"error": format!("missing or wrong {}", missing.0)}));
        Some((StatusCode::UNAUTHORIZED, body).into_response())
    }
}

impl Listing {
    pub(crate) fn upsert(&mut self, meeting: SimMeeting) {
        self.version += 1;
        match self.get_mut(&meeting.id) {
            Some(existing) => *existing = meeting,
            None => {
                self.index.insert(meeting.id.clone(), self.items.len());
                self.items.push(Item::Meeting(meeting));
            }
        }
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut SimMeeting> {
        self.version += 1;
        match self.items.get_mut(*self.index.get(id)?) {
            Some(Item::Meeting(m)) => Some(m),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, id: &str) {
        self.version += 1;
        if let Some(at) = self.index.remove(id) {
            self.items.remove(at);
            for position in self.index.values_mut().filter(|p| **p > at) {
                *position -= 1;
            }
        }
    }

    pub(crate) fn push_raw(&mut self, item: Value) {
        self.version += 1;
        self.items.push(Item::Raw(item));
    }

    pub(crate) fn push_text(&mut self, item: String) {
        self.version += 1;
        self.items.push(Item::Text(item));
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// The items of one page as JSON text, and the next cursor.
    fn page(&self, offset: usize, limit: usize) -> (Vec<String>, Option<String>) {
        self.page_as(offset, limit, &|_, m| if self.by_reference { m.by_reference() } else { json!(m) })
    }

    /// [`Listing::page`] of the items changed at or after `since`.
    fn page_since(
        &mut self,
        since: chrono::DateTime<chrono::Utc>,
        offset: usize,
        limit: usize,
    ) -> (Vec<String>, Option<String>) {
        let positions = self.positions_since(since);
        let end = (offset + limit).min(positions.len());
        let items = positions.get(offset..end).unwrap_or_default().iter().flat_map(|&at| self.page(at, 1).0).collect();
        (items, (end < positions.len()).then(|| format!("o:{end}")))
    }

    /// [`Listing::page`] with each meeting (and its position in the list)
    /// shaped by `render`; raw items as they are.
    pub(crate) fn page_as(
        &self,
        offset: usize,
        limit: usize,
        render: &dyn Fn(usize, &SimMeeting) -> Value,
    ) -> (Vec<String>, Option<String>) {
        let end = (offset + limit).min(self.items.len());
        let page = self.items.get(offset..end).unwrap_or_default();
        let items = page
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Item::Meeting(m) => render(offset + i, m).to_string(),
                Item::Raw(v) => v.to_string(),
                Item::Text(t) => t.clone(),
            })
            .collect();
        (items, (end < self.items.len()).then(|| format!("o:{end}")))
    }
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    changed_since: Option<String>,
}

pub(super) fn routes() -> Router<Arc<Mutex<State>>> {
    Router::new()
        .route("/platform/meetings", get(list))
        .route("/platform/meetings/{id}", get(get_one))
        .route("/platform/styles/{style}/meetings", get(list_styled))
        .route("/platform/oauth2/token", post(token))
        .route("/_sim/meetings", post(upsert))
        .route("/_sim/meetings/touch", post(changes::touch))
        .route("/_sim/meetings/{id}", delete(remove))
        .route("/_sim/meetings/{id}/cancel", post(cancel))
}

/// `POST /_sim/meetings` with a meeting's JSON: adds or changes it.
async fn upsert(AxumState(state): AxumState<Arc<Mutex<State>>>, Json(meeting): Json<SimMeeting>) -> StatusCode {
    state.lock().unwrap_or_else(|p| p.into_inner()).upsert_meeting(meeting);
    StatusCode::NO_CONTENT
}

/// `POST /_sim/meetings/{id}/cancel`.
async fn cancel(AxumState(state): AxumState<Arc<Mutex<State>>>, Path(id): Path<String>) -> StatusCode {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    match s.platform.get_mut(&id) {
        Some(m) => {
            m.status = "cancelled".into();
            m.updated_at = now();
            StatusCode::NO_CONTENT
        }
        None => StatusCode::NOT_FOUND,
    }
}

/// `DELETE /_sim/meetings/{id}`: the meeting vanishes from the list.
async fn remove(AxumState(state): AxumState<Arc<Mutex<State>>>, Path(id): Path<String>) -> StatusCode {
    state.lock().unwrap_or_else(|p| p.into_inner()).platform.remove(&id);
    StatusCode::NO_CONTENT
}

/// The query of the paging styles other platforms use.
#[derive(Deserialize)]
struct StyledQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    page: Option<usize>,
    offset: Option<usize>,
}

/// `GET /platform/styles/{style}/meetings`: the same list, paged as other
/// platforms page theirs (the items are the same objects):
/// - `cursor`: `{"events": [...], "pagination": {"continuation", "has_more_items"}}`;
/// - `next_url`: `{"data": [...], "links": {"next": "<relative URL>"}}`;
/// - `link_header`: the page is the array; `Link: <…>; rel="next"`;
/// - `page_number`: `{"items": [...], "total": N}`, `page` from 1;
/// - `offset`: `{"results": [...], "count": N}`.
///
/// Every page says `"complete": true` unless a [`PageFault::Incomplete`]
/// is set on it.
async fn list_styled(
    AxumState(state): AxumState<Arc<Mutex<State>>>,
    Path(style): Path<String>,
    Query(q): Query<StyledQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(refused) = s.platform.refused(&headers) {
        return refused;
    }
    let limit = q.limit.unwrap_or(200).clamp(1, 1_000);
    let offset = match style.as_str() {
        "page_number" => q.page.unwrap_or(1).saturating_sub(1) * limit,
        "offset" => q.offset.unwrap_or(0),
        _ => q.cursor.as_deref().and_then(|c| c.strip_prefix("o:")).and_then(|n| n.parse().ok()).unwrap_or(0),
    };
    if let Some(expired) = expire_tokens(&mut s.platform, offset / limit) {
        return expired;
    }
    let fault = s.platform.page_faults.get(&(offset / limit)).copied();
    if fault == Some(PageFault::ServerError) {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "internal error"}))).into_response();
    }
    let (items, next) = s.platform.page(offset, limit);
    let next = match fault {
        Some(PageFault::RepeatCursor) => Some(format!("o:{}", offset.saturating_sub(limit))),
        _ => next,
    };
    let items = items.join(", ");
    let total = s.platform.len();
    let complete = fault != Some(PageFault::Incomplete);
    let next_link = next.as_ref().map(|c| format!("/platform/styles/{style}/meetings?limit={limit}&cursor={c}"));
    let (body, link) = match style.as_str() {
        "cursor" => (
            format!(
                r#"{{"events": [{items}], "complete": {complete}, "pagination": {{"continuation": {}, "has_more_items": {}}}}}"#,
                json!(next),
                next.is_some()
            ),
            None,
        ),
        "next_url" => (
            format!(r#"{{"data": [{items}], "complete": {complete}, "links": {{"next": {}}}}}"#, json!(next_link)),
            None,
        ),
        "link_header" => (format!("[{items}]"), next_link.map(|l| format!("<{l}>; rel=\"next\""))),
        "page_number" => (format!(r#"{{"items": [{items}], "complete": {complete}, "total": {total}}}"#), None),
        "offset" => (format!(r#"{{"results": [{items}], "complete": {complete}, "count": {total}}}"#), None),
        _ => return (StatusCode::NOT_FOUND, Json(json!({"error": "no such paging style"}))).into_response(),
    };
    let mut response = (StatusCode::OK, [("content-type", "application/json")], body).into_response();
    if let Some(link) = link.and_then(|l| axum::http::HeaderValue::try_from(l).ok()) {
        response.headers_mut().insert(axum::http::header::LINK, link);
    }
    response
}

/// `GET /platform/meetings/{id}`: one meeting as the list shows it.
async fn get_one(
    AxumState(state): AxumState<Arc<Mutex<State>>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let s = state.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(refused) = s.platform.refused(&headers) {
        return refused;
    }
    match s.platform.index.get(&id).map(|&at| s.platform.page(at, 1).0) {
        Some(item) => (StatusCode::OK, [("content-type", "application/json")], item.concat()).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"error": "no such event"}))).into_response(),
    }
}

async fn list(
    AxumState(state): AxumState<Arc<Mutex<State>>>,
    Query(q): Query<PageQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let response = s.platform.refused(&headers).unwrap_or_else(|| list_page(&mut s, q));
    s.platform.requests.push((tokio::time::Instant::now(), response.status().as_u16()));
    response
}

fn list_page(s: &mut State, q: PageQuery) -> Response {
    let limit = q.limit.unwrap_or(200).clamp(1, 1_000);
    let offset = match q.cursor.as_deref().map(|c| c.strip_prefix("o:").and_then(|n| n.parse::<usize>().ok())) {
        None => 0,
        Some(Some(n)) => n,
        Some(None) => return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid cursor"}))).into_response(),
    };
    let page_index = offset / limit;
    match s.platform.page_faults.get(&page_index) {
        Some(PageFault::ServerError) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "internal error"}))).into_response()
        }
        Some(PageFault::NulInErrorBody) => {
            return (StatusCode::BAD_GATEWAY, "upstream\0failed").into_response();
        }
        Some(PageFault::ThrottledOnce) => {
            s.platform.page_faults.remove(&page_index);
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], Json(json!({"error": "rate limited"})))
                .into_response();
        }
        Some(PageFault::TokenExpired) => return expire_tokens(&mut s.platform, page_index).unwrap_or_default(),
        Some(PageFault::Incomplete | PageFault::RepeatCursor) | None => {}
        Some(PageFault::BrokenJson) => {
            return (StatusCode::OK, [("content-type", "application/json")], r#"{"meetings": [{"id": "evt-"#)
                .into_response()
        }
    }
    let (items, next) = match q.changed_since.as_deref().map(parse_since) {
        None => s.platform.page(offset, limit),
        Some(Ok(since)) => {
            s.platform.changed_since_asked.push(("meetings", since));
            s.platform.page_since(since, offset, limit)
        }
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
    };
    // Written out by hand, so an item's text reaches the client as it is.
    let body = format!(r#"{{"meetings": [{}], "next_cursor": {}}}"#, items.join(", "), json!(next));
    (StatusCode::OK, [("content-type", "application/json")], body).into_response()
}
