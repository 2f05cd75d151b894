//! A person the platform registered, as regsync keeps them.

use chrono::{DateTime, Utc};

use super::Desired;

/// A person the platform registered for one of its meetings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRegistrant {
    /// The platform's registrant id: the registrant's `id` at Teams (meeting
    /// registration) or `externalRegistrationInformation.registrationId`
    /// (webinar).
    pub external_id: String,
    /// The platform's meeting id.
    pub meeting_external_id: String,
    /// Registered or cancelled.
    pub desired: Desired,
    /// Who they are, as far as the platform says.
    pub person: Person,
    /// When the platform last changed them, if it says.
    pub updated_at: Option<DateTime<Utc>>,
    /// Their answers to the event's registration questions: the configured
    /// question name, and the value the item holds there.
    pub answers: std::collections::BTreeMap<String, serde_json::Value>,
}

/// What a registration needs to know about a registrant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    /// E-mail.
    pub email: Option<String>,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Entra tenant (an `organization` meeting's registrant).
    pub tenant_id: Option<String>,
    /// Entra user (an `organization` meeting's registrant).
    pub user_id: Option<String>,
    /// Windows time zone name.
    pub preferred_timezone: Option<String>,
    /// Language tag.
    pub preferred_language: Option<String>,
}
