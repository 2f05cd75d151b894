//! What went wrong and whose it is: the audit record of one Graph request,
//! the category of a row's failure, and an organizer's condition (a scope of
//! its own between one row and the whole deployment).

use std::time::Duration;

use uuid::Uuid;

/// One HTTP request to Graph, for the audit table (`ops.graph_calls`).
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// GET, POST or DELETE.
    pub method: &'static str,
    /// Path below `graph.base_url`, percent-encoded.
    pub path: String,
    /// The status, when one arrived.
    pub http_status: Option<u16>,
    /// Round-trip time.
    pub duration: Duration,
    /// When it left (this host's clock).
    pub sent_at: chrono::DateTime<chrono::Utc>,
    /// For a request sent past a send gate: the row's lease held at least
    /// until then (the gate renewed it for `sync.lease_ttl_ms` from a
    /// moment after this one).
    pub lease_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Graph's `request-id` response header.
    pub graph_request_id: Option<String>,
    /// The fresh GUID sent as `client-request-id`.
    pub client_request_id: Uuid,
    /// Graph's `error.code`, when it failed.
    pub error_code: Option<String>,
    /// The error's `innerError` object as JSON text: `request-id`,
    /// `client-request-id`, `date` and any nested codes.
    pub inner_error: Option<String>,
    /// Graph's `Date` response header.
    pub response_date: Option<String>,
    /// Graph's `x-ms-ags-diagnostic` response header (where it was served).
    pub ags_diagnostic: Option<String>,
    /// created, found, absent, deleted, conflict, throttled, transient,
    /// rejected, unauthorized or unexpected_body (the column's comment in
    /// the migrations says what each means).
    pub outcome: &'static str,
    /// Whose token the request carried: the organizer of the place it
    /// acted on (`None` where no organizer is involved).
    pub organizer: Option<super::OrganizerId>,
}

/// Why a meeting is not synced, for grouping on a dashboard; the free-text
/// error next to it says what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCategory {
    /// The app's credentials were refused (token endpoint, or a 401).
    Auth,
    /// Graph refused access (403): permission, consent or access policy.
    Permission,
    /// Graph has no such online meeting for the organizer (404).
    NotFound,
    /// Graph refused the request as malformed (400 and other 4xx).
    InvalidRequest,
    /// Graph is throttling.
    Throttled,
    /// A 5xx, timeout or lost connection: retried.
    Transient,
    /// Graph says the API is gone (410).
    TargetRetired,
    /// Teams' own registration sits on the meeting; regsync never replaces it.
    ForeignRegistration,
    /// Another platform meeting holds the Teams meeting's registration.
    SharedMeeting,
    /// The platform's data cannot be used (an id that is not a Graph id).
    PlatformData,
    /// The worker stopped (crashed) on the meeting every time.
    WorkerCrashed,
    /// regsync's own settings are unusable.
    Configuration,
    /// A registrant's meeting is not registered at Teams (yet, or at all).
    MeetingNotReady,
    /// A registrant's webinar is not published.
    WebinarNotPublished,
    /// The platform refused a registrant's write-back.
    Writeback,
}

impl FailureCategory {
    /// The value `ops.meeting_status.error_category` holds.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Permission => "permission",
            Self::NotFound => "not_found",
            Self::InvalidRequest => "invalid_request",
            Self::Throttled => "throttled",
            Self::Transient => "transient",
            Self::TargetRetired => "target_retired",
            Self::ForeignRegistration => "foreign_registration",
            Self::SharedMeeting => "shared_meeting",
            Self::PlatformData => "platform_data",
            Self::WorkerCrashed => "worker_crashed",
            Self::Configuration => "configuration",
            Self::MeetingNotReady => "meeting_not_ready",
            Self::WebinarNotPublished => "webinar_not_published",
            Self::Writeback => "writeback",
        }
    }
}

/// An organizer's own trouble: it parks that organizer's rows with the
/// reason and the fix, and holds nobody else (`ops.organizers.condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrganizerCondition {
    /// Delegated sign-in: the organizer never signed in, or signed out.
    NoSignIn,
    /// The identity platform refused the organizer's sign-in
    /// (`invalid_grant`, `interaction_required`, ...).
    SignInRefused,
    /// Graph answered 401 to the organizer's token even after a real
    /// refresh.
    Unauthorized,
    /// The app has no application access policy for the organizer.
    NoAccessPolicy,
    /// Graph does not know the organizer (404 `UnknownError` on several of
    /// their meetings while others' registrations answer).
    UnknownToGraph,
}

impl OrganizerCondition {
    /// The value `ops.organizers.condition` holds.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSignIn => "no_sign_in",
            Self::SignInRefused => "sign_in_refused",
            Self::Unauthorized => "unauthorized",
            Self::NoAccessPolicy => "no_access_policy",
            Self::UnknownToGraph => "unknown_to_graph",
        }
    }

    /// The condition stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::NoSignIn, Self::SignInRefused, Self::Unauthorized, Self::NoAccessPolicy, Self::UnknownToGraph]
            .into_iter()
            .find(|c| c.as_str() == text)
    }

    /// The category a row parked by it carries.
    pub fn category(self) -> FailureCategory {
        match self {
            Self::NoSignIn | Self::SignInRefused | Self::Unauthorized => FailureCategory::Auth,
            Self::NoAccessPolicy => FailureCategory::Permission,
            Self::UnknownToGraph => FailureCategory::NotFound,
        }
    }

    /// What the organizer (or an admin) does about it; `organizer` names
    /// them in the command.
    pub fn fix(self, organizer: &str) -> String {
        match self {
            Self::NoSignIn | Self::SignInRefused | Self::Unauthorized => {
                format!("have organizer {organizer} run `regsync login` (their rows are due again once they sign in)")
            }
            Self::NoAccessPolicy => format!(
                "grant the application access policy to the organizer (Grant-CsApplicationAccessPolicy -PolicyName \
                 <policy> -Identity {organizer}; it takes up to 30 minutes), then run `regsync retry --organizer {organizer}`"
            ),
            Self::UnknownToGraph => format!(
                "check the organizer on the platform (Graph answers so for a user who left the tenant or a wrong \
                 id), then run `regsync retry --organizer {organizer}`"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OrganizerCondition;

    #[test]
    fn every_condition_reads_back_as_itself() {
        for c in [
            OrganizerCondition::NoSignIn,
            OrganizerCondition::SignInRefused,
            OrganizerCondition::Unauthorized,
            OrganizerCondition::NoAccessPolicy,
            OrganizerCondition::UnknownToGraph,
        ] {
            assert_eq!(OrganizerCondition::parse(c.as_str()), Some(c));
        }
        assert_eq!(OrganizerCondition::parse("ok"), None);
    }
}
