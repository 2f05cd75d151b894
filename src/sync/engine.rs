//! The reconcile engine, written once for every kind of row (meetings,
//! registrants, and any later kind). A kind supplies only what differs —
//! how to claim and release its rows and how to reconcile one (its plan,
//! its Graph calls, its columns) — and the engine owns the rest:
//!
//! - the worker pool: a batch claimed ahead of the workers, as many Graph
//!   calls in flight as the throttle allows, unstarted claims released;
//! - the step driver: each reconcile takes at most a bounded number of
//!   steps, and one that does not settle counts a failed attempt;
//! - the error policy's disposition: what a failed call (or a failed
//!   attempt outside Graph) means for the row — its next state, when it is
//!   due again, the reason it carries, and whether the process must stop
//!   calling Graph.
//!
//! Like kube-runtime's `Controller`, the engine runs reconciles and an
//! error policy that are given to it; unlike it, the queue lives in
//! PostgreSQL (`store`), so replicas share it and a crash loses nothing.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinError, JoinSet};

use super::{retry, Ctx, SyncError};
use crate::domain::FailureCategory;
use crate::domain::RowState;
use crate::graph;
use crate::store::{self};

/// One kind of row the engine reconciles.
pub(super) trait Kind {
    /// A claimed row.
    type Row: Send + 'static;
    /// What reconciling one row did.
    type Done: Send + 'static;
    /// What reconciling the due rows did.
    type Report: Default;

    /// Claims up to `want` due rows under a lease.
    fn claim(&self, ctx: &Ctx, want: u32) -> impl Future<Output = Result<Vec<Self::Row>, SyncError>> + Send;

    /// The table its rows live in.
    const TABLE: store::claims::Table;

    /// Which row a claimed one is, and its lease.
    fn lease(row: &Self::Row) -> store::claims::Lease;

    /// Reconciles one claimed row.
    fn reconcile(ctx: Arc<Ctx>, row: Self::Row)
        -> impl Future<Output = Result<Self::Done, SyncError>> + Send + 'static;

    /// Adds one row's result to the report.
    fn add(report: &mut Self::Report, done: Self::Done);

    /// Counts `n` rows claimed in the report.
    fn claimed(report: &mut Self::Report, n: usize);
}

/// Claims and reconciles rows of `kind` until none is due now, with at
/// most twice the throttle's Graph slots of workers (while some wait for
/// Graph, others commit their intent or record their outcome). Claims a
/// batch ahead of the workers; what is left unstarted at the end
/// (shutdown, a hold, an error) is released at once.
///
/// # Errors
/// [`SyncError::Auth`] when Graph credentials fail (claiming stops, running
/// work finishes); [`SyncError::Store`] when claiming fails.
pub(super) async fn reconcile_due<K: Kind>(ctx: &Arc<Ctx>, kind: &K) -> Result<K::Report, SyncError>
where
    K::Done: Send,
{
    let mut pool: Pool<K> = Pool {
        running: JoinSet::new(),
        queue: VecDeque::new(),
        drained: false,
        report: K::Report::default(),
        stop: None,
    };
    // A hold (throttling, failed credentials) stops claiming: nothing could be sent.
    while pool.stop.is_none() && !ctx.shutdown.is_cancelled() && ctx.throttle.local_hold().is_none() {
        let limit = 2 * ctx.throttle.limit();
        while pool.running.len() < limit {
            let Some(row) = pool.queue.pop_front() else { break };
            pool.running.spawn(K::reconcile(ctx.clone(), row));
        }
        if pool.queue.len() < limit && !pool.drained {
            // A whole batch, not the shortfall: topping up row by row would
            // cost a claim round trip per row, and the workers wait on each.
            let want = (ctx.settings.sync.claim_batch as usize).max(limit);
            match kind.claim(ctx, u32::try_from(want).unwrap_or(u32::MAX)).await {
                Ok(rows) => {
                    pool.drained = rows.len() < want;
                    K::claimed(&mut pool.report, rows.len());
                    pool.queue.extend(rows);
                }
                Err(e) => {
                    pool.stop = Some(e);
                    break;
                }
            }
            if !pool.queue.is_empty() && pool.running.len() < limit {
                continue;
            }
        }
        // Wait for a worker: it frees a slot, and may make more due (a
        // delete before a create).
        match pool.running.join_next().await {
            Some(done) => {
                pool.collect(ctx, done);
                pool.drained = false;
            }
            None if pool.queue.is_empty() => break,
            None => {}
        }
    }
    if !pool.queue.is_empty() {
        let unstarted: Vec<_> = pool.queue.drain(..).map(|row| K::lease(&row)).collect();
        if let Err(e) = store::claims::release(&ctx.pool, K::TABLE, &unstarted).await {
            tracing::warn!(error = %e, "cannot release unstarted claims; their leases will expire");
        }
    }
    while let Some(done) = pool.running.join_next().await {
        pool.collect(ctx, done);
    }
    match pool.stop {
        Some(e) => Err(e),
        None => Ok(pool.report),
    }
}

/// The workers of one [`reconcile_due`] and the claimed rows waiting for them.
struct Pool<K: Kind> {
    running: JoinSet<Result<K::Done, SyncError>>,
    /// Claimed rows wait here, a batch ahead of the workers.
    queue: VecDeque<K::Row>,
    /// The last claim found fewer rows than it asked for.
    drained: bool,
    report: K::Report,
    /// Why claiming stopped, if it did.
    stop: Option<SyncError>,
}

impl<K: Kind> Pool<K> {
    fn collect(&mut self, ctx: &Ctx, done: Result<Result<K::Done, SyncError>, JoinError>) {
        match done {
            Ok(Ok(done)) => K::add(&mut self.report, done),
            Ok(Err(SyncError::Auth(e))) => {
                ctx.throttle.credentials_failed();
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
}

/// One row's reconcile in progress, as the step driver sees it.
pub(super) trait Steps {
    /// What the reconcile did.
    type Done;

    /// Plans the next step and carries it out: `Break` ends the reconcile
    /// with its recorded outcome.
    fn step(&mut self) -> impl Future<Output = ControlFlow<Result<Self::Done, SyncError>>> + Send;

    /// Records a failure under the error policy.
    fn record_failure(&mut self, e: &graph::Error) -> impl Future<Output = Result<Self::Done, SyncError>> + Send;
}

/// Runs `work` step by step, at most `max_steps`: every step answered, yet
/// the row did not settle, counts as a failed attempt, so it backs off and
/// ends `failed`, never loops.
pub(super) async fn drive<S: Steps + Send>(mut work: S, max_steps: usize) -> Result<S::Done, SyncError> {
    for _ in 0..max_steps {
        if let ControlFlow::Break(done) = work.step().await {
            return done;
        }
    }
    let e = graph::Error::Transient {
        status: None,
        may_have_acted: true,
        detail: format!("the row did not settle within {max_steps} steps"),
    };
    work.record_failure(&e).await
}

/// What went wrong, for `last_error`, `last_http_status` and the category.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub message: String,
    pub http_status: Option<u16>,
    pub category: FailureCategory,
}

impl Failure {
    /// A failure without an HTTP status of its own.
    pub fn new(message: String, category: FailureCategory) -> Self {
        Self { message, http_status: None, category }
    }

    /// What `e` says.
    pub fn of(e: &graph::Error) -> Self {
        Self { message: e.to_string(), http_status: e.http_status(), category: e.category() }
    }
}

/// How a failed row is recorded: the error policy's answer, carried out.
pub(super) struct Disposition {
    /// The row's next state.
    pub state: RowState,
    /// When it is due again, from now.
    pub delay: Duration,
    /// The reason it carries.
    pub failure: Failure,
    /// The row's real attempts now.
    pub attempts: u32,
    /// The process must stop calling Graph (the app's credentials failed):
    /// returned after the row is recorded.
    pub stop: Option<SyncError>,
}

impl Ctx {
    /// The error policy for a failed Graph call of any kind of row, its
    /// scope decided from evidence (`scope`), carried out where it reaches
    /// beyond the row (a throttle hold, a suspension): what to record.
    /// `whose` is the acting organizer, the row's key in the evidence and
    /// the command that makes the row due again; `row_known` says the row
    /// has made progress worth keeping (an attempt, an unknown outcome), so
    /// a pause for the app's credentials leaves it `retrying`.
    ///
    /// # Errors
    /// The database failed.
    pub(super) async fn dispose(
        &self,
        e: &graph::Error,
        attempts_before: u32,
        policy: retry::Policy,
        whose: (&str, &str, &str),
        row_known: bool,
    ) -> Result<Disposition, SyncError> {
        let retry_command = whose.2;
        let judged = self.judge_failure(e, attempts_before, policy, whose).await?;
        let attempts = judged.attempts;
        let failure = match judged.row_reason {
            Some((message, category)) => Failure { message, category, ..Failure::of(e) },
            None => Failure::of(e),
        };
        let retrying = |delay, failure| Disposition { state: RowState::Retrying, delay, failure, attempts, stop: None };
        Ok(match judged.next {
            retry::AfterFailure::AuthPause => {
                tracing::error!(error = %e, "Graph credentials failed; stopping Graph calls for this cycle");
                // The app's trouble, not the row's: it is due again at once,
                // so the first cycle after the fix syncs it.
                let state = if attempts > 0 || row_known { RowState::Retrying } else { RowState::Pending };
                let stop = Some(SyncError::Auth(e.to_string()));
                Disposition { state, delay: Duration::ZERO, failure, attempts, stop }
            }
            retry::AfterFailure::Hold(wait) => {
                let held = self.throttle.throttled(&self.pool, wait).await?;
                self.metrics.throttled();
                tracing::info!(hold_ms = held.as_millis() as u64, "Graph is throttling; holding all requests");
                let message = format!("throttled by Graph; retrying in {:.1} s", held.as_secs_f64());
                retrying(held, Failure { message, category: FailureCategory::Throttled, ..failure })
            }
            retry::AfterFailure::Suspend => {
                let probe_after = self.settings.graph.suspended_probe_interval();
                let held = self.throttle.suspend(&self.pool, &e.to_string(), probe_after).await?;
                tracing::error!(error = %e, probe_in_ms = held.as_millis() as u64, "Graph writes suspended for the deployment");
                retrying(held, failure)
            }
            retry::AfterFailure::Park => {
                tracing::warn!(error = %e, "permanent Graph error; parked as failed");
                Disposition { state: RowState::Failed, delay: Duration::ZERO, failure, attempts, stop: None }
            }
            retry::AfterFailure::Attempt(retry::Decision::RetryAfter(delay)) => {
                tracing::warn!(error = %e, attempts, retry_in_ms = delay.as_millis() as u64, "Graph call failed; will retry");
                retrying(delay, failure)
            }
            retry::AfterFailure::Attempt(retry::Decision::Park) => {
                tracing::error!(error = %e, attempts, "attempts exhausted; parked as failed");
                let message = format!(
                    "gave up after {attempts} attempts (sync.max_attempts); last error: {}. Run `{retry_command}` \
                     once the cause is fixed",
                    failure.message
                );
                let failure = Failure { message, ..failure };
                Disposition { state: RowState::Failed, delay: Duration::ZERO, failure, attempts, stop: None }
            }
        })
    }
}

/// A failed attempt outside Graph's error policy (a wait for another row,
/// a write-back, a stale resolution): retried after backoff with
/// `retrying`, then `failed` with `parked` once `sync.max_attempts` are
/// used.
pub(super) fn attempt(attempts_before: u32, policy: retry::Policy, retrying: Failure, parked: Failure) -> Disposition {
    let attempts = attempts_before.saturating_add(1);
    match retry::next_attempt(attempts, policy.max_attempts, policy.base, policy.cap, rand::random()) {
        retry::Decision::RetryAfter(delay) => {
            Disposition { state: RowState::Retrying, delay, failure: retrying, attempts, stop: None }
        }
        retry::Decision::Park => {
            Disposition { state: RowState::Failed, delay: Duration::ZERO, failure: parked, attempts, stop: None }
        }
    }
}

/// When a send gate opened, on both clocks. Its permit may be used for
/// half the lease from then (monotonic: a pause counts), and the lease it
/// renewed lasts at least the whole TTL from then (wall clock, recorded with
/// the call so a reader can tell the write arrived while the row was ours).
pub(super) struct GateOpened {
    at: std::time::Instant,
    wall: chrono::DateTime<chrono::Utc>,
}

impl GateOpened {
    pub(super) fn now() -> Self {
        Self { at: std::time::Instant::now(), wall: chrono::Utc::now() }
    }

    /// `permit`, bounded by the lease of `ttl` this gate renewed.
    pub(super) fn bound(&self, permit: graph::Permit, ttl: Duration) -> graph::Permit {
        permit.send_by(self.at + ttl / 2).under_lease(self.wall + ttl)
    }
}

/// Another request's throttle hold, met at the gate: the row waits it out
/// (with jitter, so the rows held do not return together) without an
/// attempt and without touching the hold. When it is due again, and why.
pub(super) fn wait_out_throttle(wait: Duration) -> (Duration, Failure) {
    let message = format!("waiting out Graph throttling ({:.1} s)", wait.as_secs_f64());
    (retry::throttle_wait(wait, rand::random()), Failure::new(message, FailureCategory::Throttled))
}

/// Aborts the process here when the crash-matrix tests ask for it (the
/// `failpoints` feature and `FAILPOINTS=<name>=return`); nothing otherwise.
#[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
pub(super) fn crash_point(name: &str) {
    fail_point!(name, |_| std::process::abort());
}
