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
//! | API-level refusal | a known registration answers, and two or more rows of this organizer refused this way | organizer (`unknown_to_graph`) | the organizer's rows `failed` without a call, reason naming them; `regsync retry --organizer` |
//! | API-level refusal | otherwise, first time for this row | row | retried after backoff, no attempt counted: evidence may still come |
//! | API-level refusal | otherwise, again for this row | row | an attempt counted; `failed` after `sync.max_attempts`, with a reason naming the organizer |
//! | 403 naming the application access policy | two or more rows of this organizer | organizer (`no_access_policy`) | as for `unknown_to_graph` |
//! | no sign-in, or the sign-in refused by the identity platform | that answer itself | organizer (`no_sign_in`, `sign_in_refused`) | rows `failed`; a new `regsync login` makes them due |
//! | 401, delegated, to the fresh token a row takes after its first 401 | that answer itself | organizer (`unauthorized`) | as above |

use std::time::Duration;

use super::{retry, Ctx, SyncError};
use crate::domain::{FailureCategory, OrganizerCondition, OrganizerId};
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
    /// The organizer: park their rows.
    Organizer,
    /// This row only; `attempt`: count it as a failed attempt.
    Row {
        /// Whether the refusal costs the row an attempt.
        attempt: bool,
    },
}

/// What is known about one refusal when its scope is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    /// What a probe at a registration regsync knows exists showed:
    /// `Some(true)` refused the same way, `Some(false)` it answered,
    /// `None` nothing to probe.
    pub known_refused: Option<bool>,
    /// Distinct organizers refused this way within [`WINDOW`], this one
    /// included.
    pub organizers: i64,
    /// Distinct rows of this organizer refused this way within [`WINDOW`],
    /// this one included.
    pub organizer_rows: i64,
    /// This row was refused this way before, within [`WINDOW`].
    pub row_before: bool,
}

/// The scope of an API-level refusal from the evidence. A known
/// registration that answers outweighs any number of organizers refused:
/// several organizers may leave in one week; and only then is a refusal
/// that recurs across one organizer's rows theirs.
pub fn decide(evidence: Evidence) -> Scope {
    match evidence.known_refused {
        Some(true) => Scope::Deployment,
        None if evidence.organizers >= 2 => Scope::Deployment,
        Some(false) if evidence.organizer_rows >= 2 => Scope::Organizer,
        _ => Scope::Row { attempt: evidence.row_before },
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
    /// with the scope of the failure decided from evidence: an organizer's
    /// condition parks that organizer's rows, an API-level refusal stops
    /// the deployment only when corroborated. `organizer` and `row_key`
    /// name whose call it was; `retry` is the command that makes the row
    /// due again.
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
        if let Some(condition) = self.organizer_condition(e, organizer, row_key).await? {
            return self.park_organizer(condition, e, organizer, attempts_before).await;
        }
        let (next, attempts) = retry::after_failure(e, attempts_before, policy, jitter);
        if next != retry::AfterFailure::Suspend {
            return Ok(Judged { next, attempts, row_reason: None });
        }
        match self.refusal_scope(e, organizer, row_key).await? {
            Scope::Deployment => Ok(Judged { next, attempts, row_reason: None }),
            Scope::Organizer => {
                self.park_organizer(OrganizerCondition::UnknownToGraph, e, organizer, attempts_before).await
            }
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

    /// The organizer's condition this failure shows, if it shows one: the
    /// sign-in's own answers at once; a 401 to the fresh token a row takes
    /// after its first 401 (a real refresh did not help); a missing access
    /// policy once two of the organizer's rows met it.
    async fn organizer_condition(
        &self,
        e: &graph::Error,
        organizer: &str,
        row_key: &str,
    ) -> Result<Option<OrganizerCondition>, SyncError> {
        Ok(match e {
            graph::Error::OrganizerParked { condition, .. } => Some(*condition),
            graph::Error::NotSignedIn { .. } => Some(OrganizerCondition::NoSignIn),
            graph::Error::SignInRevoked { .. } => Some(OrganizerCondition::SignInRefused),
            // Delegated: every kind of row tries once more with a fresh token
            // after a first 401 (its token dropped); a 401 that reaches the
            // error policy was answered to a real refresh.
            graph::Error::Unauthorized if self.sign_ins.is_some() => {
                self.drop_refused_token(&OrganizerId(organizer.to_owned())).await?;
                Some(OrganizerCondition::Unauthorized)
            }
            graph::Error::Rejected { status: 403, message, .. }
                if self.sign_ins.is_none() && message.to_ascii_lowercase().contains("access policy") =>
            {
                let seen = store::evidence::record_refusal(&self.pool, "403 access policy", organizer, row_key, WINDOW)
                    .await?;
                (seen.organizer_rows >= 2).then_some(OrganizerCondition::NoAccessPolicy)
            }
            _ => None,
        })
    }

    /// Parks the row for its organizer's `condition`, recording the
    /// condition (unless the row met one already recorded) so the
    /// organizer's other rows wait without a call.
    async fn park_organizer(
        &self,
        condition: OrganizerCondition,
        e: &graph::Error,
        organizer: &str,
        attempts: u32,
    ) -> Result<Judged, SyncError> {
        let reason = match e {
            graph::Error::OrganizerParked { reason, .. } => reason.clone(),
            _ => {
                let reason = format!("{}; {}", condition_reason(condition, e, organizer), condition.fix(organizer));
                store::organizers::set_condition(&self.pool, organizer, condition, &reason).await?;
                tracing::error!(organizer, condition = condition.as_str(), reason, "an organizer's rows are parked");
                reason
            }
        };
        Ok(Judged { next: retry::AfterFailure::Park, attempts, row_reason: Some((reason, condition.category())) })
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
        let scope = decide(Evidence {
            known_refused,
            organizers: seen.organizers,
            organizer_rows: seen.organizer_rows,
            row_before: seen.row_before,
        });
        tracing::warn!(organizer, kind, organizers_refused = seen.organizers, ?scope, "Graph refused a call");
        Ok(scope)
    }
}

/// What an organizer's condition is, in words, with what Graph or the
/// identity platform said.
fn condition_reason(condition: OrganizerCondition, e: &graph::Error, organizer: &str) -> String {
    match (condition, e) {
        (OrganizerCondition::Unauthorized, _) => format!(
            "Graph refused organizer {organizer}'s sign-in (401 even after a fresh token): their account, licence \
             or consent changed"
        ),
        (OrganizerCondition::UnknownToGraph, graph::Error::Retired { status, code, message }) => format!(
            "Graph does not know organizer {organizer} (HTTP {status} {code}: {message}, on several of their \
             meetings while registrations of others answer)"
        ),
        (OrganizerCondition::NoAccessPolicy, graph::Error::Rejected { message, .. }) => {
            format!("the app has no application access policy for organizer {organizer} (Graph: {message})")
        }
        _ => e.to_string(),
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

    fn evidence(known_refused: Option<bool>, organizers: i64, organizer_rows: i64, row_before: bool) -> Evidence {
        Evidence { known_refused, organizers, organizer_rows, row_before }
    }

    #[test]
    fn a_known_registration_or_two_organizers_stop_the_deployment_and_a_row_pays_only_for_a_repeat() {
        assert_eq!(decide(evidence(None, 1, 1, false)), Scope::Row { attempt: false }, "one answer is no evidence");
        assert_eq!(decide(evidence(None, 1, 1, true)), Scope::Row { attempt: true }, "the same row again: the row's");
        assert_eq!(decide(evidence(Some(false), 1, 1, true)), Scope::Row { attempt: true }, "the API answers");
        assert_eq!(decide(evidence(Some(true), 1, 1, false)), Scope::Deployment, "a known registration is refused");
        assert_eq!(decide(evidence(None, 2, 1, false)), Scope::Deployment, "nothing to probe: two organizers");
        assert_eq!(decide(evidence(Some(false), 7, 1, false)), Scope::Row { attempt: false }, "departures");
    }

    #[test]
    fn a_refusal_across_one_organizers_rows_is_theirs_only_while_the_api_answers() {
        assert_eq!(decide(evidence(Some(false), 1, 2, false)), Scope::Organizer, "two rows, the API answers");
        assert_eq!(decide(evidence(Some(false), 3, 5, true)), Scope::Organizer, "others may have left too");
        assert_eq!(decide(evidence(None, 1, 2, false)), Scope::Row { attempt: false }, "nothing shows the API works");
        assert_eq!(decide(evidence(Some(true), 1, 2, false)), Scope::Deployment, "the API itself refuses");
    }
}
