//! Who in a report is which registrant, pure: by the registration id Graph
//! gave (virtual events), by the platform's id sent at create
//! (`externalRegistrationInformation`), else by e-mail. Every registrant
//! gets figures — none when they did not attend — and whoever matches no
//! one is reported, not dropped.

use std::collections::BTreeMap;

use crate::domain::{Attendance, Attendee};
use crate::store::attendance::{EventAttendance, EventRegistrant, Unmatched};

/// Matches `records` to `registrants`.
pub fn match_attendees(registrants: &[EventRegistrant], records: &[Attendee]) -> EventAttendance {
    let mut figures: Vec<Attendance> = vec![Attendance::default(); registrants.len()];
    let mut unmatched: BTreeMap<(Option<String>, Option<String>), i64> = BTreeMap::new();
    for record in records {
        let by_registration = record
            .registration_id
            .as_deref()
            .and_then(|id| registrants.iter().position(|r| r.registrant_id.as_deref() == Some(id)));
        let by_external =
            || record.external_id.as_deref().and_then(|id| registrants.iter().position(|r| r.external_id == id));
        let by_email = || {
            record.email.as_deref().and_then(|email| {
                registrants
                    .iter()
                    .position(|r| r.email.as_deref().is_some_and(|e| e.trim().eq_ignore_ascii_case(email.trim())))
            })
        };
        match by_registration.or_else(by_external).or_else(by_email) {
            Some(i) => figures[i].add(record),
            None => {
                let key = (record.email.as_ref().map(|e| e.to_lowercase()), record.display_name.clone());
                *unmatched.entry(key).or_default() += record.total_seconds;
            }
        }
    }
    EventAttendance {
        registrants: registrants
            .iter()
            .zip(figures)
            .map(|(r, a)| (r.external_id.clone(), r.email.clone(), a))
            .collect(),
        unmatched: unmatched
            .into_iter()
            .map(|((email, display_name), total_seconds)| Unmatched { email, display_name, total_seconds })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registrant(id: &str, registration: Option<&str>, email: &str) -> EventRegistrant {
        EventRegistrant {
            external_id: id.into(),
            registrant_id: registration.map(str::to_owned),
            email: Some(email.into()),
        }
    }

    fn record(email: &str, registration: Option<&str>, external: Option<&str>, seconds: i64) -> Attendee {
        Attendee {
            email: Some(email.into()),
            display_name: Some(email.split('@').next().unwrap_or_default().into()),
            registration_id: registration.map(str::to_owned),
            external_id: external.map(str::to_owned),
            total_seconds: seconds,
            first_join: None,
            last_leave: None,
        }
    }

    #[test]
    fn records_match_by_registration_then_external_id_then_e_mail_and_the_rest_are_reported() {
        let registrants = [
            registrant("p1", Some("reg-1"), "one@example.com"),
            registrant("p2", None, "two@example.com"),
            registrant("p3", None, "Three@Example.com"),
            registrant("p4", None, "four@example.com"),
        ];
        let records = [
            // Another address, but the registration says who.
            record("alias@example.com", Some("reg-1"), None, 600),
            record("elsewhere@example.com", None, Some("p2"), 300),
            record("three@example.com", None, None, 100),
            // Twice in one report (rejoined), or in two reports: summed.
            record("three@example.com", None, None, 50),
            record("guest@example.com", None, None, 900),
        ];
        let read = match_attendees(&registrants, &records);
        let seconds: Vec<(String, bool, i64)> =
            read.registrants.iter().map(|(id, _, a)| (id.clone(), a.attended, a.total_seconds)).collect();
        assert_eq!(
            seconds,
            vec![("p1".into(), true, 600), ("p2".into(), true, 300), ("p3".into(), true, 150), ("p4".into(), false, 0)]
        );
        assert_eq!(
            read.unmatched,
            vec![Unmatched {
                email: Some("guest@example.com".into()),
                display_name: Some("guest".into()),
                total_seconds: 900
            }]
        );
    }
}
