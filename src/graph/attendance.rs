//! Who attended: the attendance reports of a webinar or town hall (each
//! session's) or of an online meeting (beta), and their records, merged
//! per person. A list returns at most the 50 most recent reports.
//! Application permission `OnlineMeetingArtifact.Read.All` with the access
//! policy.
//! <https://learn.microsoft.com/graph/api/meetingattendancereport-list>

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::client::segment;
use super::virtual_events::event_path;
use super::{Client, Error, Permit};
use crate::domain::{Attendee, CallRecord, Location, VirtualEvent};

/// Where attendance is read.
#[derive(Debug, Clone)]
pub enum AttendanceAt {
    /// A webinar's or town hall's sessions.
    Event(VirtualEvent),
    /// An online meeting (beta).
    Meeting(Location),
}

#[derive(Deserialize)]
struct Entity {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    #[serde(default)]
    email_address: Option<String>,
    #[serde(default)]
    identity: Option<Identity>,
    #[serde(default)]
    total_attendance_in_seconds: Option<i64>,
    #[serde(default)]
    attendance_intervals: Vec<Interval>,
    #[serde(default)]
    registration_id: Option<String>,
    #[serde(default)]
    external_registration_information: Option<External>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Interval {
    #[serde(default)]
    join_date_time: Option<DateTime<Utc>>,
    #[serde(default)]
    leave_date_time: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct External {
    #[serde(default)]
    registration_id: Option<String>,
}

impl Record {
    fn into_domain(self) -> Attendee {
        let non_empty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        Attendee {
            email: non_empty(self.email_address),
            display_name: non_empty(self.identity.and_then(|i| i.display_name)),
            registration_id: non_empty(self.registration_id),
            external_id: non_empty(self.external_registration_information.and_then(|e| e.registration_id)),
            total_seconds: self.total_attendance_in_seconds.unwrap_or_default().max(0),
            first_join: self.attendance_intervals.iter().filter_map(|i| i.join_date_time).min(),
            last_leave: self.attendance_intervals.iter().filter_map(|i| i.leave_date_time).max(),
        }
    }
}

impl Client {
    /// Every record of every ready report at `at`; `None` while there is
    /// no report yet.
    ///
    /// # Errors
    /// Classified failures.
    pub async fn attendance(
        &self,
        permit: Permit,
        at: &AttendanceAt,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Option<Vec<Attendee>>, Error> {
        let token = permit.token.clone();
        let reports_at: Vec<String> = match at {
            AttendanceAt::Meeting(location) => {
                drop(permit);
                vec![format!("{}/attendanceReports", self.path(location)?.trim_end_matches("/registration"))]
            }
            AttendanceAt::Event(event) => {
                let sessions = format!("{}/sessions", event_path(event)?);
                let sessions = self.pick_listed(permit, sessions, calls, |s: Entity| Some(s.id), false).await?;
                sessions
                    .iter()
                    .map(|s| Ok(format!("{}/sessions/{}/attendanceReports", event_path(event)?, segment(s)?)))
                    .collect::<Result<_, Error>>()?
            }
        };
        let mut records = Vec::new();
        let mut any_report = false;
        for reports in reports_at {
            let permit = self.permit_as(token.clone()).await;
            let ids = self.pick_listed(permit, reports.clone(), calls, |r: Entity| Some(r.id), false).await?;
            for id in ids {
                any_report = true;
                let path = format!("{reports}/{}/attendanceRecords", segment(&id)?);
                let permit = self.permit_as(token.clone()).await;
                records.extend(self.pick_listed(permit, path, calls, |r: Record| Some(r.into_domain()), false).await?);
            }
        }
        Ok(any_report.then_some(records))
    }
}
