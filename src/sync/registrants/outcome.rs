//! How a registrant's reconcile ends: its outcome, written fenced with the
//! audit rows, for each way it can end (done, an attempt, Graph's error
//! policy).

use std::time::Duration;

use super::super::engine::{self, Disposition, Failure};
use super::super::{retry, SyncError};
use super::work::Work;
use super::Done;
use crate::domain::RegistrantsAt;
use crate::domain::RowState;
use crate::graph;
use crate::store::registrants::RegistrantOutcome;
use crate::store::{self};

impl Work<'_> {
    /// A failure outside Graph's error policy (a write-back, a meeting the
    /// platform does not list): an attempt, retried with backoff as
    /// `retrying`, then `failed` with `parked` once `sync.max_attempts` are
    /// used.
    pub(super) async fn attempt(&mut self, retrying: Failure, parked: Failure) -> Result<Done, SyncError> {
        let policy = retry::Policy::new(&self.ctx.settings.sync, Duration::ZERO);
        let before = u32::try_from(self.progress.attempts).unwrap_or(0);
        self.record_disposition(engine::attempt(before, policy, retrying, parked)).await
    }

    /// A Graph failure under the same error policy as meetings.
    pub(super) async fn failed(&mut self, e: &graph::Error) -> Result<Done, SyncError> {
        let settle = if self.progress.needs_lookup { self.ctx.settings.graph.timeout() } else { Duration::ZERO };
        let policy = retry::Policy::new(&self.ctx.settings.sync, settle);
        let before = u32::try_from(self.progress.attempts).unwrap_or(0);
        let row = format!("registrant:{}/{}", self.claimed.meeting_external_id, self.claimed.external_id);
        let whose = (self.acting.as_str(), row.as_str(), "regsync retry --failed");
        let d = self.ctx.dispose(e, before, policy, whose, true).await?;
        self.record_disposition(d).await
    }

    /// Records what the error policy decided, then stops the process's
    /// Graph calls if it said so.
    async fn record_disposition(&mut self, d: Disposition) -> Result<Done, SyncError> {
        self.progress.attempts = i32::try_from(d.attempts).unwrap_or(i32::MAX);
        self.done.failed |= d.state == RowState::Failed;
        let done = self.record(d.state, d.delay, Some(d.failure)).await?;
        match d.stop {
            Some(stop) => Err(stop),
            None => Ok(done),
        }
    }

    /// Writes the outcome, fenced by the lease, with the audit rows.
    pub(super) async fn record(
        &mut self,
        state: RowState,
        delay: Duration,
        failure: Option<Failure>,
    ) -> Result<Done, SyncError> {
        let p = &self.progress;
        let (last_error, last_http_status, error_category) = match failure {
            Some(f) => (Some(f.message), f.http_status, Some(f.category)),
            None => (None, None, None),
        };
        let outcome = RegistrantOutcome {
            state,
            needs_lookup: p.needs_lookup,
            lookup_at: p.needs_lookup.then(|| p.lookup_at.as_ref().map(RegistrantsAt::key)).flatten(),
            enrolled_at: p.enrolled_at.as_ref().map(RegistrantsAt::key),
            registrant_id: p.registrant_id.clone(),
            join_web_url: p.join_web_url.clone(),
            written_back_value: p.written_back_now.then(|| p.written_back_value.clone()).flatten(),
            status_written_back: p.status_written_back_now.then(|| p.status_written_back.clone()).flatten(),
            attempts: if state == RowState::Synced { 0 } else { p.attempts },
            next_attempt_in: delay,
            // A write still in progress at Graph may land until its request
            // times out: no lookup before then, whatever makes it due.
            lookup_settle: self.ctx.settings.graph.unknown_outcome_settle(),
            last_error,
            last_http_status,
            error_category,
        };
        self.ctx.metrics.graph_calls(&self.calls);
        let (pool, claimed, calls) = (&self.ctx.pool, &self.claimed, &self.calls);
        let applied =
            self.ctx.record_with_retries(|| store::registrants::record_outcome(pool, claimed, &outcome, calls)).await?;
        if !applied {
            tracing::warn!(registrant = self.claimed.external_id, "outcome not recorded: the lease passed on");
            return Ok(Done::default());
        }
        Ok(self.done)
    }
}
