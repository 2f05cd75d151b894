//! The platform's registrant listings (per meeting, or all), filtered by
//! modification time when asked, and one registrant alone.

use super::*;

#[derive(Deserialize)]
pub(super) struct PageQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    changed_since: Option<String>,
}

fn registrant_page(s: &mut State, headers: &HeaderMap, meeting: Option<&str>, q: PageQuery) -> Response {
    if let Some(refused) = s.platform.refused(headers) {
        return refused;
    }
    s.people.listing_requests += 1;
    let limit = q.limit.unwrap_or(200).clamp(1, 1_000);
    let offset = q.cursor.as_deref().and_then(|c| c.strip_prefix("o:")).and_then(|n| n.parse().ok()).unwrap_or(0);
    let since = match q.changed_since.as_deref().map(crate::platform::parse_since) {
        None => None,
        Some(Ok(since)) => Some(since),
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
    };
    if let Some(since) = since {
        s.platform.changed_since_asked.push(("registrants", since));
    }
    let changed =
        |r: &SimRegistrant| since.is_none_or(|since| crate::platform::changed_since(Some(&r.updated_at), since));
    let all: Vec<&SimRegistrant> =
        s.people.platform.iter().filter(|r| meeting.is_none_or(|m| r.meeting_id == m) && changed(r)).collect();
    let items: Vec<&SimRegistrant> = all.iter().skip(offset).take(limit).copied().collect();
    let next = match s.people.loop_pages {
        true => Some(format!("o:{offset}")),
        false => (offset + limit < all.len()).then(|| format!("o:{}", offset + limit)),
    };
    Json(json!({"registrants": items, "next_cursor": next})).into_response()
}

pub(super) async fn list_meeting(
    AxumState(state): AxumState<Shared>,
    Path(meeting): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    registrant_page(&mut lock(&state), &headers, Some(&meeting), q)
}

/// `GET /platform/meetings/{meeting}/registrants/{registrant}`: one
/// registrant as the list shows them.
pub(super) async fn get_registrant(
    AxumState(state): AxumState<Shared>,
    Path((meeting, registrant)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let s = lock(&state);
    if let Some(refused) = s.platform.refused(&headers) {
        return refused;
    }
    match s.people.platform.iter().find(|r| r.meeting_id == meeting && r.id == registrant) {
        Some(found) => Json(json!(found)).into_response(),
        None => error(404, "NotFound", "no such registrant"),
    }
}

pub(super) async fn list_all(
    AxumState(state): AxumState<Shared>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    registrant_page(&mut lock(&state), &headers, None, q)
}
