//! What a test can do to simulated Graph (faults, organizers, registrations
//! put in place), and read back.

use super::*;
use std::time::Duration;

use crate::{Fault, FaultRates, LookupRequest, Retirement, Sim};

impl Sim {
    /// Queues a fault for the next Graph request (of `method`, if given).
    pub fn fail_next(&self, method: Option<&'static str>, fault: Fault) {
        self.lock().faults.push_back((method, fault));
    }

    /// Sets random fault rates.
    pub fn set_rates(&self, rates: FaultRates) {
        self.lock().rates = rates;
    }

    /// Answers every Graph request 429 with `retry_after` (seconds) for `length`.
    pub fn throttle_all_for(&self, length: Duration, retry_after: &str) {
        self.lock().storm = Some((tokio::time::Instant::now() + length, retry_after.to_owned()));
    }

    /// Makes Graph answer 403 (no application access policy) for an organizer.
    pub fn forbid_organizer(&self, organizer: &str) {
        self.lock().forbidden_organizers.insert(organizer.to_owned());
    }

    /// The organizer leaves the tenant: Graph's online-meeting service
    /// answers 404 `UnknownError` for every call about their meetings, as it
    /// does for a user it cannot find.
    pub fn depart_organizer(&self, organizer: &str) {
        self.lock().departed_organizers.insert(organizer.to_owned());
    }

    /// The tenant gives `upn` to another user, `id` (a departed person's
    /// address reused).
    pub fn reassign_upn(&self, upn: &str, id: &str) {
        self.lock().reassigned_upns.insert(upn.to_lowercase(), id.to_owned());
    }

    /// Graph knows the organizer again (a wrong id fixed, a user restored).
    pub fn restore_organizer(&self, organizer: &str) {
        self.lock().departed_organizers.remove(organizer);
    }

    /// Graph has an online meeting for the organizer (one the platform does
    /// not list, say).
    pub fn add_online_meeting(&self, organizer: &str, meeting: &str) {
        self.lock().online_meetings.insert((organizer.to_owned(), meeting.to_owned()));
    }

    /// Forgets an online meeting: Graph answers 404 for it.
    pub fn forget_online_meeting(&self, organizer: &str, meeting: &str) {
        self.lock().online_meetings.remove(&(organizer.to_owned(), meeting.to_owned()));
    }

    /// When true, a POST over an existing registration replaces it (a
    /// duplicate) instead of answering 409: the strict oracle.
    pub fn allow_duplicates(&self, allow: bool) {
        self.lock().allow_duplicates = allow;
    }

    /// Puts a registration at Graph directly (Teams' own kind if `foreign`).
    pub fn put_registration(&self, organizer: &str, meeting: &str, allowed: &str, foreign: bool) -> String {
        let mut s = self.lock();
        let id = s.new_id();
        let odata_type = if foreign {
            "#microsoft.graph.meetingRegistration"
        } else {
            "#microsoft.graph.externalMeetingRegistration"
        };
        s.registrations.insert(
            (organizer.to_owned(), meeting.to_owned()),
            Registration { id: id.clone(), odata_type: odata_type.into(), allowed_registrant: allowed.into() },
        );
        id
    }

    /// Puts a registration at Graph whose body carries no `@odata.type`.
    pub fn put_untyped_registration(&self, organizer: &str, meeting: &str) -> String {
        let mut s = self.lock();
        let id = s.new_id();
        let registration =
            Registration { id: id.clone(), odata_type: String::new(), allowed_registrant: "everyone".into() };
        s.registrations.insert((organizer.to_owned(), meeting.to_owned()), registration);
        id
    }

    /// Graph's `Date` header runs this far ahead of this machine's clock.
    pub fn skew_graph_clock(&self, ahead: Duration) {
        self.lock().clock_skew = Some(ahead);
    }

    /// Makes every registration call answer as a retired or refusing API
    /// does (`None`: the API answers again).
    pub fn retire_api(&self, retirement: Option<Retirement>) {
        self.lock().retired = retirement;
    }

    /// From now on the join-link `$filter` answers every meeting of the
    /// organizer, not only the one asked for.
    pub fn misfilter_meetings(&self) {
        self.lock().misfilter = true;
    }

    /// The registration Graph holds for a meeting.
    pub fn registration(&self, organizer: &str, meeting: &str) -> Option<Registration> {
        self.lock().registrations.get(&(organizer.to_owned(), meeting.to_owned())).cloned()
    }

    /// Every request to Graph so far (registrations, registrants, virtual
    /// events, batches), when it arrived.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.lock().arrivals.clone()
    }

    /// Every Graph registration request so far.
    pub fn log(&self) -> Vec<GraphRequest> {
        self.lock().log.clone()
    }

    /// Every user and meeting lookup so far.
    pub fn lookups(&self) -> Vec<LookupRequest> {
        self.lock().lookups.clone()
    }
}
