//! The reconcile of everything due now: claims a batch ahead of a set of
//! workers, one meeting each, with as many Graph calls in flight as the
//! throttle allows.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::task::{JoinError, JoinSet};

use super::reconcile::{self, Reconciled};
use super::{Ctx, SyncError};
use crate::store::{self, Claimed};

/// What reconciling the due meetings did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Meetings claimed.
    pub claimed: u64,
    /// Registrations created.
    pub created: u64,
    /// Registrations deleted.
    pub deleted: u64,
    /// Meetings synced (with or without a call).
    pub synced: u64,
    /// Meetings scheduled for a retry.
    pub retrying: u64,
    /// Meetings parked as failed.
    pub failed: u64,
    /// Outcomes not recorded because the lease was lost.
    pub lease_lost: u64,
    /// The registrants reconciled after the meetings.
    pub registrants: super::registrants::RegistrantReport,
}

impl ReconcileReport {
    fn add(&mut self, r: Reconciled) {
        match r {
            Reconciled::Synced { created, deleted } => {
                self.synced += 1;
                self.created += u64::from(created);
                self.deleted += u64::from(deleted);
            }
            Reconciled::Retrying => self.retrying += 1,
            Reconciled::Failed => self.failed += 1,
            Reconciled::Pending => {}
            Reconciled::LeaseLost => self.lease_lost += 1,
        }
    }
}

/// Claims and reconciles meetings until none is due now, with at most
/// [`super::throttle::Throttle::limit`] Graph calls (up to
/// `graph.max_concurrency`) in flight. Claims a batch ahead of the workers;
/// what is left unstarted at the end (shutdown, a hold) is released at once.
///
/// # Errors
/// [`SyncError::Auth`] when Graph credentials fail (claiming stops, running
/// work finishes); [`SyncError::Store`] when claiming fails.
pub async fn reconcile_due(ctx: &Arc<Ctx>) -> Result<ReconcileReport, SyncError> {
    if let Some(sign_ins) = &ctx.sign_ins {
        sign_ins.drop_signed_out(&ctx.pool).await?;
    }
    let mut workers = Workers::new(ctx);
    // A hold (throttling, failed credentials) stops claiming: nothing could be sent.
    while workers.stop.is_none() && !ctx.shutdown.is_cancelled() && ctx.throttle.local_hold().is_none() {
        // Twice the Graph slots: while some meetings wait for Graph, others
        // commit their intent or record their outcome.
        let limit = 2 * ctx.throttle.limit();
        workers.start_queued(limit);
        if workers.queue.len() < limit && !workers.drained {
            if let Err(e) = workers.claim_batch(limit).await {
                workers.stop = Some(e);
                break;
            }
            if !workers.queue.is_empty() && workers.running.len() < limit {
                continue;
            }
        }
        // Wait for a worker: it frees a slot, and may make more due (a
        // delete before a create).
        match workers.running.join_next().await {
            Some(done) => {
                workers.collect(done);
                workers.drained = false;
            }
            None if workers.queue.is_empty() => break,
            None => {}
        }
    }
    let mut report = workers.finish().await?;
    // Registrants after their meetings: a meeting registered just now takes
    // its registrants in the same pass.
    if ctx.settings.registrants.enabled {
        report.registrants = super::registrants::reconcile_due(ctx).await?;
    }
    Ok(report)
}

/// The workers of one [`reconcile_due`] and the claimed rows waiting for them.
struct Workers<'a> {
    ctx: &'a Arc<Ctx>,
    running: JoinSet<Result<Reconciled, SyncError>>,
    /// Claimed rows wait here, a batch ahead, so a worker that finishes
    /// starts the next meeting without waiting for a claim round trip.
    queue: VecDeque<Claimed>,
    /// The last claim found fewer rows than it asked for.
    drained: bool,
    report: ReconcileReport,
    /// Why claiming stopped, if it did.
    stop: Option<SyncError>,
}

impl<'a> Workers<'a> {
    fn new(ctx: &'a Arc<Ctx>) -> Self {
        Self {
            ctx,
            running: JoinSet::new(),
            queue: VecDeque::new(),
            drained: false,
            report: ReconcileReport::default(),
            stop: None,
        }
    }

    fn start_queued(&mut self, limit: usize) {
        while self.running.len() < limit {
            let Some(row) = self.queue.pop_front() else { break };
            let ctx = self.ctx.clone();
            self.running.spawn(async move { reconcile::reconcile(&ctx, row).await });
        }
    }

    /// Claims a whole batch, not just the shortfall: topping the queue up
    /// row by row would cost a claim round trip per meeting, and the workers
    /// wait on each one.
    async fn claim_batch(&mut self, limit: usize) -> Result<(), SyncError> {
        let sync = &self.ctx.settings.sync;
        let want = (sync.claim_batch as usize).max(limit);
        let batch = u32::try_from(want).unwrap_or(u32::MAX);
        let rows =
            store::claims::claim_due(&self.ctx.pool, batch, sync.lease_ttl(), sync.max_attempts, self.ctx.replica)
                .await?;
        self.drained = rows.len() < want;
        self.report.claimed += rows.len() as u64;
        self.queue.extend(rows);
        Ok(())
    }

    fn collect(&mut self, done: Result<Result<Reconciled, SyncError>, JoinError>) {
        match done {
            Ok(Ok(r)) => self.report.add(r),
            Ok(Err(SyncError::Auth(e))) => {
                self.ctx.throttle.credentials_failed();
                self.stop.get_or_insert(SyncError::Auth(e));
            }
            Ok(Err(e)) => {
                self.stop.get_or_insert(e);
            }
            Err(e) => {
                self.stop.get_or_insert(SyncError::Task(e.to_string()));
            }
        }
    }

    /// Releases what was never started and waits for the running workers.
    async fn finish(mut self) -> Result<ReconcileReport, SyncError> {
        if !self.queue.is_empty() {
            let unstarted: Vec<Claimed> = self.queue.drain(..).collect();
            if let Err(e) = store::claims::release(&self.ctx.pool, &unstarted).await {
                tracing::warn!(error = %e, "cannot release unstarted claims; their leases will expire");
            }
        }
        while let Some(done) = self.running.join_next().await {
            self.collect(done);
        }
        match self.stop {
            Some(e) => Err(e),
            None => Ok(self.report),
        }
    }
}
