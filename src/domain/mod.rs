//! Types shared across modules: the meeting as the platform describes it,
//! the ids that cross module boundaries, where a registration lives and what
//! Graph holds there, and the audit record of one Graph request. Owns no I/O;
//! `source`, `store` and `graph` meet only here.

mod attendance;
mod failure;
mod registrant;
mod selector;
mod state;
mod virtual_event;

use std::fmt;

use chrono::{DateTime, Utc};

pub use attendance::{Attendance, Attendee};
pub use failure::{CallRecord, FailureCategory, OrganizerCondition};
pub use registrant::{ExternalRegistrant, Person};
pub use selector::Selector;
pub use state::RowState;
pub use virtual_event::{
    AnswerInput, AnswerValue, EventKind, QuestionAnswer, RegistrationQuestion, TeamsStatus, VirtualEvent,
};

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_newtype!(
    /// The platform's id of a meeting: regsync's natural key.
    ExternalId
);
id_newtype!(
    /// The Entra object id (or UPN) of the Teams meeting's organizer.
    OrganizerId
);
id_newtype!(
    /// Graph's `onlineMeeting.id`; opaque, may hold `:`, `@`, `*`, `=`.
    OnlineMeetingId
);
id_newtype!(
    /// The `id` Graph returned for an `externalMeetingRegistration`.
    RegistrationId
);

/// Who may register: Graph's `meetingAudience` (without the sentinel value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AllowedRegistrant {
    /// Anyone may register.
    Everyone,
    /// Only people in the organizer's organization may register.
    Organization,
}

impl AllowedRegistrant {
    /// The value as Graph and the database spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Everyone => "everyone",
            Self::Organization => "organization",
        }
    }

    /// Parses `everyone` / `organization`, ignoring case and surrounding space.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "everyone" => Some(Self::Everyone),
            "organization" => Some(Self::Organization),
            _ => None,
        }
    }
}

impl fmt::Display for AllowedRegistrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the platform wants for a meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    /// The meeting is active: external registration must be enabled.
    Registered,
    /// The meeting is cancelled: the registration must be removed.
    Unregistered,
}

impl Desired {
    /// The value as the database spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Unregistered => "unregistered",
        }
    }
}

/// A validated meeting from the platform's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalMeeting {
    /// The platform's id.
    pub external_id: ExternalId,
    /// The Teams meeting's organizer.
    pub organizer: OrganizerRef,
    /// The Teams online meeting.
    pub online_meeting: MeetingRef,
    /// Who may register.
    pub allowed_registrant: AllowedRegistrant,
    /// Active or cancelled.
    pub desired: Desired,
    /// When the platform last changed the item, if it says.
    pub updated_at: Option<DateTime<Utc>>,
    /// When the event starts and ends, if the platform says.
    pub times: EventTimes,
}

/// When an event starts and ends (`source.fields.starts_at`, `ends_at`):
/// the start orders the write queue (the soonest first), the end schedules
/// the reading of attendance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventTimes {
    /// The start.
    pub starts_at: Option<DateTime<Utc>>,
    /// The end.
    pub ends_at: Option<DateTime<Utc>>,
}

/// Where Graph holds a meeting's registrants: the online meeting's
/// registration (beta), or the webinar or town hall (v1.0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrantsAt {
    /// `…/onlineMeetings/{meeting}/registration/registrants`, under the
    /// meeting's registration with this id: Graph deletes registrants with
    /// their registration, so one re-created is another place.
    Meeting(Location, RegistrationId),
    /// `/solutions/virtualEvents/{webinars|townhalls}/{id}/registrations`.
    Event(VirtualEvent),
}

impl RegistrantsAt {
    /// The form the store keeps (`registrants.enrolled_at`, `lookup_at`).
    pub fn key(&self) -> String {
        match self {
            Self::Meeting(at, registration) => {
                serde_json::json!(["meeting", at.organizer.as_str(), at.meeting.as_str(), registration.as_str()])
                    .to_string()
            }
            Self::Event(event) => serde_json::json!([event.kind.key(), event.id]).to_string(),
        }
    }

    /// The place a [`RegistrantsAt::key`] names.
    pub fn from_key(key: &str) -> Option<Self> {
        let parts: Vec<String> = serde_json::from_str(key).ok()?;
        match parts.as_slice() {
            [kind, organizer, meeting, registration] if kind == "meeting" => Some(Self::Meeting(
                Location { organizer: OrganizerId(organizer.clone()), meeting: OnlineMeetingId(meeting.clone()) },
                RegistrationId(registration.clone()),
            )),
            [kind, id] => {
                let kind = [EventKind::Webinar, EventKind::Townhall].into_iter().find(|k| k.key() == kind)?;
                Some(Self::Event(VirtualEvent { kind, id: id.clone() }))
            }
            _ => None,
        }
    }
}

/// The organizer as the platform names them: Graph's id, or the user
/// principal name (e-mail) regsync resolves to one through Graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrganizerRef {
    /// The Entra object id.
    Id(OrganizerId),
    /// The UPN, lower-cased (UPNs ignore case).
    Upn(String),
}

/// The Teams meeting as the platform names it: Graph's id, or the join link
/// regsync resolves to one through Graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeetingRef {
    /// Graph's `onlineMeeting.id`.
    Id(OnlineMeetingId),
    /// The meeting's `joinWebUrl`.
    JoinUrl(String),
}

impl OrganizerRef {
    /// The id, when the platform gave one.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Id(id) => Some(id.as_str()),
            Self::Upn(_) => None,
        }
    }

    /// The UPN, when the platform gave one.
    pub fn upn(&self) -> Option<&str> {
        match self {
            Self::Upn(upn) => Some(upn),
            Self::Id(_) => None,
        }
    }
}

impl MeetingRef {
    /// The id, when the platform gave one.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Id(id) => Some(id.as_str()),
            Self::JoinUrl(_) => None,
        }
    }

    /// The join link, when the platform gave one.
    pub fn join_url(&self) -> Option<&str> {
        match self {
            Self::JoinUrl(url) => Some(url),
            Self::Id(_) => None,
        }
    }
}

impl fmt::Display for OrganizerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Upn(upn) => write!(f, "{upn}"),
        }
    }
}

impl fmt::Display for MeetingRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::JoinUrl(url) => write!(f, "{url}"),
        }
    }
}

/// A Graph id regsync must look up from what the platform holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The organizer's object id, from their UPN (`GET /users/{upn}`).
    Organizer {
        /// The UPN.
        upn: String,
    },
    /// The online meeting's id, from its join link, among the organizer's
    /// meetings (`GET /users/{organizer}/onlineMeetings?$filter=JoinWebUrl eq '…'`).
    Meeting {
        /// The organizer, resolved already.
        organizer: OrganizerId,
        /// The join link.
        join_url: String,
    },
}

impl Lookup {
    /// The kind, as `ops.resolutions.kind` spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Organizer { .. } => "organizer",
            Self::Meeting { .. } => "meeting",
        }
    }

    /// What is looked up: the UPN or the join link.
    pub fn value(&self) -> &str {
        match self {
            Self::Organizer { upn } => upn,
            Self::Meeting { join_url, .. } => join_url,
        }
    }

    /// Why a meeting fails when Graph finds nothing, naming the value.
    pub fn not_found(&self, external_id: &ExternalId) -> String {
        let retry = format!(
            "correct it on the platform (regsync looks it up again when it changes), or run `regsync retry {external_id}` once it exists"
        );
        match self {
            Self::Organizer { upn } => {
                format!("organizer {upn:?} is not a user Graph knows (GET /users/{{upn}} found no one): {retry}")
            }
            Self::Meeting { organizer, join_url } => format!(
                "Teams join link {join_url:?} is not an online meeting of organizer {organizer} (Graph found none): {retry}"
            ),
        }
    }
}

/// A platform item that failed validation, with the reason an operator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedItem {
    /// The item's id, when it had a usable one.
    pub external_id: Option<String>,
    /// What is wrong and what to fix.
    pub reason: String,
    /// The item's JSON, truncated.
    pub raw: String,
}

/// Where a registration lives at Graph: organizer and online meeting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// `/users/{organizer}`.
    pub organizer: OrganizerId,
    /// `/onlineMeetings/{meeting}`.
    pub meeting: OnlineMeetingId,
}

impl Location {
    /// Both ids are known (a part the platform named by UPN or join link is
    /// empty until resolved).
    pub fn is_known(&self) -> bool {
        !self.organizer.as_str().is_empty() && !self.meeting.as_str().is_empty()
    }
}

/// A registration regsync knows Graph holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actual {
    /// Graph's id.
    pub registration_id: RegistrationId,
    /// Where it is.
    pub location: Location,
    /// Its audience, when progress.
    pub audience: Option<AllowedRegistrant>,
}

/// The registration Graph holds for a meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteRegistration {
    /// An `externalMeetingRegistration`: regsync's kind.
    External {
        /// Its id.
        id: RegistrationId,
        /// Its audience, when Graph said.
        allowed_registrant: Option<AllowedRegistrant>,
    },
    /// Another kind (Teams' own `meetingRegistration`): never touched.
    Foreign {
        /// Its `@odata.type`.
        odata_type: String,
    },
}
