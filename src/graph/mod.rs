//! Microsoft Graph: the three calls on one meeting's external registration
//! (create, get, delete), a cached app token, and the classification of every
//! failure. Calls no other regsync module but `config` and `domain`; the
//! engine sees only domain types, [`Error`](crate::graph::Error)'s classification and
//! [`CallRecord`](crate::domain::CallRecord)s for the audit table.

mod answer;
mod assertion;
mod attendance;
mod auth;
mod client;
mod lookup;
mod questions;
mod registrants;
mod sign_in;
mod subscriptions;
mod virtual_events;
mod wire;

use std::time::Duration;

use crate::domain::FailureCategory;

pub use attendance::AttendanceAt;
pub use auth::refresh_in as token_refresh_in;
pub use client::{Client, Permit, TokenClaims};
pub use questions::RegistrationConfiguration;
pub use registrants::Enrolled;
pub use sign_in::{DeviceCode, SignInError, UserTokens};
pub use subscriptions::{registrations_resource, GraphSubscription};
pub use virtual_events::{EventRegistration, ListedRegistration, MAX_REGISTRATION_ID_CHARS};

/// What a delete found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Graph removed it (204).
    Removed,
    /// Graph had none (404).
    AlreadyGone,
}

/// A Graph call that did not succeed, classified for the engine.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// 429, 509, or a 5xx with Retry-After: wait, and do not count an
    /// attempt.
    #[error("Graph throttled the request (HTTP {status}{}); regsync waits and retries", retry_after_text(*.retry_after))]
    Throttled {
        /// 429, 509 or the 5xx.
        status: u16,
        /// The wait Graph asked for, if it said.
        retry_after: Option<Duration>,
    },
    /// 5xx, timeout, a dropped connection or an unexpected status: the
    /// request may or may not have acted unless `may_have_acted` is false.
    #[error("Graph request failed ({detail}); regsync retries with backoff")]
    Transient {
        /// The HTTP status, when one arrived.
        status: Option<u16>,
        /// False when Graph cannot have acted: the connection failed before
        /// any byte was sent, or Graph answered a refusal.
        may_have_acted: bool,
        /// What happened.
        detail: String,
    },
    /// 409: a registration may already exist.
    #[error("Graph answered 409 Conflict ({code})")]
    Conflict {
        /// Graph's error code.
        code: String,
    },
    /// A 4xx that will not change by retrying.
    #[error("Graph answered HTTP {status} {code}: {message}. {hint}")]
    Rejected {
        /// The status.
        status: u16,
        /// Graph's error code.
        code: String,
        /// Graph's message.
        message: String,
        /// What the operator should do.
        hint: String,
    },
    /// The registration API itself may refuse: a 404 whose code is not "not
    /// found", a 410, or a 403 saying (in its code or message) that the
    /// operation is not supported. Whose condition it is — the row's, or the
    /// deployment's, which stops writes until a probe gets another answer —
    /// is decided from evidence (`sync::scope`).
    #[error("Graph's registration API refuses every call (HTTP {status} {code}: {message}); regsync stops writing until it answers again")]
    Retired {
        /// 404, 410 or 403.
        status: u16,
        /// Graph's error code.
        code: String,
        /// Graph's message.
        message: String,
    },
    /// 401 even with a freshly fetched token.
    #[error("Graph answered 401 Unauthorized with a fresh token: check the app's permission OnlineMeetings.ReadWrite.All and admin consent")]
    Unauthorized,
    /// The identity platform refused or could not be reached: nothing was
    /// sent to Graph.
    #[error("cannot get a Graph token ({error}): {detail}. {hint}")]
    Token {
        /// HTTP status of the token endpoint, if it answered.
        status: Option<u16>,
        /// The `error` field (`invalid_client`, ...).
        error: String,
        /// The first line of `error_description`.
        detail: String,
        /// What the operator should do.
        hint: &'static str,
        /// The token endpoint's `Retry-After`: no token request before it.
        retry_after: Option<Duration>,
    },
    /// Delegated sign-in: the organizer has not signed in (never sent).
    #[error("organizer {organizer} has not signed in: run `regsync login` and sign in as that user")]
    NotSignedIn {
        /// The organizer.
        organizer: String,
    },
    /// Delegated sign-in: the organizer's sign-in was revoked or expired
    /// (`invalid_grant`), or no longer opens (never sent).
    #[error(
        "the sign-in of organizer {organizer} no longer works ({detail}): they must sign in again with `regsync login`"
    )]
    SignInRevoked {
        /// The organizer.
        organizer: String,
        /// What the identity platform (or the sealed row) said.
        detail: String,
    },
    /// The organizer's own condition holds (`ops.organizers`): their rows
    /// wait for the fix, nothing is sent for them (never sent).
    #[error("{reason}")]
    OrganizerParked {
        /// The organizer.
        organizer: String,
        /// Their condition.
        condition: crate::domain::OrganizerCondition,
        /// Why, and the fix.
        reason: String,
    },
    /// The request was not sent: its permit's deadline had passed (the
    /// process paused past half its lease after the pre-send checks).
    #[error("the request was not sent: this process paused past half its lease before sending")]
    PermitExpired,
    /// An id that cannot be put in a URL path safely (never sent).
    #[error("{0}")]
    InvalidId(String),
    /// The client could not be built from its settings (never sent).
    #[error("cannot set up the Graph client: {0}")]
    Setup(String),
    /// A success response that is not the documented JSON.
    #[error("Graph answered HTTP {status} with an unexpected body: {detail}")]
    UnexpectedBody {
        /// The status.
        status: u16,
        /// What was wrong.
        detail: String,
    },
}

fn retry_after_text(d: Option<Duration>) -> String {
    d.map(|d| format!(", Retry-After {:.1} s", d.as_secs_f64())).unwrap_or_default()
}

impl Error {
    /// Worth retrying later (throttling, 5xx, timeouts, token outages).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Throttled { .. } | Self::Transient { .. } | Self::UnexpectedBody { .. } => true,
            Self::Token { error, status, .. } => {
                error == "temporarily_unavailable"
                    || error == "unreachable"
                    || status.is_some_and(|s| s >= 500 || s == 429)
            }
            Self::Conflict { .. }
            | Self::Rejected { .. }
            | Self::Retired { .. }
            | Self::NotSignedIn { .. }
            | Self::SignInRevoked { .. }
            | Self::OrganizerParked { .. }
            | Self::Unauthorized
            | Self::InvalidId(_)
            | Self::Setup(_)
            | Self::PermitExpired => false,
        }
    }

    /// The wait Graph asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after, .. } | Self::Token { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether Graph may have acted on a write that ended this way, so the
    /// outcome must be looked up before anything else is sent.
    pub fn maybe_acted(&self) -> bool {
        match self {
            Self::Throttled { status, .. } => *status != 429,
            Self::Transient { may_have_acted, .. } => *may_have_acted,
            Self::UnexpectedBody { .. } | Self::Conflict { .. } => true,
            Self::Rejected { .. }
            | Self::Retired { .. }
            | Self::NotSignedIn { .. }
            | Self::SignInRevoked { .. }
            | Self::OrganizerParked { .. }
            | Self::Unauthorized
            | Self::Token { .. }
            | Self::InvalidId(_)
            | Self::Setup(_)
            | Self::PermitExpired => false,
        }
    }

    /// A problem with the app's credentials or permissions rather than with
    /// one meeting: it must not burn meetings' attempts.
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Token { .. } | Self::Unauthorized)
    }

    /// The HTTP status Graph answered with, if any.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Throttled { status, .. }
            | Self::Rejected { status, .. }
            | Self::Retired { status, .. }
            | Self::UnexpectedBody { status, .. } => Some(*status),
            Self::Transient { status, .. } => *status,
            Self::Conflict { .. } => Some(409),
            Self::Unauthorized => Some(401),
            Self::Token { .. }
            | Self::NotSignedIn { .. }
            | Self::SignInRevoked { .. }
            | Self::OrganizerParked { .. }
            | Self::InvalidId(_)
            | Self::Setup(_)
            | Self::PermitExpired => None,
        }
    }

    /// The kind of failure, for `ops.meeting_status.error_category`.
    pub fn category(&self) -> FailureCategory {
        match self {
            Self::Token { .. } | Self::Unauthorized | Self::NotSignedIn { .. } | Self::SignInRevoked { .. } => {
                FailureCategory::Auth
            }
            Self::OrganizerParked { condition, .. } => condition.category(),
            Self::Rejected { status: 403, .. } => FailureCategory::Permission,
            Self::Rejected { status: 404, .. } => FailureCategory::NotFound,
            Self::Retired { .. } => FailureCategory::TargetRetired,
            Self::Rejected { .. } => FailureCategory::InvalidRequest,
            Self::Throttled { .. } => FailureCategory::Throttled,
            Self::Transient { .. } | Self::Conflict { .. } | Self::UnexpectedBody { .. } | Self::PermitExpired => {
                FailureCategory::Transient
            }
            Self::InvalidId(_) => FailureCategory::PlatformData,
            Self::Setup(_) => FailureCategory::Configuration,
        }
    }

    /// The audit table's `outcome` for a request that ended this way.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => "throttled",
            Self::Transient { .. } => "transient",
            Self::Conflict { .. } => "conflict",
            Self::Rejected { .. } => "rejected",
            Self::Retired { .. } => "retired",
            Self::Unauthorized => "unauthorized",
            Self::Token { .. } => "token",
            Self::NotSignedIn { .. } => "not_signed_in",
            Self::SignInRevoked { .. } => "sign_in_revoked",
            Self::OrganizerParked { .. } => "organizer_parked",
            Self::InvalidId(_) => "invalid_id",
            Self::Setup(_) => "setup",
            Self::PermitExpired => "not_sent",
            Self::UnexpectedBody { .. } => "unexpected_body",
        }
    }
}

/// The setting a Graph or token request's timeout comes from.
const TIMEOUT_KEY: &str = "graph.timeout_ms";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_429_is_known_not_to_have_acted() {
        let throttled = |status| Error::Throttled { status, retry_after: None };
        assert!(!throttled(429).maybe_acted());
        assert!(throttled(503).maybe_acted());
        assert!(Error::Transient { status: None, may_have_acted: true, detail: String::new() }.maybe_acted());
        assert!(!Error::Transient { status: None, may_have_acted: false, detail: String::new() }.maybe_acted());
    }
}
