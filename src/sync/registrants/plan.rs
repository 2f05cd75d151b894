//! The registrant state machine, pure: from what the platform wants, what
//! regsync knows Graph holds and what the meeting is, the one next step.

use crate::config::Target;
use crate::domain::{AllowedRegistrant, Desired, FailureCategory, RegistrantsAt};
use crate::graph::MAX_REGISTRATION_ID_CHARS;
use crate::store::registrants::ClaimedRegistrant;

/// What a reconcile knows so far; starts as the row says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// A write's outcome is unknown: look at `lookup_at` first.
    pub needs_lookup: bool,
    /// Where that write went.
    pub lookup_at: Option<RegistrantsAt>,
    /// Where Graph holds the registrant.
    pub enrolled_at: Option<RegistrantsAt>,
    /// Graph's id of it.
    pub registrant_id: Option<String>,
    /// Its join link (meeting registration; only from the create).
    pub join_web_url: Option<String>,
    /// What the platform acknowledged last.
    pub written_back_value: Option<String>,
    /// A write-back was acknowledged in this reconcile.
    pub written_back_now: bool,
    /// The status the platform was last told (status write-back).
    pub status_written_back: Option<String>,
    /// A status write-back was acknowledged in this reconcile.
    pub status_written_back_now: bool,
    /// Real attempts.
    pub attempts: i32,
    /// A lookup found nothing where a write of unknown outcome may still
    /// appear: how much longer to look before believing it absent.
    pub unlisted_for: Option<std::time::Duration>,
    /// Other live registrations of this person a lookup found (webinar):
    /// duplicates to cancel, the one kept being `registrant_id`.
    pub duplicates: Vec<String>,
}

impl Progress {
    /// As the claimed row says.
    pub fn from_claim(c: &ClaimedRegistrant) -> Self {
        let at = |key: &Option<String>| key.as_deref().and_then(RegistrantsAt::from_key);
        Self {
            needs_lookup: c.claim.needs_lookup,
            lookup_at: at(&c.lookup_at),
            enrolled_at: at(&c.enrolled_at),
            registrant_id: c.registrant_id.clone(),
            join_web_url: c.join_web_url.clone(),
            written_back_value: c.written_back_value.clone(),
            written_back_now: false,
            status_written_back: c.status_written_back.clone(),
            status_written_back_now: false,
            attempts: c.claim.attempts,
            unlisted_for: None,
            duplicates: Vec::new(),
        }
    }

    /// What the platform is told: the join link (meeting registration) or
    /// the registration id (webinar).
    pub fn value_to_write_back(&self, target: Target) -> Option<&str> {
        match target {
            Target::MeetingRegistration => self.join_web_url.as_deref(),
            Target::VirtualEventWebinar => self.registrant_id.as_deref(),
        }
    }
}

/// The next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do.
    Done,
    /// Not yet: the meeting is not ready. No attempt is counted.
    Wait(String),
    /// Park as failed with the reason.
    Fail(String, FailureCategory),
    /// Find out what Graph holds there.
    Lookup(RegistrantsAt),
    /// Enrol the registrant there.
    Enrol(RegistrantsAt),
    /// Remove (or cancel) the registrant there.
    Remove(RegistrantsAt),
    /// Tell the platform the join link or registration id.
    WriteBack,
    /// Graph deleted the registrant with its registration: forget it, no call.
    Forget,
    /// Cancel a duplicate registration of the person there (webinar).
    CancelDuplicate(RegistrantsAt, String),
    /// Tell the platform the registrant's status changed at Teams.
    WriteStatus(&'static str),
}

/// The status written back when a registrant is enrolled again.
pub const REGISTERED: &str = "registered";
/// The status written back when a registrant's meeting is cancelled.
pub const CANCELLED: &str = "cancelled";

/// Which write-backs are configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteBacks {
    /// The join link or registration id (`writeback.url`).
    pub link: bool,
    /// The status (`writeback.status_url`).
    pub status: bool,
}

/// Where the registrant belongs now: `Ok(None)` when nowhere (cancelled,
/// or its meeting is), `Err` when that cannot be known yet or at all.
fn wanted(c: &ClaimedRegistrant, target: Target) -> Result<Option<RegistrantsAt>, Step> {
    if c.desired != Desired::Registered {
        return Ok(None);
    }
    let Some(meeting) = &c.meeting else {
        return Err(Step::Wait(format!("waiting for the platform to list meeting {:?}", c.meeting_external_id)));
    };
    if meeting.desired != Desired::Registered {
        return Ok(None);
    }
    match target {
        Target::MeetingRegistration => match &meeting.registered {
            Some((at, registration)) => Ok(Some(RegistrantsAt::Meeting(at.clone(), registration.clone()))),
            None if meeting.state == "failed" => Err(Step::Fail(
                format!(
                    "meeting {:?} is not registered at Teams, so its registrants cannot be enrolled: {}",
                    c.meeting_external_id,
                    meeting.last_error.as_deref().unwrap_or("see the meeting's last_error")
                ),
                FailureCategory::MeetingNotReady,
            )),
            None => {
                Err(Step::Wait(format!("waiting for meeting {:?} to be registered at Teams", c.meeting_external_id)))
            }
        },
        Target::VirtualEventWebinar => match meeting.online_meeting_id.as_deref().filter(|w| !w.is_empty()) {
            Some(webinar) => Ok(Some(RegistrantsAt::Webinar(webinar.to_owned()))),
            None => Err(Step::Fail(
                format!("meeting {:?} names no webinar (source.fields.webinar_id)", c.meeting_external_id),
                FailureCategory::PlatformData,
            )),
        },
    }
}

/// The next step for `c`, given `progress` and the write-backs configured.
pub fn plan(c: &ClaimedRegistrant, progress: &Progress, target: Target, write_back: WriteBacks) -> Step {
    if progress.needs_lookup {
        if let Some(at) = &progress.lookup_at {
            return Step::Lookup(at.clone());
        }
    }
    if let (Some(duplicate), Some(at)) = (progress.duplicates.first(), &progress.enrolled_at) {
        return Step::CancelDuplicate(at.clone(), duplicate.clone());
    }
    // Graph deletes registrants with their registration, and regsync records
    // a meeting's registration as gone only once Graph said so.
    if let (Some(RegistrantsAt::Meeting(_, under)), Some(meeting)) = (&progress.enrolled_at, &c.meeting) {
        if meeting.registered.as_ref().map(|(_, id)| id) != Some(under) {
            return Step::Forget;
        }
    }
    let wanted = match wanted(c, target) {
        Ok(wanted) => wanted,
        // Not knowing where it belongs is no reason to keep it elsewhere
        // while its meeting is only waiting; it is when it failed.
        Err(step) => return step,
    };
    if let Some(enrolled) = &progress.enrolled_at {
        // A 204 carries no id: find it by listing, before anything that
        // needs it (a cancel does).
        if target == Target::VirtualEventWebinar && progress.registrant_id.is_none() {
            return Step::Lookup(enrolled.clone());
        }
        if Some(enrolled) != wanted.as_ref() {
            return Step::Remove(enrolled.clone());
        }
        return match target {
            // Graph gives the join link only in the answer to the create: a
            // registrant whose link is lost is removed and enrolled again.
            Target::MeetingRegistration if progress.join_web_url.is_none() => Step::Remove(enrolled.clone()),
            _ if write_back.link && progress.written_back_value.as_deref() != progress.value_to_write_back(target) => {
                Step::WriteBack
            }
            // Told it was cancelled, enrolled again: tell it so.
            _ if write_back.status && progress.status_written_back.as_deref().is_some_and(|s| s != REGISTERED) => {
                Step::WriteStatus(REGISTERED)
            }
            _ => Step::Done,
        };
    }
    // Registered on the platform, but not at Teams since its meeting is
    // cancelled: the platform is told.
    let meeting_cancelled =
        c.desired == Desired::Registered && c.meeting.as_ref().is_some_and(|m| m.desired != Desired::Registered);
    if wanted.is_none()
        && meeting_cancelled
        && write_back.status
        && progress.status_written_back.as_deref() != Some(CANCELLED)
    {
        return Step::WriteStatus(CANCELLED);
    }
    match wanted {
        Some(RegistrantsAt::Webinar(_)) if c.external_id.chars().count() > MAX_REGISTRATION_ID_CHARS => Step::Fail(
            format!(
                "the platform's registrant id is {} characters; a webinar registration's external id takes at most {}",
                c.external_id.chars().count(),
                MAX_REGISTRATION_ID_CHARS
            ),
            FailureCategory::PlatformData,
        ),
        Some(RegistrantsAt::Meeting(..))
            if c.meeting.as_ref().is_some_and(|m| m.allowed_registrant == AllowedRegistrant::Organization)
                && (c.person.tenant_id.is_none() || c.person.user_id.is_none()) =>
        {
            Step::Fail(
                format!(
                    "meeting {:?} admits only its organization's users, so Teams needs the registrant's Entra tenant \
                     and user ids: map registrants.fields.tenant_id and registrants.fields.user_id",
                    c.meeting_external_id
                ),
                FailureCategory::PlatformData,
            )
        }
        Some(at) => Step::Enrol(at),
        None => Step::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Location, OnlineMeetingId, OrganizerId, Person, RegistrationId};
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
            meeting: Some(MeetingView {
                desired: Desired::Registered,
                state: if meeting_registered { "synced".into() } else { "pending".into() },
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
        let webinar = RegistrantsAt::Webinar("w".into());
        assert_eq!(plan(&c, &Progress::default(), Target::VirtualEventWebinar, LINK), Step::Enrol(webinar.clone()));
        let sent = Progress { enrolled_at: Some(webinar.clone()), ..Progress::default() };
        assert_eq!(plan(&c, &sent, Target::VirtualEventWebinar, LINK), Step::Lookup(webinar));
        c.desired = Desired::Unregistered;
        assert_eq!(
            plan(&c, &sent, Target::VirtualEventWebinar, LINK),
            Step::Lookup(RegistrantsAt::Webinar("w".into())),
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
        let webinar = RegistrantsAt::Webinar("w".into());
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
        let enrolled =
            Progress { enrolled_at: Some(at()), join_web_url: link.clone(), written_back_value: link, ..told };
        assert_eq!(plan(&c, &enrolled, Target::MeetingRegistration, both), Step::WriteStatus(REGISTERED));
        let registered = Progress { status_written_back: Some(REGISTERED.into()), ..enrolled };
        assert_eq!(plan(&c, &registered, Target::MeetingRegistration, both), Step::Done);
    }
}
