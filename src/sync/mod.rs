//! The engine: polls the platform into the store (`ingest`), claims due
//! meetings and reconciles each against Graph (`reconcile`, which carries
//! out the steps `plan` decides) under the error policy of `retry`. Uses
//! `source`, `store` and `graph`; nothing but `app` and tests use it.

pub mod attendance;
mod engine;
pub mod ingest;
mod listing;
pub mod notifications;
mod plan;
pub mod preview;
pub mod push;
pub mod readback;
pub mod reconcile;
pub mod registrants;
pub mod retry;
pub mod scope;
pub mod sign_ins;
pub mod throttle;
mod workers;

use std::sync::Arc;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::store::{self, RunReport};
use crate::{graph, source};
use throttle::Throttle;

pub use ingest::PollReport;
pub use reconcile::Reconciled;
pub use workers::{reconcile_due, ReconcileReport};

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
    /// UPNs and join links being resolved now, each by one task.
    pub lookups: reconcile::LookupsInFlight,
    /// Organizers' tokens, with delegated sign-in (`graph.auth = delegated`).
    pub sign_ins: Option<sign_ins::SignIns>,
    /// Webinars' statuses, read before their first registrations.
    pub event_facts: registrants::EventFacts,
    /// Microsoft's limit on virtual-event writes.
    pub virtual_event_writes: registrants::WritePace,
    /// What the last probe at a known registration showed, and when
    /// (`scope`): whether the API itself refused it.
    pub known_probe: std::sync::Mutex<Option<(std::time::Instant, bool)>>,
}

/// One poll and the reconcile of everything due now.
#[derive(Debug, Clone)]
pub struct TickReport {
    /// The poll.
    pub poll: PollReport,
    /// The registrant listing, when registrants are enabled.
    pub registrants: Option<registrants::RegistrantPoll>,
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
        let lookups = reconcile::LookupsInFlight::default();
        let virtual_event_writes =
            registrants::WritePace::new(settings.graph.virtual_event_writes_per_30s, settings.graph.timeout());
        Self {
            pool,
            source,
            graph,
            settings,
            replica: Uuid::new_v4(),
            shutdown,
            metrics,
            throttle,
            lookups,
            sign_ins: None,
            event_facts: registrants::EventFacts::default(),
            known_probe: std::sync::Mutex::default(),
            virtual_event_writes,
        }
    }

    /// With delegated sign-in: organizers' tokens come from `sign_ins`.
    pub fn with_sign_ins(self, sign_ins: sign_ins::SignIns) -> Self {
        Self { sign_ins: Some(sign_ins), ..self }
    }

    /// Leave to call Graph for `organizer`'s meeting: the app's token, or
    /// with delegated sign-in the organizer's own.
    ///
    /// # Errors
    /// No token can be had, or the organizer's condition parks their rows
    /// ([`graph::Error::OrganizerParked`]).
    pub async fn permit(&self, organizer: &crate::domain::OrganizerId) -> Result<graph::Permit, sign_ins::TokenError> {
        // The organizer's own trouble parks their rows, before any token.
        if let Some((condition, reason)) = store::organizers::condition_of(&self.pool, organizer.as_str()).await? {
            let organizer = organizer.to_string();
            return Err(graph::Error::OrganizerParked { organizer, condition, reason }.into());
        }
        let permit = match &self.sign_ins {
            None => self.graph.permit().await?,
            Some(sign_ins) => {
                let token = sign_ins.token(&self.pool, &self.graph, organizer).await?;
                self.graph.permit_as(token).await
            }
        };
        Ok(permit.acting_for(organizer))
    }

    /// One Graph read beside the engine (the status read-back, attendance):
    /// the organizer's permit, a throttle slot, the read, and its answer
    /// told to the throttle. Its audit rows are not kept: no row owns it.
    ///
    /// # Errors
    /// No permit, or the read's failure.
    pub async fn read_beside<T, F>(
        &self,
        organizer: &crate::domain::OrganizerId,
        read: impl FnOnce(graph::Permit) -> F,
    ) -> Result<T, sign_ins::TokenError>
    where
        F: std::future::Future<Output = Result<T, graph::Error>>,
    {
        let permit = self.permit(organizer).await?;
        let slot = self.throttle.slot().await;
        let result = read(permit).await;
        self.throttle.answered(&self.pool, &result, false, throttle::Call::Other).await;
        drop(slot);
        result.map_err(sign_ins::TokenError::Graph)
    }

    /// Graph answered 401 to `organizer`'s token: with delegated sign-in
    /// it is dropped (here and, compare-and-clear, in the database), so the
    /// next permit really refreshes. App tokens are dropped by the Graph
    /// client itself.
    ///
    /// # Errors
    /// The database failed.
    pub async fn drop_refused_token(&self, organizer: &crate::domain::OrganizerId) -> Result<(), store::Error> {
        match &self.sign_ins {
            Some(sign_ins) => sign_ins.invalidate(&self.pool, organizer).await,
            None => Ok(()),
        }
    }

    /// Writes an outcome with `write`, retrying while the database is
    /// briefly away: the Graph call already happened and its result is
    /// worth keeping. Gives up after half a lease; the committed intent
    /// makes the next owner look the outcome up. For every kind of row.
    async fn record_with_retries<W>(&self, write: impl Fn() -> W) -> Result<bool, store::Error>
    where
        W: std::future::Future<Output = Result<bool, store::Error>>,
    {
        let deadline = self.settings.database.client_deadline();
        store::with_retries(self.settings.sync.lease_ttl() / 2, || {
            store::bounded(deadline, "record an outcome", write())
        })
        .await
    }
}

/// The periodic work beside the engine — the Graph subscriptions, the
/// status read-back, the attendance reads — each run when its period has
/// come, by one replica of the deployment. A failure is logged and tried
/// again at its next period; the others run regardless.
pub async fn follow_ups(ctx: &Arc<Ctx>) {
    if let Err(e) = notifications::when_due(ctx).await {
        tracing::warn!(error = %e, "keeping the Graph subscriptions failed; trying again at its next period");
    }
    if let Err(e) = readback::when_due(ctx).await {
        tracing::warn!(error = %e, "status read-back failed; trying again at its next period");
    }
    if let Err(e) = attendance::when_due(ctx).await {
        tracing::warn!(error = %e, "attendance failed; trying again at its next period");
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
    let registrants =
        if ctx.settings.registrants.enabled { Some(registrants::poll(ctx, poll.run_id).await?) } else { None };
    let retention = &ctx.settings.retention;
    match store::retention::prune(&ctx.pool, retention.max_age(), retention.batch_size).await {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, "pruned rows older than retention.max_age_days"),
        Err(e) => tracing::warn!(error = %e, "cannot prune old rows; trying again after the next poll"),
    }
    let (reconcile, error) = match reconcile_due(ctx).await {
        Ok(report) => (report, None),
        Err(SyncError::Auth(e)) => {
            ctx.metrics.credentials_refused();
            (ReconcileReport::default(), Some(e))
        }
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
        error: error
            .clone()
            .or_else(|| poll.partial.clone())
            .or_else(|| registrants.as_ref().and_then(|r| r.partial.clone()).map(|why| format!("registrants: {why}"))),
    };
    store::runs::finish_run(&ctx.pool, poll.run_id, &run).await?;
    Ok(TickReport { poll, registrants, reconcile, error })
}
