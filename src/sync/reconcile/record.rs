//! How a reconcile ends: the outcome, written with the lease release, for
//! each way it can end (synced, a failure under the error policy, a wait
//! for another meeting, a throttle hold).

use std::time::Duration;

use super::{Reconciled, Work};
use crate::domain::FailureCategory;
use crate::domain::RowState;
use crate::graph;
use crate::store::{self, Outcome};
use crate::sync::engine::{self, crash_point, Disposition, Failure};
use crate::sync::plan::Progress;
use crate::sync::retry;
use crate::sync::{Ctx, SyncError};

/// Model step \[S9\] (model/exactly_once.pml).
///
/// How long the lookup of an unknown outcome must wait: until the write can
/// no longer reach Graph.
fn lookup_settle(ctx: &Ctx, progress: &Progress) -> Duration {
    if progress.write_unsettled {
        ctx.settings.graph.unknown_outcome_settle()
    } else {
        Duration::ZERO
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
            store::resolutions::forget_for_row(&self.ctx.pool, self.claimed.claim.lease.row).await?;
            return Ok(reconciled);
        }
        let before = u32::try_from(self.progress.attempts).unwrap_or(0);
        let retry_command = format!("regsync retry {}", self.claimed.external_id);
        let row = format!("meeting:{}", self.claimed.external_id);
        let whose = (self.acting.as_str(), row.as_str(), retry_command.as_str());
        let d = self.ctx.dispose(e, before, self.retry_policy(), whose, self.progress.needs_lookup).await?;
        self.record_disposition(d).await
    }

    /// Records what the error policy decided, then stops the process's
    /// Graph calls if it said so.
    async fn record_disposition(&mut self, d: Disposition) -> Result<Reconciled, SyncError> {
        self.progress.attempts = i32::try_from(d.attempts).unwrap_or(i32::MAX);
        let reconciled = self.record_at(d.state, d.delay, Some(d.failure)).await?;
        match d.stop {
            Some(stop) => Err(stop),
            None => Ok(reconciled),
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
        let before = u32::try_from(self.progress.attempts).unwrap_or(0);
        let d = engine::attempt(before, self.retry_policy(), failure.clone(), failure);
        self.record_disposition(d).await
    }

    pub(super) async fn record(&mut self, state: RowState, failure: Option<Failure>) -> Result<Reconciled, SyncError> {
        self.record_at(state, Duration::ZERO, failure).await
    }

    pub(super) async fn record_at(
        &mut self,
        state: RowState,
        delay: Duration,
        failure: Option<Failure>,
    ) -> Result<Reconciled, SyncError> {
        let progress = &self.progress;
        let outcome = Outcome {
            state,
            actual: progress.actual.clone(),
            needs_lookup: progress.needs_lookup,
            lookup_at: if progress.needs_lookup { progress.lookup_at.clone() } else { None },
            attempts: if state == RowState::Synced { 0 } else { progress.attempts },
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
        let reconciled = match state {
            RowState::Synced => Reconciled::Synced { created: progress.created, deleted: progress.deleted },
            RowState::Retrying => Reconciled::Retrying,
            RowState::Failed => Reconciled::Failed,
            // An outcome never leaves a row in flight: the lease is released
            // with it (the table's lease constraint refuses anything else).
            RowState::Pending | RowState::InFlight => Reconciled::Pending,
        };
        self.ctx.metrics.outcome(state.as_str());
        Ok(reconciled)
    }
}
