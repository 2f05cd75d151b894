//! Types shared across modules: the meeting as the platform describes it and
//! the ids that cross module boundaries. Owns no I/O.

use std::fmt;

use chrono::{DateTime, Utc};

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
    pub organizer_id: OrganizerId,
    /// The Teams online meeting.
    pub online_meeting_id: OnlineMeetingId,
    /// Who may register.
    pub allowed_registrant: AllowedRegistrant,
    /// Active or cancelled.
    pub desired: Desired,
    /// When the platform last changed the item, if it says.
    pub updated_at: Option<DateTime<Utc>>,
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
