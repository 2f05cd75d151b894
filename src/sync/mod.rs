//! The engine: polls the platform into the store (`ingest`), claims due
//! meetings and reconciles each against Graph (`reconcile`, which carries
//! out the steps `plan` decides) under the error policy of `retry`. Uses
//! `source`, `store` and `graph`; nothing but `app` and tests use it.

pub mod ingest;
mod plan;
pub mod reconcile;
pub mod retry;
pub mod throttle;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Settings;
use crate::domain::CallRecord;
use crate::metrics::Metrics;
use crate::store::{self, Claimed, Outcome, RunReport};
use crate::{graph, source};
use throttle::Throttle;

pub use ingest::PollReport;
pub use reconcile::Reconciled;

/// A cycle that could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The app's Graph credentials failed: no Graph call can succeed.
    #[error("{0}")]
    Auth(String),
    /// A reconcile task panicked (a bug).
    #[error("a reconcile task failed: {0}")]
    Task(String),
}

impl SyncError {
    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Store(e) => e.kind(),
            Self::Auth(_) => "auth",
            Self::Task(_) => "task",
        }
    }
}

/// Everything a tick needs.
pub struct Ctx {
    /// The database.
    pub pool: PgPool,
    /// The platform.
    pub source: source::Client,
    /// Graph.
    pub graph: graph::Client,
    /// Settings.
    pub settings: Arc<Settings>,
    /// This process's id in `claimed_by`: unique per start, never reused.
    pub replica: Uuid,
    /// Cancelled on shutdown: no new claims, in-flight work finishes.
    pub shutdown: CancellationToken,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// This process's side of the Graph throttle.
    pub throttle: Throttle,
}

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

/// One poll and the reconcile of everything due now.
#[derive(Debug, Clone)]
pub struct TickReport {
    /// The poll.
    pub poll: PollReport,
    /// The reconcile.
    pub reconcile: ReconcileReport,
    /// Why Graph could not be called, if so.
    pub error: Option<String>,
}

impl Ctx {
    /// Wires a context.
    pub fn new(
        pool: PgPool,
        source: source::Client,
        graph: graph::Client,
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Self {
        let throttle = Throttle::new(settings.graph.max_concurrency);
        Self { pool, source, graph, settings, replica: Uuid::new_v4(), shutdown, metrics, throttle }
    }

    /// Records an outcome, retrying while the database is briefly away: the
    /// Graph call already happened and its result is worth keeping. Gives up
    /// after half a lease; the committed intent makes the next owner look the
    /// outcome up.
    async fn record_with_retries(
        &self,
        claimed: &Claimed,
        outcome: &Outcome,
        calls: &[CallRecord],
    ) -> Result<bool, store::Error> {
        let give_up = Instant::now() + self.settings.sync.lease_ttl() / 2;
        let mut delay = Duration::from_millis(100);
        loop {
            match store::claims::record_outcome(&self.pool, claimed, outcome, calls).await {
                Err(e) if e.is_transient() && Instant::now() + delay < give_up => {
                    tracing::warn!(error = %e, "cannot record the outcome yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }
}

/// One pass: poll the platform, then reconcile everything due now, and close
/// the cycle's `sync_runs` row. The scheduler only triggers ticks; tests call
/// this directly.
///
/// # Errors
/// The database failed before the cycle could be recorded.
pub async fn tick(ctx: &Arc<Ctx>) -> Result<TickReport, SyncError> {
    let poll = ingest::poll(ctx).await?;
    let retention = &ctx.settings.retention;
    match store::retention::prune(&ctx.pool, retention.max_age(), retention.batch_size).await {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, "pruned rows older than retention.max_age_days"),
        Err(e) => tracing::warn!(error = %e, "cannot prune old rows; trying again after the next poll"),
    }
    let (reconcile, error) = match reconcile_due(ctx).await {
        Ok(report) => (report, None),
        Err(SyncError::Auth(e)) => (ReconcileReport::default(), Some(e)),
        Err(e) => {
            let report = RunReport { status: "failed", error: Some(e.to_string()), ..RunReport::default() };
            // Best effort: the database may be what failed.
            let _ = store::runs::finish_run(&ctx.pool, poll.run_id, &report).await;
            return Err(e);
        }
    };
    let status = if error.is_some() { "failed" } else { poll.result() };
    let run = RunReport {
        status,
        meetings_seen: poll.seen,
        meetings_changed: poll.changed,
        rejected: poll.rejected,
        created: reconcile.created,
        deleted: reconcile.deleted,
        failed: reconcile.failed,
        error: error.clone().or_else(|| poll.partial.clone()),
    };
    store::runs::finish_run(&ctx.pool, poll.run_id, &run).await?;
    Ok(TickReport { poll, reconcile, error })
}

/// Claims and reconciles meetings until none is due now, with at most
/// [`Throttle::limit`] Graph calls (up to `graph.max_concurrency`) in
/// flight. Claims a batch ahead of the workers; what is left unstarted at
/// the end (shutdown, a hold) is released at once.
///
/// # Errors
/// [`SyncError::Auth`] when Graph credentials fail (claiming stops, running
/// work finishes); [`SyncError::Store`] when claiming fails.
pub async fn reconcile_due(ctx: &Arc<Ctx>) -> Result<ReconcileReport, SyncError> {
    let mut running: JoinSet<Result<Reconciled, SyncError>> = JoinSet::new();
    let mut report = ReconcileReport::default();
    let mut stop: Option<SyncError> = None;
    let collect = |done: Result<Result<Reconciled, SyncError>, tokio::task::JoinError>,
                   report: &mut ReconcileReport,
                   stop: &mut Option<SyncError>| match done {
        Ok(Ok(r)) => report.add(r),
        Ok(Err(SyncError::Auth(e))) => {
            ctx.throttle.credentials_failed();
            stop.get_or_insert(SyncError::Auth(e));
        }
        Ok(Err(e)) => {
            stop.get_or_insert(e);
        }
        Err(e) => {
            stop.get_or_insert(SyncError::Task(e.to_string()));
        }
    };
    // Claimed rows wait here, a batch ahead, so a worker that finishes
    // starts the next meeting without waiting for a claim round trip.
    let mut queue: VecDeque<Claimed> = VecDeque::new();
    let mut drained = false;
    // A hold (throttling, failed credentials) stops claiming: nothing could be sent.
    while stop.is_none() && !ctx.shutdown.is_cancelled() && ctx.throttle.local_hold().is_none() {
        // Twice the Graph slots: while some meetings wait for Graph, others
        // commit their intent or record their outcome.
        let limit = 2 * ctx.throttle.limit();
        while running.len() < limit {
            let Some(row) = queue.pop_front() else { break };
            let ctx = ctx.clone();
            running.spawn(async move { reconcile::reconcile(&ctx, row).await });
        }
        if queue.len() < limit && !drained {
            // A whole batch, not just the shortfall: topping the queue up row
            // by row would cost a claim round trip per meeting, and the
            // workers wait on each one.
            let want = (ctx.settings.sync.claim_batch as usize).max(limit);
            let batch = u32::try_from(want).unwrap_or(u32::MAX);
            match store::claims::claim_due(
                &ctx.pool,
                batch,
                ctx.settings.sync.lease_ttl(),
                ctx.settings.sync.max_attempts,
                ctx.replica,
            )
            .await
            {
                Ok(rows) => {
                    drained = rows.len() < want;
                    report.claimed += rows.len() as u64;
                    queue.extend(rows);
                }
                Err(e) => {
                    stop = Some(e.into());
                    break;
                }
            }
            if !queue.is_empty() && running.len() < limit {
                continue;
            }
        }
        // Wait for a worker: it frees a slot, and may make more due (a
        // delete before a create).
        match running.join_next().await {
            Some(done) => {
                collect(done, &mut report, &mut stop);
                drained = false;
            }
            None if queue.is_empty() => break,
            None => {}
        }
    }
    if !queue.is_empty() {
        let unstarted: Vec<Claimed> = queue.into_iter().collect();
        if let Err(e) = store::claims::release(&ctx.pool, &unstarted).await {
            tracing::warn!(error = %e, "cannot release unstarted claims; their leases will expire");
        }
    }
    while let Some(done) = running.join_next().await {
        collect(done, &mut report, &mut stop);
    }
    match stop {
        Some(e) => Err(e),
        None => Ok(report),
    }
}
