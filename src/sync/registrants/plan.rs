//! The registrant state machine, pure: from what the platform wants, what
//! regsync knows Graph holds and what the meeting is, the one next step.

use crate::config::Target;
use crate::domain::{
    AllowedRegistrant, Desired, EventKind, FailureCategory, RegistrantsAt, RowState, TeamsStatus, VirtualEvent,
};
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
    /// The registration's status in Teams, as last read back.
    pub teams_status: Option<TeamsStatus>,
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
            teams_status: c.teams_status,
            attempts: c.claim.attempts,
            unlisted_for: None,
            duplicates: Vec::new(),
        }
    }

    /// The status the platform was last told (none told: the registration
    /// it made), and the status it should hold now (none read back: the
    /// registration regsync made).
    fn statuses(&self) -> (&str, &'static str) {
        let told = self.status_written_back.as_deref().unwrap_or(REGISTERED);
        (told, self.teams_status.map_or(REGISTERED, TeamsStatus::as_str))
    }

    /// What the platform is told: the join link (meeting registration) or
    /// the registration id (webinar).
    pub fn value_to_write_back(&self, target: Target) -> Option<&str> {
        match target {
            Target::MeetingRegistration => self.join_web_url.as_deref(),
            Target::VirtualEventWebinar | Target::VirtualEventTownhall => self.registrant_id.as_deref(),
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
    /// Graph deleted the registrant with its registration, or Teams ended
    /// it: forget it, no call.
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
    let Some(kind) = target.event_kind() else {
        return match &meeting.registered {
            Some((at, registration)) => Ok(Some(RegistrantsAt::Meeting(at.clone(), registration.clone()))),
            None if meeting.state == RowState::Failed => Err(Step::Fail(
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
        };
    };
    match meeting.online_meeting_id.as_deref().filter(|w| !w.is_empty()) {
        Some(id) => Ok(Some(RegistrantsAt::Event(VirtualEvent { kind, id: id.to_owned() }))),
        None => Err(Step::Fail(
            format!(
                "meeting {:?} names no {} (source.fields.{})",
                c.meeting_external_id,
                kind.noun(),
                match kind {
                    EventKind::Webinar => "webinar_id",
                    EventKind::Townhall => "townhall_id",
                }
            ),
            FailureCategory::PlatformData,
        )),
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
    // A registration Teams ended (the person cancelled, the organizer
    // rejected) is not undone: the platform is told, and nothing is sent to
    // Graph — unless the platform changed the registrant after the change
    // in Teams was seen, and wants them registered: the later change wins.
    if let (Some(ended), Some(_)) = (progress.teams_status.filter(|s| s.is_ended()), &progress.enrolled_at) {
        let (told, now) = progress.statuses();
        if write_back.status && told != now {
            return Step::WriteStatus(ended.as_str());
        }
        return match (c.desired, c.teams_change_is_latest) {
            (Desired::Registered, true) => Step::Done,
            // Cancelled on the platform too (Teams cancelled it already), or
            // registered again there since: a new registration.
            _ => Step::Forget,
        };
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
        if target.event_kind().is_some() && progress.registrant_id.is_none() {
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
            // Told it was cancelled, enrolled again; or its status changed in
            // Teams (approved, waitlisted, off the waitlist): tell it so.
            _ if write_back.status && progress.statuses().0 != progress.statuses().1 => {
                Step::WriteStatus(progress.statuses().1)
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
        Some(RegistrantsAt::Event(_)) if c.external_id.chars().count() > MAX_REGISTRATION_ID_CHARS => Step::Fail(
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

/// What a lookup on a webinar or town hall that found the person's live registrations `live`
/// means: the one kept (the one the platform was told of, else the first
/// made) is where they are, the others are duplicates to cancel. Found
/// nowhere while a create's outcome is unknown and younger than `settle`
/// (Graph's list lags behind its writes): possibly registered, looked for
/// again. `Err`: Graph accepted a registration it does not list yet.
pub fn after_event_lookup(
    p: &mut Progress,
    mut live: Vec<String>,
    at: &RegistrantsAt,
    intent_age: Option<std::time::Duration>,
    settle: std::time::Duration,
) -> Result<(), String> {
    if let Some(kept) = p.registrant_id.as_ref().and_then(|id| live.iter().position(|l| l == id)) {
        live.swap(0, kept);
    }
    let found = (!live.is_empty()).then(|| live.remove(0));
    p.duplicates = live;
    match (found.is_none() && p.needs_lookup, intent_age) {
        (true, Some(age)) if age < settle => {
            p.unlisted_for = Some(settle - age);
            return Ok(());
        }
        _ => {}
    }
    if found.is_none() && p.enrolled_at.is_some() {
        // Never register again on that: look again later.
        let place = match at {
            RegistrantsAt::Event(event) => event.to_string(),
            RegistrantsAt::Meeting(location, _) => format!("the registration of {}", location.meeting),
        };
        return Err(format!("{place} does not list the registration it accepted yet"));
    }
    p.enrolled_at = found.is_some().then(|| at.clone());
    p.registrant_id = found;
    Ok(())
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
