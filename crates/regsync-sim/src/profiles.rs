//! Real platforms' list APIs, as their public documentation shapes them,
//! serving the simulator's meetings under `/platform/profiles/{platform}`:
//! none holds Graph's ids, each holds the organizer's e-mail and the Teams
//! join link somewhere of its own. `config/examples/` has the regsync
//! configuration for each.
//!
//! - Cvent (`GET /ea/events?limit=&token=`): OAuth2; `data[]`, the next
//!   page's token at `paging.nextToken`; the link and the organizer in
//!   custom fields (`customFields[]`, by name, values in an array);
//!   statuses `Active`, `Cancelled`, `Completed`, `Pending`.
//! - ON24 (`GET /v2/client/{clientId}/event?pageOffset=&itemsPerPage=`):
//!   two key headers; `events[]`, pages from 0, `totalevents`; numeric
//!   ids; a boolean `isactive`.
//! - Indico (`GET /export/categ/{id}.json?limit=&offset=`): a bearer API
//!   token; `results[]` and `count`; the organizer is the first chair, the
//!   link in `location`; no status (a deleted event leaves the list).
//! - Swoogo (`GET /api/v1/events?page=&per-page=`): OAuth2; `items[]`,
//!   `_meta.totalCount`, pages from 1; custom fields as `c_{id}` keys;
//!   statuses `live`, `cancelled`, `draft`, `closed`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::platform::SimMeeting;
use super::{join_url_of, upn_of, State};

/// The key headers the ON24 profile asks for.
pub const ON24_KEY: (&str, &str) = ("accesstokenkey", "sim-on24-key");
/// See [`ON24_KEY`].
pub const ON24_SECRET: (&str, &str) = ("accesstokensecret", "sim-on24-secret");
/// The API token the Indico profile asks for.
pub const INDICO_TOKEN: &str = "indp_simIndicoToken";

type Shared = Arc<Mutex<State>>;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/platform/profiles/cvent/ea/events", get(cvent))
        .route("/platform/profiles/on24/v2/client/{client}/event", get(on24))
        .route("/platform/profiles/indico/export/categ/{category}", get(indico))
        .route("/platform/profiles/swoogo/api/v1/events", get(swoogo))
}

fn active(m: &SimMeeting) -> bool {
    m.status != "cancelled"
}

fn number(q: &HashMap<String, String>, key: &str) -> Option<usize> {
    q.get(key).and_then(|v| v.parse().ok())
}

/// Serves one page: the listing's own checks (OAuth, headers) first, then
/// `body` from the page's items, total and next cursor.
fn serve(
    state: &Shared,
    headers: &HeaderMap,
    required: &[(&str, &str)],
    (offset, limit): (usize, usize),
    render: &dyn Fn(usize, &SimMeeting) -> Value,
    body: impl FnOnce(String, usize, Option<String>) -> String,
) -> Response {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let missing =
        required.iter().find(|(name, value)| headers.get(*name).and_then(|v| v.to_str().ok()) != Some(*value));
    let refused = match missing {
        Some((name, _)) => Some(
            (StatusCode::UNAUTHORIZED, Json(json!({"message": format!("missing or wrong {name}")}))).into_response(),
        ),
        None => s.platform.refused(headers),
    };
    let response = refused.unwrap_or_else(|| {
        let (items, next) = s.platform.page_as(offset, limit.clamp(1, 1_000), render);
        let text = body(items.join(", "), s.platform.len(), next);
        (StatusCode::OK, [("content-type", "application/json")], text).into_response()
    });
    s.platform.requests.push((tokio::time::Instant::now(), response.status().as_u16()));
    response
}

async fn cvent(
    AxumState(state): AxumState<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let limit = number(&q, "limit").unwrap_or(100);
    let offset = q.get("token").and_then(|t| t.strip_prefix("o:")).and_then(|n| n.parse().ok()).unwrap_or(0);
    let render = |_: usize, m: &SimMeeting| {
        json!({
            "id": m.id, "title": format!("Webinar {}", m.id), "virtual": true,
            "status": if active(m) { "Active" } else { "Cancelled" },
            "lastModified": m.updated_at,
            "customFields": [
                {"id": "cf-1", "name": "Teams organizer e-mail", "type": "OpenEndedTextOneLine", "value": [upn_of(&m.organizer_id)]},
                {"id": "cf-2", "name": "Teams join link", "type": "OpenEndedTextOneLine", "value": [join_url_of(&m.online_meeting_id)]},
            ],
        })
    };
    serve(&state, &headers, &[], (offset, limit), &render, |items, total, next| {
        format!(
            r#"{{"paging": {{"limit": {limit}, "totalCount": {total}, "currentToken": "o:{offset}", "nextToken": {}}}, "data": [{items}]}}"#,
            json!(next)
        )
    })
}

async fn on24(
    AxumState(state): AxumState<Shared>,
    Path(_client): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let limit = number(&q, "itemsPerPage").unwrap_or(100);
    let page = number(&q, "pageOffset").unwrap_or(0);
    let render = |position: usize, m: &SimMeeting| {
        json!({
            "eventid": 4_000_000 + position, "description": format!("Webinar {}", m.id), "eventtype": "Live",
            "isactive": active(m), "lastmodified": m.updated_at,
            "customfields": [
                {"name": "Teams organizer e-mail", "value": upn_of(&m.organizer_id)},
                {"name": "Teams join link", "value": join_url_of(&m.online_meeting_id)},
            ],
        })
    };
    serve(&state, &headers, &[ON24_KEY, ON24_SECRET], (page * limit, limit), &render, |items, total, _| {
        format!(
            r#"{{"currentpage": {page}, "pagecount": {}, "totalevents": {total}, "events": [{items}]}}"#,
            total.div_ceil(limit.max(1))
        )
    })
}

async fn indico(
    AxumState(state): AxumState<Shared>,
    Path(_category): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let limit = number(&q, "limit").unwrap_or(100);
    let offset = number(&q, "offset").unwrap_or(0);
    let bearer = format!("Bearer {INDICO_TOKEN}");
    let render = |position: usize, m: &SimMeeting| {
        json!({
            "_type": "Conference", "id": (1_000 + position).to_string(), "title": format!("Webinar {}", m.id),
            "chairs": [{"_type": "ConferenceChair", "fullName": "Organizer", "email": upn_of(&m.organizer_id)}],
            "location": join_url_of(&m.online_meeting_id), "room": "", "modificationDate": m.updated_at,
        })
    };
    serve(&state, &headers, &[("authorization", &bearer)], (offset, limit), &render, |items, total, _| {
        format!(
            r#"{{"_type": "HTTPAPIResult", "count": {total}, "complete": true, "additionalInfo": {{}}, "results": [{items}]}}"#
        )
    })
}

async fn swoogo(
    AxumState(state): AxumState<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let limit = number(&q, "per-page").unwrap_or(20);
    let page = number(&q, "page").unwrap_or(1).max(1);
    let render = |position: usize, m: &SimMeeting| {
        json!({
            "id": 90_000 + position, "name": format!("Webinar {}", m.id),
            "status": if active(m) { "live" } else { "cancelled" },
            "updated_at": m.updated_at.replace('T', " ").trim_end_matches('Z'),
            "c_1001": join_url_of(&m.online_meeting_id), "c_1002": upn_of(&m.organizer_id),
        })
    };
    serve(&state, &headers, &[], ((page - 1) * limit, limit), &render, |items, total, _| {
        format!(
            r#"{{"items": [{items}], "_meta": {{"totalCount": {total}, "pageCount": {}, "currentPage": {page}, "perPage": {limit}}}}}"#,
            total.div_ceil(limit.max(1))
        )
    })
}
