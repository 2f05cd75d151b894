//! regsync: keeps Microsoft Teams external meeting registration in step with
//! an event-registration platform, exactly once per meeting.
//!
//! Data flows `source` → `store` → `sync` → `graph`; `app` wires them.
//! `docs/architecture.md` is the map.
//!
//! Errors: every module returns a typed enum whose message is complete —
//! what failed, its cause, and what to do — and exposes no `source()`, so
//! no text is ever printed twice. Commands add the step they were on with
//! `anyhow` context; `main` prints that chain once (`{:#}`).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

/// A named crash point for the crash-matrix tests: the `fail` crate's point
/// with feature `failpoints`, nothing otherwise.
#[cfg(feature = "failpoints")]
macro_rules! fail_point {
    ($($point:tt)*) => { fail::fail_point!($($point)*) };
}
#[cfg(not(feature = "failpoints"))]
macro_rules! fail_point {
    ($($point:tt)*) => {};
}

/// Wiring: pool, clients, tasks, commands.
pub mod app;
/// Typed settings and their validation.
pub mod config;
/// Ids and the meeting as the platform describes it.
pub mod domain;
/// Microsoft Graph: token cache, registration calls, error classification.
pub mod graph;
/// `POST /hooks/platform`: changes the platform pushes.
pub mod hooks;
/// What the HTTP clients share: user agent, error text.
pub mod http;
/// Prometheus metrics.
pub mod metrics;
/// Secrets at rest: sign-ins sealed with `security.encryption_key`.
pub mod sealed;
/// `/healthz`, `/readyz`, `/metrics`.
pub mod server;
/// The platform's meeting list.
pub mod source;
/// PostgreSQL: all SQL.
pub mod store;
/// The engine: poll, claim, reconcile.
pub mod sync;
/// Tracing setup.
pub mod telemetry;
