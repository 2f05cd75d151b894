//! Attendance reports, as Graph documents them: for webinars and town halls
//! `GET …/{event}/sessions`, `…/sessions/{id}/attendanceReports` (at most
//! the 50 most recent) and `…/attendanceReports/{id}/attendanceRecords`
//! (ten per page, `@odata.nextLink`); for online meetings (beta)
//! `GET /users/{organizer}/onlineMeetings/{id}/attendanceReports` and its
//! records. A report is listed only once it is ready (some time after the
//! event ends); records carry the registration's id and the external
//! registration information sent at create, and guests carry neither.

use axum::extract::{Path, Query, State as AxumState};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::*;

/// The most reports a list returns (Graph: the 50 most recent).
const MAX_REPORTS: usize = 50;

/// One attendance report.
#[derive(Debug, Clone)]
pub struct SimReport {
    /// Its id.
    pub id: String,
    /// When it is listed.
    pub ready_at: Instant,
    /// Its records.
    pub records: Vec<SimAttendee>,
}

/// One attendance record.
#[derive(Debug, Clone, Default)]
pub struct SimAttendee {
    /// `emailAddress`.
    pub email: String,
    /// `identity.displayName`.
    pub display_name: String,
    /// `registrationId` (virtual events; none for a guest).
    pub registration_id: Option<String>,
    /// `externalRegistrationInformation.registrationId`.
    pub external_id: Option<String>,
    /// Each interval: join, leave (RFC 3339) and seconds.
    pub intervals: Vec<(String, String, u64)>,
}

impl SimAttendee {
    fn to_graph(&self, n: usize) -> Value {
        let total: u64 = self.intervals.iter().map(|i| i.2).sum();
        json!({
            "id": format!("record-{n}"),
            "emailAddress": self.email,
            "identity": {"displayName": self.display_name},
            "role": "Attendee",
            "totalAttendanceInSeconds": total,
            "attendanceIntervals": self.intervals.iter().map(|(join, leave, secs)|
                json!({"joinDateTime": join, "leaveDateTime": leave, "durationInSeconds": secs})).collect::<Vec<_>>(),
            "registrationId": self.registration_id,
            "externalRegistrationInformation": self.external_id.as_ref().map(|id| json!({"registrationId": id})),
        })
    }
}

/// The ready reports of `id`, most recent first, at most [`MAX_REPORTS`].
fn ready(people: &People, id: &str) -> Vec<SimReport> {
    let now = Instant::now();
    let mut reports: Vec<SimReport> =
        people.attendance.get(id).into_iter().flatten().filter(|r| r.ready_at <= now).cloned().collect();
    reports.reverse();
    reports.truncate(MAX_REPORTS);
    reports
}

fn reports_json(reports: &[SimReport]) -> Value {
    json!({"value": reports.iter().map(|r| json!({"id": r.id, "totalParticipantCount": r.records.len()}))
        .collect::<Vec<_>>()})
}

fn records_json(
    people: &People,
    id: &str,
    report: &str,
    skip: usize,
    headers: &HeaderMap,
    path: &str,
) -> Option<Value> {
    let found = ready(people, id).into_iter().find(|r| r.id == report)?;
    let all: Vec<Value> = found.records.iter().enumerate().map(|(n, r)| r.to_graph(n)).collect();
    Some(page_of(&all, skip, headers, path))
}

pub(super) async fn list_sessions(
    AxumState(state): AxumState<Shared>,
    Path((collection, event_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    read_event(&state, &headers, (&collection, &event_id), "GET sessions", |_, _| {
        Json(json!({"value": [{"id": format!("{event_id}-session")}]})).into_response()
    })
}

pub(super) async fn list_event_reports(
    AxumState(state): AxumState<Shared>,
    Path((collection, event_id, session)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    read_event(&state, &headers, (&collection, &event_id), "GET attendanceReports", |people, _| {
        if session != format!("{event_id}-session") {
            return error(404, "itemNotFound", "The session was not found.");
        }
        Json(reports_json(&ready(people, &event_id))).into_response()
    })
}

pub(super) async fn list_event_records(
    AxumState(state): AxumState<Shared>,
    Path((collection, event_id, _session, report)): Path<(String, String, String, String)>,
    Query(q): Query<SkipQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    read_event(&state, &headers, (&collection, &event_id), "GET attendanceRecords", |people, _| {
        match records_json(people, &event_id, &report, q.skip.unwrap_or(0), &headers, uri.path()) {
            Some(page) => Json(page).into_response(),
            None => error(404, "itemNotFound", "The attendance report was not found."),
        }
    })
}

pub(super) async fn list_meeting_reports(
    AxumState(state): AxumState<Shared>,
    Path((organizer, meeting)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&state);
    if let Err(refused) = before(&mut s, &headers, Some(&organizer), "-") {
        return *refused;
    }
    let answer = Json(reports_json(&ready(&s.people, &meeting))).into_response();
    log(&mut s, "GET attendanceReports", answer.status(), false);
    answer
}

pub(super) async fn list_meeting_records(
    AxumState(state): AxumState<Shared>,
    Path((organizer, meeting, report)): Path<(String, String, String)>,
    Query(q): Query<SkipQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&state);
    if let Err(refused) = before(&mut s, &headers, Some(&organizer), "-") {
        return *refused;
    }
    let answer = match records_json(&s.people, &meeting, &report, q.skip.unwrap_or(0), &headers, uri.path()) {
        Some(page) => Json(page).into_response(),
        None => error(404, "itemNotFound", "The attendance report was not found."),
    };
    log(&mut s, "GET attendanceRecords", answer.status(), false);
    answer
}
