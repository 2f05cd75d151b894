//! Whose trouble a refusal is. Graph answers some refusals that may mean
//! "the registration API is gone" (a 404 that is not "not found", a 410, a
//! 403 "not supported") but also mean something smaller: Graph's
//! online-meeting service answers 404 `UnknownError` when it cannot find
//! the *organizer*, so one departed organizer looks like a retired API.
//! One answer is never enough to stop the deployment: the scope is decided
//! from evidence.
//!
//! | answer | evidence (within [`WINDOW`]) | scope | what happens |
//! |---|---|---|---|
//! | API-level refusal | a GET of a registration regsync knows exists is refused the same way | deployment | writes suspended, probe after `graph.suspended_probe_interval_ms`; no row counts an attempt |
//! | API-level refusal | no registration to probe, and two or more organizers refused this way | deployment | as above |
//! | API-level refusal | a known registration answers, or one organizer only; first time for this row | row | retried after backoff, no attempt counted: evidence may still come |
//! | API-level refusal | as above, again for this row | row | an attempt counted; `failed` after `sync.max_attempts`, with a reason naming the organizer |

use std::time::Duration;

use super::{retry, Ctx, SyncError};
use crate::domain::{FailureCategory, OrganizerId};
use crate::{graph, store};

/// How long a refusal counts as evidence: long enough to span several
/// reconcile rounds, short enough that an old retirement scare does not
/// turn a later departed organizer into a suspension.
pub const WINDOW: Duration = Duration::from_secs(600);

/// Where a refusal belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The whole deployment: suspend writes.
    Deployment,
    /// This row only; `attempt`: count it as a failed attempt.
    Row {
        /// Whether the refusal costs the row an attempt.
        attempt: bool,
    },
}

/// The scope of an API-level refusal, from what a probe at a registration
/// regsync knows exists showed (`Some(true)`: refused the same way;
/// `None`: nothing to probe), how many distinct organizers met it within
/// [`WINDOW`] (this one included), and whether this row met it before. A
/// known registration that answers outweighs any number of organizers
/// refused: several organizers may leave in one week.
pub fn decide(known_refused: Option<bool>, organizers_refused: i64, row_refused_before: bool) -> Scope {
    match known_refused {
        Some(true) => Scope::Deployment,
        None if organizers_refused >= 2 => Scope::Deployment,
        _ => Scope::Row { attempt: row_refused_before },
    }
}

/// How long what a probe at a known registration showed is trusted.
const PROBE_TRUSTED: Duration = Duration::from_secs(60);

/// The reason a row refused on its own carries: who, what Graph said, and
/// what to do.
pub fn row_reason(e: &graph::Error, organizer: &str, retry: &str) -> String {
    let said = match e {
        graph::Error::Retired { status, code, message } => format!("HTTP {status} {code}: {message}"),
        other => other.to_string(),
    };
    format!(
        "Graph refused the call for organizer {organizer} ({said}), and no other organizer is refused this way: \
         Graph answers so for an organizer it does not know (one who left the tenant, or a wrong id) or a meeting \
         it cannot serve. Check the organizer on the platform, then run `{retry}`"
    )
}

/// The error policy's answer for one failed call, its scope decided.
pub(super) struct Judged {
    /// What happens to the row (and the deployment).
    pub next: retry::AfterFailure,
    /// The row's real attempts now.
    pub attempts: u32,
    /// For a refusal found to be the row's own: the reason it carries and
    /// its category.
    pub row_reason: Option<(String, FailureCategory)>,
}

impl Ctx {
    /// The error policy for every kind of row: [`retry::after_failure`],
    /// and for an API-level refusal the scope decided from evidence.
    /// `organizer` and `row_key` name whose call it was; `retry` is the
    /// command that makes the row due again.
    ///
    /// # Errors
    /// The database failed.
    pub(super) async fn judge_failure(
        &self,
        e: &graph::Error,
        attempts_before: u32,
        policy: retry::Policy,
        (organizer, row_key, retry): (&str, &str, &str),
    ) -> Result<Judged, SyncError> {
        let jitter = rand::random();
        if let (graph::Error::Unauthorized, Some(sign_ins)) = (e, &self.sign_ins) {
            // Delegated: a 401 refuses this organizer's token, no one
            // else's. It is dropped, so the next try really refreshes.
            sign_ins.invalidate(&self.pool, &OrganizerId(organizer.to_owned())).await?;
            let attempts = attempts_before.saturating_add(1);
            let decision = retry::next_attempt(attempts, policy.max_attempts, policy.base, policy.cap, jitter);
            let reason = format!(
                "Graph refused organizer {organizer}'s sign-in (401 even after a fresh token): their account, \
                 licence or consent changed. Have them run `regsync login` again, then run `{retry}`"
            );
            let row_reason = Some((reason, FailureCategory::Auth));
            return Ok(Judged { next: retry::AfterFailure::Attempt(decision), attempts, row_reason });
        }
        let (next, attempts) = retry::after_failure(e, attempts_before, policy, jitter);
        if next != retry::AfterFailure::Suspend {
            return Ok(Judged { next, attempts, row_reason: None });
        }
        match self.refusal_scope(e, organizer, row_key).await? {
            Scope::Deployment => Ok(Judged { next, attempts, row_reason: None }),
            Scope::Row { attempt } => {
                let (next, attempts) = retry::after_row_refusal(attempts_before, attempt, policy, jitter);
                let category = match e.http_status() {
                    Some(404 | 410) => FailureCategory::NotFound,
                    Some(403) => FailureCategory::Permission,
                    _ => FailureCategory::InvalidRequest,
                };
                Ok(Judged { next, attempts, row_reason: Some((row_reason(e, organizer, retry), category)) })
            }
        }
    }

    /// Records an API-level refusal of `organizer`'s row `row_key` as
    /// evidence and decides whose it is.
    ///
    /// # Errors
    /// The database failed.
    async fn refusal_scope(&self, e: &graph::Error, organizer: &str, row_key: &str) -> Result<Scope, SyncError> {
        let kind = match e {
            graph::Error::Retired { status, code, .. } => format!("{status} {}", code.to_ascii_lowercase()),
            other => other.kind().to_owned(),
        };
        let seen = store::evidence::record_refusal(&self.pool, &kind, organizer, row_key, WINDOW).await?;
        let known_refused = self.probe_known_registration(organizer).await?;
        let scope = decide(known_refused, seen.organizers, seen.row_before);
        tracing::warn!(organizer, kind, organizers_refused = seen.organizers, ?scope, "Graph refused a call");
        Ok(scope)
    }
}

impl Ctx {
    /// Whether a GET of a registration regsync knows exists is refused as
    /// an API-level refusal (`None`: nothing to probe, or no answer). What
    /// it showed is trusted for [`PROBE_TRUSTED`], so a departed
    /// organizer's rows cost one probe a minute, not one each.
    async fn probe_known_registration(&self, organizer: &str) -> Result<Option<bool>, SyncError> {
        if self.settings.graph.target != crate::config::Target::MeetingRegistration {
            return Ok(None);
        }
        if let Some((at, refused)) = *self.known_probe.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < PROBE_TRUSTED {
                return Ok(Some(refused));
            }
        }
        let Some(known) = store::evidence::known_registration(&self.pool, organizer).await? else { return Ok(None) };
        let Ok(permit) = self.permit(&known.organizer).await else { return Ok(None) };
        let mut calls = Vec::new();
        let refused = match self.graph.get(permit, &known, &mut calls).await {
            Err(graph::Error::Retired { .. }) => true,
            Ok(_) | Err(graph::Error::Rejected { .. }) => false,
            Err(_) => return Ok(None),
        };
        self.metrics.graph_calls(&calls);
        tracing::info!(organizer = %known.organizer, meeting = %known.meeting, refused, "probed a known registration");
        *self.known_probe.lock().unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), refused));
        Ok(Some(refused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_registration_or_two_organizers_stop_the_deployment_and_a_row_pays_only_for_a_repeat() {
        assert_eq!(decide(None, 1, false), Scope::Row { attempt: false }, "one answer is no evidence");
        assert_eq!(decide(None, 1, true), Scope::Row { attempt: true }, "the same row again, nobody else: the row's");
        assert_eq!(decide(Some(false), 1, true), Scope::Row { attempt: true }, "a known registration answers");
        assert_eq!(decide(Some(true), 1, false), Scope::Deployment, "a known registration is refused too");
        assert_eq!(decide(None, 2, false), Scope::Deployment, "nothing to probe: two organizers are evidence");
        assert_eq!(decide(Some(false), 7, false), Scope::Row { attempt: false }, "the API answers: departures");
    }
}
