//! The faults the simulator injects: one-off faults for the next request,
//! and random rates for load runs.

use std::time::Duration;

use serde::Serialize;

/// A fault for the next matching Graph registration request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this status without acting (`retry_after` as sent).
    Status {
        /// HTTP status.
        status: u16,
        /// Retry-After header value.
        retry_after: Option<String>,
    },
    /// Act, then answer with this status (e.g. 504 after creating).
    ActThenStatus(u16),
    /// Act, then close the connection without answering.
    LostResponse,
    /// Act, then answer only after this delay (past the client's timeout).
    SlowResponse(Duration),
    /// Act only after this delay, then answer: a request that Graph carries
    /// out after the client gave up on it.
    ActLate(Duration),
}

/// Random faults applied to Graph registration requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FaultRates {
    /// Share of requests answered 429 with `retry_after_secs`.
    pub throttle: f64,
    /// Retry-After of random throttling, in seconds.
    pub retry_after_secs: f64,
    /// Share answered 500 or 503 without acting.
    pub error: f64,
    /// Share acted on and then left without an answer.
    pub lost_response: f64,
    /// Share acted on and answered only after `timeout_delay` (past the
    /// client's timeout).
    pub timeout: f64,
    /// How late those answers come.
    #[serde(with = "millis")]
    pub timeout_delay: Duration,
    /// Latency added to every Graph request.
    #[serde(with = "millis")]
    pub latency: Duration,
}

/// Durations as milliseconds in `POST /_sim/rates`.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// A fault for the next token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFault {
    /// HTTP status.
    pub status: u16,
    /// The `error` field.
    pub error: String,
    /// The `error_description` field.
    pub description: String,
}

impl TokenFault {
    /// The identity platform is unavailable and asks to come back later.
    pub fn unavailable() -> Self {
        Self {
            status: 503,
            error: "temporarily_unavailable".into(),
            description: "AADSTS90033: A transient error has occurred. Please try again.".into(),
        }
    }
}

/// How a retired or refusing registration API answers every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retirement {
    /// 410 Gone.
    Gone,
    /// 404 with a code that is not "not found" (the route itself is gone).
    NoRoute,
    /// 403 `notSupported`: the operation or its permission is not supported.
    NotSupported,
    /// 403 `Forbidden` that says only in words that application
    /// permissions are not supported.
    AppPermissionNotSupported,
}

impl Retirement {
    /// The status, code and message answered.
    pub fn answer(self) -> (u16, &'static str, &'static str) {
        match self {
            Self::Gone => (410, "Gone", "This API has been retired."),
            Self::NoRoute => (404, "UnknownError", "No HTTP resource was found that matches the request URI."),
            Self::NotSupported => (403, "notSupported", "The operation is not supported for this API version."),
            Self::AppPermissionNotSupported => {
                (403, "Forbidden", "Application permissions are not supported for this operation.")
            }
        }
    }
}
