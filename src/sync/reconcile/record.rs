//! How a reconcile ends: the outcome, written with the lease release, for
//! each way it can end (synced, a failure under the error policy, a wait
//! for another meeting, a throttle hold).

use std::time::Duration;

use super::{crash_point, Reconciled, Work};
use crate::domain::FailureCategory;
use crate::graph;
use crate::store::{self, NextState, Outcome};
use crate::sync::plan::Progress;
use crate::sync::retry::{self, AfterFailure, Decision};
use crate::sync::{Ctx, SyncError};

/// Model step \[S9\] (model/exactly_once.pml).
///
/// How long the lookup of an unknown outcome must wait: a write Graph may
/// still be working on finishes within the request timeout.
fn lookup_settle(ctx: &Ctx, progress: &Progress) -> Duration {
    if progress.write_unsettled {
        ctx.settings.graph.timeout()
    } else {
        Duration::ZERO
    }
}

/// What went wrong, for `last_error`, `last_http_status` and the category.
pub(super) struct Failure {
    message: String,
    http_status: Option<u16>,
    category: FailureCategory,
}

impl Failure {
    /// A failure without an HTTP status of its own.
    pub(super) fn new(message: String, category: FailureCategory) -> Self {
        Self { message, http_status: None, category }
    }

    fn of(e: &graph::Error) -> Self {
        Self { message: e.to_string(), http_status: e.http_status(), category: e.category() }
    }
}

/// The ways a reconcile ends: each writes the outcome with the lease release.
impl Work<'_> {
    /// The error policy's settings for this meeting.
    fn retry_policy(&self) -> retry::Policy {
        retry::Policy::new(&self.ctx.settings.sync, lookup_settle(self.ctx, &self.progress))
    }

    pub(super) async fn record_failure(&mut self, e: &graph::Error) -> Result<Reconciled, SyncError> {
        let resolved = self.claimed.organizer_upn.is_some() || self.claimed.join_url.is_some();
        if resolved && e.http_status() == Some(404) {
            // Graph does not know an id regsync resolved: a UPN given to
            // another person, a meeting created anew. The resolution is
            // dropped and the next (counted) attempt looks it up again.
            let message = format!("{e} (the ids came from the platform's e-mail or join link: looked up again)");
            let reconciled = self.record_attempt(Failure { message, ..Failure::of(e) }).await?;
            store::resolutions::forget_for_row(&self.ctx.pool, self.claimed.id).await?;
            return Ok(reconciled);
        }
        let before = u32::try_from(self.progress.attempts).unwrap_or(0);
        let retry_command = format!("regsync retry {}", self.claimed.external_id);
        let row = format!("meeting:{}", self.claimed.external_id);
        let whose = (self.acting.as_str(), row.as_str(), retry_command.as_str());
        let judged = self.ctx.judge_failure(e, before, self.retry_policy(), whose).await?;
        let (next, attempts) = (judged.next, judged.attempts);
        let failure = match judged.row_reason {
            Some((message, category)) => Failure { message, category, ..Failure::of(e) },
            None => Failure::of(e),
        };
        self.progress.attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        match next {
            AfterFailure::AuthPause => {
                tracing::error!(error = %e, "Graph credentials failed; stopping Graph calls for this cycle");
                // The app's trouble, not the meeting's: it is due again at once,
                // so the first cycle after the fix syncs it.
                let state = if self.progress.attempts > 0 || self.progress.needs_lookup {
                    NextState::Retrying
                } else {
                    NextState::Pending
                };
                self.record(state, Some(failure)).await?;
                Err(SyncError::Auth(e.to_string()))
            }
            AfterFailure::Hold(wait) => self.record_throttled(wait).await,
            AfterFailure::Suspend => self.record_suspended(e).await,
            AfterFailure::Park => {
                tracing::warn!(error = %e, "permanent Graph error; meeting parked as failed");
                self.record(NextState::Failed, Some(failure)).await
            }
            AfterFailure::Attempt(Decision::RetryAfter(delay)) => {
                tracing::warn!(error = %e, attempts, retry_in_ms = delay.as_millis() as u64, "Graph call failed; will retry");
                self.record_at(NextState::Retrying, delay, Some(failure)).await
            }
            AfterFailure::Attempt(Decision::Park) => {
                tracing::error!(error = %e, attempts, "attempts exhausted; meeting parked as failed");
                let failure = Failure {
                    message: format!(
                        "gave up after {attempts} attempts (sync.max_attempts); last error: {}. \
                         Run `regsync retry {}` once the cause is fixed",
                        failure.message, self.claimed.external_id
                    ),
                    ..failure
                };
                self.record(NextState::Failed, Some(failure)).await
            }
        }
    }

    /// Waits for another meeting without sending: counts an attempt, so a
    /// meeting that never gets its turn ends `failed` with the reason.
    pub(super) async fn record_wait(&mut self, message: String) -> Result<Reconciled, SyncError> {
        self.record_attempt(Failure::new(message, FailureCategory::SharedMeeting)).await
    }

    /// Counts a failed attempt: retried after backoff, `failed` once the
    /// attempts are spent.
    async fn record_attempt(&mut self, failure: Failure) -> Result<Reconciled, SyncError> {
        let policy = self.retry_policy();
        let attempts = u32::try_from(self.progress.attempts).unwrap_or(0).saturating_add(1);
        self.progress.attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        match retry::next_attempt(attempts, policy.max_attempts, policy.base, policy.cap, rand::random()) {
            Decision::RetryAfter(delay) => self.record_at(NextState::Retrying, delay, Some(failure)).await,
            Decision::Park => self.record(NextState::Failed, Some(failure)).await,
        }
    }

    /// Holds the whole deployment for `wait` and releases the meeting until
    /// then, without counting an attempt.
    pub(super) async fn record_throttled(&mut self, wait: Duration) -> Result<Reconciled, SyncError> {
        let held = self.ctx.throttle.throttled(&self.ctx.pool, wait).await?;
        self.ctx.metrics.throttled();
        tracing::info!(hold_ms = held.as_millis() as u64, "Graph is throttling; holding all requests");
        let failure = Failure {
            message: format!("throttled by Graph; retrying in {:.1} s", held.as_secs_f64()),
            http_status: self.calls.last().and_then(|c| c.http_status),
            category: FailureCategory::Throttled,
        };
        self.record_at(NextState::Retrying, held, Some(failure)).await
    }

    /// Suspends Graph writes for the deployment and releases the meeting
    /// until the probe, without counting an attempt: the API's refusal says
    /// nothing about this meeting.
    async fn record_suspended(&mut self, e: &graph::Error) -> Result<Reconciled, SyncError> {
        let probe_after = self.ctx.settings.graph.suspended_probe_interval();
        let held = self.ctx.throttle.suspend(&self.ctx.pool, &e.to_string(), probe_after).await?;
        tracing::error!(error = %e, probe_in_ms = held.as_millis() as u64, "Graph writes suspended for the deployment");
        self.record_at(NextState::Retrying, held, Some(Failure::of(e))).await
    }

    pub(super) async fn record(&mut self, state: NextState, failure: Option<Failure>) -> Result<Reconciled, SyncError> {
        self.record_at(state, Duration::ZERO, failure).await
    }

    pub(super) async fn record_at(
        &mut self,
        state: NextState,
        delay: Duration,
        failure: Option<Failure>,
    ) -> Result<Reconciled, SyncError> {
        let progress = &self.progress;
        let outcome = Outcome {
            state,
            actual: progress.actual.clone(),
            needs_lookup: progress.needs_lookup,
            lookup_at: if progress.needs_lookup { progress.lookup_at.clone() } else { None },
            attempts: if state == NextState::Synced { 0 } else { progress.attempts },
            next_attempt_in: delay,
            last_error: failure.as_ref().map(|f| f.message.clone()),
            last_http_status: failure.as_ref().and_then(|f| f.http_status),
            error_category: failure.map(|f| f.category),
            checked: progress.checked,
            lookup_settle: lookup_settle(self.ctx, progress),
        };
        self.ctx.metrics.graph_calls(&self.calls);
        let (pool, claimed, calls) = (&self.ctx.pool, &self.claimed, &self.calls);
        let applied =
            self.ctx.record_with_retries(|| store::outcome::record_outcome(pool, claimed, &outcome, calls)).await?;
        crash_point("after-record");
        if !applied {
            tracing::warn!("outcome not recorded: the lease passed to another worker, which will look the outcome up");
            return Ok(Reconciled::LeaseLost);
        }
        let (reconciled, kind) = match state {
            NextState::Synced => {
                (Reconciled::Synced { created: progress.created, deleted: progress.deleted }, "synced")
            }
            NextState::Retrying => (Reconciled::Retrying, "retrying"),
            NextState::Failed => (Reconciled::Failed, "failed"),
            NextState::Pending => (Reconciled::Pending, "pending"),
        };
        self.ctx.metrics.outcome(kind);
        Ok(reconciled)
    }
}
