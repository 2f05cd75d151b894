//! Who attended an event, as its attendance reports say, and what regsync
//! writes back to the platform for each registrant.

use chrono::{DateTime, Utc};

/// One attendance record (a person in one report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attendee {
    /// Their e-mail address, when the report shows it.
    pub email: Option<String>,
    /// Their display name.
    pub display_name: Option<String>,
    /// The virtual-event registration's id (webinars and town halls).
    pub registration_id: Option<String>,
    /// `externalRegistrationInformation.registrationId`: the platform's id
    /// regsync sent at create.
    pub external_id: Option<String>,
    /// Seconds attended.
    pub total_seconds: i64,
    /// First join.
    pub first_join: Option<DateTime<Utc>>,
    /// Last leave.
    pub last_leave: Option<DateTime<Utc>>,
}

/// A registrant's attendance of one event: what is written back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attendance {
    /// Whether they attended at all.
    pub attended: bool,
    /// Seconds attended, over every report and interval.
    pub total_seconds: i64,
    /// First join.
    pub first_join: Option<DateTime<Utc>>,
    /// Last leave.
    pub last_leave: Option<DateTime<Utc>>,
}

impl Attendance {
    /// Adds one record of the same person.
    pub fn add(&mut self, record: &Attendee) {
        self.attended = true;
        self.total_seconds += record.total_seconds;
        self.first_join = earliest(self.first_join, record.first_join);
        self.last_leave = self.last_leave.max(record.last_leave);
    }
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
