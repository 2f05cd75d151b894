//! Tests of the registrant state machine.

use super::*;
use crate::domain::{
    EventKind, Location, OnlineMeetingId, OrganizerId, Person, RegistrationId, TeamsStatus, VirtualEvent,
};
use crate::store::registrants::MeetingView;

fn registrant(desired: Desired, meeting_registered: bool) -> ClaimedRegistrant {
    ClaimedRegistrant {
        claim: crate::store::claims::Claim {
            lease: crate::store::claims::Lease { row: 1, token: uuid::Uuid::nil() },
            attempts: 0,
            needs_lookup: false,
        },
        external_id: "r-1".into(),
        meeting_external_id: "m-1".into(),
        desired,
        person: Person::default(),
        lookup_at: None,
        enrolled_at: None,
        registrant_id: None,
        join_web_url: None,
        written_back_value: None,
        status_written_back: None,
        intent_age: None,
        teams_status: None,
        teams_change_is_latest: false,
        answers: Default::default(),
        meeting: Some(MeetingView {
            desired: Desired::Registered,
            state: if meeting_registered { RowState::Synced } else { RowState::Pending },
            organizer_id: Some("o".into()),
            online_meeting_id: Some("w".into()),
            registered: meeting_registered.then(|| (location(), RegistrationId("r".into()))),
            allowed_registrant: AllowedRegistrant::Everyone,
            last_error: None,
        }),
    }
}

const LINK: WriteBacks = WriteBacks { link: true, status: false };

fn location() -> Location {
    Location { organizer: OrganizerId("o".into()), meeting: OnlineMeetingId("m".into()) }
}

fn at() -> RegistrantsAt {
    RegistrantsAt::Meeting(location(), RegistrationId("r".into()))
}

#[test]
fn a_registrant_under_a_registration_the_meeting_no_longer_holds_is_forgotten_then_enrolled_again() {
    let mut c = registrant(Desired::Registered, true);
    let old = RegistrantsAt::Meeting(location(), RegistrationId("r-old".into()));
    let p = Progress { enrolled_at: Some(old), join_web_url: Some("l".into()), ..Progress::default() };
    assert_eq!(plan(&c, &p, Target::MeetingRegistration, LINK), Step::Forget, "re-created: gone with the old one");
    let forgotten = Progress { enrolled_at: None, join_web_url: None, ..p.clone() };
    assert_eq!(plan(&c, &forgotten, Target::MeetingRegistration, LINK), Step::Enrol(at()));
    if let Some(m) = c.meeting.as_mut() {
        m.registered = None;
    }
    assert_eq!(plan(&c, &p, Target::MeetingRegistration, LINK), Step::Forget, "deleted: gone with it");
    c.meeting = None;
    assert!(matches!(plan(&c, &p, Target::MeetingRegistration, LINK), Step::Wait(_)), "unlisted: unknown");
}

#[test]
fn a_new_registrant_waits_for_its_meeting_then_is_enrolled_then_written_back_once() {
    let target = Target::MeetingRegistration;
    let waiting = registrant(Desired::Registered, false);
    assert!(matches!(plan(&waiting, &Progress::from_claim(&waiting), target, LINK), Step::Wait(_)));

    let c = registrant(Desired::Registered, true);
    let mut p = Progress::from_claim(&c);
    assert_eq!(plan(&c, &p, target, LINK), Step::Enrol(at()));
    p.enrolled_at = Some(at());
    p.join_web_url = Some("https://link".into());
    assert_eq!(plan(&c, &p, target, LINK), Step::WriteBack);
    p.written_back_value = Some("https://link".into());
    assert_eq!(plan(&c, &p, target, LINK), Step::Done);
    assert_eq!(plan(&c, &Progress { written_back_value: None, ..p }, target, WriteBacks::default()), Step::Done);
}

#[test]
fn an_unknown_outcome_is_looked_up_first_and_a_lost_link_means_enrolling_again() {
    let c = registrant(Desired::Registered, true);
    let mut p = Progress { needs_lookup: true, lookup_at: Some(at()), ..Progress::default() };
    assert_eq!(plan(&c, &p, Target::MeetingRegistration, LINK), Step::Lookup(at()));
    p.needs_lookup = false;
    p.enrolled_at = Some(at());
    assert_eq!(plan(&c, &p, Target::MeetingRegistration, LINK), Step::Remove(at()), "no link: remove, then enrol");
}

#[test]
fn a_cancelled_registrant_or_meeting_is_removed_and_never_enrolled() {
    let mut c = registrant(Desired::Unregistered, true);
    let enrolled = Progress { enrolled_at: Some(at()), join_web_url: Some("l".into()), ..Progress::default() };
    assert_eq!(plan(&c, &enrolled, Target::MeetingRegistration, LINK), Step::Remove(at()));
    assert_eq!(plan(&c, &Progress::default(), Target::MeetingRegistration, LINK), Step::Done);
    c.desired = Desired::Registered;
    if let Some(m) = c.meeting.as_mut() {
        m.desired = Desired::Unregistered;
    }
    assert_eq!(plan(&c, &Progress::default(), Target::MeetingRegistration, LINK), Step::Done);
}

#[test]
fn a_webinar_registration_without_an_id_is_found_by_listing_and_long_ids_are_refused() {
    let mut c = registrant(Desired::Registered, true);
    let webinar = RegistrantsAt::Event(VirtualEvent { kind: EventKind::Webinar, id: "w".into() });
    assert_eq!(plan(&c, &Progress::default(), Target::VirtualEventWebinar, LINK), Step::Enrol(webinar.clone()));
    let sent = Progress { enrolled_at: Some(webinar.clone()), ..Progress::default() };
    assert_eq!(plan(&c, &sent, Target::VirtualEventWebinar, LINK), Step::Lookup(webinar));
    c.desired = Desired::Unregistered;
    assert_eq!(
        plan(&c, &sent, Target::VirtualEventWebinar, LINK),
        Step::Lookup(RegistrantsAt::Event(VirtualEvent { kind: EventKind::Webinar, id: "w".into() })),
        "a cancel needs the id: look it up first"
    );
    c.desired = Desired::Registered;
    c.external_id = "x".repeat(257);
    assert!(matches!(
        plan(&c, &Progress::default(), Target::VirtualEventWebinar, LINK),
        Step::Fail(_, FailureCategory::PlatformData)
    ));
}

#[test]
fn duplicates_a_lookup_found_are_cancelled_before_anything_else_but_a_pending_lookup() {
    let c = registrant(Desired::Registered, true);
    let webinar = RegistrantsAt::Event(VirtualEvent { kind: EventKind::Webinar, id: "w".into() });
    let p = Progress {
        enrolled_at: Some(webinar.clone()),
        registrant_id: Some("kept".into()),
        duplicates: vec!["dup-1".into(), "dup-2".into()],
        ..Progress::default()
    };
    let step = plan(&c, &p, Target::VirtualEventWebinar, LINK);
    assert_eq!(step, Step::CancelDuplicate(webinar.clone(), "dup-1".into()));
    let looking = Progress { needs_lookup: true, lookup_at: Some(webinar.clone()), ..p };
    assert_eq!(plan(&c, &looking, Target::VirtualEventWebinar, LINK), Step::Lookup(webinar));
}

#[test]
fn a_cancelled_meetings_registrant_is_told_cancelled_once_and_registered_again_once_enrolled_anew() {
    let both = WriteBacks { link: true, status: true };
    let mut c = registrant(Desired::Registered, true);
    if let Some(m) = c.meeting.as_mut() {
        m.desired = Desired::Unregistered;
    }
    let removed = Progress::default();
    assert_eq!(plan(&c, &removed, Target::MeetingRegistration, both), Step::WriteStatus(CANCELLED));
    assert_eq!(plan(&c, &removed, Target::MeetingRegistration, LINK), Step::Done, "no status write-back set");
    let told = Progress { status_written_back: Some(CANCELLED.into()), ..removed };
    assert_eq!(plan(&c, &told, Target::MeetingRegistration, both), Step::Done, "told once");

    let c = registrant(Desired::Registered, true);
    let link = Some("https://link".to_owned());
    let enrolled = Progress { enrolled_at: Some(at()), join_web_url: link.clone(), written_back_value: link, ..told };
    assert_eq!(plan(&c, &enrolled, Target::MeetingRegistration, both), Step::WriteStatus(REGISTERED));
    let registered = Progress { status_written_back: Some(REGISTERED.into()), ..enrolled };
    assert_eq!(plan(&c, &registered, Target::MeetingRegistration, both), Step::Done);
}

#[test]
fn a_webinar_lookup_keeps_the_registration_the_platform_knows_and_waits_out_a_lagging_list() {
    let webinar = RegistrantsAt::Event(VirtualEvent { kind: EventKind::Webinar, id: "w".into() });
    let settle = std::time::Duration::from_secs(300);
    let mut p = Progress { registrant_id: Some("told".into()), ..Progress::default() };
    let live = vec!["first".into(), "told".into(), "third".into()];
    assert_eq!(after_event_lookup(&mut p, live, &webinar, None, settle), Ok(()));
    assert_eq!(p.registrant_id.as_deref(), Some("told"));
    assert_eq!(p.duplicates, ["first", "third"]);
    assert_eq!(p.enrolled_at, Some(webinar.clone()));

    let mut unknown = Progress { needs_lookup: true, ..Progress::default() };
    let young = Some(std::time::Duration::from_secs(10));
    assert_eq!(after_event_lookup(&mut unknown, Vec::new(), &webinar, young, settle), Ok(()));
    assert_eq!(unknown.unlisted_for, Some(std::time::Duration::from_secs(290)), "possibly registered: look again");
    assert_eq!(unknown.enrolled_at, None);

    let mut accepted = Progress { enrolled_at: Some(webinar.clone()), ..Progress::default() };
    assert!(after_event_lookup(&mut accepted, Vec::new(), &webinar, None, settle).is_err(), "never register again");
}

#[test]
fn a_status_changed_in_teams_is_told_once_and_an_ended_registration_is_not_undone_unless_the_platform_changed_later() {
    let both = WriteBacks { link: true, status: true };
    let town_hall = RegistrantsAt::Event(VirtualEvent { kind: EventKind::Townhall, id: "w".into() });
    let mut c = registrant(Desired::Registered, true);
    let enrolled = |status: Option<TeamsStatus>, told: Option<&str>| Progress {
        enrolled_at: Some(town_hall.clone()),
        registrant_id: Some("reg-1".into()),
        written_back_value: Some("reg-1".into()),
        teams_status: status,
        status_written_back: told.map(str::to_owned),
        ..Progress::default()
    };
    let target = Target::VirtualEventTownhall;
    // Nothing told, registered in Teams: the platform knows already.
    assert_eq!(plan(&c, &enrolled(Some(TeamsStatus::Registered), None), target, both), Step::Done);
    // Waitlisted, then off the waitlist: each told once.
    let waitlisted = enrolled(Some(TeamsStatus::Waitlisted), None);
    assert_eq!(plan(&c, &waitlisted, target, both), Step::WriteStatus("waitlisted"));
    assert_eq!(plan(&c, &enrolled(Some(TeamsStatus::Waitlisted), Some("waitlisted")), target, both), Step::Done);
    let moved = enrolled(Some(TeamsStatus::Registered), Some("waitlisted"));
    assert_eq!(plan(&c, &moved, target, both), Step::WriteStatus("registered"));
    // Cancelled in Teams: told, then left alone while the platform keeps
    // its older registration.
    let cancelled = enrolled(Some(TeamsStatus::Cancelled), None);
    assert_eq!(plan(&c, &cancelled, target, both), Step::WriteStatus("cancelled"));
    c.teams_change_is_latest = true;
    assert_eq!(plan(&c, &enrolled(Some(TeamsStatus::Cancelled), Some("cancelled")), target, both), Step::Done);
    // The platform cancels too: nothing to cancel at Teams.
    c.desired = Desired::Unregistered;
    assert_eq!(plan(&c, &enrolled(Some(TeamsStatus::Cancelled), Some("cancelled")), target, both), Step::Forget);
    // The platform registers them again after the change in Teams: anew.
    c.desired = Desired::Registered;
    c.teams_change_is_latest = false;
    assert_eq!(plan(&c, &enrolled(Some(TeamsStatus::Rejected), Some("rejected")), target, both), Step::Forget);
}
