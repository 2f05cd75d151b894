//! What a test can do to the people side of the simulator, and read back.

use super::*;
use crate::{Sim, SimMeeting};

impl Sim {
    /// Lists `registrant` on the platform (or changes it, by id).
    pub fn upsert_registrant(&self, registrant: SimRegistrant) {
        let (meeting, id) = (registrant.meeting_id.clone(), registrant.id.clone());
        let mut s = self.lock();
        let list = &mut s.people.platform;
        match list.iter_mut().find(|r| r.id == registrant.id && r.meeting_id == registrant.meeting_id) {
            Some(existing) => *existing = registrant,
            None => list.push(registrant),
        }
        drop(s);
        self.announce(Some(&meeting), &id);
    }

    /// Lists `registrant` once more, as a platform that repeats an item does.
    pub fn list_registrant_again(&self, registrant: SimRegistrant) {
        self.lock().people.platform.push(registrant);
    }

    /// Lists `n` registrants for each of `meetings`; returns them.
    pub fn seed_registrants(&self, meetings: &[SimMeeting], n: usize) -> Vec<SimRegistrant> {
        let people: Vec<SimRegistrant> =
            meetings.iter().flat_map(|m| (1..=n).map(|i| SimRegistrant::new(&m.id, i))).collect();
        for p in &people {
            self.upsert_registrant(p.clone());
        }
        people
    }

    /// The write-backs the platform received.
    pub fn write_backs(&self) -> Vec<WriteBack> {
        self.lock().people.write_backs.clone()
    }

    /// The next write-backs are answered with these statuses.
    pub fn fail_write_backs(&self, statuses: &[u16]) {
        self.lock().people.write_back_faults.extend(statuses);
    }

    /// The registrants Graph holds on `organizer`'s `meeting`.
    pub fn graph_registrants(&self, organizer: &str, meeting: &str) -> Vec<GraphRegistrant> {
        let s = self.lock();
        s.people
            .registrants
            .get(&(organizer.to_owned(), meeting.to_owned()))
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Creates (or changes the status of) webinar `id`: `draft`, `published`, `canceled`.
    pub fn put_webinar(&self, id: &str, status: &str) {
        self.lock().people.webinars.entry(id.to_owned()).or_default().status = status.to_owned();
    }

    /// From now on every registrant page names itself as the next one, as a
    /// faulty platform may.
    pub fn loop_registrant_pages(&self) {
        self.lock().people.loop_pages = true;
    }

    /// From now on a get of one webinar registration by e-mail is refused
    /// (403): the app may only list.
    pub fn refuse_registration_get(&self) {
        self.lock().people.refuse_get_by_key = true;
    }

    /// How many registrant listing requests the platform answered.
    pub fn registrant_listing_requests(&self) -> u64 {
        self.lock().people.listing_requests
    }

    /// Drops a registrant from the platform's list (they "vanish").
    pub fn remove_registrant(&self, meeting_id: &str, id: &str) {
        self.lock().people.platform.retain(|r| !(r.meeting_id == meeting_id && r.id == id));
    }

    /// From now on a new webinar registration is listed only `lag` after
    /// its create: Graph's lists are eventually consistent.
    pub fn lag_webinar_list(&self, lag: Duration) {
        self.lock().people.list_lag = lag;
    }

    /// Creates (or changes the status of) town hall `id`.
    pub fn put_townhall(&self, id: &str, status: &str) {
        let mut s = self.lock();
        let townhall = s.people.webinars.entry(id.to_owned()).or_default();
        townhall.townhall = true;
        townhall.status = status.to_owned();
    }

    /// Adds a registration question to event `id`.
    pub fn put_question(&self, id: &str, question: super::SimQuestion) {
        self.lock().people.webinars.entry(id.to_owned()).or_default().questions.push(question);
    }

    /// Sets event `id`'s capacity, waitlist and approval.
    pub fn configure_registration(&self, id: &str, config: super::RegistrationConfig) {
        self.lock().people.webinars.entry(id.to_owned()).or_default().config = config;
    }

    /// A change made in Teams: the registration of `external_id` in event
    /// `id` takes `status` (`canceled` by the person, `registered` on
    /// approval or when the waitlist moves, `rejectedByOrganizer`).
    /// Returns whether there was one.
    pub fn change_registration_in_teams(&self, id: &str, external_id: &str, status: &str) -> bool {
        let mut s = self.lock();
        let found = s.people.webinars.get_mut(id).and_then(|w| {
            w.registrations.iter_mut().rev().find(|r| r.external_id == external_id && r.status != "canceled")
        });
        let Some(r) = found else { return false };
        r.status = status.to_owned();
        let registration = r.id.clone();
        drop(s);
        self.announce_registration_change(id, &registration);
        true
    }

    /// Adds an attendance report to the event or online meeting `id`, listed
    /// `ready_in` from now (reports are ready some time after the end);
    /// returns its id.
    pub fn put_attendance_report(&self, id: &str, ready_in: Duration, records: Vec<super::SimAttendee>) -> String {
        let mut s = self.lock();
        let n = s.people.next_id();
        let report = super::SimReport {
            id: format!("report-{n:06}"),
            ready_at: tokio::time::Instant::now() + ready_in,
            records,
        };
        let report_id = report.id.clone();
        s.people.attendance.entry(id.to_owned()).or_default().push(report);
        report_id
    }

    /// The registration id Graph gave `external_id` in event `id`.
    pub fn registration_id(&self, id: &str, external_id: &str) -> Option<String> {
        let s = self.lock();
        let w = s.people.webinars.get(id)?;
        w.registrations.iter().rev().find(|r| r.external_id == external_id).map(|r| r.id.clone())
    }

    /// Webinar (or town hall) `id` as Graph holds it.
    pub fn webinar(&self, id: &str) -> Option<SimWebinar> {
        self.lock().people.webinars.get(id).cloned()
    }

    /// Every request about people at Graph.
    pub fn people_log(&self) -> Vec<PeopleRequest> {
        self.lock().people.log.clone()
    }

    /// Holds every read of webinar `id`'s status until the returned sender
    /// says go (`send(true)`).
    pub fn hold_webinar_status(&self, id: &str) -> tokio::sync::watch::Sender<bool> {
        let (go, released) = tokio::sync::watch::channel(false);
        self.lock().people.held_status.insert(id.to_owned(), released);
        go
    }

    /// Puts a live registration for `external_id` in webinar `id` (made by
    /// an earlier deployment or another tool, say); returns its id.
    pub fn put_webinar_registration(&self, id: &str, external_id: &str, email: &str) -> String {
        let mut s = self.lock();
        let n = s.people.next_id();
        let registration = WebinarRegistration {
            id: format!("reg-{n:06}"),
            external_id: external_id.to_owned(),
            email: email.to_owned(),
            status: "registered".into(),
            answers: Vec::new(),
            arrived: true,
            listed_from: tokio::time::Instant::now(),
        };
        s.people.webinars.entry(id.to_owned()).or_default().registrations.push(registration.clone());
        registration.id
    }

    /// How many held status reads have arrived.
    pub fn held_status_reads(&self) -> u64 {
        self.lock().people.held_arrivals
    }
}
